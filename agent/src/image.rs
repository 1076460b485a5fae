//! The local base image, `sealrun/busybox:latest`: built `FROM scratch` with
//! the host's static busybox, so that a machine with no registry access can run
//! commands. Nothing is ever pulled.
//!
//! This is the one builder of that image: `sealrun dev` calls [`ensure`] before
//! it starts, the test kit (`sealrun-testkit`) calls it before the first
//! Docker-backed test, and `scripts/build-busybox-image.sh` runs it through the
//! `build-base-image` example of this crate.
//!
//! ```no_run
//! # async fn demo() -> Result<(), sealrun_agent::image::ImageError> {
//! use sealrun_agent::image;
//! let docker = image::connect_local().await?;
//! image::ensure(&docker, image::BASE_IMAGE, |msg| eprintln!("{msg}")).await?;
//! # Ok(()) }
//! ```

use bollard::Docker;
use futures_util::StreamExt as _;
use std::path::{Path, PathBuf};

/// The image every fresh machine can have without a registry.
pub const BASE_IMAGE: &str = "sealrun/busybox:latest";

/// The Dockerfile of [`BASE_IMAGE`]: the static busybox (copied into the build
/// context as `busybox`) installed with its applet links in `/bin`.
pub const DOCKERFILE: &str = "FROM scratch\nCOPY busybox /bin/busybox\n\
    RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nENV PATH=/bin\nCMD [\"/bin/sh\"]\n";

/// Where a static busybox is looked for, before `busybox` on `PATH`
/// (Debian's `busybox-static` installs `/bin/busybox`).
pub const BUSYBOX_PATHS: [&str; 2] = ["/bin/busybox", "/usr/bin/busybox"];

/// Why the image could not be made available.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// No client for the local engine could be made (`DOCKER_HOST` unusable).
    #[error("cannot connect to the Docker engine")]
    Connect(#[source] bollard::errors::Error),
    /// The engine did not answer the version negotiation.
    #[error("the Docker engine is not answering (is dockerd running? try scripts/provision.sh)")]
    NotAnswering(#[source] bollard::errors::Error),
    /// No static busybox on this host to build the image from.
    #[error(
        "no static busybox to build {image} from (looked in {looked}): apt-get install busybox-static"
    )]
    NoBusybox {
        /// The image that was to be built.
        image: String,
        /// What was looked at, and why each was refused.
        looked: String,
    },
    /// A file of the build context could not be read.
    #[error("cannot read {path}")]
    Context {
        /// The file.
        path: PathBuf,
        /// The read error.
        #[source]
        source: std::io::Error,
    },
    /// The engine refused or failed the build.
    #[error("building {image} failed: {message}")]
    Build {
        /// The image being built.
        image: String,
        /// The engine's message.
        message: String,
    },
}

/// A client of the local engine (`DOCKER_HOST`, else the default socket),
/// once it has answered the API version negotiation.
pub async fn connect_local() -> Result<Docker, ImageError> {
    Docker::connect_with_local_defaults()
        .map_err(ImageError::Connect)?
        .negotiate_version()
        .await
        .map_err(ImageError::NotAnswering)
}

/// Makes sure `image` exists on the engine. [`BASE_IMAGE`] is built from the
/// host's static busybox when missing; any other missing image is left for the
/// agent to pull on first run. `progress` receives one line per step taken
/// (nothing when the image is present).
pub async fn ensure(
    docker: &Docker,
    image: &str,
    mut progress: impl FnMut(&str),
) -> Result<(), ImageError> {
    if docker.inspect_image(image).await.is_ok() {
        return Ok(());
    }
    if image != BASE_IMAGE {
        progress(&format!(
            "image {image} is not present; the agent will pull it on first run"
        ));
        return Ok(());
    }
    build_base_image(docker, image, progress).await
}

/// Builds (or rebuilds) the base image under `tag` from the host's static
/// busybox, whether or not it exists.
pub async fn build_base_image(
    docker: &Docker,
    tag: &str,
    mut progress: impl FnMut(&str),
) -> Result<(), ImageError> {
    let busybox = static_busybox(tag)?;
    progress(&format!(
        "building {tag} FROM scratch with {}",
        busybox.display()
    ));
    let context = build_context(DOCKERFILE, &[("busybox", &busybox)])?;
    build(docker, tag, context).await?;
    progress(&format!("built {tag}"));
    Ok(())
}

/// The first static busybox of [`BUSYBOX_PATHS`] and `busybox` on `PATH`.
/// Static means no program interpreter: it must run in an image with no libc.
fn static_busybox(image: &str) -> Result<PathBuf, ImageError> {
    let on_path = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("busybox"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let mut looked = Vec::new();
    for candidate in BUSYBOX_PATHS.iter().map(PathBuf::from).chain(on_path) {
        if !candidate.exists() {
            continue;
        }
        match crate::init::check_static_executable(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(e) => looked.push(e.to_string()),
        }
    }
    if looked.is_empty() {
        looked.push(format!("{} and PATH", BUSYBOX_PATHS.join(", ")));
    }
    Err(ImageError::NoBusybox {
        image: image.to_owned(),
        looked: looked.join("; "),
    })
}

/// A tar build context: `dockerfile` as `Dockerfile`, and each `(name, path)`
/// file copied in under `name`.
pub fn build_context(dockerfile: &str, files: &[(&str, &Path)]) -> Result<Vec<u8>, ImageError> {
    let context_error = |path: &Path| {
        let path = path.to_owned();
        move |source| ImageError::Context { path, source }
    };
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(dockerfile.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "Dockerfile", dockerfile.as_bytes())
        .map_err(context_error(Path::new("Dockerfile")))?;
    for (name, path) in files {
        tar.append_path_with_name(path, name)
            .map_err(context_error(path))?;
    }
    tar.into_inner()
        .map_err(context_error(Path::new("Dockerfile")))
}

/// Builds `context` (from [`build_context`]) as `tag` with the engine's
/// builder, removing intermediate containers.
pub async fn build(docker: &Docker, tag: &str, context: Vec<u8>) -> Result<(), ImageError> {
    let failed = |message: String| ImageError::Build {
        image: tag.to_owned(),
        message,
    };
    let options = bollard::query_parameters::BuildImageOptionsBuilder::new()
        .dockerfile("Dockerfile")
        .t(tag)
        .rm(true)
        .build();
    let mut stream = docker.build_image(options, None, Some(bollard::body_full(context.into())));
    while let Some(step) = stream.next().await {
        let info = step.map_err(|e| failed(e.to_string()))?;
        if let Some(e) = info.error {
            return Err(failed(e));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_build_context_holds_the_dockerfile_and_the_named_files() {
        let exe = std::env::current_exe().unwrap();
        let context = build_context(DOCKERFILE, &[("busybox", &exe)]).unwrap();
        let mut archive = tar::Archive::new(context.as_slice());
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["Dockerfile", "busybox"]);
    }
}
