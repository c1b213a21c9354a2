//! An HTTP client for the API, shared by `raftctl` and `raft-bench`.
//!
//! Built on hyper-util's pooled HTTP client rather than reqwest: axum already
//! brings hyper into the build, so the client costs almost no extra compile time,
//! and the pool gives `raft-bench` exactly one keep-alive connection per client
//! task with no redirect, cookie or decompression layers on the hot path. HTTP/1.1
//! by default; with [`ClientConfig::http2`] all requests to an endpoint share one
//! HTTP/2 connection (the server accepts both on the same port). Plain HTTP only;
//! TLS on the client port is not supported yet.
//!
//! What it must keep true: a write that may have been applied is never sent
//! twice. Failover to the next endpoint happens only when nothing can have been
//! applied (connection refused, 503 `no_leader`/`shutting_down`, a 307/308
//! redirect); a 504 `timeout`, or a connection failure or timeout after the request
//! was sent, is returned as [`Error::UnknownOutcome`]. Reads are retried on the
//! next endpoint in those cases too, since repeating them is harmless.

mod error;

pub mod cli;
#[cfg(any(test, feature = "mock"))]
pub mod mock;
#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, LOCATION, RETRY_AFTER};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::{
    AddMemberRequest, DeleteResponse, ErrorResponse, MembersResponse, PutResponse, REVISION_HEADER,
    RangeResponse, SnapshotResponse, StatusResponse, TransferRequest, TransferResponse, TxnRequest,
    TxnResponse,
};

pub use error::{BoxError, Error, ErrorCode, Result};

/// The longest key the API accepts, in bytes.
pub const MAX_KEY_BYTES: usize = 4096;

/// How many redirects one attempt follows.
const MAX_REDIRECTS: usize = 3;

/// One member's client URL, `http://host:port`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// `http://host:port`, without a trailing slash.
    base: String,
}

impl Endpoint {
    /// The URL, `http://host:port`.
    pub fn as_str(&self) -> &str {
        &self.base
    }

    fn uri(&self, path_and_query: &str) -> Uri {
        let mut url = String::with_capacity(self.base.len() + path_and_query.len());
        url.push_str(&self.base);
        url.push_str(path_and_query);
        // The base was validated and the path is built from percent-encoded parts.
        Uri::try_from(url).expect("endpoint URL and encoded path form a valid URI")
    }
}

impl FromStr for Endpoint {
    type Err = Error;

    /// Accepts `http://host:port` (a trailing `/` is ignored) or a bare
    /// `host:port`, which is how the API lists members' `client_addr`.
    fn from_str(s: &str) -> Result<Self> {
        let invalid = |reason| Error::InvalidEndpoint {
            endpoint: s.to_owned(),
            reason,
        };
        let trimmed = s.trim().trim_end_matches('/');
        let with_scheme = if trimmed.contains("://") {
            trimmed.to_owned()
        } else {
            format!("http://{trimmed}")
        };
        let uri: Uri = with_scheme.parse().map_err(|_| invalid("not a URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => return Err(invalid("https is not supported by this client")),
            _ => return Err(invalid("the scheme must be http")),
        }
        let authority = uri.authority().ok_or_else(|| invalid("no host"))?;
        if authority.host().is_empty() {
            return Err(invalid("no host"));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(invalid("a path or query is not allowed"));
        }
        Ok(Self {
            base: format!("http://{authority}"),
        })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base)
    }
}

/// Parses a comma-separated endpoint list (`--endpoints`, `RAFTCTL_ENDPOINTS`).
pub fn parse_endpoints(list: &str) -> Result<Vec<Endpoint>> {
    let endpoints = list
        .split(',')
        .filter(|part| !part.trim().is_empty())
        .map(Endpoint::from_str)
        .collect::<Result<Vec<_>>>()?;
    if endpoints.is_empty() {
        return Err(Error::NoEndpoints);
    }
    Ok(endpoints)
}

/// The read path of `GET /v1/kv/{key}`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Consistency {
    /// ReadIndex: reflects every write acknowledged before the read began.
    #[default]
    Linearizable,
    /// The leader's lease: linearizable while clocks drift less than the lease margin.
    Lease,
    /// The answering member's applied state, possibly behind.
    Stale,
}

impl Consistency {
    /// The query-string value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Linearizable => "linearizable",
            Self::Lease => "lease",
            Self::Stale => "stale",
        }
    }
}

