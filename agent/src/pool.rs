//! A warm pool: per target, a few units prepared ahead of time, so that a
//! run skips the container engine's create and start.
//!
//! A pool member is a unit like any other ([`Runtime::prepare`]): made from
//! the target's [`Shape`] (image, hardening, limits, network, user), started,
//! its shim waiting for a bundle. It has never run anything, and nothing
//! about a run is in it: the run arrives whole in the bundle
//! ([`crate::runtime::RunSpec::bundle`]). A run takes a member at most once
//! ([`Pool::take`] removes it from the pool), and the executor removes it
//! after the run as it removes every unit: a member is never reused.
//!
//! What the pool does:
//!
//! - **Shape.** A target's pool follows the shape of its latest run that uses
//!   the target's own image (the first of the assignment's allowed images).
//!   The agent learns it from a run it was about to execute (checked by the
//!   gate and the image rules first), so the pool holds nothing that no run
//!   has asked for. It remembers it in its state directory
//!   ([`StateDir::store_pool_shapes`]), so a restarted agent warms its pools
//!   at once. A run of another shape (another image, a re-tagged image,
//!   changed limits) gets a cold unit; members of an older shape are retired.
//! - **Refill.** [`Pool::keep_warm`] prepares members one at a time until each
//!   target has its [`PoolConfig::size`], after each run that took one has
//!   ended ([`Refill`]): preparing a container while a run executes slows the
//!   run (measured: the command's stage took 46 ms instead of 31 with
//!   preparing beside it), and a pool of two serves back-to-back runs.
//! - **Age.** A member older than [`PoolConfig::max_age`] is never handed out;
//!   it is removed and replaced. Its shim also gives up by itself a little
//!   later ([`IDLE_MARGIN`]), so a member whose agent died ends on its own.
//! - **Crashes.** Members carry the agent's label like every unit, so the
//!   sweep of an agent's orphans on restart removes them
//!   ([`Runtime::remove_orphans`]); and they carry a deadline
//!   ([`RUN_HORIZON`] past their idle time) after which any agent removes them:
//!   the engine completes a create whose agent was killed while sending it,
//!   perhaps after the restarted agent's sweep, and that member (created,
//!   never started) goes at its deadline.
//! - **Shutdown.** When the agent stops, `keep_warm` removes every member.
//!
//! Size 0 (the default) is no pool: every run prepares its own unit.

use crate::runtime::{ContainerId, Runtime, Shape, UnitSpec};
use crate::state::StateDir;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How a target's pool is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    /// Members kept ready; 0 is no pool.
    pub size: usize,
    /// Age at which a member that was never taken is replaced.
    pub max_age: Duration,
}

impl PoolConfig {
    /// What a member is replaced after unless configured: five minutes.
    pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);
}

impl Default for PoolConfig {
    fn default() -> PoolConfig {
        PoolConfig {
            size: 0,
            max_age: PoolConfig::DEFAULT_MAX_AGE,
        }
    }
}

/// How much longer than its maximum age a member's shim waits for a bundle
/// before it ends by itself: long enough that a live agent always replaces
/// the member first.
pub const IDLE_MARGIN: Duration = Duration::from_secs(60);

/// The longest run (timeout, stop grace and margin) a member may serve; a
/// longer one gets a cold unit. It sets the member's deadline label, after
/// which any agent on the engine may remove it: a run taken from the pool
/// must be over by then. Longer than the longest timeout a target may
/// declare (7 days).
pub const RUN_HORIZON: Duration = Duration::from_secs(8 * 24 * 3600);

/// Wait before preparing again for a target after the engine refused one of
/// its members (a shape the engine cannot make, an engine restarting),
/// doubled up to [`MAX_BACKOFF`] while it keeps refusing. Per target: one
/// target's failures never hold up another's pool.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between attempts to prepare a member for a target.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Failures in a row after which a target's pool forgets its shape (and the
/// next run of the target shows it again): a shape the engine cannot make
/// any more, such as that of an image since removed, is not retried forever.
const MAX_FAILURES: u32 = 5;
/// How long a stopping agent spends removing its members before it leaves
/// the rest to its next start ([`Runtime::remove_orphans`]).
const TEARDOWN_LIMIT: Duration = Duration::from_secs(60);

/// The warm pools of one agent: see the module documentation.
#[derive(Debug)]
pub struct Pool {
    agent_id: String,
    configs: HashMap<String, PoolConfig>,
    state: Mutex<State>,
    /// Wakes [`Pool::keep_warm`] after a take or a change of shape.
    wake: Notify,
}

#[derive(Debug, Default)]
struct State {
    targets: HashMap<String, TargetPool>,
    /// A shape changed since the shapes were last remembered.
    shapes_changed: bool,
    /// Members taken out of service (too old, or of an older shape), for
    /// `keep_warm` to remove.
    retired: Vec<ContainerId>,
}

