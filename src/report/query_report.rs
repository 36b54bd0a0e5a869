//! The outcome of `peermesh query`: each node's response, who was reached, who was not.

use crate::report::payload::PayloadFields;
use serde::{Deserialize, Serialize};

/// One node's response to a query.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueryResponse {
    /// Which node answered.
    pub node: String,
    /// What it answered: `data` (UTF-8) or `data_b64`.
    #[serde(flatten)]
    pub payload: PayloadFields,
    /// Whether it is an error response (the node's handler failed, say). Absent when
    /// false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub error: bool,
    /// The RTT median to that node when the response came, in microseconds; null when
    /// there was none (the peer not alive).
    #[serde(default)]
    pub rtt_us: Option<f64>,
}

/// What a query gathered by its timeout (the `query` object of the control protocol and
/// what `peermesh query --json` prints).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct QueryReport {
    /// The responses, in the order they came.
    pub responses: Vec<QueryResponse>,
    /// The nodes the query reached (they acknowledged it), in the order they did.
    pub acks: Vec<String>,
    /// The nodes asked that gave no response by the timeout.
    pub missing: Vec<String>,
}

impl QueryReport {
    /// The JSON form (one object, one line).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }
}