impl FromStr for Consistency {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "linearizable" => Ok(Self::Linearizable),
            "lease" => Ok(Self::Lease),
            "stale" => Ok(Self::Stale),
            other => Err(format!(
                "unknown consistency {other:?} (expected linearizable, lease or stale)"
            )),
        }
    }
}

impl fmt::Display for Consistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value read by [`Client::get`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetResponse {
    /// The value's bytes.
    pub value: Bytes,
    /// The revision of the write that produced it (`X-Raft-Revision`).
    pub mod_revision: u64,
}

/// Timeouts and failover limits.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Limit on opening a TCP connection; expiring counts as a connect error.
    pub connect_timeout: Duration,
    /// Limit on one attempt, from sending the request to the end of the body.
    pub request_timeout: Duration,
    /// Cap on a `Retry-After` wait before trying the next endpoint.
    pub max_retry_after: Duration,
    /// How many times each endpoint may be tried for one request.
    pub rounds: usize,
    /// Pause between rounds, after every endpoint failed.
    pub round_backoff: Duration,
    /// Idle keep-alive connections kept per endpoint.
    pub max_idle_per_endpoint: usize,
    /// Speak HTTP/2 (cleartext, prior knowledge) instead of HTTP/1.1: every request
    /// to an endpoint shares one connection, as concurrent streams.
    pub http2: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(1),
            rounds: 2,
            round_backoff: Duration::from_millis(100),
            max_idle_per_endpoint: 8,
            http2: false,
        }
    }
}

/// Whether repeating a request is harmless.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
}

/// One request, rebuilt for every attempt (the body is a cheap `Bytes` clone).
struct Call {
    method: Method,
    path_and_query: String,
    body: Bytes,
    json: bool,
    kind: Kind,
}

/// A successful (2xx) answer.
#[derive(Debug)]
struct Answer {
    endpoint: String,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|source| Error::Decode {
            endpoint: self.endpoint.clone(),
            source,
        })
    }
}

/// An API client over one or more members, with failover (see the module doc).
/// Cheap to share by reference between tasks; connections are pooled.
#[derive(Debug)]
pub struct Client {
    endpoints: Vec<Endpoint>,
    http: HyperClient<HttpConnector, Full<Bytes>>,
    config: ClientConfig,
    /// The endpoint that answered last; requests start there.
    preferred: AtomicUsize,
}

impl Client {
    /// A client over `endpoints` with the default [`ClientConfig`].
    pub fn new(endpoints: Vec<Endpoint>) -> Result<Self> {
        Self::with_config(endpoints, ClientConfig::default())
    }

    /// A client over `endpoints`, tried in order starting with the first.
    pub fn with_config(endpoints: Vec<Endpoint>, config: ClientConfig) -> Result<Self> {
        if endpoints.is_empty() {
            return Err(Error::NoEndpoints);
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(config.connect_timeout));
        let http = HyperClient::builder(TokioExecutor::new())
            .pool_max_idle_per_host(config.max_idle_per_endpoint)
            .pool_idle_timeout(Duration::from_secs(60))
            .http2_only(config.http2)
            .build(connector);
        Ok(Self {
            endpoints,
            http,
            config,
            preferred: AtomicUsize::new(0),
        })
    }

    /// The endpoints, in the order given.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// The endpoint the next request starts with.
    pub fn preferred_endpoint(&self) -> &Endpoint {
        &self.endpoints[self.preferred.load(Ordering::Relaxed) % self.endpoints.len()]
    }

    /// `PUT /v1/kv/{key}`: writes `value`.
    pub async fn put(&self, key: impl AsRef<[u8]>, value: impl Into<Bytes>) -> Result<PutResponse> {
        let call = Call {
            method: Method::PUT,
            path_and_query: kv_path(key.as_ref())?,
            body: value.into(),
            json: false,
            kind: Kind::Write,
        };
        self.execute(&call).await?.json()
    }