#[derive(Debug, Default)]
struct TargetPool {
    /// What members are made from; `None` until a run has shown it.
    shape: Option<Shape>,
    /// Ready members, oldest first.
    ready: VecDeque<Member>,
    /// Counts changes of shape: a member prepared for an older one is
    /// retired as soon as it is ready.
    generation: u64,
    /// Failures in a row to prepare a member, and when to try again.
    failures: u32,
    retry_at: Option<Instant>,
}

#[derive(Debug)]
struct Member {
    id: ContainerId,
    born: Instant,
}

/// Refills the pool it came from when dropped ([`Pool::take`]).
#[derive(Debug)]
#[must_use = "the pool refills when this is dropped: hold it until the run has ended"]
pub struct Refill(Arc<Pool>);

impl Drop for Refill {
    fn drop(&mut self) {
        self.0.wake.notify_one();
    }
}

/// One member to prepare.
struct Wanted {
    target: String,
    shape: Shape,
    generation: u64,
    config: PoolConfig,
}

impl Pool {
    /// The pools of `agent_id` for the targets of `configs` whose size is
    /// not 0; `None` when there are none.
    pub fn new(agent_id: &str, configs: HashMap<String, PoolConfig>) -> Option<Arc<Pool>> {
        let configs: HashMap<String, PoolConfig> =
            configs.into_iter().filter(|(_, c)| c.size > 0).collect();
        if configs.is_empty() {
            return None;
        }
        Some(Arc::new(Pool {
            agent_id: agent_id.to_owned(),
            configs,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
        }))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while the lock was held leaves plain data (ids and times)
        // that is still consistent: keep going with it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A ready member of `target`'s pool made from `shape`, for a run whose
    /// unit must be gone within `run_deadline`; `None` when the target has no
    /// pool, the run is longer than [`RUN_HORIZON`], the pool follows another
    /// shape (it follows this one from now on), or no member is ready. The
    /// member leaves the pool: the caller must remove it after its run.
    ///
    /// The pool is refilled when the returned [`Refill`] is dropped: the
    /// caller holds it until its run has ended, so that preparing the next
    /// member does not compete with the run for the container engine.
    pub fn take(
        self: &Arc<Self>,
        target: &str,
        shape: &Shape,
        run_deadline: Duration,
    ) -> (Option<ContainerId>, Option<Refill>) {
        let Some(config) = self.configs.get(target) else {
            return (None, None);
        };
        let taken = {
            let mut state = self.state();
            let State {
                targets,
                retired,
                shapes_changed,
            } = &mut *state;
            let pool = targets.entry(target.to_owned()).or_default();
            if pool.shape.as_ref() != Some(shape) {
                retired.extend(pool.ready.drain(..).map(|m| m.id));
                pool.shape = Some(shape.clone());
                pool.generation += 1;
                *shapes_changed = true;
                None
            } else if run_deadline > RUN_HORIZON {
                None
            } else {
                let mut taken = None;
                while let Some(member) = pool.ready.pop_front() {
                    if member.born.elapsed() < config.max_age {
                        taken = Some(member.id);
                        break;
                    }
                    retired.push(member.id);
                }
                taken
            }
        };
        (taken, Some(Refill(Arc::clone(self))))
    }

    /// Starts `target`'s pool with `shape` (remembered from an earlier
    /// process, [`StateDir::load_pool_shapes`]) before any run has shown it;
    /// a target without a pool is ignored.
    pub fn remember(&self, target: &str, shape: Shape) {
        if !self.configs.contains_key(target) {
            return;
        }
        let mut state = self.state();
        let pool = state.targets.entry(target.to_owned()).or_default();
        if pool.shape.is_none() {
            pool.shape = Some(shape);
        }
        drop(state);
        self.wake.notify_one();
    }

    /// How many members of `target` are ready now.
    pub fn ready(&self, target: &str) -> usize {
        self.state()
            .targets
            .get(target)
            .map_or(0, |pool| pool.ready.len())
    }

    /// Keeps every pool at its size until `stopping`, then removes every
    /// member. Runs as one task per agent. With `state`, each change of a
    /// pool's shape is remembered there, for the next process.
    pub async fn keep_warm<R: Runtime>(
        self: Arc<Self>,
        runtime: Arc<R>,
        state: Option<StateDir>,
        stopping: CancellationToken,
    ) {
        while !stopping.is_cancelled() {
            let (retired, wanted, next_expiry) = self.survey();
            if let (Some(state), Some(shapes)) = (&state, self.changed_shapes()) {
                // Two fsyncs: off the async threads.
                let state = state.clone();
                let stored =
                    tokio::task::spawn_blocking(move || state.store_pool_shapes(&shapes)).await;
                if let Ok(Err(e)) = stored {
                    tracing::warn!(error = %e, "could not remember the pools' shapes; a restarted agent warms them after a run");
                }
            }
            for id in retired {
                remove(&*runtime, &id).await;
            }
            let Some(wanted) = wanted else {
                let wake_at =
                    next_expiry.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
                tokio::select! {
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep_until(wake_at) => {}
                    () = stopping.cancelled() => {}
                }
                continue;
            };
            let idle = wanted.config.max_age.saturating_add(IDLE_MARGIN);
            let unit = UnitSpec {
                shape: wanted.shape,
                agent_id: self.agent_id.clone(),
                run_id: None,
                pool: Some(wanted.target.clone()),
                idle,
                deadline: idle.saturating_add(RUN_HORIZON),
            };
            let prepared = runtime.prepare(unit).await;
            let mut state = self.state();
            let State {
                targets,
                retired,
                shapes_changed,
            } = &mut *state;
            let pool = targets.get_mut(&wanted.target);
            match (prepared, pool) {
                (Ok(id), Some(pool)) if pool.generation == wanted.generation => {
                    tracing::debug!(target = %wanted.target, container = %id, "pool member ready");
                    pool.failures = 0;
                    pool.retry_at = None;
                    pool.ready.push_back(Member {
                        id,
                        born: Instant::now(),
                    });
                }
                // The shape changed while it was being prepared.
                (Ok(id), _) => retired.push(id),
                (Err(e), Some(pool)) if pool.generation == wanted.generation => {
                    pool.failures += 1;
                    if pool.failures >= MAX_FAILURES {
                        tracing::warn!(target = %wanted.target, error = %e, failures = pool.failures, "could not prepare a pool member; the pool forgets the target's shape until a run shows it again");
                        pool.shape = None;
                        pool.generation += 1;
                        pool.failures = 0;
                        pool.retry_at = None;
                        *shapes_changed = true;
                    } else {
                        let wait = FIRST_BACKOFF
                            .saturating_mul(1 << pool.failures.min(6))
                            .min(MAX_BACKOFF);
                        tracing::warn!(target = %wanted.target, error = %e, retry_in = ?wait, "could not prepare a pool member; runs of this target get cold containers meanwhile");
                        pool.retry_at = Some(Instant::now() + wait);
                    }
                }
                (Err(_), _) => {}
            }
        }
        // Stopping: whatever is ready goes, within a bound (the rest is
        // removed at the next start, with the other orphans).
        let members: Vec<ContainerId> = {
            let mut state = self.state();
            let State {
                targets, retired, ..
            } = &mut *state;
            let mut all = std::mem::take(retired);
            for pool in targets.values_mut() {
                all.extend(pool.ready.drain(..).map(|m| m.id));
            }
            all
        };
        let removing =
            futures_util::future::join_all(members.iter().map(|id| remove(&*runtime, id)));
        if tokio::time::timeout(TEARDOWN_LIMIT, removing)
            .await
            .is_err()
        {
            tracing::error!(
                members = members.len(),
                "the engine did not remove the pool's members in time; they will be removed when the agent restarts"
            );
        }
    }

    /// Retires members too old to hand out, and says what to do next: the
    /// members to remove, one member to prepare (if a pool is short), and
    /// when the next member comes of age.
    fn survey(&self) -> (Vec<ContainerId>, Option<Wanted>, Option<Instant>) {
        let mut state = self.state();
        let State {
            targets, retired, ..
        } = &mut *state;
        let mut wanted = None;
        let mut next_expiry: Option<Instant> = None;
        for (target, pool) in targets.iter_mut() {
            let Some(config) = self.configs.get(target) else {
                continue;
            };
            while pool
                .ready
                .front()
                .is_some_and(|m| m.born.elapsed() >= config.max_age)
            {
                if let Some(member) = pool.ready.pop_front() {
                    tracing::debug!(%target, container = %member.id, "pool member recycled for age");
                    retired.push(member.id);
                }
            }
            if let Some(oldest) = pool.ready.front() {
                let expiry = oldest
                    .born
                    .checked_add(config.max_age)
                    .unwrap_or(oldest.born + MAX_BACKOFF);
                next_expiry = Some(next_expiry.map_or(expiry, |e| e.min(expiry)));
            }
            let backing_off = pool.retry_at.is_some_and(|at| at > Instant::now());
            if let Some(at) = pool.retry_at.filter(|_| backing_off) {
                next_expiry = Some(next_expiry.map_or(at, |e| e.min(at)));
            }
            if wanted.is_none() && !backing_off && pool.ready.len() < config.size {
                if let Some(shape) = &pool.shape {
                    wanted = Some(Wanted {
                        target: target.clone(),
                        shape: shape.clone(),
                        generation: pool.generation,
                        config: *config,
                    });
                }
            }
        }
        (std::mem::take(retired), wanted, next_expiry)
    }
}

impl Pool {
    /// Every pool's shape, if one changed since the last call.
    fn changed_shapes(&self) -> Option<HashMap<String, Shape>> {
        let mut state = self.state();
        if !std::mem::take(&mut state.shapes_changed) {
            return None;
        }
        Some(
            state
                .targets
                .iter()
                .filter_map(|(target, pool)| Some((target.clone(), pool.shape.clone()?)))
                .collect(),
        )
    }
}

async fn remove<R: Runtime>(runtime: &R, id: &ContainerId) {
    if let Err(e) = runtime.remove(id).await {
        tracing::error!(container = %id, error = %e, "could not remove a pool member; it will be removed when the agent restarts");
    }
}
