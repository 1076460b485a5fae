//! The error body every non-2xx response carries.

use serde::{Deserialize, Serialize};

/// `{"error": "..."}`: the body of every 4xx and 5xx answer.
///
/// The message is meant for a human and never holds secret material.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// One-line human-readable explanation.
    pub error: String,
}
