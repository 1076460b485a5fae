//! The control-plane domain's tests: storage, audit chain, signing, trust.
//!
//! One test binary for the crate (ARCHITECTURE.md, Testing): each module is
//! one file of specifications, and
//! `cargo nextest run -p <crate> -E 'test(/^<module>::/)'` runs one. A test
//! binary links the whole dependency graph; one per file made ninety links
//! and filled a CI machine's disk.

mod common;
mod signing;

mod data_dir_lock;
mod permission_docs;
mod signed_runbooks;
mod signed_runs;
mod tampering;
mod trust;
mod witness;
