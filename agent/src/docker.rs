//! [`Runtime`] on a Docker engine, through bollard: one hardened throwaway container
//! per run.
//!
//! # Hardening (all on by default, none configurable away by a run)
//!
//! | setting | value | why |
//! |---|---|---|
//! | `Entrypoint` | `["/.sealrun/init", "--wait", "--idle-secs", N]` | the init shim ([`sealrun_init`]) waits for its run and runs the argv exactly as submitted; an image's entrypoint script cannot wrap it |
//! | `Cmd`, `Env` | none | nothing about the run is in the container's configuration: argv, plain variables and secrets go to the shim over the attached stdin (below) |
//! | `CapDrop` | `ALL` | CapEff is 0 even for a root user |
//! | `SecurityOpt` | `no-new-privileges:true` | setuid binaries in the image cannot raise privileges |
//! | `Privileged` | `false` | explicit |
//! | `ReadonlyRootfs` | `true` | the command cannot alter the image's binaries or plant files |
//! | `Tmpfs` | `/tmp`: `rw,noexec,nosuid,nodev,size=64m,mode=1777` | scratch space in RAM (counted against the memory limit); `noexec` stops a dropped binary from running (`sh /tmp/x.sh` still works) |
//! | `Tmpfs` | each `VOLUME` of the image, the same as `/tmp` (at most [`MAX_IMAGE_VOLUMES`]; more, or one at the shim's path, refuses the image) | Docker would otherwise create an anonymous volume there: writable, executable host disk outside the read-only root and every limit |
//! | `Healthcheck` | `["NONE"]` | an image's `HEALTHCHECK` would run a probe beside the command whose output Docker keeps on disk and shows in `docker inspect` |
//! | `Image` | the image's id, as inspected | the container is made from exactly the image whose volumes were read, even if the name is re-tagged meanwhile |
//! | `User` | target's user, default `65534:65534` | never root unless an admin says so |
//! | `Memory` = `MemorySwap` | target limit | no swap: an over-limit command is OOM-killed and reported |
//! | `NanoCpus` | target millicpus × 10⁶ | CPU quota |
//! | `PidsLimit` | target limit | fork bombs stop at the limit |
//! | `NetworkMode` | `none` unless the target names a network; `host` and `container:*` refused | no network by default |
//! | `Mounts` | the shim, read-only, at `/.sealrun/init`; nothing else (no `Binds`, no `Volumes`) | no other host path, and so no Docker socket, is ever visible |
//! | `IpcMode` | `private` | no shared memory with other containers |
//! | `LogConfig` | `none` | output is read through attach only: Docker never writes it (and any secret it contains) to its log files |
//! | `Ulimits` | `core=0` | a crashing command cannot dump memory holding secrets |
//! | `AutoRemove` | `false` | the agent reads the exit state (exit code, OOM) first, then removes the container itself, with `v=true` |
//!
//! Limits outside [`ResourceLimits::check`](sealrun_wire::agent::ResourceLimits::check)'s
//! ranges are refused (Docker reads 0 as "unlimited", and refuses other
//! values only when the container starts), and so is a CPU limit above the
//! engine's host's CPUs, which Docker would refuse for every run.
//!
//! # The run: a bundle on stdin, never the configuration
//!
//! Docker stores a container's configuration (its `Cmd` and `Env` included)
//! in `/var/lib/docker/containers/<id>/config.v2.json` and shows it to
//! `docker inspect`. So [`Runtime::prepare`] creates the container with stdin
//! open and starts it with the shim waiting ([`sealrun_init::WAITING_ENTRYPOINT`]),
//! before anything about the run is known to it. [`Runtime::deliver`] attaches
//! (stdin, stdout, stderr) and writes the run's bundle ([`RunSpec::bundle`](crate::runtime::RunSpec::bundle):
//! argv, plain variables, secrets, deadline, nonce) to its stdin. The shim
//! reads exactly the bundle, detaches stdin (unless the run has input: then
//! the agent keeps writing, the run's input after the bundle, and the command
//! reads it), and runs the command with the variables in its environment.
//! What the container's configuration holds is the shape (image, limits,
//! network, user), the labels and the mount of the shim: the same for every
//! run of a target, which is what lets a unit be prepared ahead ([`crate::pool`]).
//!
//! Attaching after the start misses nothing: the shim writes nothing and
//! runs nothing before its bundle has arrived, over the attachment.

