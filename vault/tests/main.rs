//! The vault's tests: sealing and opening, key files, interoperability with PyNaCl.
//!
//! One test binary for the crate (ARCHITECTURE.md, Testing): each module is
//! one file of specifications, `cargo nextest run -p <crate> <module>::` runs
//! one. A test binary links the whole dependency graph; one per file made
//! ninety links and filled a CI machine's disk.

mod interop;
mod key_file;
mod seal_open;
