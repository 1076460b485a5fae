//! PostgreSQL for the test suite. `SEALRUN_TEST_DATABASE_URL` names a
//! cluster and a role that may create databases (e.g.
//! `postgres://sealrun:sealrun@127.0.0.1/postgres`):
//!
//! - tests of PostgreSQL itself (replicas, `migrate-store`) take a database
//!   with [`require_postgres`], which skips loudly without the variable, or
//!   fails under `SEALRUN_REQUIRE_POSTGRES` or `CI`;
//! - with `SEALRUN_TEST_STORE=postgres` besides, every server the kit starts
//!   in process gets a database of its own instead of SQLite, so the same
//!   control-plane tests run against both backends (`scripts/test.sh` runs
//!   `api/tests` twice).
//!
//! A server's database is named after its data directory, so a server
//! restarted on the same directory finds its data again. It is dropped with
//! a server that owns its directory; `scripts/test.sh` drops any left
//! (`sealrun_t_*`) after the run.

use sealrun_api::DatabaseUrl;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The variable naming the cluster the suite uses.
pub const TEST_DATABASE_URL: &str = "SEALRUN_TEST_DATABASE_URL";

/// The variable that puts the in-process servers on PostgreSQL.
pub const TEST_STORE: &str = "SEALRUN_TEST_STORE";

/// Whether this pass runs the control-plane suite on PostgreSQL.
pub fn postgres_under_test() -> bool {
    std::env::var(TEST_STORE).is_ok_and(|s| s == "postgres")
}

/// A database of its own for a test of PostgreSQL, named after `dir`; or
/// `None` after a loud `SKIPPED` line when no cluster is configured (a
/// failure instead under `SEALRUN_REQUIRE_POSTGRES` or `CI`).
pub fn require_postgres(dir: &Path) -> Option<TestDatabase> {
    if std::env::var_os(TEST_DATABASE_URL).is_none() {
        crate::docker::skip_or_fail_unless(
            &format!("no PostgreSQL cluster ({TEST_DATABASE_URL} is not set)"),
            "SEALRUN_REQUIRE_POSTGRES",
        );
        return None;
    }
    TestDatabase::create(dir)
}

/// A test's own database.
#[derive(Debug)]
pub struct TestDatabase {
    admin: String,
    name: String,
    /// The URL a server connects with.
    pub url: DatabaseUrl,
    /// The same, as text (for a subprocess's `SEALRUN_DATABASE_URL`).
    pub url_text: String,
}

impl TestDatabase {
    /// The database for a server keeping its data in `data_dir`, created if
    /// new; `None` when the suite tests SQLite.
    pub fn for_data_dir(data_dir: &Path) -> Option<TestDatabase> {
        if !postgres_under_test() {
            return None;
        }
        TestDatabase::create(data_dir)
    }

    /// The database named after `dir`, created if new; `None` without a
    /// cluster.
    pub fn create(dir: &Path) -> Option<TestDatabase> {
        let admin = std::env::var(TEST_DATABASE_URL).ok()?;
        let data_dir = dir;
        let name = format!(
            "sealrun_t_{:016x}",
            fnv1a(data_dir.as_os_str().as_encoded_bytes())
        );
        let (base, _) = admin
            .rsplit_once('/')
            .unwrap_or_else(|| panic!("{TEST_DATABASE_URL} must end with /DATABASE"));
        let url_text = format!("{base}/{name}");
        let url = url_text
            .parse()
            .unwrap_or_else(|e| panic!("{TEST_DATABASE_URL}: {e}"));
        let db = TestDatabase {
            admin,
            name,
            url,
            url_text,
        };
        db.admin_statement(
            &format!("SELECT 1 FROM pg_database WHERE datname = '{}'", db.name),
            Some(&format!("CREATE DATABASE {}", db.name)),
        );
        Some(db)
    }

    /// Drops the database (its server must be stopped).
    pub fn drop_database(&self) {
        self.admin_statement(
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            None,
        );
    }

    /// Brings the planner's statistics of the database up to date
    /// (`ANALYZE`). Autovacuum does so on a live installation within a
    /// minute of its first changes; until then the planner knows nothing of
    /// a table's contents, and may keep, for as long as a connection lives,
    /// a plan made when the table was empty (a run looked up by id through
    /// the index of its org's runs, one row per run of the org). A
    /// benchmark of a steady state runs this after warming up rather than
    /// measure that first minute.
    pub fn analyze(&self) {
        self.statement_in(&self.url_text, "ANALYZE", None);
    }

