//! No message is printed twice: failing and edge-case commands, run through
//! the real binary, print no stderr line twice, no line that another line
//! already holds, and no line that says one of its causes twice (an error
//! whose message quotes its source and returns it as its source too, which
//! a `{:#}` chain then repeats: "connect: refused: refused").
#![allow(clippy::unwrap_used)]

use sealrun_testkit::{
    ControlPlane, InProcessServer, World, code, init_binary, output_within, require_docker,
    sealrun_bin, text,
};
use std::process::{Command, Output};
use std::time::Duration;

/// What is wrong with `stderr` as a set of messages, if anything: a line
/// printed twice, a line another holds whole, a cause said twice in a line.
/// The daemons' JSON log lines are left out (a log may well repeat).
fn doubled(stderr: &str) -> Option<String> {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('{'))
        .collect();
    for (i, line) in lines.iter().enumerate() {
        if lines[i + 1..].contains(line) {
            return Some(format!("{line:?} is printed twice"));
        }
        let body = line.strip_prefix("sealrun: ").unwrap_or(line);
        for (j, other) in lines.iter().enumerate() {
            if i != j && body.len() >= 20 && other.contains(body) {
                return Some(format!("{line:?} is said again in {other:?}"));
            }
        }
        // "a: b: c": no part (of some length) twice.
        let parts: Vec<&str> = body.split(": ").filter(|p| p.len() >= 12).collect();
        for (k, part) in parts.iter().enumerate() {
            if parts[k + 1..].contains(part) {
                return Some(format!("{line:?} says {part:?} twice"));
            }
        }
    }
    None
}

fn assert_said_once(what: &str, out: &Output) {
    let stderr = text(&out.stderr);
    assert!(
        !stderr.trim().is_empty(),
        "{what}: expected a message, got none"
    );
    if let Some(why) = doubled(&stderr) {
        panic!("{what}: {why}; stderr:\n{stderr}");
    }
}

#[test]
fn the_check_catches_a_repeated_cause_a_repeated_line_and_a_quoted_line() {
    // Positive controls for the check every other test relies on.
    let chain = "sealrun: register: control plane answered 401: invalid token: control plane answered 401: invalid token\n";
    assert!(doubled(chain).is_some());
    assert!(doubled("sealrun: no such run xyz\nsealrun: no such run xyz\n").is_some());
    let quoted = "sealrun-init: error: cannot execute x: No such file\n\
                  sealrun: run r could not run: the command did not run: sealrun-init: error: cannot execute x: No such file\n";
    assert!(doubled(quoted).is_some());
    assert!(doubled("sealrun: cannot read a.toml: No such file or directory\n").is_none());
}

#[test]
fn daemons_that_cannot_open_their_directory_say_the_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let under = file.join("sub");
    let under = under.to_str().unwrap();
    let cases: [&[&str]; 4] = [
        &["server", "--data-dir", under, "--listen", "127.0.0.1:0"],
        &["server", "create-org", "--data-dir", under, "acme"],
        &[
            "agent",
            "--state-dir",
            under,
            "--target",
            "db",
            "--print-key-ids",
        ],
        &["dev", "--data-dir", under],
    ];
    for args in cases {
        let out = output_within(
            &format!("sealrun {args:?}"),
            Command::new(sealrun_bin()).args(args),
            Duration::from_secs(30),
        );
        assert_ne!(code(&out), 0);
        assert_said_once(&format!("sealrun {args:?}"), &out);
        assert!(text(&out.stderr).contains("Not a directory"));
    }
}

#[tokio::test]
async fn client_commands_that_fail_say_each_thing_once() {
    let server = InProcessServer::start().await;
    server.admin().declare_target("db").await;
    let cli = server.cli(server.admin_token());
    let dir = tempfile::tempdir().unwrap();
    let bad_pool = dir.path().join("targets.toml");
    std::fs::write(
        &bad_pool,
        "[[target]]\nname = \"x\"\nimage = \"i\"\npool = \"dc9\"\n",
    )
    .unwrap();
    let not_audit = dir.path().join("audit.jsonl");
    std::fs::write(&not_audit, "[1]\n").unwrap();
    let bad_pool = bad_pool.to_str().unwrap();
    let not_audit = not_audit.to_str().unwrap();
    let cases: &[&[&str]] = &[
        &["runs", "show", "nope"],
        &["runs", "logs", "nope"],
        &["runs", "logs", "nope", "--follow"],
        &["runs", "cancel", "nope"],
        &["run", "--target", "nope", "--", "true"],
        &["run", "--target", "db", "--secret", "NOPE", "--", "true"],
        &["target", "show", "nope"],
        &["target", "apply", "-f", bad_pool],
        &["target", "create", "x", "--image", "i", "--pool", "dc9"],
        &["target", "rekey", "db", "--key-id", "k1_nope"],
        &["secret", "rm", "--target", "db", "NOPE"],
        &["secret", "set", "--target", "db", "EMPTY"],
        &["agent-pool", "create", "default"],
        &["audit", "verify", "--file", not_audit],
        &["whoami", "--profile", "nope"],
    ];
    for args in cases {
        let out = cli.output(args);
        assert_ne!(code(&out), 0, "sealrun {args:?} succeeded");
        assert_said_once(&format!("sealrun {args:?}"), &out);
    }
    let revoked = cli.with_token("srt_0000000000000000_00");
    let out = revoked.output(&["runs", "list"]);
    assert_said_once("a refused token", &out);
}

#[tokio::test]
async fn a_missing_pool_is_named_once_with_the_command_that_creates_it() {
    let server = InProcessServer::start().await;
    let cli = server.cli(server.admin_token());
    let out = cli.output(&["target", "create", "x", "--image", "i", "--pool", "dc9"]);
    let err = text(&out.stderr);
    assert_eq!(code(&out), 1, "{err}");
    assert!(
        err.contains("no pool named \"dc9\": run `sealrun agent-pool create dc9` first"),
        "{err}"
    );
    // Said once: not also as "pool dc9 does not exist" or "create the pool first".
    assert!(!err.contains("does not exist"), "{err}");
    assert!(!err.contains("create the pool first"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_that_cannot_start_and_a_refused_agent_say_why_once() {
    if !require_docker() {
        return;
    }
    let world = World::spawned().await;
    let cli = world.server.cli(&world.server.admin_token);
    // The shim's line is the run's output; sealrun's summary does not repeat it.
    let out = cli.output(&["run", "--target", &world.target, "--", "no-such-command"]);
    let err = text(&out.stderr);
    assert_eq!(code(&out), 127, "{err}");
    assert!(
        err.contains("sealrun-init: error: cannot execute no-such-command"),
        "{err}"
    );
    assert_said_once("a command that is not there", &out);
    world.assert_no_containers();

    // An agent whose enrollment token is refused.
    let state = world.dir.path().join("refused-agent");
    let shim = init_binary().display().to_string();
    let mut agent = Command::new(sealrun_bin());
    agent
        .args(["agent", "--url", &world.server.url, "--ca-cert"])
        .arg(&world.server.ca_cert)
        .arg("--state-dir")
        .arg(&state)
        .args(["--target", &world.target, "--init-binary", &shim])
        .args(["--enrollment-token", "sre_0000000000000000_00"]);
    let out = output_within("the refused agent", &mut agent, Duration::from_secs(30));
    assert_ne!(code(&out), 0);
    assert!(
        text(&out.stderr).contains("register: "),
        "{}",
        text(&out.stderr)
    );
    assert_said_once("an agent with a refused enrollment token", &out);
}
