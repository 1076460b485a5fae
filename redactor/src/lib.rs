//! Streaming secret masking for sealrun (work in progress: see issue 2).
#![forbid(unsafe_code)]
#![deny(missing_docs)]
