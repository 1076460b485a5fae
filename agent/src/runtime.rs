//! The seam between the agent and whatever runs a command in isolation.
//!
//! The executor ([`crate::executor`]) owns the policy of a run: when to stop it,
//! how long to wait, what to report. A [`Runtime`] owns only the mechanism: pull an
//! image, prepare an isolated unit (a container) from a [`UnitSpec`] — created,
//! started, its shim waiting —, deliver it the run (a [`RunSpec`] encoded as the
//! shim's bundle) while attached to its output, wait for it, signal it, remove
//! it, and sweep up units a crashed agent left behind.
//! [`crate::docker::DockerRuntime`] is the one implementation today; a
//! Kubernetes pod runtime would implement the same trait.
//!
//! Preparing and delivering are apart so that a unit can be prepared before
//! its run exists (a warm pool, [`crate::pool`]): a run is the bundle alone,
//! and a unit is used for one run only.
//!
//! Every unit a runtime creates must carry the agent id in a way
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
use std::time::Duration;

use sealrun_init::Bundle;
use sealrun_wire::names;
use tokio::io::{AsyncWrite, AsyncWriteExt as _};
use zeroize::Zeroizing;

// Every name the shared rule accepts must fit the shim's bundle, or a run with a
// valid but long secret name would fail only when its bundle is built.
const _: () = assert!(names::MAX_ENV_VAR_LEN <= sealrun_init::MAX_NAME_LEN);
// What the control plane accepts at submit must fit one bundle: the same
// counts and value length as the shim's codec.
const _: () = assert!(names::MAX_ARGS == sealrun_init::MAX_ARGS);
const _: () = assert!(names::MAX_ENV_VARS == sealrun_init::MAX_ENTRIES);
const _: () = assert!(names::MAX_ENV_VALUE_LEN == sealrun_init::MAX_VALUE_LEN);

/// Label naming the run a container executes.
pub const RUN_LABEL: &str = "sealrun.run";
/// Label naming the agent that created a container (found again after a crash).
pub const AGENT_LABEL: &str = "sealrun.agent";
/// Label holding the Unix second after which a container may be removed by
/// any agent on the engine: its run's timeout and stop grace have passed,
/// and its shim has killed the command by then (see [`UnitSpec::deadline`]).
pub const DEADLINE_LABEL: &str = "sealrun.deadline";
/// User a run executes as when its target names none: `nobody:nogroup`.
pub const DEFAULT_USER: &str = "65534:65534";

/// Label naming the target a pool member waits for (its runs are not known
/// yet, so it has no [`RUN_LABEL`]).
pub const POOL_LABEL: &str = "sealrun.pool";

/// What a unit is made from: everything about a container that does not
/// depend on the run it executes. Two runs of the same shape can use units
/// made ahead of time alike ([`crate::pool`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shape {
    /// The image's id (`sha256:...`), as [`Runtime::ensure_image`] found it:
    /// an image re-tagged since makes another shape.
    pub image_id: String,
    /// Container limits.
    pub limits: ResourceLimits,
    /// Docker network; `None` means no network at all.
    pub network: Option<String>,
    /// `uid[:gid]` or user name; `None` means [`DEFAULT_USER`].
    pub user: Option<String>,
}

/// A unit to prepare: made from a [`Shape`], started, its shim waiting for
/// the bundle that says what to run ([`sealrun_init::WAITING_ENTRYPOINT`]).
/// Nothing about a run is in it, and so nothing about a run is in the
/// container's configuration.
#[derive(Clone, Debug)]
pub struct UnitSpec {
    /// What the unit is made from.
    pub shape: Shape,
    /// Agent id (becomes the `sealrun.agent` label).
    pub agent_id: String,
    /// The run it is prepared for (the `sealrun.run` label), or `None` for a
    /// pool member.
    pub run_id: Option<String>,
    /// The target a pool member waits for (the `sealrun.pool` label).
    pub pool: Option<String>,
    /// How long the shim waits for its bundle before it gives up and the
    /// unit ends by itself.
    pub idle: Duration,
    /// How long after it is prepared the unit must be gone, whatever happens
    /// to the agent: the runtime records the instant so that any agent on
    /// the engine removes it afterwards ([`Runtime::remove_expired`]). Set
    /// past the idle wait plus the longest run the unit may serve, so an
    /// agent that is alive always stops its run first.
    pub deadline: Duration,
}

