//! The static `sealrun-init` shim, the one way tests get it: built by
//! `scripts/build-init.sh` (the single description of how the shim is built;
//! a no-op when it is up to date, as after `scripts/test.sh`'s build step).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The workspace's root directory (where `scripts/` is).
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the test kit lives one level below the workspace root")
}

/// `cargo`, to be run in the workspace as a developer runs it: without the
/// variables cargo sets for the running test or benchmark (its package's
/// `CARGO_PKG_NAME`, `CARGO_MANIFEST_DIR`, ...).
///
/// Build scripts may watch those (ring's watches `CARGO_PKG_NAME` and
/// `CARGO_MANIFEST_DIR`): inherited, they change, the build script runs
/// again and its crate is rebuilt in the shared target directory, and then
/// the suite's own next cargo rebuilds it back, with everything above it
/// (in CI, a 1 min 48 s build before the PostgreSQL pass).
pub fn cargo() -> Command {
    let mut cargo = Command::new(env!("CARGO"));
    forget_the_running_package(&mut cargo);
    cargo
}

/// Removes from `command`'s environment what cargo sets for one package's
/// test or benchmark run (see [`cargo`]).
fn forget_the_running_package(command: &mut Command) {
    const SET_BY_CARGO: [&str; 9] = [
        "CARGO_PKG_",
        "CARGO_MANIFEST_",
        "CARGO_CRATE_NAME",
        "CARGO_BIN_",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "CARGO_RUSTC_CURRENT_DIR",
        "CARGO_SBOM_PATH",
        // Set for a package with a build script; ring's watches it too.
        "OUT_DIR",
    ];
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if SET_BY_CARGO.iter().any(|p| name.starts_with(p)) {
            command.env_remove(&*name);
        }
    }
}

/// The static shim, built on first use in this process and installed where
/// the agent looks for it (`target/lib/sealrun/sealrun-init`), and checked as
/// the agent checks it ([`sealrun_agent::init::check`]: a static,
/// world-executable ELF file that only its owner can change).
pub fn init_binary() -> &'static Path {
    static SHIM: OnceLock<PathBuf> = OnceLock::new();
    SHIM.get_or_init(|| {
        let script = workspace_root().join("scripts/build-init.sh");
        let mut build = Command::new(&script);
        // The script runs cargo: as for `cargo()`, without this package's variables.
        forget_the_running_package(&mut build);
        let output = build
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            output.status.success(),
            "{} failed: {}",
            script.display(),
            output.status
        );
        let path = PathBuf::from(
            String::from_utf8(output.stdout)
                .expect("build-init.sh prints a UTF-8 path")
                .trim(),
        );
        if let Err(e) = sealrun_agent::init::check(&path) {
            panic!("{} printed an unusable shim: {e}", script.display());
        }
        path
    })
}
