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

/// The static shim, built on first use in this process and installed where
/// the agent looks for it (`target/lib/sealrun/sealrun-init`), and checked as
/// the agent checks it ([`sealrun_agent::init::check`]: a static,
/// world-executable ELF file that only its owner can change).
pub fn init_binary() -> &'static Path {
    static SHIM: OnceLock<PathBuf> = OnceLock::new();
    SHIM.get_or_init(|| {
        let script = workspace_root().join("scripts/build-init.sh");
        let output = Command::new(&script)
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