    /// Runs `sql` on the admin connection (see [`TestDatabase::statement_in`]).
    fn admin_statement(&self, sql: &str, otherwise: Option<&str>) {
        self.statement_in(&self.admin, sql, otherwise);
    }

    /// Runs `sql` in the database at `url`, on a thread of its own (the
    /// synchronous client runs a runtime of its own, which cannot start
    /// inside a test's). With `otherwise`, `sql` is a query and `otherwise`
    /// runs if it returns no row.
    fn statement_in(&self, url: &str, sql: &str, otherwise: Option<&str>) {
        let (admin, sql, otherwise) =
            (url.to_owned(), sql.to_owned(), otherwise.map(str::to_owned));
        std::thread::spawn(move || {
            let mut client = postgres::Client::connect(&admin, postgres::NoTls)
                .unwrap_or_else(|e| panic!("cannot connect to {TEST_DATABASE_URL}: {e}"));
            match otherwise {
                None => client.batch_execute(&sql),
                Some(then) => match client.query_opt(&sql, &[]) {
                    Ok(Some(_)) => Ok(()),
                    Ok(None) => client.batch_execute(&then),
                    Err(e) => Err(e),
                },
            }
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        })
        .join()
        .expect("the admin connection's thread");
    }
}

/// FNV-1a: a stable name from a path (not for security).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A PostgreSQL server of one test's own, from the distribution's binaries
/// (`/usr/lib/postgresql/N/bin`, N the newest), in a temporary directory
/// and on a port of its own: for the fault of PostgreSQL itself going down
/// and coming back, which the suite's shared cluster cannot take. It runs
/// as the `postgres` user when the tests run as root (PostgreSQL refuses
/// root), trusts local connections, and is stopped and removed on drop.
#[derive(Debug)]
pub struct PrivateCluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    /// `(uid, gid)` of `postgres` when the tests run as root.
    run_as: Option<(u32, u32)>,
    child: Option<Child>,
    /// Settings given to `postgres` at each start (`-c name=value`).
    settings: Vec<String>,
    /// `postgres://sealrun@127.0.0.1:<port>/postgres`: no password (the
    /// cluster trusts local connections).
    pub url_text: String,
    /// With [`PrivateCluster::require_tls`], the PEM file of the CA that
    /// signed the server's certificate (for `127.0.0.1` and `localhost`).
    pub ca_cert: Option<PathBuf>,
}

impl PrivateCluster {
    /// Creates and starts a cluster; `None` after a loud `SKIPPED` line when
    /// PostgreSQL's binaries are not installed (a failure instead under
    /// `SEALRUN_REQUIRE_POSTGRES` or `CI`).
    pub fn require() -> Option<PrivateCluster> {
        PrivateCluster::require_with(false)
    }

    /// [`require`](PrivateCluster::require), the cluster taking connections
    /// over TLS only (`hostssl` in `pg_hba.conf`, no `host`: one in the
    /// clear is refused), with a certificate signed by a CA of the test's
    /// own ([`PrivateCluster::ca_cert`]).
    pub fn require_tls() -> Option<PrivateCluster> {
        PrivateCluster::require_with(true)
    }

