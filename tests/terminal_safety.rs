//! Terminal safety (issue 12): whatever others submitted (an argv, a name, a
//! command's output) cannot rewrite or take over the terminal of whoever
//! reads it with the `sealrun` CLI. The CLI runs as a subprocess on a real
//! pseudo-terminal, against an in-process control plane; the runs only need
//! to be submitted (a queued run shows in `runs list` too), so no Docker,
//! except for the last test, which streams a real command's output.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sealrun_testkit::pty::{self, Streams};
use sealrun_testkit::{Cli, ControlPlane as _, InProcessWorld, World, text};
use sealrun_wire::run::RunStatus;
use std::process::Command;

/// Deletes the current line and writes `select 1` over it.
const REWRITE: &str = "echo DROP-TABLE-users #\r\x1b[2Kselect 1";
/// Sets the window title and clears the screen.
const TAKEOVER: &str = "\x1b]0;T\x07\x1b[2J";

/// Runs `command` with stdin, stdout and stderr on a new pseudo-terminal, as
/// from an interactive shell; everything it wrote to the terminal, with the
/// terminal's own `\r\n` line ends made `\n` again.
fn on_a_terminal(command: Command) -> String {
    text(&pty::on_a_terminal(command, Streams::All)).replace("\r\n", "\n")
}

/// `sealrun ARGS` of `cli`, on a terminal.
async fn sealrun_on_a_terminal(cli: &Cli, args: &[&str]) -> String {
    let command = cli.command(args);
    tokio::task::spawn_blocking(move || on_a_terminal(command))
        .await
        .unwrap()
}

/// Asserts `shown` holds no character a terminal would act on but `\n`.
fn assert_nothing_acts_on_the_terminal(shown: &str) {
    let raw: Vec<char> = shown
        .chars()
        .filter(|&c| c != '\n' && sealrun_wire::text::is_unsafe(c))
        .collect();
    assert!(raw.is_empty(), "raw {raw:?} in:\n{shown}");
}

async fn world_and_cli() -> (InProcessWorld, Cli) {
    let world = World::in_process().await;
    let cli = world.server.cli(world.server.admin_token());
    (world, cli)
}

