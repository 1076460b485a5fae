//! `sealrun runs logs ID --json`, through the real binary: with or without
//! `--follow`, one `LogEvent` per line (each chunk, then the run's end once
//! it has ended), as `runs logs --help` says.
#![allow(clippy::unwrap_used)]

use sealrun_testkit::{Cli, ControlPlane, InProcessWorld, World, code, text};
use sealrun_wire::log::{LogEvent, RunEnd, StreamKind};
use sealrun_wire::run::RunStatus;

/// A world whose agent has taken a run and uploaded two chunks of output.
async fn run_with_output() -> (InProcessWorld, Cli, String) {
    let world = World::in_process().await;
    let id = world.submit(&["echo", "hi"]).await;
    assert_eq!(world.agent.next_run().await.run_id, id);
    world
        .agent
        .upload_ok(&id, &[(0, b"hello\n"), (1, b"world\n")])
        .await;
    let cli = world.server.cli(world.server.admin_token());
    (world, cli, id)
}

/// The events of `sealrun ARGS` stdout, one per line.
fn events(cli: &Cli, args: &[&str]) -> (String, Vec<LogEvent>) {
    let out = cli.output(args);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let events = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    (stdout, events)
}

fn data(event: &LogEvent) -> (StreamKind, Vec<u8>) {
    match event {
        LogEvent::Chunk(c) => (c.stream, c.data.0.clone()),
        LogEvent::End(e) => panic!("an end where a chunk was expected: {e:?}"),
    }
}

#[tokio::test]
async fn logs_json_of_an_ended_run_is_what_follow_json_prints() {
    let (world, cli, id) = run_with_output().await;
    world
        .agent
        .finish(&id, RunStatus::Failed, Some(3), 2)
        .await
        .ok();
    let (page, events) = events(&cli, &["runs", "logs", &id, "--json"]);
    let followed = follow_json(&cli, &id);
    assert_eq!(page, followed);
    assert_eq!(events.len(), 3, "{page}");
    assert_eq!(data(&events[0]), (StreamKind::Stdout, b"hello\n".to_vec()));
    assert_eq!(data(&events[1]), (StreamKind::Stdout, b"world\n".to_vec()));
    assert_eq!(
        events[2],
        LogEvent::End(RunEnd {
            status: RunStatus::Failed,
            exit_code: Some(3),
            error: None,
        })
    );
}

/// The stdout of `sealrun runs logs ID --follow --json`.
fn follow_json(cli: &Cli, id: &str) -> String {
    text(
        &cli.output(&["runs", "logs", id, "--follow", "--json"])
            .stdout,
    )
}

#[tokio::test]
async fn logs_json_of_a_running_run_prints_its_output_so_far_without_an_end() {
    let (_world, cli, id) = run_with_output().await;
    let (page, events) = events(&cli, &["runs", "logs", &id, "--json"]);
    // Two chunks, each a line of its own; no end line (the ended run's
    // test above is the control that one is printed).
    assert_eq!(page.lines().count(), 2, "{page}");
    assert_eq!(data(&events[0]).1, b"hello\n");
    assert_eq!(data(&events[1]).1, b"world\n");
}

#[test]
fn runs_logs_help_documents_one_object_per_line_with_or_without_follow() {
    let out = std::process::Command::new(sealrun_testkit::sealrun_bin())
        .args(["runs", "logs", "--help"])
        .output()
        .unwrap();
    let help = text(&out.stdout);
    assert!(
        help.contains("--json prints one JSON object per line, with or without --follow"),
        "{help}"
    );
}
