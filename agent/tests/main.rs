//! The agent's tests: execution, hardening, images and the shim against real Docker.
//!
//! One test binary for the crate (ARCHITECTURE.md, Testing): each module is
//! one file of specifications, and
//! `cargo nextest run -p <crate> -E 'test(/^<module>::/)'` runs one. A test
//! binary links the whole dependency graph; one per file made ninety links
//! and filled a CI machine's disk.

mod execution;
mod hardening;
mod images;
mod init_shim;
mod pool;
mod shim_trust;
