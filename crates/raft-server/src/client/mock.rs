//! An in-memory implementation of the HTTP API for tests of clients (the client
//! module, `raftctl`, `raft-bench`), with injectable faults: no leader, shutting
//! down, write timeouts and redirects. It keeps one map and one revision counter;
//! it does no replication and makes no durability promise.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tokio::task::JoinHandle;

use super::Endpoint;
use crate::api::{
    AddMemberRequest, Compare, DeleteResponse, ErrorBody, ErrorResponse, KeyValue, Member,
    MembersResponse, PutResponse, REVISION_HEADER, RangeResponse, SnapshotResponse, StatusResponse,
    TransferRequest, TransferResponse, TxnOp, TxnOpResult, TxnRequest, TxnResponse,
};

/// A fault the mock answers every matching request with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Serve normally.
    #[default]
    None,
    /// 503 `no_leader` with `Retry-After: retry_after_secs` on every `/v1` request.
    NoLeader {
        /// The `Retry-After` header's value, in seconds.
        retry_after_secs: u64,
    },
    /// 503 `shutting_down` on every `/v1` request.
    ShuttingDown,
    /// 504 `timeout` on every write, after applying it (the ambiguous case);
    /// reads are served.
    TimeoutWrites,
    /// 307 to the same path and query on `to`, for every `/v1` request.
    Redirect {
        /// Where to send clients.
        to: Endpoint,
    },
}

/// How to start a [`MockServer`].
#[derive(Clone, Debug)]
pub struct MockOptions {
    /// The member id reported by `/v1/status`.
    pub id: u64,
    /// The largest value accepted; larger is 413 `too_large`.
    pub max_value_bytes: usize,
    /// The initial fault.
    pub fault: Fault,
}

impl Default for MockOptions {
    fn default() -> Self {
        Self {
            id: 1,
            max_value_bytes: 1 << 20,
            fault: Fault::None,
        }
    }
}

/// A running mock server on 127.0.0.1; stops when dropped.
#[derive(Debug)]
pub struct MockServer {
    endpoint: Endpoint,
    state: Arc<Shared>,
    task: JoinHandle<()>,
}

impl MockServer {
    /// Starts a healthy single-member "cluster" on a free port.
    pub async fn start() -> Self {
        Self::start_with(MockOptions::default()).await
    }

    /// Starts a mock with `options`.
    pub async fn start_with(options: MockOptions) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a free loopback port");
        let addr: SocketAddr = listener.local_addr().expect("bound socket has an address");
        let endpoint: Endpoint = addr
            .to_string()
            .parse()
            .expect("a socket address is an endpoint");
        let state = Arc::new(Shared {
            id: options.id,
            max_value_bytes: options.max_value_bytes,
            fault: Mutex::new(options.fault),
            requests: AtomicU64::new(0),
            http2_requests: AtomicU64::new(0),
            store: Mutex::new(Store {
                revision: 1,
                term: 1,
                members: vec![Member {
                    id: options.id,
                    peer_addr: "127.0.0.1:1".to_owned(),
                    client_addr: addr.to_string(),
                    voter: true,
                }],
                ..Store::default()
            }),
        });
        let app = Router::new()
            .route("/v1/kv", get(range))
            .route("/v1/kv/{key}", get(get_key).put(put_key).delete(delete_key))
            .route("/v1/txn", post(txn))
            .route("/v1/status", get(status))
            .route("/v1/members", get(members).post(add_member))
            .route("/v1/members/{id}", axum::routing::delete(remove_member))
            .route("/v1/members/{id}/promote", post(promote_member))
            .route("/v1/leader/transfer", post(transfer))
            .route("/v1/snapshot", post(snapshot))
            .route("/metrics", get(metrics))
            .route("/livez", get(|| async { "ok" }))
            .route("/readyz", get(readyz))
            .layer(middleware::from_fn_with_state(state.clone(), inject_fault))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            // The server runs until the task is aborted.
            let _ = axum::serve(listener, app).await;
        });
        Self {
            endpoint,
            state,
            task,
        }
    }

    /// The server's URL.
    pub fn endpoint(&self) -> Endpoint {
        self.endpoint.clone()
    }

    /// Replaces the fault.
    pub fn set_fault(&self, fault: Fault) {
        *lock(&self.state.fault) = fault;
    }

    /// Makes this mock a follower of `leader`: `/v1/status` then reports
    /// `leader.id` as the leader and lists `leader` among the members. Requests
    /// are still served locally.
    pub fn follow(&self, leader: Member) {
        lock(&self.state.store).leader = Some(leader);
    }

    /// How many requests reached the server.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::Relaxed)
    }

    /// How many of them came over HTTP/2.
    pub fn http2_requests(&self) -> u64 {
        self.state.http2_requests.load(Ordering::Relaxed)
    }

    /// The stored value of `key`, if any.
    pub fn value(&self, key: &str) -> Option<Bytes> {
        lock(&self.state.store)
            .kvs
            .get(key)
            .map(|(value, _)| value.clone())
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Debug)]
struct Shared {
    id: u64,
    max_value_bytes: usize,
    fault: Mutex<Fault>,
    requests: AtomicU64,
    http2_requests: AtomicU64,
    store: Mutex<Store>,
}