/// What one run executes: everything that goes to the shim in the bundle
/// ([`RunSpec::bundle`]).
///
/// Holds opened secrets; its `Debug` prints their names only, and dropping it
/// zeroizes their values (see [`Secret`]).
pub struct RunSpec {
    /// The exact argv to execute; never wrapped in a shell or an image entrypoint.
    pub argv: Vec<String>,
    /// Plain environment variables.
    pub env: Vec<(String, String)>,
    /// Opened secrets, exposed to the command as environment variables.
    pub secrets: Vec<(String, Secret)>,
    /// Whether the command reads the run's input: [`Runtime::deliver`] then
    /// leaves its stdin open after the bundle and returns a [`CommandInput`].
    pub stdin: bool,
    /// How long after the command starts the shim kills it (SIGKILL), even
    /// with no agent left to stop it. The executor sets it past the run's
    /// timeout and stop grace, so an agent that is alive always stops the
    /// run first.
    pub deadline: Duration,
    /// The run's nonce, which the shim gets in the bundle and the executor
    /// looks for in the shim's signed error line: how a shim failure is told
    /// from a command printing the same text.
    pub nonce: sealrun_init::ShimNonce,
}

impl RunSpec {
    /// The run as the shim reads it: argv, plain variables and secrets (a
    /// plain variable and a secret are both variables to the command), the
    /// input flag, the deadline and the nonce. Consumes the spec, so that the
    /// opened secrets are dropped, and zeroized, once encoded: the returned
    /// bundle (zeroized on drop) is their only copy. Errors name what is
    /// wrong and never quote a value.
    pub fn bundle(self) -> Result<StdinBundle, RuntimeError> {
        let invalid = |m: String| RuntimeError::InvalidSpec(m);
        let mut bundle = Bundle::new();
        if self.argv.is_empty() {
            return Err(invalid("the command is empty".into()));
        }
        for arg in &self.argv {
            bundle.push_arg(arg.as_bytes()).map_err(|e| {
                invalid(format!(
                    "the command cannot be passed to the container: {e}"
                ))
            })?;
        }
        // The same rule the control plane applied when the run was submitted
        // (`sealrun_wire::names::env_var`), checked again here because this is
        // where a name becomes part of a process's environment.
        for (name, value) in &self.env {
            names::env_var(name)?;
            bundle.push_env(name, value.as_bytes()).map_err(|e| {
                invalid(format!(
                    "environment variable {name} cannot be passed to the command: {e}"
                ))
            })?;
        }
        // Values may be any bytes but NUL (an environment string ends at NUL);
        // the codec's errors never quote a value, and we add the name.
        for (name, secret) in &self.secrets {
            names::env_var(name)?;
            bundle.push_env(name, secret.expose()).map_err(|e| {
                invalid(format!(
                    "secret {name} cannot be passed to the command: {e}"
                ))
            })?;
        }
        if self.stdin {
            bundle.attach_stdin();
        }
        bundle.set_deadline(self.deadline.as_secs().max(1));
        // The shim signs its error line with it: see `sealrun_init::ShimNonce`.
        bundle.set_nonce(self.nonce.clone());
        let encoded = bundle.encode();
        Ok(if self.stdin {
            StdinBundle::followed_by_input(encoded)
        } else {
            StdinBundle::new(encoded)
        })
    }
}

impl fmt::Debug for RunSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret_names: Vec<&str> = self.secrets.iter().map(|(n, _)| n.as_str()).collect();
        let env_names: Vec<&str> = self.env.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("RunSpec")
            .field("argv_len", &self.argv.len())
            .field("env", &env_names)
            .field("secrets", &secret_names)
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

