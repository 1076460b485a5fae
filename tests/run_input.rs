//! `sealrun run` forwards its stdin to the command, as `docker run -i` does:
//! through the real binaries (`sealrun dev`: control plane and agent) and
//! a real container.
#![allow(clippy::unwrap_used)]

use sealrun_testkit::{DevProcess, announced_run, code, require_docker, text, varied_bytes};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use std::io::Write as _;
use std::process::Stdio;
use std::time::Duration;

fn show(dev: &DevProcess, id: &str) -> Value {
    dev.cli.json(&["runs", "show", id])
}

#[test]
fn ten_megabytes_piped_in_reach_the_command_byte_for_byte_and_only_the_size_is_recorded() {
    if !require_docker() {
        return;
    }
    let dev = DevProcess::start();
    let data = varied_bytes(10 * 1024 * 1024);
    // `wc -c; sha256sum` would hash nothing: `wc` reads the input to its
    // end first (as with `docker run -i`). The command keeps a copy in its
    // tmpfs and measures both from it.
    let out = dev.cli.output_with_stdin(
        &[
            "run",
            "--target",
            "demo",
            "--",
            "sh",
            "-c",
            "cat >/tmp/input && wc -c </tmp/input && sha256sum </tmp/input",
        ],
        &data,
    );
    let stderr = text(&out.stderr);
    assert_eq!(code(&out), 0, "{stderr}");
    let hash = hex::encode(Sha256::digest(&data));
    let stdout = text(&out.stdout);
    let mut lines = stdout.lines();
    assert_eq!(lines.next().unwrap().trim(), data.len().to_string());
    assert_eq!(lines.next().unwrap(), format!("{hash}  -"));
    let run = show(&dev, &announced_run(&stderr));
    assert_eq!(run["stdin"], true);
    assert_eq!(run["stdin_bytes"], data.len() as u64);
}

#[test]
fn piped_input_is_read_until_its_end_like_docker_run_i() {
    if !require_docker() {
        return;
    }
    let dev = DevProcess::start();
    let out = dev.cli.output_with_stdin(
        &["run", "--target", "demo", "--", "cat"],
        b"select 1;\nselect 2;\n",
    );
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(out.stdout, b"select 1;\nselect 2;\n");
}

#[test]
fn with_no_stdin_the_command_reads_an_empty_input() {
    if !require_docker() {
        return;
    }
    let dev = DevProcess::start();
    let out = dev.cli.output_with_stdin(
        &[
            "run",
            "--target",
            "demo",
            "--no-stdin",
            "--",
            "sh",
            "-c",
            "cat; echo end",
        ],
        b"not for the command\n",
    );
    let stderr = text(&out.stderr);
    assert_eq!(code(&out), 0, "{stderr}");
    assert_eq!(text(&out.stdout), "end\n");
    let run = show(&dev, &announced_run(&stderr));
    assert_eq!(run["stdin"], false);
    assert!(run.get("stdin_bytes").is_none_or(Value::is_null), "{run}");
}

#[test]
fn a_command_that_stops_reading_early_ends_normally_and_sealrun_with_it() {
    if !require_docker() {
        return;
    }
    let dev = DevProcess::start();
    // Far more than the relay and the pipes hold: sealrun must not wait to
    // send it all once the command is done.
    let data = varied_bytes(64 * 1024 * 1024);
    let out = dev
        .cli
        .output_with_stdin(&["run", "--target", "demo", "--", "head", "-c", "5"], &data);
    let stderr = text(&out.stderr);
    assert_eq!(code(&out), 0, "{stderr}");
    assert_eq!(out.stdout, &data[..5]);
    assert!(!stderr.contains("could not send"), "{stderr}");
    let run = show(&dev, &announced_run(&stderr));
    assert_eq!(run["status"], "succeeded");
    assert!(
        run["stdin_bytes"].as_u64().unwrap() < data.len() as u64,
        "{run}"
    );
}

#[test]
fn input_that_breaks_off_kills_the_command_instead_of_letting_it_act_on_part() {
    if !require_docker() {
        return;
    }
    let dev = DevProcess::start();
    let mut child = dev.cli.spawn_fed(&[
        "run",
        "--target",
        "demo",
        "--",
        "sh",
        "-c",
        "cat >/dev/null; echo applied-the-whole-migration",
    ]);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"BEGIN; ALTER TABLE users").unwrap();
    stdin.flush().unwrap();
    let id = dev.cli.wait_running_run();
    // Give the first bytes time to reach the command, then the submitter dies
    // with its input open.
    std::thread::sleep(Duration::from_secs(1));
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stdin);
    let run = dev.cli.wait_status(&id, "error");
    let error = run["error"].as_str().unwrap();
    assert!(error.contains("input broke off"), "{run}");
    let logs = dev.cli.ok(&["runs", "logs", &id]);
    assert!(!logs.contains("applied-the-whole-migration"), "{logs}");
}

#[test]
fn the_issues_wc_then_sha256sum_prints_what_it_prints_run_locally() {
    if !require_docker() {
        return;
    }
    let dev = DevProcess::start();
    let data = varied_bytes(10 * 1024 * 1024);
    let script = "wc -c; sha256sum";
    let out = dev.cli.output_with_stdin(
        &["run", "--target", "demo", "--", "sh", "-c", script],
        &data,
    );
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    // The same busybox, on this host, with the same input: `wc` reads it
    // all, so `sha256sum` hashes what is left (nothing), remotely as here.
    let mut local = std::process::Command::new("busybox")
        .args(["sh", "-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = local.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&data).unwrap());
    let expected = local.wait_with_output().unwrap();
    writer.join().unwrap();
    assert_eq!(text(&out.stdout), text(&expected.stdout));
    assert!(
        text(&out.stdout).starts_with("10485760\n"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn a_stdin_on_dev_null_gives_the_command_no_input_and_records_none() {
    if !require_docker() {
        return;
    }
    let dev = DevProcess::start();
    let out = dev
        .cli
        .output(&["run", "--target", "demo", "--", "sh", "-c", "cat; echo end"]);
    let stderr = text(&out.stderr);
    assert_eq!(code(&out), 0, "{stderr}");
    assert_eq!(text(&out.stdout), "end\n");
    assert_eq!(show(&dev, &announced_run(&stderr))["stdin"], false);
}
