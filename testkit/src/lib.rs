//! The one test kit of the sealrun workspace: every test suite (the root
//! package's end-to-end tests, `api/tests`, `agent/tests`, `init/tests`) and
//! the benchmarks that need a harness use it, so that each rule a test relies
//! on is written once.
//!
//! - **Docker rule**: [`require_docker`] skips a Docker-backed test loudly
//!   (one `SKIPPED` line naming the test and why) or, under
//!   `SEALRUN_REQUIRE_DOCKER` or `CI=true`, fails it; it also builds the
//!   base image [`IMAGE`] with the code `sealrun dev` uses
//!   ([`sealrun_agent::image`]).
//! - **Shim**: [`init_binary`], the static `sealrun-init` built by
//!   `scripts/build-init.sh`.
//! - **API client**: [`Client`] (HTTPS pinned to the test CA, bearer token,
//!   typed `sealrun_wire` calls) and its raw [`Answer`]s.
//! - **World**: [`World`], a control plane with an agent serving one target
//!   and the org's admin, in this process ([`World::in_process`]) or as
//!   `sealrun` subprocesses ([`World::spawned`]); the parts stand alone too
//!   ([`InProcessServer`], [`ServerProcess`], [`AgentProcess`],
//!   [`FakeAgent`], [`DevProcess`], [`Cli`]).
//! - **Agent runtime** ([`runtime`]) and **shim containers** ([`container`])
//!   for the agent's and the shim's own tests.
//! - **Stalling clients** ([`stall`]): connections held open without
//!   finishing a request (silent, mid-handshake, mid-headers, mid-body).
//! - **Browser** ([`browser`]): headless Chromium through WebDriver for the
//!   web console's tests ([`Browser`]: pages, elements, scripts, cookies,
//!   screenshots, a WebAuthn virtual authenticator), with its own rule,
//!   [`require_browser`]: skip loudly without Chromium or, under
//!   `SEALRUN_REQUIRE_BROWSER` or `CI=true`, fail.
//!
//! Everything cleans up on drop: processes are killed and reaped (a browser's
//! Chromium included), containers removed, temporary directories deleted, also when a test fails (and then
//! the logs of the processes are printed).
//!
//! A control-plane test, no Docker needed:
//!
//! ```
//! use sealrun_testkit::World;
//! use sealrun_wire::run::RunStatus;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let world = World::in_process().await; // org `acme`, target `db`, a fake agent
//! let id = world.submit(&["echo", "hi"]).await;
//! let assignment = world.agent.next_run().await;
//! assert_eq!(assignment.run_id, id);
//! world.agent.finish(&id, RunStatus::Succeeded, Some(0), 0).await.ok();
//! assert_eq!(world.admin.run(&id).await.status, RunStatus::Succeeded);
//! # });
//! ```
//!
//! An end-to-end test through real processes and Docker:
//!
//! ```no_run
//! use sealrun_testkit::{World, require_docker};
//!
//! #[tokio::test(flavor = "multi_thread")]
//! async fn hello() {
//!     if !require_docker() {
//!         return;
//!     }
//!     let world = World::spawned().await; // sealrun server + agent, target `e2e`
//!     let id = world.submit(&["echo", "hi"]).await;
//!     world.admin.wait_terminal(&id).await;
//!     assert_eq!(world.admin.stdout(&id).await, "hi\n");
//!     world.assert_no_containers();
//! }
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod agent;
pub mod browser;
mod client;
pub mod console;
pub mod container;
mod dev;
mod docker;
mod postgres;
mod process;
pub mod pty;
mod replicas;
pub mod runtime;
mod server;
mod shim;
pub mod slack;
pub mod stall;
mod wait;
mod world;

pub use agent::{AgentProcess, FakeAgent, same_key};
pub use browser::{Browser, require_browser};
pub use client::{Answer, Client, Metrics, https_client, run_request, to_value};
pub use dev::DevProcess;
pub use docker::{
    IMAGE, containers_labeled, containers_of, docker_cli, remove_container, require_docker,
    skip_or_fail, skipping_forbidden, wait_no_containers,
};
pub use postgres::{
    PrivateCluster, TEST_DATABASE_URL, TEST_STORE, TestDatabase, postgres_under_test,
    require_postgres, unrelated_ca,
};
pub use process::{
    Cli, announced_run, code, free_port, output_within, raise_open_file_limit, sealrun_bin, signal,
    sigterm, text, varied_bytes,
};
pub use replicas::{Balancer, Replicas};
pub use server::{ControlPlane, InProcessServer, ServerProcess, quick_settings};
pub use shim::{cargo, init_binary, workspace_root};
pub use wait::{WAIT, wait_for, wait_for_within, wait_until};
pub use world::{
    ADMIN_KEY_FILE, Checked, InProcessWorld, SpawnedWorld, World, WorldOptions, certify_user,
    signing_cli, spawned_target, trust_target, what_an_admin_checks,
};