/// What a prepared unit reads on its stdin: the encoded
/// [`sealrun_init::Bundle`] of its run ([`RunSpec::bundle`]).
///
/// It holds secrets, so its bytes are zeroized when it is dropped and its
/// `Debug` shows only its length. A runtime never stores one: the executor
/// holds it until [`Runtime::deliver`] writes it, and dropping it (a run
/// stopped before it started) wipes it.
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
    /// Makes sure `image` is available locally, pulling it when absent, and
    /// returns its id (`sha256:...`): what [`Shape::image_id`] names.
    fn ensure_image(
        &self,
        image: &str,
    ) -> impl Future<Output = Result<String, RuntimeError>> + Send;

    /// Creates the unit for `spec`, hardened as the runtime's documentation
    /// says, and starts it: its shim waits for the bundle
    /// ([`Runtime::deliver`]), at most [`UnitSpec::idle`]. A unit that was
    /// created but could not be started is removed before the error returns.
    fn prepare(
        &self,
        spec: UnitSpec,
    ) -> impl Future<Output = Result<ContainerId, RuntimeError>> + Send;

    /// Attaches to the prepared unit's stdin, stdout and stderr and writes
    /// `bundle` (a [`RunSpec::bundle`]) to its stdin; then closes it, or,
    /// when the run's input follows, hands it back as [`Started::input`].
    /// The shim runs nothing before its bundle has arrived, so no byte of
    /// the command's output can precede the attachment.
    fn deliver(
        &self,
        id: &ContainerId,
        bundle: StdinBundle,
    ) -> impl Future<Output = Result<Started, RuntimeError>> + Send;

    /// Whether the prepared unit is still running, its shim waiting: a warm
    /// unit can have been stopped since (an engine restart, `docker kill`,
    /// its idle limit). `false` on any doubt, so the caller prepares another.
    fn is_running(&self, id: &ContainerId) -> impl Future<Output = bool> + Send;

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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn run() -> RunSpec {
        RunSpec {
            argv: vec!["sh".into(), "-c".into(), "echo \"$PLAIN\"".into()],
            env: vec![("PLAIN".into(), "1".into())],
            secrets: vec![("TOKEN".into(), Secret::new(b"s3cr3t-value".to_vec()))],
            stdin: false,
            deadline: Duration::from_secs(60),
            nonce: sealrun_init::ShimNonce::from_bytes([9; sealrun_init::NONCE_LEN]),
        }
    }

    fn decoded(bundle: &StdinBundle) -> sealrun_init::Bundle {
        sealrun_init::read_bundle(bundle.as_bytes()).unwrap()
    }

    #[test]
    fn the_bundle_carries_the_whole_run_argv_variables_secrets_deadline_and_nonce() {
        let bundle = run().bundle().unwrap();
        let received = decoded(&bundle);
        assert_eq!(
            received.argv(),
            [&b"sh"[..], b"-c", b"echo \"$PLAIN\""].map(<[u8]>::to_vec)
        );
        assert_eq!(
            received.env().collect::<Vec<_>>(),
            [("PLAIN", &b"1"[..]), ("TOKEN", &b"s3cr3t-value"[..])]
        );
        assert_eq!(received.deadline(), Some(60));
        assert_eq!(received.nonce(), Some(&run().nonce));
        assert!(!received.stdin_follows() && !bundle.input_follows());
    }

    #[test]
    fn a_run_with_input_says_so_in_the_bundle_and_keeps_stdin_open() {
        let mut r = run();
        r.stdin = true;
        let bundle = r.bundle().unwrap();
        assert!(bundle.input_follows());
        assert!(decoded(&bundle).stdin_follows());
    }

    #[test]
    fn a_secret_that_is_not_text_is_passed_byte_for_byte() {
        let mut r = run();
        let value = vec![0xff, 0xfe, b'x', b'y', b'z', b'w'];
        r.secrets = vec![("BIN".into(), Secret::new(value.clone()))];
        let received = decoded(&r.bundle().unwrap());
        assert_eq!(received.env().nth(1), Some(("BIN", &value[..])));
    }

    #[test]
    fn a_secret_holding_nul_is_refused_by_name_without_quoting_it() {
        let mut r = run();
        r.secrets = vec![("NUL_ONE".into(), Secret::new(b"abc\0defghij".to_vec()))];
        let err = r.bundle().unwrap_err().to_string();
        assert!(err.contains("NUL_ONE"), "{err}");
        assert!(!err.contains("defghij"), "{err}");
    }

    #[test]
    fn an_empty_command_or_a_nul_in_an_argument_is_refused() {
        let mut r = run();
        r.argv.clear();
        assert!(matches!(r.bundle(), Err(RuntimeError::InvalidSpec(_))));
        let mut r = run();
        r.argv.push("a\0b".into());
        assert!(matches!(r.bundle(), Err(RuntimeError::InvalidSpec(_))));
    }

    #[test]
    fn an_invalid_name_is_refused_by_the_shared_env_var_rule() {
        for bad in ["A=B", "1A", "A-B"] {
            let mut r = run();
            r.env = vec![(bad.into(), "x".into())];
            assert!(
                matches!(r.bundle(), Err(RuntimeError::InvalidName(_))),
                "{bad}"
            );
            let mut r = run();
            r.secrets = vec![(bad.into(), Secret::new(b"s3cr3t-value".to_vec()))];
            assert!(
                matches!(r.bundle(), Err(RuntimeError::InvalidName(_))),
                "{bad}"
            );
        }
        let mut r = run();
        r.env = vec![("X".repeat(names::MAX_ENV_VAR_LEN + 1), "1".into())];
        assert!(matches!(r.bundle(), Err(RuntimeError::InvalidName(_))));
    }

    #[test]
    fn every_name_the_shared_rule_accepts_fits_the_shims_bundle() {
        let mut bundle = Bundle::new();
        let longest = "X".repeat(names::MAX_ENV_VAR_LEN);
        assert!(names::env_var(&longest).is_ok());
        assert!(bundle.push_env(&longest, b"value").is_ok());
    }

    #[test]
    fn the_run_specs_debug_shows_secret_names_but_never_values_or_argv() {
        let shown = format!("{:?}", run());
        assert!(shown.contains("TOKEN"));
        assert!(
            !shown.contains("s3cr3t-value") && !shown.contains("echo"),
            "{shown}"
        );
    }
}