    fn require_with(tls: bool) -> Option<PrivateCluster> {
        let Some(bin) = newest_server_binaries() else {
            crate::docker::skip_or_fail_unless(
                "PostgreSQL's server binaries are not installed (/usr/lib/postgresql/N/bin)",
                "SEALRUN_REQUIRE_POSTGRES",
            );
            return None;
        };
        let dir = tempfile::tempdir().expect("a temporary directory");
        let run_as = (nix::unistd::geteuid().is_root()).then(|| {
            let user = nix::unistd::User::from_name("postgres")
                .ok()
                .flatten()
                .expect("a `postgres` user (Debian's postgresql package makes one)");
            (user.uid.as_raw(), user.gid.as_raw())
        });
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .expect("the cluster's directory handed to postgres");
        }
        let port = crate::free_port();
        let mut cluster = PrivateCluster {
            url_text: format!("postgres://sealrun@127.0.0.1:{port}/postgres"),
            bin,
            dir,
            port,
            run_as,
            child: None,
            settings: Vec::new(),
            ca_cert: None,
        };
        let out = cluster
            .command("initdb")
            .args(["--auth=trust", "--username=sealrun", "--no-sync", "-D"])
            .arg(cluster.data())
            .output()
            .expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if tls {
            cluster.serve_tls_only();
        }
        cluster.start();
        Some(cluster)
    }

    /// A CA and a certificate it signs for the server; TLS on, and
    /// `pg_hba.conf` letting TCP connections in over TLS only.
    fn serve_tls_only(&mut self) {
        let (ca, ca_key) = new_ca();
        let key = rcgen::KeyPair::generate().expect("the server's key");
        let cert =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("the server's parameters")
                .signed_by(&key, &ca, &ca_key)
                .expect("the server's certificate");
        let ca_cert = self.dir.path().join("ca.pem");
        std::fs::write(&ca_cert, ca.pem()).expect("the CA's PEM");
        let data = self.data();
        let files = [
            ("server.crt", cert.pem()),
            ("server.key", key.serialize_pem()),
            (
                "pg_hba.conf",
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\n".to_owned(),
            ),
        ];
        for (name, text) in files {
            let path = data.join(name);
            std::fs::write(&path, text).expect("a file of the cluster's");
            // PostgreSQL refuses a key others may read.
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .expect("the file's mode");
            if let Some((uid, gid)) = self.run_as {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                    .expect("the file handed to postgres");
            }
        }
        self.settings = vec![
            "ssl=on".to_owned(),
            format!("ssl_cert_file={}", data.join("server.crt").display()),
            format!("ssl_key_file={}", data.join("server.key").display()),
        ];
        self.ca_cert = Some(ca_cert);
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `PROGRAM` of the cluster's binaries, as `postgres` when root.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match self.run_as {
            Some((uid, gid)) => {
                let mut c = Command::new("setpriv");
                c.args([
                    &format!("--reuid={uid}"),
                    &format!("--regid={gid}"),
                    "--clear-groups",
                    "--",
                ])
                .arg(path);
                c
            }
            None => Command::new(path),
        }
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "the cluster is running");
        let log = std::fs::File::create(self.dir.path().join(format!("log-{}", now_nanos())))
            .expect("the cluster's log");
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data())
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(self.settings.iter().flat_map(|s| ["-c", s]))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("a second handle on the log"))
            .stderr(log)
            .spawn()
            .expect("postgres starts");
        self.child = Some(child);
        let deadline = Instant::now() + crate::WAIT;
        loop {
            let ready = self
                .command("pg_isready")
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("postgres exited ({status}): {}", self.logs());
            }
            assert!(
                Instant::now() < deadline,
                "postgres did not start: {}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Immediate shutdown (SIGQUIT): every connection cut at once, nothing
    /// flushed, crash recovery at the next start: the harshest stop short
    /// of losing the machine. Waits until the server has exited.
    pub fn stop_immediately(&mut self) {
        if let Some(mut child) = self.child.take() {
            crate::signal(child.id(), "QUIT");
            let deadline = Instant::now() + Duration::from_secs(30);
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://sealrun@<socket directory>:<port>/postgres`: the cluster
    /// through its Unix socket (trusted, as TCP is).
    pub fn socket_url(&self) -> String {
        let dir = self.dir.path().display().to_string().replace('/', "%2F");
        format!("postgres://sealrun@{dir}:{}/postgres", self.port)
    }

    /// The server's logs so far.
    pub fn logs(&self) -> String {
        let mut logs = String::new();
        if let Ok(entries) = std::fs::read_dir(self.dir.path()) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with("log-") {
                    logs.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
                }
            }
        }
        logs
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        self.stop_immediately();
    }
}

/// A new CA: its certificate and key.
fn new_ca() -> (rcgen::Certificate, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate().expect("a CA key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "sealrun test PostgreSQL CA");
    (params.self_signed(&key).expect("the CA's certificate"), key)
}

/// Writes to `path` the certificate of a new CA that signed nothing: for a
/// test that a server whose certificate another CA signed is refused.
pub fn unrelated_ca(path: &Path) {
    std::fs::write(path, new_ca().0.pem()).expect("the CA's PEM");
}

/// `/usr/lib/postgresql/N/bin` for the newest N holding `postgres`.
fn newest_server_binaries() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}
