//! The shim as every run container's entrypoint, against the real Docker
//! engine: bind-mounted read-only, stdin attached, the bundle written after
//! start. Skips (loudly) without Docker unless `SEALRUN_REQUIRE_DOCKER` or `CI` is set.
#![allow(clippy::unwrap_used)]

use sealrun_init::{EXIT_INIT_FAILED, EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND};
use sealrun_testkit::container::{NO_SHELL, bundle, shim_docker, unique_secret};
use sealrun_testkit::{IMAGE, docker_cli};

/// Counts the zombie processes in the container's PID namespace after leaving
/// three orphans behind: each `( ... &)` subshell exits at once, so its
/// background child is re-parented to PID 1, and only PID 1 can reap it.
const ZOMBIE_PROBE: &str = r#"(sleep 0 &); (sleep 0 &); (sleep 0 &); sleep 1
echo "zombies=$(grep -l '^State:.Z' /proc/[0-9]*/status 2>/dev/null | wc -l)""#;

#[test]
fn the_command_sees_the_bundle_variables_on_top_of_the_container_environment() {
    let Some(docker) = shim_docker() else { return };
    let stdin = bundle(&[
        ("DB_PASSWORD", b"pa ss=word"),
        ("OVERRIDDEN", b"from-bundle"),
    ]);
    let run = docker.run(
        IMAGE,
        &[
            "--env",
            "PLAIN=from-config",
            "--env",
            "OVERRIDDEN=from-config",
        ],
        &["env"],
        &stdin,
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    let env = run.stdout();
    let lines: Vec<&str> = env.lines().collect();
    for expected in [
        "DB_PASSWORD=pa ss=word",
        "OVERRIDDEN=from-bundle",
        "PLAIN=from-config",
        "PATH=/bin",
    ] {
        assert!(
            lines.contains(&expected),
            "{expected:?} missing from {lines:?}"
        );
    }
    assert!(!lines.contains(&"OVERRIDDEN=from-config"), "{lines:?}");
}

#[test]
fn a_multi_line_non_utf8_value_arrives_byte_for_byte() {
    let Some(docker) = shim_docker() else { return };
    let value =
        b"-----BEGIN KEY-----\nAAAA\xff\xfe\x01 'quoted' \"double\" $HOME\n-----END KEY-----\n";
    let run = docker.run(
        IMAGE,
        &[],
        &["sh", "-c", r#"printf %s "$BLOB""#],
        &bundle(&[("BLOB", value)]),
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout, value);
}

#[test]
fn the_command_exit_code_is_the_container_exit_code() {
    let Some(docker) = shim_docker() else { return };
    for code in [0, 3, 255] {
        let run = docker.run(
            IMAGE,
            &[],
            &["sh", "-c", &format!("exit {code}")],
            &bundle(&[]),
        );
        assert_eq!(run.code, Some(code), "{run:?}");
        assert_eq!(run.stderr, "");
    }
}

#[test]
fn a_command_killed_by_a_signal_exits_128_plus_the_signal() {
    let Some(docker) = shim_docker() else { return };
    for (signal, code) in [("KILL", 137), ("SEGV", 139)] {
        let script = format!("kill -{signal} $$");
        let run = docker.run(IMAGE, &[], &["sh", "-c", &script], &bundle(&[]));
        assert_eq!(run.code, Some(code), "SIG{signal}: {run:?}");
    }
}

#[test]
fn sigterm_is_forwarded_to_the_command_which_can_trap_it() {
    let Some(docker) = shim_docker() else { return };
    let script =
        r#"trap 'echo trapped TERM; exit 42' TERM; echo ready; while :; do sleep 0.1; done"#;
    let mut running = docker.start(IMAGE, &[], &["sh", "-c", script], &bundle(&[]));
    running.close_stdin();
    running.wait_for_line("ready");
    running.signal("TERM");
    let run = running.finish();
    assert_eq!(run.code, Some(42), "{run:?}");
    assert!(run.stdout().contains("trapped TERM\n"), "{run:?}");
}

#[test]
fn every_forwarded_signal_reaches_the_command() {
    let Some(docker) = shim_docker() else { return };
    let forwarded = ["INT", "HUP", "QUIT", "USR1", "USR2"];
    let mut script = String::new();
    for signal in forwarded {
        script.push_str(&format!("trap 'echo got {signal}' {signal}; "));
    }
    script.push_str("trap 'exit 42' TERM; echo ready; while :; do sleep 0.1; done");
    let mut running = docker.start(IMAGE, &[], &["sh", "-c", &script], &bundle(&[]));
    running.close_stdin();
    running.wait_for_line("ready");
    for signal in forwarded {
        running.signal(signal);
        running.wait_for_line(&format!("got {signal}"));
    }
    running.signal("TERM");
    let run = running.finish();
    assert_eq!(run.code, Some(42), "{run:?}");
}

#[test]
fn a_command_without_a_sigterm_handler_is_terminated_by_it() {
    let Some(docker) = shim_docker() else { return };
    let mut running = docker.start(
        IMAGE,
        &[],
        &["sh", "-c", "echo ready; exec sleep 60"],
        &bundle(&[]),
    );
    running.close_stdin();
    running.wait_for_line("ready");
    running.signal("TERM");
    let run = running.finish();
    assert_eq!(run.code, Some(128 + 15), "{run:?}");
}

#[test]
fn docker_stop_kills_a_command_that_ignores_sigterm_after_the_grace_period() {
    let Some(docker) = shim_docker() else { return };
    let script = r#"trap '' TERM; echo ready; while :; do sleep 0.1; done"#;
    let mut running = docker.start(IMAGE, &[], &["sh", "-c", script], &bundle(&[]));
    running.close_stdin();
    running.wait_for_line("ready");
    docker_cli(&["stop", "--time", "1", &running.name]);
    let run = running.finish();
    assert_eq!(run.code, Some(128 + 9), "{run:?}");
}

#[test]
fn orphans_of_the_command_are_reaped_and_leave_no_zombies() {
    let Some(docker) = shim_docker() else { return };
    let run = docker.run(IMAGE, &[], &["sh", "-c", ZOMBIE_PROBE], &bundle(&[]));
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout(), "zombies=0\n");
}

#[test]
fn orphans_from_docker_exec_are_reaped_by_the_shim() {
    let Some(docker) = shim_docker() else { return };
    let mut running = docker.start(
        IMAGE,
        &[],
        &["sh", "-c", "echo ready; exec sleep 60"],
        &bundle(&[]),
    );
    running.close_stdin();
    running.wait_for_line("ready");
    let probe = docker_cli(&["exec", &running.name, "sh", "-c", ZOMBIE_PROBE]);
    assert_eq!(probe, "zombies=0\n");
}

#[test]
fn the_zombie_probe_sees_zombies_under_a_pid_1_that_does_not_reap() {
    // Control for the two tests above: the same probe, with busybox `sleep`
    // (which never calls wait) as PID 1 instead of the shim.
    let Some(_docker) = shim_docker() else { return };
    let name = format!("sealrun-init-test-{}-control", std::process::id());
    docker_cli(&[
        "run",
        "--detach",
        "--rm",
        "--name",
        &name,
        "--label",
        "sealrun.test=init",
        "--network",
        "none",
        "--entrypoint",
        "sleep",
        IMAGE,
        "60",
    ]);
    let probe = std::process::Command::new("docker")
        .args(["exec", &name, "sh", "-c", ZOMBIE_PROBE])
        .output()
        .unwrap();
    docker_cli(&["rm", "--force", &name]);
    assert_eq!(String::from_utf8(probe.stdout).unwrap(), "zombies=3\n");
}

#[test]
fn nothing_written_after_the_bundle_reaches_the_command() {
    let Some(docker) = shim_docker() else { return };
    let mut stdin = bundle(&[("K", b"v")]);
    stdin.extend_from_slice(b"typed into the attach stream after the bundle\n");
    // Stdin stays open while the command reads it: the command must see
    // end-of-file at once, not the extra line and not a hang.
    let running = docker.start(IMAGE, &[], &["sh", "-c", "cat; echo cat-done"], &stdin);
    let run = running.finish();
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout(), "cat-done\n");
}

