//! The control plane's HTTP tests: real servers, SQLite or PostgreSQL (SEALRUN_TEST_STORE).
//!
//! One test binary for the crate (ARCHITECTURE.md, Testing): each module is
//! one file of specifications, and
//! `cargo nextest run -p <crate> -E 'test(/^<module>::/)'` runs one. A test
//! binary links the whole dependency graph; one per file made ninety links
//! and filled a CI machine's disk.

mod agents;
mod approvals;
mod audit;
mod connections;
mod console;
mod hand_off;
mod http;
mod isolation;
mod leases;
mod lifecycle;
mod logs;
mod ops;
mod people;
mod queue;
mod replicas;
mod retries;
mod roles;
mod runbooks;
mod runs;
mod secrets;
mod slack;
mod slack_approvals;
mod stdin;
mod targets_batch;
mod tokens;
