//! `sealrun dev` as a new user meets it: a control plane, an agent and a
//! demo target in one subprocess, and the CLI configured by its `dev.env`.

use crate::process::{Cli, sealrun_bin};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `sealrun dev` running in the background, with the kit's shim and an empty
/// `HOME`; killed and reaped on drop (its log printed if the test failed).
#[derive(Debug)]
pub struct DevProcess {
    child: Child,
    /// The temporary `HOME` (`dev/` holds the dev state, `dev.log` the log).
    pub dir: tempfile::TempDir,
    /// The CLI with the admin token `dev.env` exports.
    pub cli: Cli,
}

impl DevProcess {
    /// Starts `sealrun dev` on a free port and waits (up to 60 s) until it
    /// has written `dev.env`.
    pub fn start() -> DevProcess {
        Self::start_with(|_| {})
    }

    /// [`DevProcess::start`], with `configure` applied to the command last
    /// (e.g. to take away `SEALRUN_AGENT_INIT`, which names the kit's shim).
    pub fn start_with(configure: impl FnOnce(&mut Command)) -> DevProcess {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let log_path = dir.path().join("dev.log");
        let log = std::fs::File::create(&log_path).expect("the dev log");
        let mut command = Command::new(sealrun_bin());
        command
            .args(["dev", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("dev"))
            .env("HOME", dir.path())
            .env("SEALRUN_AGENT_INIT", crate::init_binary())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("a second handle on the log"))
            .stderr(log);
        configure(&mut command);
        let child = command.spawn().expect("sealrun dev starts");
        let env_file = dir.path().join("dev").join("dev.env");
        let deadline = Instant::now() + crate::WAIT;
        while !env_file.exists() {
            assert!(
                Instant::now() < deadline,
                "sealrun dev did not write dev.env:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let text = std::fs::read_to_string(&env_file).expect("dev.env is readable");
        let var = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("export {name}='")))
                .and_then(|v| v.strip_suffix('\''))
                .unwrap_or_else(|| panic!("{name} missing from dev.env:\n{text}"))
                .to_owned()
        };
        let cli = Cli {
            url: var("SEALRUN_URL"),
            token: var("SEALRUN_TOKEN"),
            ca_cert: PathBuf::from(var("SEALRUN_CA_CERT")),
            home: dir.path().to_owned(),
            env: ["SEALRUN_SIGNING_KEY_FILE", "SEALRUN_TRUST_FILE"]
                .into_iter()
                .map(|name| (name.to_owned(), var(name)))
                .collect(),
        };
        DevProcess { child, dir, cli }
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its `--data-dir` (`dev.env`, `admin.token`, `server/`, `agent/`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("dev")
    }

    /// The log of `sealrun dev` so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dev.log")).unwrap_or_default()
    }
}

impl Drop for DevProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Killed mid-run, its agent leaves the run's container behind.
        let identity = self.dir.path().join("dev/agent/agent.json");
        if let Some(agent_id) = std::fs::read_to_string(identity)
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .and_then(|v| v["agent_id"].as_str().map(str::to_owned))
        {
            for id in crate::containers_of(&agent_id) {
                crate::remove_container(&id);
            }
        }
        if std::thread::panicking() {
            eprintln!("--- sealrun dev log ---\n{}", self.log());
        }
    }
}
