//! The vault's tests: sealing and opening, key files, interoperability with PyNaCl.
//!
//! One test binary for the crate (ARCHITECTURE.md, Testing): each module is
//! one file of specifications, and
//! `cargo nextest run -p <crate> -E 'test(/^<module>::/)'` runs one. A test
//! binary links the whole dependency graph; one per file made ninety links
//! and filled a CI machine's disk.

mod interop;
mod key_file;
mod seal_open;