    /// `GET /v1/kv/{key}?consistency=...`: the value, or `None` if the key does not
    /// exist (404 `not_found`).
    pub async fn get(
        &self,
        key: impl AsRef<[u8]>,
        consistency: Consistency,
    ) -> Result<Option<GetResponse>> {
        let mut path_and_query = kv_path(key.as_ref())?;
        path_and_query.push_str("?consistency=");
        path_and_query.push_str(consistency.as_str());
        let call = Call {
            method: Method::GET,
            path_and_query,
            body: Bytes::new(),
            json: false,
            kind: Kind::Read,
        };
        let answer = match self.execute(&call).await {
            Ok(answer) => answer,
            Err(Error::Api {
                code: ErrorCode::NotFound,
                ..
            }) => return Ok(None),
            Err(error) => return Err(error),
        };
        let mod_revision = answer
            .headers
            .get(REVISION_HEADER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse().ok())
            .ok_or_else(|| Error::UnexpectedResponse {
                endpoint: answer.endpoint.clone(),
                status: 200,
                body: format!("missing or malformed {REVISION_HEADER} header"),
            })?;
        Ok(Some(GetResponse {
            value: answer.body,
            mod_revision,
        }))
    }

    /// `DELETE /v1/kv/{key}`.
    pub async fn delete(&self, key: impl AsRef<[u8]>) -> Result<DeleteResponse> {
        let call = Call {
            method: Method::DELETE,
            path_and_query: kv_path(key.as_ref())?,
            body: Bytes::new(),
            json: false,
            kind: Kind::Write,
        };
        self.execute(&call).await?.json()
    }

    /// `GET /v1/kv?prefix=P&limit=N`: the pairs whose key starts with `prefix`, in key
    /// order.
    pub async fn range(
        &self,
        prefix: impl AsRef<[u8]>,
        limit: Option<u64>,
    ) -> Result<RangeResponse> {
        let mut path_and_query = String::from("/v1/kv?prefix=");
        percent_encode_into(prefix.as_ref(), &mut path_and_query);
        if let Some(limit) = limit {
            path_and_query.push_str(&format!("&limit={limit}"));
        }
        let call = Call {
            method: Method::GET,
            path_and_query,
            body: Bytes::new(),
            json: false,
            kind: Kind::Read,
        };
        self.execute(&call).await?.json()
    }

    /// `POST /v1/txn`: an atomic compare-and-swap transaction.
    pub async fn txn(&self, request: &TxnRequest) -> Result<TxnResponse> {
        self.execute(&json_call(
            Method::POST,
            "/v1/txn",
            Some(request),
            Kind::Write,
        ))
        .await?
        .json()
    }

    /// `GET /v1/status` of whichever member answers first.
    pub async fn status(&self) -> Result<StatusResponse> {
        self.execute(&json_call::<()>(
            Method::GET,
            "/v1/status",
            None,
            Kind::Read,
        ))
        .await?
        .json()
    }

    /// `GET /v1/status` of one member, without failover.
    pub async fn status_at(&self, endpoint: &Endpoint) -> Result<StatusResponse> {
        let call = json_call::<()>(Method::GET, "/v1/status", None, Kind::Read);
        self.attempt(endpoint, &call).await?.json()
    }

    /// `GET /v1/members`.
    pub async fn members(&self) -> Result<MembersResponse> {
        self.execute(&json_call::<()>(
            Method::GET,
            "/v1/members",
            None,
            Kind::Read,
        ))
        .await?
        .json()
    }

    /// `POST /v1/members`: adds a learner.
    pub async fn add_member(&self, request: &AddMemberRequest) -> Result<()> {
        self.execute(&json_call(
            Method::POST,
            "/v1/members",
            Some(request),
            Kind::Write,
        ))
        .await?;
        Ok(())
    }

    /// `POST /v1/members/{id}/promote`: a learner becomes a voter.
    pub async fn promote_member(&self, id: u64) -> Result<()> {
        let path = format!("/v1/members/{id}/promote");
        self.execute(&json_call::<()>(Method::POST, &path, None, Kind::Write))
            .await?;
        Ok(())
    }

    /// `DELETE /v1/members/{id}`.
    pub async fn remove_member(&self, id: u64) -> Result<()> {
        let path = format!("/v1/members/{id}");
        self.execute(&json_call::<()>(Method::DELETE, &path, None, Kind::Write))
            .await?;
        Ok(())
    }

    /// `POST /v1/leader/transfer`: hands leadership to `to`, or to the most
    /// caught-up voter.
    pub async fn transfer_leader(&self, to: Option<u64>) -> Result<TransferResponse> {
        let body = TransferRequest { to };
        self.execute(&json_call(
            Method::POST,
            "/v1/leader/transfer",
            Some(&body),
            Kind::Write,
        ))
        .await?
        .json()
    }

