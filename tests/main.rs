//! Sealrun's end-to-end tests: the CLI, server and agent as real processes.
//!
//! One test binary for the crate (ARCHITECTURE.md, Testing): each module is
//! one file of specifications, and
//! `cargo nextest run -p <crate> -E 'test(/^<module>::/)'` runs one. A test
//! binary links the whole dependency graph; one per file made ninety links
//! and filled a CI machine's disk.

mod agent_rekey;
mod agent_resilience;
mod agent_runs;
mod agent_secrets;
mod approvals;
mod architecture;
mod cli;
mod cli_conventions;
mod cli_output;
mod colour;
mod console_browser;
mod dev_shim;
mod dir_lock;
mod doc_examples;
mod examples;
mod follow;
mod migrate_store;
mod outage;
mod people;
mod postgres_tls;
mod profiles;
mod queue_honesty;
mod redaction_e2e;
mod replica_faults;
mod replica_setup;
mod run_input;
mod run_retry;
mod runbooks;
mod runs_logs_json;
mod said_once;
mod slack_e2e;
mod slow_clients;
mod target_apply;
mod target_policy;
mod terminal_safety;
mod tls_trust;
mod warm_pool;