#[test]
fn a_malformed_bundle_exits_125_with_one_line_and_the_command_never_runs() {
    let Some(docker) = shim_docker() else { return };
    let run = docker.run(
        IMAGE,
        &[],
        &["echo", "the command ran"],
        b"DB_PASSWORD=hunter2\n",
    );
    assert_eq!(run.code, Some(EXIT_INIT_FAILED), "{run:?}");
    assert_eq!(run.stdout(), "");
    assert_eq!(
        run.stderr,
        "sealrun-init: error: invalid bundle on stdin: input is not a sealrun bundle (bad magic)\n"
    );
}

#[test]
fn a_short_bundle_exits_125_and_reveals_nothing_of_it() {
    let Some(docker) = shim_docker() else { return };
    let secret = unique_secret("short");
    let full = bundle(&[("DB_PASSWORD", secret.as_bytes())]);
    let cut = &full[..full.len() - 10];
    let run = docker.run(IMAGE, &[], &["echo", "the command ran"], cut);
    assert_eq!(run.code, Some(EXIT_INIT_FAILED), "{run:?}");
    assert_eq!(run.stdout(), "");
    assert_eq!(
        run.stderr,
        format!(
            "sealrun-init: error: invalid bundle on stdin: bundle is short: expected {} bytes, received {}\n",
            full.len(),
            cut.len()
        )
    );
    assert!(!run.stderr.contains(&secret[..8]));
}

