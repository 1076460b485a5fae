//! The seam between the agent and whatever runs a command in isolation.
//!
//! The executor ([`crate::executor`]) owns the policy of a run: when to stop it,
//! how long to wait, what to report. A [`Runtime`] owns only the mechanism: pull an
//! image, create an isolated unit (a container) from a [`ContainerSpec`], attach to
//! its output and start it, wait for it, signal it, remove it, and sweep up units a
//! crashed agent left behind. [`crate::docker::DockerRuntime`] is the one
//! implementation today; a Kubernetes pod runtime would implement the same trait.
//!
//! Every unit a runtime creates must carry the run id and the agent id in a way
//! [`Runtime::remove_orphans`] can find again (labels, for Docker), because that
//! sweep is what guarantees "no container survives the agent" across crashes.

use bytes::Bytes;
use futures_util::stream::BoxStream;
use sealrun_vault::Secret;
use sealrun_wire::agent::ResourceLimits;
use sealrun_wire::log::StreamKind;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use tokio::io::{AsyncWrite, AsyncWriteExt as _};
use zeroize::Zeroizing;

/// Label naming the run a container executes.
pub const RUN_LABEL: &str = "sealrun.run";
/// Label naming the agent that created a container (found again after a crash).
pub const AGENT_LABEL: &str = "sealrun.agent";
/// Label holding the Unix second after which a container may be removed by
/// any agent on the engine: its run's timeout and stop grace have passed,
/// and its shim has killed the command by then (see [`ContainerSpec::deadline`]).
pub const DEADLINE_LABEL: &str = "sealrun.deadline";
/// User a run executes as when its target names none: `nobody:nogroup`.
pub const DEFAULT_USER: &str = "65534:65534";

/// Everything a runtime needs to create one run's isolated unit.
///
/// Holds opened secrets; its `Debug` prints their names only, and dropping it
/// zeroizes their values (see [`Secret`]).
pub struct ContainerSpec {
    /// Run id (becomes the `sealrun.run` label).
    pub run_id: String,
    /// Agent id (becomes the `sealrun.agent` label).
    pub agent_id: String,
    /// Image reference, e.g. `sealrun/busybox:latest`.
    pub image: String,
    /// The exact argv to execute; never wrapped in a shell or an image entrypoint.
    pub argv: Vec<String>,
    /// Plain environment variables.
    pub env: Vec<(String, String)>,
    /// Opened secrets the command receives. How they are delivered is the runtime's
    /// business, which is why they are not folded into `env`: the Docker runtime
    /// encodes them into the [`StdinBundle`] that `create` returns and `start`
    /// writes to the `sealrun-init` shim's stdin, never into the container's
    /// configuration.
    pub secrets: Vec<(String, Secret)>,
    /// Memory, CPU and process limits.
    pub limits: ResourceLimits,
    /// Network to attach; `None` means no network at all.
    pub network: Option<String>,
    /// `uid[:gid]` or user name; `None` means [`DEFAULT_USER`].
    pub user: Option<String>,
    /// Whether the command reads the run's input: [`Runtime::start`] then
    /// leaves its stdin open after the bundle and returns a [`CommandInput`].
    pub stdin: bool,
    /// How long after it starts the unit must be gone, whatever happens to
    /// the agent: the runtime makes the unit end itself then (the shim's
    /// deadline), and records the instant so that any agent on the engine
    /// removes it afterwards ([`Runtime::remove_expired`]). The executor
    /// sets it past the run's timeout and stop grace, so an agent that is
    /// alive always stops the run first.
    pub deadline: std::time::Duration,
    /// The run's nonce, which the runtime hands to the shim (in the bundle)
    /// and the executor looks for in the shim's signed error line: how a
    /// shim failure is told from a command printing the same text.
    pub nonce: sealrun_init::ShimNonce,
}

impl fmt::Debug for ContainerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret_names: Vec<&str> = self.secrets.iter().map(|(n, _)| n.as_str()).collect();
        let env_names: Vec<&str> = self.env.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("ContainerSpec")
            .field("run_id", &self.run_id)
            .field("agent_id", &self.agent_id)
            .field("image", &self.image)
            .field("argv_len", &self.argv.len())
            .field("env", &env_names)
            .field("secrets", &secret_names)
            .field("limits", &self.limits)
            .field("network", &self.network)
            .field("user", &self.user)
            .field("stdin", &self.stdin)
            .field("deadline", &self.deadline)
            .finish()
    }
}

