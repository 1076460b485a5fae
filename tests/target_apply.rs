//! `sealrun target apply -f FILE` is all or nothing, and its refusals name
//! the CLI command to run. Against an in-process control plane, which starts
//! as a fresh `sealrun dev` does: one org with the pool `default` alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sealrun_testkit::{Cli, ControlPlane as _, InProcessServer, text, workspace_root};
use std::path::Path;

fn target_names(cli: &Cli) -> Vec<String> {
    let list = cli.json(&["target", "list"]);
    list["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Applies `file`; its exit status and stderr.
fn apply(cli: &Cli, file: &Path) -> (bool, String) {
    let out = cli.output(&["target", "apply", "-f", file.to_str().unwrap()]);
    (out.status.success(), text(&out.stderr))
}

#[tokio::test]
async fn a_file_with_one_target_in_a_missing_pool_changes_nothing_and_names_the_command() {
    let server = InProcessServer::start().await;
    let cli = server.cli(server.admin_token());
    cli.ok(&["target", "create", "old", "--image", "x:1"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("targets.toml");
    std::fs::write(
        &file,
        "[[target]]\nname = \"old\"\nimage = \"x:2\"\n\n\
         [[target]]\nname = \"new\"\nimage = \"y\"\n\n\
         [[target]]\nname = \"far\"\nimage = \"z\"\npool = \"dc9\"\n",
    )
    .unwrap();

    let (ok, stderr) = apply(&cli, &file);

    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("sealrun agent-pool create dc9"),
        "names the CLI command: {stderr}"
    );
    assert!(stderr.contains("nothing in"), "{stderr}");
    assert!(!stderr.contains("/v1/"), "no API route: {stderr}");
    assert_eq!(target_names(&cli), ["old"], "nothing declared");
    let old = cli.json(&["target", "show", "old"]);
    assert_eq!(old["image"], "x:1", "nothing replaced");

    // Positive control: with the pool, the same file applies whole.
    cli.ok(&["agent-pool", "create", "dc9"]);
    let (ok, stderr) = apply(&cli, &file);
    assert!(ok, "{stderr}");
    assert_eq!(target_names(&cli), ["far", "new", "old"]);
    assert_eq!(cli.json(&["target", "show", "old"])["image"], "x:2");
}

#[tokio::test]
async fn the_example_targets_file_applies_after_the_one_command_it_documents() {
    let example = workspace_root().join("examples/targets.toml");
    let documented = std::fs::read_to_string(&example).unwrap();
    assert!(
        documented.contains("#   sealrun agent-pool create dc1\n"),
        "the file documents the command run below"
    );
    let server = InProcessServer::start().await;
    let cli = server.cli(server.admin_token());

    // As on a fresh `sealrun dev`: refused whole, naming that command.
    let (ok, stderr) = apply(&cli, &example);
    assert!(!ok, "{stderr}");
    assert!(stderr.contains("sealrun agent-pool create dc1"), "{stderr}");
    assert!(
        target_names(&cli).is_empty(),
        "not even `demo` (pool default)"
    );

    cli.ok(&["agent-pool", "create", "dc1"]);
    let (ok, stderr) = apply(&cli, &example);
    assert!(ok, "{stderr}");
    assert_eq!(target_names(&cli), ["demo", "k8s-prod", "prod-db"]);
}
