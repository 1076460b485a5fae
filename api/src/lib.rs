//! sealrun's control plane (work in progress: see issue 4).
#![deny(missing_docs)]