/// A handle on a created unit (a Docker container id).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ContainerId(pub String);

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a unit reads on its stdin when it starts: for the Docker runtime, the
/// encoded [`sealrun_init::Bundle`] of the run's secrets.
///
/// It holds secrets, so its bytes are zeroized when it is dropped and its
/// `Debug` shows only its length. [`Runtime::create`] hands it to the caller
/// rather than keeping it, so that a runtime never stores a secret: whoever
/// holds the unit's id holds its input, and dropping both (a run stopped before
/// it started) wipes the input.
pub struct StdinBundle(Zeroizing<Vec<u8>>, bool);

impl StdinBundle {
    /// Wraps already encoded bytes (e.g. [`sealrun_init::Bundle::encode`]),
    /// after which stdin is closed.
    pub fn new(bytes: Zeroizing<Vec<u8>>) -> StdinBundle {
        StdinBundle(bytes, false)
    }

    /// Wraps encoded bytes after which the run's input follows: stdin stays
    /// open for [`Started::input`].
    pub fn followed_by_input(bytes: Zeroizing<Vec<u8>>) -> StdinBundle {
        StdinBundle(bytes, true)
    }

    /// Whether the run's input follows the bundle.
    pub fn input_follows(&self) -> bool {
        self.1
    }

    /// The bytes to write.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<u8>> for StdinBundle {
    fn from(bytes: Vec<u8>) -> StdinBundle {
        StdinBundle::new(Zeroizing::new(bytes))
    }
}

impl fmt::Debug for StdinBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The bytes are secrets: show their size only.
        write!(f, "StdinBundle({} bytes)", self.0.len())
    }
}

/// A created (not yet started) unit, and the input [`Runtime::start`] must
/// write to its stdin.
#[derive(Debug)]
pub struct Created {
    /// The unit.
    pub id: ContainerId,
    /// What the unit reads on stdin when it starts; pass it to [`Runtime::start`].
    pub stdin: StdinBundle,
}

/// The write end of a started unit's stdin, after the bundle: where the
/// run's input goes. Keep it until the unit's output has been read in full
/// (for Docker, dropping it closes the whole attach connection, output
/// included); [`close`](Self::close) ends the command's input.
pub struct CommandInput(Pin<Box<dyn AsyncWrite + Send>>);

impl CommandInput {
    /// Wraps the unit's stdin.
    pub fn new(writer: Pin<Box<dyn AsyncWrite + Send>>) -> CommandInput {
        CommandInput(writer)
    }

    /// Writes all of `data` (waits while the command does not read).
    pub async fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.0.write_all(data).await?;
        self.0.flush().await
    }

    /// Ends the command's input: it reads end-of-file next.
    pub async fn close(&mut self) -> std::io::Result<()> {
        self.0.shutdown().await
    }
}

impl fmt::Debug for CommandInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CommandInput")
    }
}

/// A started unit: its output, and its stdin when the run has input.
pub struct Started {
    /// The command's output.
    pub output: OutputStream,
    /// Where the run's input goes, when [`StdinBundle::input_follows`].
    pub input: Option<CommandInput>,
}

impl fmt::Debug for Started {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Started")
            .field("input", &self.input)
            .finish_non_exhaustive()
    }
}

/// One piece of a command's output, as the runtime read it.
#[derive(Clone, PartialEq, Eq)]
pub struct OutputFrame {
    /// [`StreamKind::Stdout`] or [`StreamKind::Stderr`].
    pub stream: StreamKind,
    /// Raw (unredacted) bytes: never log them.
    pub data: Bytes,
}

impl fmt::Debug for OutputFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The bytes are unredacted command output: show their size only.
        write!(
            f,
            "OutputFrame({}, {} bytes)",
            self.stream.as_str(),
            self.data.len()
        )
    }
}

/// The command's output, in the order the runtime delivered it. The stream ends
/// when the unit has exited and all of its output has been read.
///
/// Reading it is what moves the output along: a consumer that stops polling makes
/// the command block on its next write (backpressure) rather than buffering.
pub type OutputStream = BoxStream<'static, Result<OutputFrame, RuntimeError>>;

/// How a unit ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitState {
    /// Exit code exactly as reported (`128 + signal` when killed by a signal).
    pub exit_code: i64,
    /// Whether the kernel's OOM killer killed a process of the unit.
    pub oom_killed: bool,
}

