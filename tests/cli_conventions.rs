//! The conventions every `sealrun` command keeps, through the real binary
//! against an in-process control plane (no Docker): `--json` is JSON
//! (one object, or one per line for streams), `audit list` pages with a
//! hint, times are labelled UTC, and shell completions are printed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sealrun_testkit::{ControlPlane, InProcessServer, code, quick_settings, text};
use serde_json::Value;
use std::time::{Duration, Instant};

/// Parses `stdout` as one JSON value, or as JSON lines if `lines`.
fn parse(stdout: &str, lines: bool) -> Result<Vec<Value>, String> {
    if lines {
        let values: Result<Vec<Value>, _> = stdout.lines().map(serde_json::from_str).collect();
        values.map_err(|e| e.to_string())
    } else {
        serde_json::from_str(stdout)
            .map(|v| vec![v])
            .map_err(|e| e.to_string())
    }
}

#[tokio::test]
async fn every_printing_command_prints_json_with_json() {
    let server = InProcessServer::start_with(quick_settings()).await;
    let admin = server.admin();
    admin.declare_target("db").await;
    let id = admin
        .submit_request(&sealrun_testkit::run_request("db", &["true"]))
        .await;
    // No agent serves `db`: cancel the run, so following it ends at once.
    admin.cancel(&id).await;
    let cli = server.cli(server.admin_token());

    // (args, streams one object per line)
    let commands: Vec<(Vec<&str>, bool)> = vec![
        (vec!["whoami"], false),
        (vec!["target", "list"], false),
        (vec!["target", "show", "db"], false),
        (vec!["target", "create", "web", "--image", "busybox"], false),
        (vec!["secret", "list", "--target", "db"], false),
        (vec!["runs", "list"], false),
        (vec!["runs", "show", &id], false),
        (vec!["runs", "logs", &id], true),
        (vec!["runs", "logs", &id, "--follow"], true),
        (
            vec!["run", "--target", "db", "--detach", "--", "true"],
            false,
        ),
        (
            vec!["token", "create", "--role", "auditor", "--name", "soc"],
            false,
        ),
        (vec!["token", "list"], false),
        (vec!["user", "create", "zoe", "--role", "auditor"], false),
        (vec!["user", "list"], false),
        (vec!["group", "create", "oncall", "--member", "zoe"], false),
        (vec!["group", "add", "oncall", "soc"], false),
        (vec!["group", "remove", "oncall", "soc"], false),
        (vec!["group", "list"], false),
        (vec!["group", "show", "oncall"], false),
        (vec!["user", "disable", "zoe"], false),
        (vec!["agent-pool", "create", "dc1"], false),
        (vec!["agent-pool", "list"], false),
        (vec!["agent-pool", "enroll-token", "dc1"], false),
        (vec!["agents", "list"], false),
        (vec!["audit", "list"], false),
        (vec!["audit", "verify"], false),
        (vec!["audit", "export"], true),
        (vec!["slack", "workspaces"], false),
        (vec!["slack", "users"], false),
    ];
    for (args, lines) in &commands {
        // Before `--`, after which it would be the command's argument.
        let mut with_json = args.clone();
        let at = args.iter().position(|a| *a == "--").unwrap_or(args.len());
        with_json.insert(at, "--json");
        let out = cli.output(&with_json);
        let stdout = text(&out.stdout);
        // Following a run exits as the run ended: canceled.
        let expected = if with_json.contains(&"--follow") {
            130
        } else {
            0
        };
        assert_eq!(code(&out), expected, "{with_json:?}: {}", text(&out.stderr));
        assert!(!stdout.trim().is_empty(), "{with_json:?} printed nothing");
        let values = parse(&stdout, *lines)
            .unwrap_or_else(|e| panic!("{with_json:?}: not JSON ({e}):\n{stdout}"));
        assert!(!values.is_empty(), "{with_json:?}");
    }

    // Positive control: the check above tells text from JSON (the same
    // commands print text without --json).
    for args in [&["runs", "list"][..], &["audit", "list"], &["whoami"]] {
        let out = cli.output(args);
        assert_eq!(code(&out), 0, "{args:?}");
        assert!(parse(&text(&out.stdout), false).is_err(), "{args:?}");
    }

    // The shapes scripts rely on.
    let out = cli.ok(&["run", "--target", "db", "--detach", "--json", "--", "true"]);
    let detached: Value = serde_json::from_str(&out).unwrap();
    assert!(
        detached["id"].as_str().is_some_and(|s| !s.is_empty()),
        "{detached}"
    );
    let pool = cli.json(&["agent-pool", "create", "dc2"]);
    assert_eq!(pool["name"], "dc2", "{pool}");
    let followed = cli.output(&["runs", "logs", &id, "--follow", "--json"]);
    let events = parse(&text(&followed.stdout), true).unwrap();
    let last = events.last().unwrap();
    assert_eq!(last["end"]["status"], "canceled", "{last}");
    // Audit details are JSON values, not JSON in a string.
    let page = cli.json(&["audit", "list"]);
    let entries = page["entries"].as_array().unwrap();
    assert!(!entries.is_empty());
    for e in entries {
        assert!(e["detail"].is_object(), "detail is not an object: {e}");
    }
}