#[test]
fn no_bundle_at_all_exits_125() {
    let Some(docker) = shim_docker() else { return };
    let run = docker.run(IMAGE, &[], &["echo", "the command ran"], b"");
    assert_eq!(run.code, Some(EXIT_INIT_FAILED), "{run:?}");
    assert_eq!(run.stdout(), "");
    assert!(
        run.stderr
            .contains("bundle is short: expected 12 bytes, received 0"),
        "{run:?}"
    );
}

#[test]
fn a_bundle_of_another_version_exits_125_naming_the_version() {
    let Some(docker) = shim_docker() else { return };
    let mut stdin = bundle(&[]);
    stdin[4] = 9;
    let run = docker.run(IMAGE, &[], &["echo", "the command ran"], &stdin);
    assert_eq!(run.code, Some(EXIT_INIT_FAILED), "{run:?}");
    assert!(
        run.stderr.contains("unsupported bundle version 9"),
        "{run:?}"
    );
}

#[test]
fn a_missing_command_exits_127() {
    let Some(docker) = shim_docker() else { return };
    let run = docker.run(IMAGE, &[], &["no-such-command"], &bundle(&[]));
    assert_eq!(run.code, Some(EXIT_NOT_FOUND), "{run:?}");
    assert!(
        run.stderr
            .starts_with("sealrun-init: error: cannot execute no-such-command: "),
        "{run:?}"
    );
}

#[test]
fn a_command_that_is_not_executable_exits_126() {
    let Some(docker) = shim_docker() else { return };
    let run = docker.run(IMAGE, &[], &["/etc/hostname"], &bundle(&[]));
    assert_eq!(run.code, Some(EXIT_NOT_EXECUTABLE), "{run:?}");
    assert!(
        run.stderr
            .starts_with("sealrun-init: error: cannot execute /etc/hostname: "),
        "{run:?}"
    );
}

#[test]
fn an_image_without_a_shell_or_libc_runs_its_command_with_the_secrets() {
    let Some(docker) = shim_docker() else { return };
    let run = docker.run(
        NO_SHELL,
        &[],
        &["env"],
        &bundle(&[("API_TOKEN", b"tok-123")]),
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stdout().lines().any(|line| line == "API_TOKEN=tok-123"),
        "{run:?}"
    );
    // And there really is no shell in it.
    let run = docker.run(NO_SHELL, &[], &["sh", "-c", "true"], &bundle(&[]));
    assert_eq!(run.code, Some(EXIT_NOT_FOUND), "{run:?}");
}