    /// `POST /v1/snapshot`: snapshot now and compact the log.
    pub async fn snapshot(&self) -> Result<SnapshotResponse> {
        self.execute(&json_call::<()>(
            Method::POST,
            "/v1/snapshot",
            None,
            Kind::Write,
        ))
        .await?
        .json()
    }

    /// `GET /metrics` of one member: the Prometheus text exposition.
    pub async fn metrics_at(&self, endpoint: &Endpoint) -> Result<String> {
        let answer = self.attempt(endpoint, &plain_get("/metrics")).await?;
        Ok(String::from_utf8_lossy(&answer.body).into_owned())
    }

    /// `GET /livez` of one member: `Ok` if it serves.
    pub async fn livez_at(&self, endpoint: &Endpoint) -> Result<()> {
        self.attempt(endpoint, &plain_get("/livez")).await.map(drop)
    }

    /// `GET /readyz` of one member: `Ok` if it knows a leader and has applied
    /// nearly everything committed; an [`Error::Api`] or
    /// [`Error::UnexpectedResponse`] with status 503 if not.
    pub async fn readyz_at(&self, endpoint: &Endpoint) -> Result<()> {
        self.attempt(endpoint, &plain_get("/readyz"))
            .await
            .map(drop)
    }

    /// Runs `call` with failover across the endpoints (see the module doc).
    async fn execute(&self, call: &Call) -> Result<Answer> {
        let count = self.endpoints.len();
        let start = self.preferred.load(Ordering::Relaxed);
        let attempts = count * self.config.rounds.max(1);
        let mut last_error = None;
        for attempt in 0..attempts {
            if attempt > 0 && attempt % count == 0 {
                tokio::time::sleep(self.config.round_backoff).await;
            }
            let index = (start + attempt) % count;
            match self.attempt(&self.endpoints[index], call).await {
                Ok(answer) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    return Ok(answer);
                }
                Err(error) => {
                    let Some(wait) = self.failover_wait(&error, call.kind) else {
                        return Err(error);
                    };
                    if attempt + 1 < attempts && !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.expect("at least one attempt was made"))
    }

    /// `Some(pause)` if the request may go to the next endpoint after `error`.
    fn failover_wait(&self, error: &Error, kind: Kind) -> Option<Duration> {
        match error {
            Error::Connect { .. } => Some(Duration::ZERO),
            Error::Api {
                code: ErrorCode::NoLeader,
                retry_after,
                ..
            } => Some(
                retry_after
                    .unwrap_or(self.config.round_backoff)
                    .min(self.config.max_retry_after),
            ),
            Error::Api {
                code: ErrorCode::ShuttingDown,
                ..
            } => Some(Duration::ZERO),
            // Writes never get here with these: they are wrapped as UnknownOutcome.
            Error::Api {
                code: ErrorCode::Timeout,
                ..
            }
            | Error::Transport { .. }
            | Error::Timeout { .. } => (kind == Kind::Read).then_some(Duration::ZERO),
            _ => None,
        }
    }

    /// One attempt at one endpoint, following redirects; no failover.
    async fn attempt(&self, endpoint: &Endpoint, call: &Call) -> Result<Answer> {
        let outcome = tokio::time::timeout(self.config.request_timeout, async {
            let mut uri = endpoint.uri(&call.path_and_query);
            let mut name = endpoint.as_str().to_owned();
            for _ in 0..=MAX_REDIRECTS {
                match self.send(&name, uri, call).await? {
                    Sent::Answer(answer) => return Ok(answer),
                    Sent::Redirect(location) => {
                        name = location.authority().map_or(name, |a| format!("http://{a}"));
                        uri = location;
                    }
                }
            }
            Err(Error::UnexpectedResponse {
                endpoint: name,
                status: 307,
                body: format!("more than {MAX_REDIRECTS} redirects"),
            })
        })
        .await;
        let result = outcome.unwrap_or_else(|_| {
            Err(Error::Timeout {
                endpoint: endpoint.as_str().to_owned(),
                after: self.config.request_timeout,
            })
        });
        match result {
            Err(error) if call.kind == Kind::Write && may_have_been_applied(&error) => {
                Err(Error::UnknownOutcome {
                    source: Box::new(error),
                })
            }
            other => other,
        }
    }

    /// Sends one HTTP request and reads the whole answer.
    async fn send(&self, endpoint: &str, uri: Uri, call: &Call) -> Result<Sent> {
        let mut request = Request::builder().method(call.method.clone()).uri(uri);
        if call.json {
            request = request.header(CONTENT_TYPE, "application/json");
        } else if !call.body.is_empty() {
            request = request.header(CONTENT_TYPE, "application/octet-stream");
        }
        let request = request
            .body(Full::new(call.body.clone()))
            .expect("method, URI and headers are valid");
        let response = self.http.request(request).await.map_err(|error| {
            let source: BoxError = Box::new(error);
            let connect = source
                .downcast_ref::<hyper_util::client::legacy::Error>()
                .is_some_and(|e| e.is_connect());
            let endpoint = endpoint.to_owned();
            if connect {
                Error::Connect { endpoint, source }
            } else {
                Error::Transport { endpoint, source }
            }
        })?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|error| Error::Transport {
            endpoint: endpoint.to_owned(),
            source: Box::new(error),
        })?;
        let body = body.to_bytes();
        let status = parts.status;
        if status.is_success() {
            return Ok(Sent::Answer(Answer {
                endpoint: endpoint.to_owned(),
                headers: parts.headers,
                body,
            }));
        }
        if matches!(
            status,
            StatusCode::TEMPORARY_REDIRECT | StatusCode::PERMANENT_REDIRECT
        ) {
            // 307/308 keep the method and body, and the redirecting member did
            // not act on the request, so following it is safe even for writes.
            if let Some(location) = parts
                .headers
                .get(LOCATION)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse::<Uri>().ok())
                .filter(|uri| uri.scheme_str() == Some("http") && uri.authority().is_some())
            {
                return Ok(Sent::Redirect(location));
            }
        }
        Err(error_from_response(endpoint, status, &parts.headers, &body))
    }
}

