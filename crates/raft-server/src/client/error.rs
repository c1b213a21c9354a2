//! The client's error type. Every variant names the endpoint it came from, and a
//! write that may have been applied is always reported as [`Error::UnknownOutcome`],
//! never as a plain failure a caller might be tempted to retry.

use std::fmt;
use std::time::Duration;

/// The `code` of an API error body (`{"error":{"code","message"}}`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// 400: bad key, bad JSON.
    Invalid,
    /// 404: no such key, member or route.
    NotFound,
    /// 413: value or body too large.
    TooLarge,
    /// 503: the member knows no leader; try another member after `Retry-After`.
    NoLeader,
    /// 503: the member is stopping.
    ShuttingDown,
    /// 504: the outcome is unknown; the write may still commit.
    Timeout,
    /// 500: a server bug or an I/O failure.
    Internal,
    /// A code this client does not know.
    Other(String),
}

impl ErrorCode {
    /// Parses the API's code string.
    pub fn parse(code: &str) -> Self {
        match code {
            "invalid" => Self::Invalid,
            "not_found" => Self::NotFound,
            "too_large" => Self::TooLarge,
            "no_leader" => Self::NoLeader,
            "shutting_down" => Self::ShuttingDown,
            "timeout" => Self::Timeout,
            "internal" => Self::Internal,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The API's code string.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Invalid => "invalid",
            Self::NotFound => "not_found",
            Self::TooLarge => "too_large",
            Self::NoLeader => "no_leader",
            Self::ShuttingDown => "shutting_down",
            Self::Timeout => "timeout",
            Self::Internal => "internal",
            Self::Other(code) => code,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A boxed source error (hyper's, the OS's).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What can go wrong talking to the API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server answered with an error status and the API's JSON error body.
    #[error("{endpoint}: HTTP {status} {code}: {message}")]
    Api {
        /// The endpoint that answered.
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// The body's `code`.
        code: ErrorCode,
        /// The body's `message`.
        message: String,
        /// The `Retry-After` header, when present (503 `no_leader`).
        retry_after: Option<Duration>,
    },
    /// The server answered with a status or body that does not follow the API.
    #[error("{endpoint}: unexpected HTTP {status} response: {body}")]
    UnexpectedResponse {
        /// The endpoint that answered.
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// The start of the body, lossily decoded.
        body: String,
    },
    /// A success body that is not the JSON the API promises.
    #[error("{endpoint}: malformed response body: {source}")]
    Decode {
        /// The endpoint that answered.
        endpoint: String,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// No connection could be made; nothing was sent.
    #[error("{endpoint}: cannot connect: {}", chain(source.as_ref()))]
    Connect {
        /// The endpoint.
        endpoint: String,
        /// The cause (refused, unreachable, name resolution, connect timeout).
        source: BoxError,
    },
    /// The connection failed after the request may have been sent.
    #[error("{endpoint}: connection failed: {}", chain(source.as_ref()))]
    Transport {
        /// The endpoint.
        endpoint: String,
        /// The cause.
        source: BoxError,
    },
    /// No answer within the request timeout.
    #[error("{endpoint}: no answer within {after:?}")]
    Timeout {
        /// The endpoint.
        endpoint: String,
        /// The timeout that expired.
        after: Duration,
    },
    /// A write whose fate is unknown: the server answered 504 `timeout`, or the
    /// connection failed or timed out after the request was sent. The write may or
    /// may not be applied; it was not retried.
    #[error("outcome unknown, the write may still be applied: {source}")]
    UnknownOutcome {
        /// What happened ([`Error::Api`] with 504, [`Error::Transport`] or
        /// [`Error::Timeout`]).
        source: Box<Error>,
    },
    /// An endpoint that is not `http://host:port` (or `host:port`).
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A key outside 1..=4096 bytes.
    #[error("invalid key: {length} bytes, keys are 1..=4096 bytes")]
    InvalidKey {
        /// The key's length.
        length: usize,
    },
    /// The client was built without endpoints.
    #[error("no endpoints given")]
    NoEndpoints,
}

impl Error {
    /// Whether this is a write that may or may not have been applied.
    pub fn is_unknown_outcome(&self) -> bool {
        matches!(self, Self::UnknownOutcome { .. })
    }

    /// The API error code, when the server answered with an error body (also
    /// inside [`Error::UnknownOutcome`]).
    pub fn code(&self) -> Option<&ErrorCode> {
        match self {
            Self::Api { code, .. } => Some(code),
            Self::UnknownOutcome { source } => source.code(),
            _ => None,
        }
    }

    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } | Self::UnexpectedResponse { status, .. } => Some(*status),
            Self::UnknownOutcome { source } => source.status(),
            _ => None,
        }
    }

    /// The endpoint the error came from, when one was involved.
    pub fn endpoint(&self) -> Option<&str> {
        match self {
            Self::Api { endpoint, .. }
            | Self::UnexpectedResponse { endpoint, .. }
            | Self::Decode { endpoint, .. }
            | Self::Connect { endpoint, .. }
            | Self::Transport { endpoint, .. }
            | Self::Timeout { endpoint, .. } => Some(endpoint),
            Self::UnknownOutcome { source } => source.endpoint(),
            Self::InvalidEndpoint { .. } | Self::InvalidKey { .. } | Self::NoEndpoints => None,
        }
    }
}

/// An error and its sources, outermost first (hyper's own messages are vague,
/// the OS's at the bottom of the chain says what happened).
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = cause.source();
    }
    text
}

/// The client's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