use crate::runtime::{
    AGENT_LABEL, CommandInput, ContainerId, DEADLINE_LABEL, DEFAULT_USER, ExitState, OutputFrame,
    POOL_LABEL, RUN_LABEL, Runtime, RuntimeError, Started, StdinBundle, StopSignal, UnitSpec,
};
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerCreateBody, HealthConfig, HostConfig, HostConfigLogConfig, Mount, MountTypeEnum,
    ResourcesUlimits,
};
use bollard::query_parameters::{
    AttachContainerOptions, CreateContainerOptions, CreateImageOptions, InspectContainerOptions,
    KillContainerOptions, ListContainersOptions, RemoveContainerOptions, StartContainerOptions,
    WaitContainerOptions,
};
use futures_util::StreamExt as _;
use sealrun_init::{CONTAINER_PATH, IDLE_FLAG, WAITING_ENTRYPOINT};
use sealrun_wire::log::StreamKind;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt as _;

/// Mount options of the container's `/tmp`, and of the tmpfs put over each
/// of the image's volumes.
pub const TMPFS_OPTIONS: &str = "rw,noexec,nosuid,nodev,size=64m,mode=1777";

/// Most `VOLUME`s an image may declare (each becomes a tmpfs of up to 64 MiB,
/// counted against the memory limit); an image with more is refused.
pub const MAX_IMAGE_VOLUMES: usize = 16;

/// Seconds bollard waits for the engine to *answer* a request (not for a streamed
/// body: waits and attaches last as long as the command).
const ENGINE_TIMEOUT_SECS: u64 = 120;

/// A Docker engine, and the init shim every container it creates starts with.
/// It holds no secret: the bundle of each container goes back to the caller.
#[derive(Clone)]
pub struct DockerRuntime {
    docker: Docker,
    init_binary: PathBuf,
    /// CPUs of the engine's host (`docker info`), if it said: Docker refuses
    /// a CPU limit above it.
    engine_cpus: Option<u64>,
}

impl std::fmt::Debug for DockerRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // bollard's client is not `Debug`.
        f.debug_struct("DockerRuntime")
            .field("init_binary", &self.init_binary)
            .finish_non_exhaustive()
    }
}

