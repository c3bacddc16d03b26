//! The request log: what reached the simulator, in arrival order, bounded.

use std::collections::VecDeque;

use claude_tower_core::Face;
use serde::Serialize;
use serde::ser::Serializer;

/// The default number of records kept; older ones are dropped (and counted).
pub const DEFAULT_LOG_CAPACITY: usize = 100_000;

/// Which credential header a request carried (the one the simulator checked).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[non_exhaustive]
pub enum Credential {
    /// `x-api-key`.
    #[serde(rename = "x-api-key")]
    XApiKey,
    /// `api-key`.
    #[serde(rename = "api-key")]
    ApiKey,
    /// `Authorization: Bearer ...`.
    #[serde(rename = "bearer")]
    Bearer,
    /// No credential header.
    #[serde(rename = "none")]
    None,
}

impl Credential {
    /// `"x-api-key"`, `"api-key"`, `"bearer"` or `"none"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Credential::XApiKey => "x-api-key",
            Credential::ApiKey => "api-key",
            Credential::Bearer => "bearer",
            Credential::None => "none",
        }
    }
}

/// One request as the simulator saw it.
///
/// Serialized (by `GET /_sim/requests`) with the same field names; `route` as
/// `"anthropic"` / `"foundry"`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct RecordedRequest {
    /// Which face answered.
    #[serde(serialize_with = "ser_face")]
    pub route: Face,
    /// The request path, without the query string.
    pub path: String,
    /// The query string, if any (`beta=true`).
    pub query: Option<String>,
    /// The body's `model`, when the body parsed.
    pub model: Option<String>,
    /// The body's `stream` flag (false when absent or unparsed).
    pub stream: bool,
    /// The credential header the simulator checked.
    pub credential: Credential,
    /// Every credential header present, in the order `x-api-key`, `api-key`, `bearer`.
    pub credentials_present: Vec<Credential>,
    /// Whether the credential was accepted.
    pub accepted: bool,
    /// The `anthropic-version` header.
    pub anthropic_version: Option<String>,
    /// The `anthropic-beta` header.
    pub anthropic_beta: Option<String>,
    /// The step that answered: a fault step's text (`"429:2s"`, `"ok"`; for
    /// `random(..)` the drawn step), or `"-"` when the request was rejected
    /// before a step was taken (bad credential, missing `anthropic-version`,
    /// body too large, unknown path).
    pub step: String,
    /// The status answered (0 for `reset`: no response was sent).
    pub status: u16,
    /// The request body's length in bytes.
    pub body_len: usize,
    /// The request id the simulator handed out (`request-id` on the Anthropic
    /// face, `apim-request-id` on Foundry).
    pub request_id: String,
}

fn ser_face<S: Serializer>(face: &Face, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(face.as_str())
}

/// A bounded, in-order log.
#[derive(Debug)]
pub(crate) struct RequestLog {
    records: VecDeque<RecordedRequest>,
    capacity: usize,
    dropped: u64,
}

impl RequestLog {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            records: VecDeque::new(),
            capacity: capacity.max(1),
            dropped: 0,
        }
    }

    pub(crate) fn push(&mut self, record: RecordedRequest) {
        if self.records.len() >= self.capacity {
            self.records.pop_front();
            self.dropped += 1;
        }
        self.records.push_back(record);
    }

    pub(crate) fn snapshot(&self) -> Vec<RecordedRequest> {
        self.records.iter().cloned().collect()
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }

    pub(crate) fn clear(&mut self) {
        self.records.clear();
        self.dropped = 0;
    }
}