enum Sent {
    Answer(Answer),
    Redirect(Uri),
}

/// Whether a write that failed this way may still be applied.
fn may_have_been_applied(error: &Error) -> bool {
    match error {
        Error::Api {
            code: ErrorCode::Timeout,
            ..
        }
        | Error::Transport { .. }
        | Error::Timeout { .. } => true,
        // A 504 from a proxy without the API's body is just as ambiguous.
        Error::UnexpectedResponse { status, .. } => *status == 504,
        _ => false,
    }
}

/// Builds the error for a non-success answer.
fn error_from_response(
    endpoint: &str,
    status: StatusCode,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Error {
    match serde_json::from_slice::<ErrorResponse>(body) {
        Ok(ErrorResponse { error }) => Error::Api {
            endpoint: endpoint.to_owned(),
            status: status.as_u16(),
            code: ErrorCode::parse(&error.code),
            message: error.message,
            retry_after: headers
                .get(RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.trim().parse::<u64>().ok())
                .map(Duration::from_secs),
        },
        Err(_) => {
            let shown = &body[..body.len().min(200)];
            Error::UnexpectedResponse {
                endpoint: endpoint.to_owned(),
                status: status.as_u16(),
                body: String::from_utf8_lossy(shown).trim().to_owned(),
            }
        }
    }
}

fn json_call<T: Serialize>(method: Method, path: &str, body: Option<&T>, kind: Kind) -> Call {
    let body = body.map_or_else(Bytes::new, |body| {
        Bytes::from(serde_json::to_vec(body).expect("API request types serialize"))
    });
    Call {
        method,
        path_and_query: path.to_owned(),
        json: !body.is_empty(),
        body,
        kind,
    }
}

fn plain_get(path: &str) -> Call {
    Call {
        method: Method::GET,
        path_and_query: path.to_owned(),
        body: Bytes::new(),
        json: false,
        kind: Kind::Read,
    }
}

/// `/v1/kv/{percent-encoded key}`, checking the key's length.
fn kv_path(key: &[u8]) -> Result<String> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(Error::InvalidKey { length: key.len() });
    }
    let mut path = String::with_capacity(7 + key.len());
    path.push_str("/v1/kv/");
    percent_encode_into(key, &mut path);
    Ok(path)
}

/// Percent-encodes everything except RFC 3986 unreserved characters, so a key
/// is always exactly one path segment (`/`, `?`, `%` and non-ASCII included).
pub fn percent_encode_into(bytes: &[u8], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &byte in bytes {
        // `.` is unreserved too, but encoding it keeps keys `.` and `..` from
        // looking like dot-segments to anything that normalizes paths.
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
    }
}