#[tokio::test]
async fn a_followed_run_with_json_prints_one_object_per_line_ending_with_its_end() {
    let server = InProcessServer::start_with(quick_settings()).await;
    let admin = server.admin();
    admin.declare_target("db").await;
    let cli = server.cli(server.admin_token());
    let child = cli.spawn(&["run", "--target", "db", "--json", "--", "true"]);
    // No agent serves `db`: the run waits in the queue; cancel it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let id = loop {
        let runs = admin.get("/v1/runs?limit=1").await.json();
        if let Some(id) = runs["runs"][0]["id"].as_str() {
            break id.to_owned();
        }
        assert!(Instant::now() < deadline, "the run was never submitted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    admin.cancel(&id).await;
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(code(&out), 130, "{}", text(&out.stderr));
    let events = parse(&stdout, true).unwrap_or_else(|e| panic!("not JSON lines ({e}): {stdout}"));
    assert_eq!(events.len(), 1, "{stdout}");
    assert_eq!(events[0]["end"]["status"], "canceled", "{stdout}");
}

#[tokio::test]
async fn audit_list_pages_and_hints_at_the_next_page_when_full() {
    let server = InProcessServer::start_with(quick_settings()).await;
    let admin = server.admin();
    for t in ["a", "b", "c"] {
        admin.declare_target(t).await;
    }
    let cli = server.cli(server.admin_token());
    let all = cli.json(&["audit", "list", "--limit", "1000"]);
    let total = all["entries"].as_array().unwrap().len();
    assert!(total >= 4, "{all}");

    // A full page: the hint names the next page on stderr.
    let out = cli.output(&["audit", "list", "--limit", "2"]);
    assert_eq!(code(&out), 0);
    assert_eq!(
        text(&out.stdout).lines().count(),
        3,
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stderr).contains("more: sealrun audit list --after 2 --limit 2"),
        "{}",
        text(&out.stderr)
    );
    // Following the hint gives the next entries.
    let next = cli.json(&["audit", "list", "--after", "2", "--limit", "2"]);
    assert_eq!(next["entries"][0]["seq"], 3, "{next}");
    // --json stays JSON on stdout, the hint on stderr.
    let out = cli.output(&["audit", "list", "--limit", "2", "--json"]);
    let page: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(page["entries"].as_array().unwrap().len(), 2);
    assert_eq!(page["next_after"], 2);
    assert!(
        text(&out.stderr).contains("more: "),
        "{}",
        text(&out.stderr)
    );

    // The last page is not full: no hint.
    let after = (total - 1).to_string();
    let out = cli.output(&["audit", "list", "--after", &after, "--limit", "2"]);
    assert_eq!(code(&out), 0);
    assert_eq!(
        text(&out.stdout).lines().count(),
        2,
        "{}",
        text(&out.stdout)
    );
    assert!(!text(&out.stderr).contains("more"), "{}", text(&out.stderr));

    // Beyond what the control plane serves per page: refused by the CLI.
    let out = cli.output(&["audit", "list", "--limit", "5000"]);
    assert_eq!(code(&out), 2, "{}", text(&out.stderr));
}

/// Whether `s` is an ISO-8601 UTC time `YYYY-MM-DDTHH:MM:SSZ`.
fn is_utc_time(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

#[tokio::test]
async fn times_are_printed_labelled_utc() {
    assert!(is_utc_time("2026-11-18T11:06:40Z"));
    assert!(!is_utc_time("2026-11-18 11:06:40"), "positive control");

    let server = InProcessServer::start_with(quick_settings()).await;
    let admin = server.admin();
    admin.declare_target("db").await;
    let id = admin
        .submit_request(&sealrun_testkit::run_request("db", &["true"]))
        .await;
    let cli = server.cli(server.admin_token());
    for args in [
        &["runs", "list"][..],
        &["token", "list"],
        &["agent-pool", "list"],
        &["audit", "list"],
    ] {
        let out = cli.ok(args);
        let row = out
            .lines()
            .nth(1)
            .unwrap_or_else(|| panic!("{args:?}: {out}"));
        assert!(
            row.split_whitespace().any(is_utc_time),
            "{args:?}: no UTC time in {row:?}"
        );
    }
    let show = cli.ok(&["runs", "show", &id]);
    let created = show
        .lines()
        .find_map(|l| l.strip_prefix("created:"))
        .unwrap();
    assert!(is_utc_time(created.trim()), "{show}");
}

#[test]
fn completions_print_a_script_for_each_shell() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let out = std::process::Command::new(sealrun_testkit::sealrun_bin())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert_eq!(code(&out), 0, "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        for word in ["sealrun", "audit", "agent-pool", "completions"] {
            assert!(script.contains(word), "{shell} script lacks {word}");
        }
        // Where the shell is installed, it must accept the script's syntax.
        let path = dir.path().join(format!("sealrun.{shell}"));
        std::fs::write(&path, &script).unwrap();
        match std::process::Command::new(shell)
            .arg("-n")
            .arg(&path)
            .output()
        {
            Ok(check) => assert!(
                check.status.success(),
                "{shell} -n: {}",
                text(&check.stderr)
            ),
            Err(e) => eprintln!("{shell} not installed ({e}): syntax not checked"),
        }
    }
    // Positive control for the syntax check: bash rejects a broken script.
    let broken = dir.path().join("broken.bash");
    std::fs::write(&broken, "if then fi (\n").unwrap();
    if let Ok(check) = std::process::Command::new("bash")
        .arg("-n")
        .arg(&broken)
        .output()
    {
        assert!(!check.status.success());
    }
    let out = std::process::Command::new(sealrun_testkit::sealrun_bin())
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 2, "an unknown shell is a usage error");
}
