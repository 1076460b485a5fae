//! sealrun's agent (work in progress: see issue 5).
#![deny(missing_docs)]
