//! `cargo build --workspace && sealrun dev` works: the agent finds the static
//! shim where `scripts/build-init.sh` installs it (`target/lib/sealrun/`),
//! where cargo never writes, even though a workspace build has just written
//! its own, dynamically linked, `sealrun-init` beside the `sealrun` binary.
#![allow(clippy::unwrap_used)]

use sealrun_testkit::{
    DevProcess, cargo, init_binary, require_docker, sealrun_bin, workspace_root,
};

#[test]
fn sealrun_dev_starts_after_a_workspace_build_without_being_told_where_the_shim_is() {
    if !require_docker() {
        return;
    }
    // The static shim, built and installed first...
    let installed = init_binary();
    // ...then the build that used to make `sealrun dev` refuse to start.
    let build = cargo()
        .args(["build", "--workspace", "--bins", "--quiet"])
        .current_dir(workspace_root())
        .status()
        .unwrap();
    assert!(build.success(), "cargo build --workspace failed: {build}");
    // Positive control: what cargo wrote beside `sealrun` is the dynamic shim
    // the agent refuses (the file the agent used to pick up).
    let beside = sealrun_bin().with_file_name("sealrun-init");
    let refused = sealrun_agent::init::check(&beside).unwrap_err().to_string();
    assert!(refused.contains("dynamically linked"), "{refused}");

    let dev = DevProcess::start_with(|command| {
        command.env_remove("SEALRUN_AGENT_INIT");
    });
    let log = dev.log();
    assert!(
        log.contains(&format!(
            "init shim {}",
            std::fs::canonicalize(installed).unwrap().display()
        )),
        "{log}"
    );
    let out = dev.cli.ok(&[
        "run",
        "--target",
        "demo",
        "--",
        "echo",
        "ran with the static shim",
    ]);
    assert_eq!(out, "ran with the static shim\n");
}