#[test]
fn the_shim_runs_under_the_agents_hardening() {
    let Some(docker) = shim_docker() else { return };
    let hardening = [
        "--user",
        "65534:65534",
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--pids-limit",
        "64",
        "--memory",
        "64m",
    ];
    let script = r#"echo "uid=$(id -u) token=$TOKEN"; grep CapEff /proc/self/status"#;
    let run = docker.run(
        IMAGE,
        &hardening,
        &["sh", "-c", script],
        &bundle(&[("TOKEN", b"t0k")]),
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(
        run.stdout(),
        "uid=65534 token=t0k\nCapEff:\t0000000000000000\n"
    );
}

#[test]
fn the_command_starts_with_no_signal_blocked() {
    let Some(docker) = shim_docker() else { return };
    let run = docker.run(
        IMAGE,
        &[],
        &["grep", "SigBlk", "/proc/self/status"],
        &bundle(&[]),
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout(), "SigBlk:\t0000000000000000\n");
}

#[test]
fn no_secret_value_reaches_docker_inspect_or_the_docker_state_directory() {
    let Some(docker) = shim_docker() else { return };
    let secret = unique_secret("inspect");
    let script = r#"echo "length=${#DB_PASSWORD}"; sleep 60"#;
    let stdin = bundle(&[("DB_PASSWORD", secret.as_bytes())]);
    let mut running = docker.start(IMAGE, &[], &["sh", "-c", script], &stdin);
    running.close_stdin();
    // The command has the secret while we look.
    running.wait_for_line(&format!("length={}", secret.len()));
    assert_eq!(places_holding(&running, &secret), Vec::<String>::new());
    running.signal("KILL");
}

#[test]
fn the_secret_search_finds_a_value_passed_as_container_env() {
    // Control for the test above, and the reason the shim exists: a value in
    // the container's configuration is in `docker inspect` and on disk.
    let Some(docker) = shim_docker() else { return };
    let secret = unique_secret("config");
    let env = format!("DB_PASSWORD={secret}");
    let mut running = docker.start(
        IMAGE,
        &["--env", &env],
        &["sh", "-c", "echo ready; sleep 60"],
        &bundle(&[]),
    );
    running.close_stdin();
    running.wait_for_line("ready");
    let places = places_holding(&running, &secret);
    assert!(places.contains(&"docker inspect".to_owned()), "{places:?}");
    assert!(
        places.iter().any(|place| place.ends_with("config.v2.json")),
        "{places:?}"
    );
    running.signal("KILL");
}

#[test]
fn output_the_command_prints_is_on_disk_with_the_default_json_file_log_driver() {
    // Why the agent must also pass `--log-driver none` (HostConfig.LogConfig
    // type "none"): Docker's default logger stores raw, unredacted output in
    // the state directory, so a secret the command prints lands on disk.
    let Some(docker) = shim_docker() else { return };
    let secret = unique_secret("json-log");
    let script = r#"echo "$TOKEN"; echo ready; sleep 60"#;
    let stdin = bundle(&[("TOKEN", secret.as_bytes())]);
    let options = ["--log-driver", "json-file"];
    let mut running = docker.start(IMAGE, &options, &["sh", "-c", script], &stdin);
    running.close_stdin();
    running.wait_for_line("ready");
    // The logger writes apart from the attach stream: poll, bounded.
    let in_log = |places: &[String]| places.iter().any(|place| place.ends_with("-json.log"));
    let mut places = places_holding(&running, &secret);
    for _ in 0..100 {
        if in_log(&places) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        places = places_holding(&running, &secret);
    }
    assert!(in_log(&places), "{places:?}");
    running.signal("KILL");
}

#[test]
fn with_the_none_log_driver_printed_secrets_reach_attach_but_never_disk() {
    let Some(docker) = shim_docker() else { return };
    let secret = unique_secret("no-log");
    let script = r#"echo "$TOKEN"; echo "$TOKEN" >&2; echo ready; sleep 60"#;
    let stdin = bundle(&[("TOKEN", secret.as_bytes())]);
    let options = ["--log-driver", "none"];
    let mut running = docker.start(IMAGE, &options, &["sh", "-c", script], &stdin);
    running.close_stdin();
    running.wait_for_line(&secret);
    running.wait_for_line("ready");
    assert_eq!(places_holding(&running, &secret), Vec::<String>::new());
    running.signal("KILL");
    let run = running.finish();
    assert_eq!(run.stderr, format!("{secret}\n"));
}

/// Where `secret` can be read while `running` runs: `docker inspect`, and the
/// files of its Docker state directory (`<DockerRootDir>/containers/<id>`).
fn places_holding(running: &sealrun_testkit::container::Running, secret: &str) -> Vec<String> {
    let mut places = Vec::new();
    if docker_cli(&["inspect", &running.name]).contains(secret) {
        places.push("docker inspect".to_owned());
    }
    let root = docker_cli(&["info", "--format", "{{.DockerRootDir}}"]);
    let state = std::path::Path::new(root.trim())
        .join("containers")
        .join(running.id());
    let files = files_under(&state);
    assert!(
        !files.is_empty(),
        "cannot read the Docker state directory {state:?} (run as root)"
    );
    for file in files {
        let bytes = std::fs::read(&file).unwrap_or_default();
        if bytes
            .windows(secret.len())
            .any(|window| window == secret.as_bytes())
        {
            places.push(file.display().to_string());
        }
    }
    places
}

/// Every regular file under `dir`, recursively; empty if unreadable.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(kind) if kind.is_dir() => files.extend(files_under(&path)),
            Ok(kind) if kind.is_file() => files.push(path),
            _ => {}
        }
    }
    files
}