#[test]
fn the_pseudo_terminal_passes_raw_escape_sequences_through() {
    // Positive control: were sealrun to print them raw, the tests below
    // would see them.
    let mut printf = Command::new("printf");
    printf.arg(format!("{TAKEOVER}{REWRITE}"));
    let shown = on_a_terminal(printf);
    assert!(shown.contains(TAKEOVER), "{shown:?}");
    assert!(shown.contains(REWRITE), "{shown:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_list_on_a_terminal_shows_escape_sequences_of_an_argv_escaped() {
    let (world, cli) = world_and_cli().await;
    world.submit(&["sh", "-c", REWRITE]).await;
    world.submit(&["printf", TAKEOVER]).await;

    let shown = sealrun_on_a_terminal(&cli, &["runs", "list"]).await;

    assert_nothing_acts_on_the_terminal(&shown);
    let rewrite = shown
        .lines()
        .find(|l| l.contains("DROP-TABLE-users"))
        .expect("the run's row");
    assert!(
        rewrite.ends_with(r"sh -c $'echo DROP-TABLE-users #\r\e[2Kselect 1'"),
        "{rewrite}"
    );
    assert!(shown.contains(r"printf $'\e]0;T\a\e[2J'"), "{shown}");
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_show_on_a_terminal_shows_escape_sequences_of_an_argv_escaped() {
    let (world, cli) = world_and_cli().await;
    let id = world.submit(&["sh", "-c", REWRITE, TAKEOVER]).await;

    let shown = sealrun_on_a_terminal(&cli, &["runs", "show", &id]).await;

    assert_nothing_acts_on_the_terminal(&shown);
    assert!(
        shown.contains(
            r"command:   sh -c $'echo DROP-TABLE-users #\r\e[2Kselect 1' $'\e]0;T\a\e[2J'"
        ),
        "{shown}"
    );
}

/// A queued run of `world` that its agent takes and reports as not runnable
/// for `error` (the agent's words, which may quote the image or argv).
async fn a_run_that_failed_with(world: &InProcessWorld, error: &str) -> String {
    let id = world.submit(&["true"]).await;
    world.agent.next_run().await;
    world
        .agent
        .client
        .post(
            &format!("/v1/agent/runs/{id}/finish"),
            serde_json::json!({"status": "error", "error": error, "next_seq": 0}),
        )
        .await
        .ok();
    id
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_error_shows_escaped_in_runs_show() {
    let (world, cli) = world_and_cli().await;
    let id = a_run_that_failed_with(&world, &format!("no image {TAKEOVER}")).await;

    let shown = sealrun_on_a_terminal(&cli, &["runs", "show", &id]).await;

    assert_nothing_acts_on_the_terminal(&shown);
    assert!(
        shown.contains(r"error:     no image \e]0;T\x07\e[2J"),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_error_line_of_a_followed_run_shows_escape_sequences_escaped() {
    let (world, cli) = world_and_cli().await;
    let id = a_run_that_failed_with(&world, &format!("no image {TAKEOVER}")).await;

    let shown = sealrun_on_a_terminal(&cli, &["runs", "logs", &id, "--follow"]).await;

    // On a terminal (only there), sealrun clears its own status line with
    // `\r ESC [2K` before the error line: proof that it saw a terminal.
    let (_status, error_line) = shown
        .split_once("\r\x1b[2K")
        .expect("a cleared status line");
    assert_nothing_acts_on_the_terminal(error_line);
    assert_eq!(
        error_line,
        format!("sealrun: run {id} could not run: no image \\e]0;T\\x07\\e[2J\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_logs_writes_output_raw_by_default_and_escaped_with_sanitize() {
    let (world, cli) = world_and_cli().await;
    let id = world.submit(&["printf", "x"]).await;
    world.agent.next_run().await;
    let output = format!("red:\x1b[31mred\x1b[0m\ttab\n{TAKEOVER}\n");
    world.agent.upload_ok(&id, &[(0, output.as_bytes())]).await;
    world
        .agent
        .finish(&id, RunStatus::Succeeded, Some(0), 1)
        .await
        .ok();

    let raw = sealrun_on_a_terminal(&cli, &["runs", "logs", &id]).await;
    assert_eq!(raw, output, "as docker logs: the command's bytes");

    let sanitized = sealrun_on_a_terminal(&cli, &["runs", "logs", &id, "--sanitize"]).await;
    assert_nothing_acts_on_the_terminal(&sanitized.replace('\t', ""));
    assert_eq!(
        sanitized, "red:\\e[31mred\\e[0m\ttab\n\\e]0;T\\x07\\e[2J\n",
        "newlines and tabs kept, the rest shown"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sealrun_run_sanitize_escapes_the_commands_output_as_it_streams() {
    if !sealrun_testkit::require_docker() {
        return;
    }
    let world = World::spawned().await;
    let cli = world.server.cli(world.server.admin_token());
    let printf = ["printf", r"\033[31mred\033[0m\tok\r\n\033]0;T\007"];
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "--target", world.target.as_str()];
        args.extend_from_slice(extra);
        args.push("--");
        args.extend_from_slice(&printf);
        cli.output(&args)
    };

    let raw = run(&[]);
    assert!(raw.status.success(), "{}", text(&raw.stderr));
    assert_eq!(text(&raw.stdout), "\x1b[31mred\x1b[0m\tok\r\n\x1b]0;T\x07");

    let sanitized = run(&["--sanitize"]);
    assert!(sanitized.status.success(), "{}", text(&sanitized.stderr));
    assert_eq!(
        text(&sanitized.stdout),
        "\\e[31mred\\e[0m\tok\\r\n\\e]0;T\\x07",
        "newlines and tabs kept, the rest shown"
    );
}