#[derive(Debug, Default)]
struct Store {
    /// The last revision handed out; the first write gets `revision + 1`.
    revision: u64,
    term: u64,
    kvs: BTreeMap<String, (Bytes, u64)>,
    members: Vec<Member>,
    snapshot_index: u64,
    /// Another member this one reports as leader ([`MockServer::follow`]).
    leader: Option<Member>,
}

impl Store {
    fn next_revision(&mut self) -> u64 {
        self.revision += 1;
        self.revision
    }
}

type AppState = State<Arc<Shared>>;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn api_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = ErrorResponse {
        error: ErrorBody {
            code: code.to_owned(),
            message: message.to_owned(),
        },
    };
    (status, axum::Json(body)).into_response()
}

async fn inject_fault(State(state): AppState, request: Request, next: Next) -> Response {
    state.requests.fetch_add(1, Ordering::Relaxed);
    if request.version() == axum::http::Version::HTTP_2 {
        state.http2_requests.fetch_add(1, Ordering::Relaxed);
    }
    let fault = lock(&state.fault).clone();
    let api = request.uri().path().starts_with("/v1/");
    let write = request.method() != Method::GET;
    match fault {
        Fault::NoLeader { retry_after_secs } if api => {
            let mut response = api_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_leader",
                "no leader is known",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            response
        }
        Fault::ShuttingDown if api => api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the member is stopping",
        ),
        Fault::TimeoutWrites if api && write => {
            let _applied = next.run(request).await;
            api_error(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                "the write may still commit",
            )
        }
        Fault::Redirect { to } if api => {
            let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
            let location = format!("{to}{path}");
            (
                StatusCode::TEMPORARY_REDIRECT,
                [(
                    header::LOCATION,
                    HeaderValue::from_str(&location).expect("a URL is a header"),
                )],
            )
                .into_response()
        }
        _ => next.run(request).await,
    }
}

#[derive(Deserialize)]
struct GetQuery {
    consistency: Option<String>,
}

async fn get_key(
    State(state): AppState,
    Path(key): Path<String>,
    Query(query): Query<GetQuery>,
) -> Response {
    if let Some(consistency) = query.consistency.as_deref()
        && !matches!(consistency, "linearizable" | "lease" | "stale")
    {
        return api_error(StatusCode::BAD_REQUEST, "invalid", "unknown consistency");
    }
    match lock(&state.store).kvs.get(&key) {
        Some((value, revision)) => (
            StatusCode::OK,
            [(REVISION_HEADER, revision.to_string())],
            value.clone(),
        )
            .into_response(),
        None => api_error(StatusCode::NOT_FOUND, "not_found", "no such key"),
    }
}

async fn put_key(State(state): AppState, Path(key): Path<String>, value: Bytes) -> Response {
    if value.len() > state.max_value_bytes {
        return api_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "the value is too large",
        );
    }
    let mut store = lock(&state.store);
    let revision = store.next_revision();
    store.kvs.insert(key, (value, revision));
    axum::Json(PutResponse { revision }).into_response()
}

async fn delete_key(State(state): AppState, Path(key): Path<String>) -> Response {
    let mut store = lock(&state.store);
    let revision = store.next_revision();
    let deleted = store.kvs.remove(&key).is_some();
    axum::Json(DeleteResponse { revision, deleted }).into_response()
}

#[derive(Deserialize)]
struct RangeQuery {
    #[serde(default)]
    prefix: String,
    limit: Option<usize>,
}

fn key_value(key: &str, value: &Bytes, mod_revision: u64) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(String::from_utf8_lossy(value).into_owned()),
        value_base64: None,
        mod_revision,
    }
}

async fn range(State(state): AppState, Query(query): Query<RangeQuery>) -> Response {
    let store = lock(&state.store);
    let kvs = store
        .kvs
        .range(query.prefix.clone()..)
        .take_while(|(key, _)| key.starts_with(&query.prefix))
        .take(query.limit.unwrap_or(usize::MAX))
        .map(|(key, (value, revision))| key_value(key, value, *revision))
        .collect();
    axum::Json(RangeResponse {
        revision: store.revision,
        kvs,
    })
    .into_response()
}

fn holds(store: &Store, compare: &Compare) -> bool {
    let current = store.kvs.get(&compare.key);
    if let Some(value) = &compare.value {
        return current.is_some_and(|(v, _)| v.as_ref() == value.as_bytes());
    }
    if let Some(revision) = compare.mod_revision {
        return current.map_or(0, |(_, r)| *r) == revision;
    }
    if let Some(exists) = compare.exists {
        return current.is_some() == exists;
    }
    false
}

