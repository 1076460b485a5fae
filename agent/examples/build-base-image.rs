//! Builds the local base image (`sealrun/busybox:latest`, or the tag given as
//! the only argument) FROM scratch with the host's static busybox, unless it is
//! present: what `scripts/build-busybox-image.sh` runs, with the same code as
//! `sealrun dev` and the test kit ([`sealrun_agent::image`]).
//!
//! `cargo run -p sealrun-agent --example build-base-image [-- TAG]`
#![allow(clippy::print_stderr)]

use sealrun_agent::image::{self, BASE_IMAGE};
use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let tag = std::env::args()
        .nth(1)
        .unwrap_or_else(|| BASE_IMAGE.to_owned());
    let say = |msg: &str| eprintln!("\x1b[1;34m[provision]\x1b[0m {msg}");
    let result = async {
        let docker = image::connect_local().await?;
        if docker.inspect_image(&tag).await.is_ok() {
            say(&format!("image {tag} is present"));
            return Ok(());
        }
        image::build_base_image(&docker, &tag, say).await
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut msg = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                msg.push_str(&format!(": {s}"));
                source = s.source();
            }
            eprintln!("[provision] error: {msg}");
            ExitCode::FAILURE
        }
    }
}