impl DockerRuntime {
    /// Connects to the engine at `host` (`unix:///path`, `tcp://host:port` or
    /// `http://host:port`), or to the local socket when `None`, and negotiates the
    /// API version (engines as old as 20.10 speak API 1.41 only).
    ///
    /// `init_binary` is the static `sealrun-init` shim, a path on the engine's
    /// host (see [`crate::init::locate`], which finds and checks it).
    pub async fn connect(
        host: Option<&str>,
        init_binary: &Path,
    ) -> Result<DockerRuntime, RuntimeError> {
        let engine = |message: String| RuntimeError::Engine {
            operation: "connect",
            message,
        };
        let docker = match host {
            None => Docker::connect_with_local_defaults(),
            Some(h) if h.starts_with("unix://") => {
                Docker::connect_with_unix(h, ENGINE_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
            }
            Some(h) if h.starts_with("tcp://") || h.starts_with("http://") => {
                Docker::connect_with_http(h, ENGINE_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
            }
            Some(h) => {
                return Err(engine(format!(
                    "unsupported Docker host {h:?}: use unix:///path/to/docker.sock or tcp://host:port"
                )));
            }
        }
        .map_err(|e| engine(e.to_string()))?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| engine(e.to_string()))?;
        let engine_cpus = match docker.info().await {
            Ok(info) => info.ncpu.and_then(|n| u64::try_from(n).ok()),
            Err(e) => {
                tracing::warn!(error = %e, "docker info failed: CPU limits are not checked against the engine's host");
                None
            }
        };
        Ok(DockerRuntime {
            docker,
            init_binary: init_binary.to_owned(),
            engine_cpus,
        })
    }

    /// The underlying bollard client.
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// The shim bind-mounted into every container.
    pub fn init_binary(&self) -> &Path {
        &self.init_binary
    }

    /// Attaches to the container's stdin, stdout and stderr and writes
    /// `bundle` to its stdin; then closes it, or hands it back when the run's
    /// input follows.
    async fn attach_and_write(
        &self,
        id: &ContainerId,
        bundle: &[u8],
        input_follows: bool,
    ) -> Result<Started, RuntimeError> {
        // The shim writes nothing before its bundle has come through this
        // attachment, so attaching to a started container misses no output.
        let options = AttachContainerOptions {
            stream: true,
            stdin: true,
            stdout: true,
            stderr: true,
            logs: false,
            detach_keys: None,
        };
        let attached = self
            .docker
            .attach_container(&id.0, Some(options))
            .await
            .map_err(engine_error("attach"))?;
        let mut stdin = attached.input;
        let written = tokio::time::timeout(Duration::from_secs(ENGINE_TIMEOUT_SECS), async {
            stdin.write_all(bundle).await?;
            stdin.flush().await?;
            if input_follows {
                return Ok(());
            }
            // End of input: a shim still waiting for more (a short bundle) reads
            // EOF and fails at once, instead of hanging until the run's timeout.
            stdin.shutdown().await
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(RuntimeError::Engine {
                    operation: "write the secret bundle",
                    message: e.to_string(),
                });
            }
            Err(_) => {
                return Err(RuntimeError::Engine {
                    operation: "write the secret bundle",
                    message: format!(
                        "the container did not read it within {ENGINE_TIMEOUT_SECS} s"
                    ),
                });
            }
        }
        // The write half must live as long as the output stream: dropping it
        // would close the whole attach connection. With input to forward, the
        // caller holds it (and must keep it as long); otherwise (shut down) the
        // output stream does.
        let (input, keep_open) = if input_follows {
            (Some(CommandInput::new(stdin)), None)
        } else {
            (None, Some(stdin))
        };
        let output = attached.output.filter_map(move |item| {
            let _keep_open = &keep_open;
            let frame = match item {
                Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => {
                    Some(Ok(OutputFrame {
                        stream: StreamKind::Stdout,
                        data: message,
                    }))
                }
                Ok(LogOutput::StdErr { message }) => Some(Ok(OutputFrame {
                    stream: StreamKind::Stderr,
                    data: message,
                })),
                Ok(LogOutput::StdIn { .. }) => None,
                Err(e) => Some(Err(RuntimeError::Engine {
                    operation: "attach",
                    message: e.to_string(),
                })),
            };
            std::future::ready(frame)
        });
        Ok(Started {
            output: output.boxed(),
            input,
        })
    }
}

/// `image` with `:latest` added when it names neither a tag nor a digest: pulling
/// an untagged repository would otherwise fetch every tag.
fn with_default_tag(image: &str) -> String {
    if image.contains('@') {
        return image.to_owned();
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    if last.contains(':') {
        image.to_owned()
    } else {
        format!("{image}:latest")
    }
}

fn status_of(e: &DockerError) -> Option<u16> {
    match e {
        DockerError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

fn engine_error(operation: &'static str) -> impl FnOnce(DockerError) -> RuntimeError {
    move |e| RuntimeError::Engine {
        operation,
        message: e.to_string(),
    }
}

/// What a container is made from besides its spec: the shim, the image as
/// inspected, and the engine's host.
#[derive(Debug)]
struct Context<'a> {
    /// The static shim on the engine's host.
    init_binary: &'a Path,
    /// The image's id (`sha256:...`), to create the container from exactly
    /// the image inspected; `None` uses the spec's name.
    image_id: Option<&'a str>,
    /// The image's `VOLUME`s.
    image_volumes: &'a [String],
    /// CPUs of the engine's host, if known.
    engine_cpus: Option<u64>,
}

/// The tmpfs mounts of a container: `/tmp`, and one over each of the image's
/// volumes, so that Docker creates no anonymous volume (host disk). Refuses
/// an image with more than [`MAX_IMAGE_VOLUMES`] volumes or one that would
/// cover the shim.
fn tmpfs_mounts(image_volumes: &[String]) -> Result<HashMap<String, String>, RuntimeError> {
    let refuse = |m: String| Err(RuntimeError::InvalidSpec(m));
    if image_volumes.len() > MAX_IMAGE_VOLUMES {
        return refuse(format!(
            "the image declares {} volumes; at most {MAX_IMAGE_VOLUMES} are replaced by tmpfs mounts, so it is refused",
            image_volumes.len()
        ));
    }
    let mut mounts = HashMap::from([("/tmp".to_owned(), TMPFS_OPTIONS.to_owned())]);
    for volume in image_volumes {
        // Docker cleans the path as Go's filepath.Clean would; only `/x/y`
        // shapes are accepted here.
        let path = volume.trim_end_matches('/');
        let clean = path.starts_with('/')
            && path
                .split('/')
                .skip(1)
                .all(|c| !c.is_empty() && c != "." && c != "..");
        if !clean {
            return refuse(format!(
                "the image declares a volume at {volume:?}, which is not a plain absolute path: refused"
            ));
        }
        // `/.sealrun` and anything in it: a mount there would hide the shim.
        let shim_dir = CONTAINER_PATH.rsplit_once('/').map_or("", |(dir, _)| dir);
        if path == shim_dir || path.starts_with(&format!("{shim_dir}/")) {
            return refuse(format!(
                "the image declares a volume at {volume:?}, over the sealrun-init shim: refused"
            ));
        }
        mounts.insert(path.to_owned(), TMPFS_OPTIONS.to_owned());
    }
    Ok(mounts)
}

/// Builds the container configuration for `unit`, checking what Docker would
/// otherwise silently read as "unlimited" or "share the host". It holds
/// nothing about a run: the run reaches the waiting shim as its bundle.
fn container_body(
    unit: &UnitSpec,
    context: &Context<'_>,
) -> Result<ContainerCreateBody, RuntimeError> {
    let invalid = |m: String| Err(RuntimeError::InvalidSpec(m));
    let shape = &unit.shape;
    let limits = &shape.limits;
    // The ranges the control plane checked when the target was declared,
    // again here, where a value becomes a container's.
    limits
        .check()
        .map_err(|e| RuntimeError::InvalidSpec(e.to_string()))?;
    if let Some(cpus) = context.engine_cpus {
        if limits.millicpus > cpus.saturating_mul(1000) {
            return invalid(format!(
                "limits.millicpus {} is more than this agent's Docker engine has: its host has {cpus} CPUs, so it accepts at most {} (lower the target's limits.millicpus)",
                limits.millicpus,
                cpus * 1000
            ));
        }
    }
    let tmpfs = tmpfs_mounts(context.image_volumes)?;
    let network = shape.network.clone().unwrap_or_else(|| "none".to_owned());
    if network == "host" || network.starts_with("container:") {
        return invalid(format!(
            "network {network:?} would share a namespace with the host or another container; name a Docker network instead"
        ));
    }

    let memory = i64::try_from(limits.memory_mb.saturating_mul(1024 * 1024)).unwrap_or(i64::MAX);
    let nano_cpus = i64::try_from(limits.millicpus.saturating_mul(1_000_000)).unwrap_or(i64::MAX);
    let pids = i64::try_from(limits.pids).unwrap_or(i64::MAX);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut labels = HashMap::from([
        (AGENT_LABEL.to_owned(), unit.agent_id.clone()),
        (
            DEADLINE_LABEL.to_owned(),
            now.saturating_add(unit.deadline.as_secs().max(1))
                .to_string(),
        ),
    ]);
    if let Some(run_id) = &unit.run_id {
        labels.insert(RUN_LABEL.to_owned(), run_id.clone());
    }
    if let Some(target) = &unit.pool {
        labels.insert(POOL_LABEL.to_owned(), target.clone());
    }
    let host_config = HostConfig {
        cap_drop: Some(vec!["ALL".to_owned()]),
        security_opt: Some(vec!["no-new-privileges:true".to_owned()]),
        privileged: Some(false),
        readonly_rootfs: Some(true),
        tmpfs: Some(tmpfs),
        memory: Some(memory),
        memory_swap: Some(memory),
        nano_cpus: Some(nano_cpus),
        pids_limit: Some(pids),
        network_mode: Some(network),
        ipc_mode: Some("private".to_owned()),
        binds: None,
        // The shim, read-only (it cannot be altered from inside), and nothing else.
        mounts: Some(vec![Mount {
            target: Some(CONTAINER_PATH.to_owned()),
            source: Some(context.init_binary.display().to_string()),
            typ: Some(MountTypeEnum::BIND),
            read_only: Some(true),
            ..Default::default()
        }]),
        auto_remove: Some(false),
        publish_all_ports: Some(false),
        log_config: Some(HostConfigLogConfig {
            typ: Some("none".to_owned()),
            config: None,
        }),
        ulimits: Some(vec![ResourcesUlimits {
            name: Some("core".to_owned()),
            soft: Some(0),
            hard: Some(0),
        }]),
        ..Default::default()
    };
    // The shim waits for its run; it gives up after the idle time, so that a
    // unit whose agent died ends by itself.
    let mut entrypoint: Vec<String> = WAITING_ENTRYPOINT.iter().map(|s| (*s).to_owned()).collect();
    entrypoint.push(IDLE_FLAG.to_owned());
    entrypoint.push(unit.idle.as_secs().max(1).to_string());
    let body = ContainerCreateBody {
        image: Some(context.image_id.unwrap_or(&shape.image_id).to_owned()),
        // An image's HEALTHCHECK would run a probe beside the command and
        // keep its output in Docker's state: never.
        healthcheck: Some(HealthConfig {
            test: Some(vec!["NONE".to_owned()]),
            ..Default::default()
        }),
        // With an entrypoint given, Docker adds no image `CMD`; the shim
        // refuses any argument it does not expect, so it would show.
        cmd: None,
        entrypoint: Some(entrypoint),
        env: None,
        user: Some(
            shape
                .user
                .clone()
                .unwrap_or_else(|| DEFAULT_USER.to_owned()),
        ),
        labels: Some(labels),
        // Stdin is how the bundle reaches the shim; `stdin_once` closes it in the
        // container when the agent's attach ends.
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        open_stdin: Some(true),
        stdin_once: Some(true),
        tty: Some(false),
        network_disabled: Some(shape.network.is_none()),
        host_config: Some(host_config),
        ..Default::default()
    };
    Ok(body)
}

impl Runtime for DockerRuntime {
    async fn ensure_image(&self, image: &str) -> Result<String, RuntimeError> {
        let no_id = || RuntimeError::Engine {
            operation: "image inspect",
            message: format!("the engine gave no id for image {image}"),
        };
        match self.docker.inspect_image(image).await {
            Ok(inspected) => return inspected.id.ok_or_else(no_id),
            Err(e) if status_of(&e) == Some(404) => {}
            Err(e) => return Err(engine_error("image inspect")(e)),
        }
        let reference = with_default_tag(image);
        tracing::info!(image = %reference, "pulling image");
        let options = CreateImageOptions {
            from_image: Some(reference),
            ..Default::default()
        };
        let mut progress = self.docker.create_image(Some(options), None, None);
        let pull_error = |message: String| RuntimeError::Pull {
            image: image.to_owned(),
            message,
        };
        while let Some(item) = progress.next().await {
            let info = item.map_err(|e| pull_error(e.to_string()))?;
            if let Some(detail) = info.error_detail.and_then(|d| d.message).or(info.error) {
                return Err(pull_error(detail));
            }
        }
        // A pull that "succeeds" without producing the image (odd registries,
        // platform mismatches) must still be an error, not a confusing create failure.
        self.docker
            .inspect_image(image)
            .await
            .map_err(|e| pull_error(format!("image still absent after pulling: {e}")))?
            .id
            .ok_or_else(no_id)
    }

    async fn prepare(&self, unit: UnitSpec) -> Result<ContainerId, RuntimeError> {
        // Checked at start, and again before every unit: a shim someone else
        // could have replaced since would see its run's secrets.
        crate::init::check(&self.init_binary)
            .map_err(|e| RuntimeError::InvalidSpec(e.to_string()))?;
        // The image's volumes decide its tmpfs mounts.
        let image = self
            .docker
            .inspect_image(&unit.shape.image_id)
            .await
            .map_err(engine_error("image inspect"))?;
        let image_volumes: Vec<String> = image
            .config
            .and_then(|c| c.volumes)
            .map(|v| v.into_keys().collect())
            .unwrap_or_default();
        let context = Context {
            init_binary: &self.init_binary,
            image_id: image.id.as_deref(),
            image_volumes: &image_volumes,
            engine_cpus: self.engine_cpus,
        };
        let body = container_body(&unit, &context)?;
        let created = self
            .docker
            .create_container(None::<CreateContainerOptions>, body)
            .await
            .map_err(|e| {
                let mut message = e.to_string();
                if message.contains("bind source path does not exist") {
                    message.push_str(&format!(
                        " (the sealrun-init shim {} must exist at that path on the Docker engine's host)",
                        self.init_binary.display()
                    ));
                }
                RuntimeError::Engine {
                    operation: "create",
                    message,
                }
            })?;
        for warning in created.warnings {
            tracing::warn!(container = %created.id, %warning, "engine warning on create");
        }
        let id = ContainerId(created.id);
        if let Err(e) = self
            .docker
            .start_container(&id.0, None::<StartContainerOptions>)
            .await
        {
            // Never leave a unit behind: one that did not start is removed now.
            if let Err(removal) = self.remove(&id).await {
                tracing::error!(container = %id, error = %removal, "could not remove a container that failed to start; it will be removed when the agent restarts");
            }
            return Err(engine_error("start")(e));
        }
        Ok(id)
    }

    async fn deliver(
        &self,
        id: &ContainerId,
        bundle: StdinBundle,
    ) -> Result<Started, RuntimeError> {
        // `bundle` is dropped, and so zeroized, once it is written.
        self.attach_and_write(id, bundle.as_bytes(), bundle.input_follows())
            .await
    }

    async fn is_running(&self, id: &ContainerId) -> bool {
        self.docker
            .inspect_container(&id.0, None::<InspectContainerOptions>)
            .await
            .ok()
            .and_then(|c| c.state)
            .and_then(|s| s.running)
            .unwrap_or(false)
    }

    async fn wait(&self, id: &ContainerId) -> Result<ExitState, RuntimeError> {
        let options = WaitContainerOptions {
            condition: "not-running".to_owned(),
        };
        let mut waiting = self.docker.wait_container(&id.0, Some(options));
        match waiting.next().await {
            // bollard turns a non-zero exit into an error; it is still an exit.
            Some(Ok(_)) | Some(Err(DockerError::DockerContainerWaitError { .. })) | None => {}
            Some(Err(e)) => return Err(engine_error("wait")(e)),
        }
        // Inspect for the exact exit code and the OOM flag, which wait does not give.
        let inspected = self
            .docker
            .inspect_container(&id.0, None::<InspectContainerOptions>)
            .await
            .map_err(engine_error("inspect"))?;
        let state = inspected.state.unwrap_or_default();
        if state.running == Some(true) {
            return Err(RuntimeError::Engine {
                operation: "wait",
                message: "the engine reported the container stopped, but it is still running"
                    .into(),
            });
        }
        Ok(ExitState {
            exit_code: state.exit_code.unwrap_or(-1),
            oom_killed: state.oom_killed.unwrap_or(false),
        })
    }

    async fn signal(&self, id: &ContainerId, signal: StopSignal) -> Result<(), RuntimeError> {
        let signal = match signal {
            StopSignal::Terminate => "SIGTERM",
            StopSignal::Kill => "SIGKILL",
        };
        let options = KillContainerOptions {
            signal: signal.to_owned(),
        };
        match self.docker.kill_container(&id.0, Some(options)).await {
            Ok(()) => Ok(()),
            // 409: not running any more; 404: gone. Either way it is stopped.
            Err(e) if matches!(status_of(&e), Some(404 | 409)) => Ok(()),
            Err(e) => Err(engine_error("kill")(e)),
        }
    }

    async fn remove(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            link: false,
        };
        let mut attempt = 0u32;
        loop {
            match self
                .docker
                .remove_container(&id.0, Some(options.clone()))
                .await
            {
                Ok(()) => return Ok(()),
                Err(e) if status_of(&e) == Some(404) => return Ok(()),
                // 409 "removal already in progress" and transient engine errors:
                // try again briefly, since a container must never be left behind.
                Err(e) if attempt < 5 => {
                    tracing::debug!(container = %id, error = %e, attempt, "retrying container removal");
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
                Err(e) => return Err(engine_error("remove")(e)),
            }
        }
    }

    async fn list(&self, agent_id: &str) -> Result<Vec<ContainerId>, RuntimeError> {
        let filters = HashMap::from([(
            "label".to_owned(),
            vec![format!("{AGENT_LABEL}={agent_id}")],
        )]);
        let options = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(engine_error("list"))?;
        Ok(containers
            .into_iter()
            .filter_map(|c| c.id.map(ContainerId))
            .collect())
    }

    async fn list_expired(&self, now_unix_secs: u64) -> Result<Vec<ContainerId>, RuntimeError> {
        let filters = HashMap::from([("label".to_owned(), vec![DEADLINE_LABEL.to_owned()])]);
        let options = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(engine_error("list"))?;
        Ok(containers
            .into_iter()
            .filter(|c| {
                c.labels
                    .as_ref()
                    .and_then(|l| l.get(DEADLINE_LABEL))
                    .and_then(|d| d.parse::<u64>().ok())
                    // A label that does not parse is not ours to judge.
                    .is_some_and(|deadline| deadline < now_unix_secs)
            })
            .filter_map(|c| c.id.map(ContainerId))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::runtime::Shape;
    use sealrun_wire::agent::ResourceLimits;

    const INIT: &str = "/usr/local/lib/sealrun/sealrun-init";

    fn body(spec: &UnitSpec) -> Result<ContainerCreateBody, RuntimeError> {
        container_body(
            spec,
            &Context {
                init_binary: Path::new(INIT),
                image_id: None,
                image_volumes: &[],
                engine_cpus: None,
            },
        )
    }

    fn spec() -> UnitSpec {
        UnitSpec {
            shape: Shape {
                image_id: "sha256:0123".into(),
                limits: ResourceLimits::default(),
                network: None,
                user: None,
            },
            agent_id: "a1".into(),
            run_id: Some("r1".into()),
            pool: None,
            idle: Duration::from_secs(120),
            deadline: Duration::from_secs(180),
        }
    }

    #[test]
    fn an_untagged_image_is_pulled_as_latest_only() {
        assert_eq!(with_default_tag("busybox"), "busybox:latest");
        assert_eq!(
            with_default_tag("localhost:5000/x/busybox"),
            "localhost:5000/x/busybox:latest"
        );
        assert_eq!(
            with_default_tag("localhost:5000/busybox:1.36"),
            "localhost:5000/busybox:1.36"
        );
        assert_eq!(
            with_default_tag("busybox@sha256:abcd"),
            "busybox@sha256:abcd"
        );
    }

    #[test]
    fn the_default_body_is_hardened() {
        let body = body(&spec()).unwrap();
        let host = body.host_config.unwrap();
        assert_eq!(host.cap_drop.unwrap(), vec!["ALL"]);
        assert_eq!(host.security_opt.unwrap(), vec!["no-new-privileges:true"]);
        assert_eq!(host.readonly_rootfs, Some(true));
        assert_eq!(host.privileged, Some(false));
        assert_eq!(host.network_mode.as_deref(), Some("none"));
        assert_eq!(host.memory, host.memory_swap);
        assert_eq!(host.memory, Some(512 * 1024 * 1024));
        assert_eq!(host.nano_cpus, Some(1_000_000_000));
        assert_eq!(host.pids_limit, Some(128));
        assert!(host.binds.is_none());
        // The one mount: the shim, read-only.
        assert_eq!(
            host.mounts.unwrap(),
            vec![Mount {
                target: Some("/.sealrun/init".into()),
                source: Some(INIT.into()),
                typ: Some(MountTypeEnum::BIND),
                read_only: Some(true),
                ..Default::default()
            }]
        );
        assert_eq!(host.log_config.unwrap().typ.as_deref(), Some("none"));
        assert_eq!(body.user.as_deref(), Some(DEFAULT_USER));
        assert_eq!(
            body.entrypoint,
            Some(vec![
                "/.sealrun/init".into(),
                "--wait".into(),
                "--idle-secs".into(),
                "120".into()
            ])
        );
        assert_eq!((body.cmd, body.env), (None, None));
        assert_eq!(body.tty, Some(false));
        assert_eq!(
            (body.open_stdin, body.stdin_once, body.attach_stdin),
            (Some(true), Some(true), Some(true))
        );
    }

    fn body_in(
        spec: &UnitSpec,
        image_volumes: &[String],
        engine_cpus: Option<u64>,
    ) -> Result<ContainerCreateBody, RuntimeError> {
        container_body(
            spec,
            &Context {
                init_binary: Path::new(INIT),
                image_id: Some("sha256:abc"),
                image_volumes,
                engine_cpus,
            },
        )
    }

    #[test]
    fn the_container_is_made_from_the_inspected_image_with_no_healthcheck() {
        let b = body_in(&spec(), &[], None).unwrap();
        assert_eq!(b.image.as_deref(), Some("sha256:abc"));
        assert_eq!(b.healthcheck.unwrap().test, Some(vec!["NONE".to_owned()]));
    }

    #[test]
    fn image_volumes_become_size_limited_noexec_tmpfs_mounts() {
        let volumes = [
            "/data".to_owned(),
            "/var/lib/x/".to_owned(),
            "/tmp".to_owned(),
        ];
        let tmpfs = body_in(&spec(), &volumes, None)
            .unwrap()
            .host_config
            .unwrap()
            .tmpfs
            .unwrap();
        let mut paths: Vec<&str> = tmpfs.keys().map(String::as_str).collect();
        paths.sort_unstable();
        assert_eq!(paths, ["/data", "/tmp", "/var/lib/x"]);
        for options in tmpfs.values() {
            assert_eq!(options, TMPFS_OPTIONS);
        }
        assert!(TMPFS_OPTIONS.contains("noexec") && TMPFS_OPTIONS.contains("size=64m"));
    }

    #[test]
    fn an_image_with_too_many_volumes_or_one_over_the_shim_is_refused() {
        let many: Vec<String> = (0..=MAX_IMAGE_VOLUMES).map(|i| format!("/v{i}")).collect();
        let err = body_in(&spec(), &many, None).unwrap_err().to_string();
        assert!(err.contains("at most 16"), "{err}");
        for bad in [
            "/.sealrun",
            "/.sealrun/init",
            "/.sealrun/x",
            "/a/../b",
            "relative",
            "/",
        ] {
            assert!(
                matches!(
                    body_in(&spec(), &[bad.to_owned()], None),
                    Err(RuntimeError::InvalidSpec(_))
                ),
                "{bad}"
            );
        }
        // Positive control: a path that merely begins like the shim's directory.
        assert!(body_in(&spec(), &["/.sealrunner".to_owned()], None).is_ok());
    }

    #[test]
    fn a_cpu_limit_above_the_engines_cpus_is_refused_naming_both() {
        let mut s = spec();
        s.shape.limits.millicpus = 4000;
        let err = body_in(&s, &[], Some(2)).unwrap_err().to_string();
        assert!(
            err.contains("limits.millicpus 4000") && err.contains("at most 2000"),
            "{err}"
        );
        assert!(body_in(&s, &[], Some(4)).is_ok());
        assert!(body_in(&s, &[], None).is_ok());
    }

    #[test]
    fn host_and_container_networks_are_refused() {
        for network in ["host", "container:abc"] {
            let mut s = spec();
            s.shape.network = Some(network.into());
            assert!(
                matches!(body(&s), Err(RuntimeError::InvalidSpec(_))),
                "{network}"
            );
        }
        let mut s = spec();
        s.shape.network = Some("backend".into());
        let b = body(&s).unwrap();
        assert_eq!(
            b.host_config.unwrap().network_mode.as_deref(),
            Some("backend")
        );
    }

    #[test]
    fn limits_docker_would_refuse_at_start_are_refused() {
        for limits in [
            ResourceLimits {
                millicpus: 1_000_000,
                ..ResourceLimits::default()
            },
            ResourceLimits {
                pids: u64::MAX,
                ..ResourceLimits::default()
            },
        ] {
            let mut s = spec();
            s.shape.limits = limits;
            assert!(matches!(body(&s), Err(RuntimeError::InvalidSpec(_))));
        }
    }

    #[test]
    fn zero_limits_are_refused_because_docker_reads_them_as_unlimited() {
        for limits in [
            ResourceLimits {
                memory_mb: 0,
                ..ResourceLimits::default()
            },
            ResourceLimits {
                millicpus: 0,
                ..ResourceLimits::default()
            },
            ResourceLimits {
                pids: 0,
                ..ResourceLimits::default()
            },
        ] {
            let mut s = spec();
            s.shape.limits = limits;
            assert!(matches!(body(&s), Err(RuntimeError::InvalidSpec(_))));
        }
    }

    #[test]
    fn a_pool_members_configuration_names_its_target_and_no_run() {
        let mut s = spec();
        s.run_id = None;
        s.pool = Some("demo".into());
        let labels = body(&s).unwrap().labels.unwrap();
        assert_eq!(labels.get(POOL_LABEL).map(String::as_str), Some("demo"));
        assert_eq!(labels.get(AGENT_LABEL).map(String::as_str), Some("a1"));
        assert!(labels.contains_key(DEADLINE_LABEL));
        assert!(!labels.contains_key(RUN_LABEL));
        // Positive control: a unit prepared for a run names it.
        let labels = body(&spec()).unwrap().labels.unwrap();
        assert_eq!(labels.get(RUN_LABEL).map(String::as_str), Some("r1"));
        assert!(!labels.contains_key(POOL_LABEL));
    }
}