async fn txn(State(state): AppState, body: Bytes) -> Response {
    let request: TxnRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => return api_error(StatusCode::BAD_REQUEST, "invalid", &error.to_string()),
    };
    let mut store = lock(&state.store);
    let revision = store.next_revision();
    let succeeded = request.compare.iter().all(|compare| holds(&store, compare));
    let branch = if succeeded {
        &request.success
    } else {
        &request.failure
    };
    let mut results = Vec::with_capacity(branch.len());
    for op in branch {
        results.push(match op {
            TxnOp::Put { key, value } => {
                store
                    .kvs
                    .insert(key.clone(), (Bytes::from(value.clone()), revision));
                TxnOpResult::Put { revision }
            }
            TxnOp::Delete { key } => TxnOpResult::Delete {
                deleted: store.kvs.remove(key).is_some(),
            },
            TxnOp::Get { key } => TxnOpResult::Get {
                kv: store
                    .kvs
                    .get(key)
                    .map(|(value, revision)| key_value(key, value, *revision)),
            },
        });
    }
    axum::Json(TxnResponse {
        succeeded,
        revision,
        results,
    })
    .into_response()
}

async fn status(State(state): AppState) -> Response {
    let store = lock(&state.store);
    let mut members = store.members.clone();
    let (role, leader_id) = match &store.leader {
        Some(leader) => {
            members.push(leader.clone());
            ("follower", leader.id)
        }
        None => ("leader", state.id),
    };
    axum::Json(StatusResponse {
        id: state.id,
        cluster_id: "mock".to_owned(),
        role: role.to_owned(),
        term: store.term,
        leader_id: Some(leader_id),
        commit_index: store.revision,
        applied_index: store.revision,
        last_log_index: store.revision,
        snapshot_index: store.snapshot_index,
        catching_up: false,
        members,
        version: "mock".to_owned(),
    })
    .into_response()
}

async fn members(State(state): AppState) -> Response {
    axum::Json(MembersResponse {
        members: lock(&state.store).members.clone(),
    })
    .into_response()
}

async fn add_member(State(state): AppState, body: Bytes) -> Response {
    let request: AddMemberRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => return api_error(StatusCode::BAD_REQUEST, "invalid", &error.to_string()),
    };
    let mut store = lock(&state.store);
    if store.members.iter().any(|member| member.id == request.id) {
        return api_error(
            StatusCode::BAD_REQUEST,
            "invalid",
            "the member id is in use",
        );
    }
    store.next_revision();
    store.members.push(Member {
        id: request.id,
        peer_addr: request.peer_addr,
        client_addr: request.client_addr,
        voter: false,
    });
    axum::Json(MembersResponse {
        members: store.members.clone(),
    })
    .into_response()
}

async fn promote_member(State(state): AppState, Path(id): Path<u64>) -> Response {
    let mut store = lock(&state.store);
    store.next_revision();
    match store.members.iter_mut().find(|member| member.id == id) {
        Some(member) => {
            member.voter = true;
            axum::Json(MembersResponse {
                members: store.members.clone(),
            })
            .into_response()
        }
        None => api_error(StatusCode::NOT_FOUND, "not_found", "no such member"),
    }
}

async fn remove_member(State(state): AppState, Path(id): Path<u64>) -> Response {
    let mut store = lock(&state.store);
    let before = store.members.len();
    store.members.retain(|member| member.id != id);
    if store.members.len() == before {
        return api_error(StatusCode::NOT_FOUND, "not_found", "no such member");
    }
    store.next_revision();
    axum::Json(MembersResponse {
        members: store.members.clone(),
    })
    .into_response()
}

async fn transfer(State(state): AppState, body: Bytes) -> Response {
    let request: TransferRequest = if body.is_empty() {
        TransferRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(request) => request,
            Err(error) => return api_error(StatusCode::BAD_REQUEST, "invalid", &error.to_string()),
        }
    };
    let mut store = lock(&state.store);
    let leader = request.to.unwrap_or(state.id);
    if !store
        .members
        .iter()
        .any(|member| member.id == leader && member.voter)
    {
        return api_error(StatusCode::BAD_REQUEST, "invalid", "not a voter");
    }
    store.term += 1;
    axum::Json(TransferResponse { leader }).into_response()
}

async fn snapshot(State(state): AppState) -> Response {
    let mut store = lock(&state.store);
    store.snapshot_index = store.revision;
    let bytes = store
        .kvs
        .iter()
        .map(|(key, (value, _))| (key.len() + value.len()) as u64)
        .sum();
    axum::Json(SnapshotResponse {
        index: store.revision,
        term: store.term,
        bytes,
    })
    .into_response()
}

async fn metrics(State(state): AppState) -> Response {
    let store = lock(&state.store);
    format!(
        "# HELP raft_commit_index The highest index known committed.\n\
         # TYPE raft_commit_index gauge\nraft_commit_index {}\n",
        store.revision
    )
    .into_response()
}

async fn readyz(State(state): AppState) -> Response {
    match *lock(&state.fault) {
        Fault::NoLeader { .. } => {
            api_error(StatusCode::SERVICE_UNAVAILABLE, "no_leader", "not ready")
        }
        _ => "ok".into_response(),
    }
}
