//! The redactor's tests: the specification, the guarantee, the masking corpus, properties.
//!
//! One test binary for the crate (ARCHITECTURE.md, Testing): each module is
//! one file of specifications, and
//! `cargo nextest run -p <crate> -E 'test(/^<module>::/)'` runs one. A test
//! binary links the whole dependency graph; one per file made ninety links
//! and filled a CI machine's disk.

mod fuzz_stable;
mod guarantee;
mod masking_corpus;
mod properties;
mod spec;