/// Signals the executor sends to a running unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopSignal {
    /// Ask politely (SIGTERM).
    Terminate,
    /// Kill at once (SIGKILL).
    Kill,
}

/// What can go wrong in a runtime. Messages may quote the container engine, so
/// the executor passes them through the run's redactor before reporting them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The image is absent and could not be pulled.
    #[error("image pull failed for {image}: {message}")]
    Pull {
        /// The image reference.
        image: String,
        /// What the engine said.
        message: String,
    },
    /// The spec cannot be turned into a unit (e.g. a secret holding NUL).
    #[error("{0}")]
    InvalidSpec(String),
    /// An environment variable or secret name breaks the shared name rule.
    #[error(transparent)]
    InvalidName(#[from] sealrun_wire::names::NameError),
    /// The engine is unreachable or refused an operation.
    #[error("container engine error during {operation}: {message}")]
    Engine {
        /// What was being done (`create`, `start`, `wait`, ...).
        operation: &'static str,
        /// What the engine said.
        message: String,
    },
}

/// A container runtime: the mechanism behind one run's isolation.
///
/// Futures are `Send` so that the agent can run many runs on a multi-threaded
/// executor. Operations on a unit that no longer exists succeed where that is
/// harmless (`signal`, `remove`), because the executor calls them on every path.
pub trait Runtime: Send + Sync + 'static {
    /// Makes sure `image` is available locally, pulling it when absent.
    fn ensure_image(&self, image: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Creates (does not start) the unit for `spec`, hardened as the runtime's
    /// documentation says, and returns it with the input it must read on stdin
    /// when it starts (the encoded secrets). Consumes the spec so that opened
    /// secrets are dropped, and zeroized, as soon as the unit exists; the runtime
    /// keeps no copy of them: the caller holds the only one, in [`Created::stdin`].
    fn create(
        &self,
        spec: ContainerSpec,
    ) -> impl Future<Output = Result<Created, RuntimeError>> + Send;

    /// Attaches to the unit's stdout and stderr and then starts it, so that no byte
    /// of output can be missed, and writes `stdin` (what [`Runtime::create`]
    /// returned for this unit) to its standard input; then closes it, or,
    /// when the run's input follows, hands it back as [`Started::input`].
    fn start(
        &self,
        id: &ContainerId,
        stdin: StdinBundle,
    ) -> impl Future<Output = Result<Started, RuntimeError>> + Send;

    /// Waits until the unit has exited and says how.
    fn wait(
        &self,
        id: &ContainerId,
    ) -> impl Future<Output = Result<ExitState, RuntimeError>> + Send;

    /// Sends a signal to the unit's main process; succeeds if it already exited.
    fn signal(
        &self,
        id: &ContainerId,
        signal: StopSignal,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Removes the unit and its anonymous volumes, killing it if it still runs;
    /// succeeds if it is already gone.
    fn remove(&self, id: &ContainerId) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Lists the units created by `agent_id` (running or not).
    fn list(
        &self,
        agent_id: &str,
    ) -> impl Future<Output = Result<Vec<ContainerId>, RuntimeError>> + Send;

    /// Lists the units of any agent on this engine whose deadline passed
    /// before `now_unix_secs` (running or not).
    fn list_expired(
        &self,
        now_unix_secs: u64,
    ) -> impl Future<Output = Result<Vec<ContainerId>, RuntimeError>> + Send;

    /// Removes every unit, of any agent on this engine, whose deadline has
    /// passed: what a dead agent (killed, or replaced under a new identity)
    /// left behind. Returns how many were removed.
    fn remove_expired(&self) -> impl Future<Output = Result<usize, RuntimeError>> + Send {
        async move {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let ids = self.list_expired(now).await?;
            for id in &ids {
                self.remove(id).await?;
            }
            Ok(ids.len())
        }
    }

    /// Removes every unit created by `agent_id`: what an earlier process of this
    /// agent left behind when it crashed. Returns how many were removed.
    fn remove_orphans(
        &self,
        agent_id: &str,
    ) -> impl Future<Output = Result<usize, RuntimeError>> + Send {
        async move {
            let ids = self.list(agent_id).await?;
            for id in &ids {
                self.remove(id).await?;
            }
            Ok(ids.len())
        }
    }
}
