//! The HTTP API of SPEC on axum: routes, status codes and JSON error bodies. Handlers
//! only translate between HTTP and [`Service`]; a write that reaches a follower is
//! forwarded to the leader's client address once (a forwarded request is never
//! forwarded again).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use raft_core::NodeId;

use crate::api::{self, ErrorBody, ErrorResponse, REVISION_HEADER};
use crate::driver::ServiceError;
use crate::service::{Consistency, Service};

/// The header marking a request a follower forwarded to its leader.
const FORWARDED_HEADER: &str = "x-raft-forwarded";

#[derive(Clone)]
struct AppState {
    service: Service,
    forwarder: Client<HttpConnector, Full<Bytes>>,
    metrics_source: std::sync::Arc<dyn Fn() + Send + Sync>,
}

/// The router of the whole API. `before_metrics` runs before each `/metrics` scrape
/// (it turns the published node status and the transport statistics into gauges).
pub fn router(service: Service, before_metrics: std::sync::Arc<dyn Fn() + Send + Sync>) -> Router {
    let body_limit = service.max_value_bytes() as usize;
    let forwarder = Client::builder(TokioExecutor::new()).build_http();
    let state = AppState {
        service,
        forwarder,
        metrics_source: before_metrics,
    };
    Router::new()
        .route(
            "/v1/kv/{*key}",
            get(get_key).put(put_key).delete(delete_key),
        )
        .route("/v1/kv", get(range))
        .route("/v1/txn", post(txn))
        .route("/v1/status", get(status))
        .route("/v1/members", get(members).post(add_member))
        .route("/v1/members/{id}/promote", post(promote))
        .route("/v1/members/{id}", axum::routing::delete(remove_member))
        .route("/v1/leader/transfer", post(transfer))
        .route("/v1/snapshot", post(snapshot))
        .route("/metrics", get(metrics))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// An API error as an HTTP response.
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid", message)
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> ApiError {
        let message = error.to_string();
        match error {
            ServiceError::NotLeader { .. } | ServiceError::Dropped => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no_leader", message)
            }
            ServiceError::Unknown => ApiError::new(StatusCode::GATEWAY_TIMEOUT, "timeout", message),
            ServiceError::Invalid(m) if m.contains("too large") => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", m)
            }
            ServiceError::Invalid(m) => ApiError::invalid(m),
            ServiceError::ShuttingDown => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", message)
            }
            _ => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorResponse {
            error: ErrorBody {
                code: self.code.into(),
                message: self.message,
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from_static("1"));
        }
        response
    }
}

type ApiResult = Result<Response, ApiError>;

fn observe(state: &AppState, op: &str, started: Instant, result: ApiResult) -> Response {
    let response = result.unwrap_or_else(IntoResponse::into_response);
    state
        .service
        .metrics()
        .observe_request(op, response.status().as_u16(), started.elapsed());
    response
}

fn consistency(query: &HashMap<String, String>) -> Result<Consistency, ApiError> {
    match query.get("consistency").map(String::as_str) {
        None | Some("linearizable") => Ok(Consistency::Linearizable),
        Some("lease") => Ok(Consistency::Lease),
        Some("stale") => Ok(Consistency::Stale),
        Some(other) => Err(ApiError::invalid(format!("unknown consistency {other:?}"))),
    }
}

fn body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "the body exceeds max_value_bytes",
            )
        } else {
            ApiError::invalid(rejection.body_text())
        }
    })
}

fn json_body<T: serde::de::DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::invalid(format!("malformed JSON: {e}")))
}

/// The parts of a write request needed to send it on to the leader.
struct Forward {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

/// Answers a write with its result as JSON, or, if this member is not the leader,
/// sends the request to the leader once and relays its answer.
async fn answer_or_forward<T: serde::Serialize>(
    state: &AppState,
    outcome: Result<T, ServiceError>,
    request: Forward,
) -> ApiResult {
    match outcome {
        Ok(answer) => Ok(axum::Json(answer).into_response()),
        Err(error) => forward_or(state, error, request).await,
    }
}

/// Sends a write this follower cannot serve to the leader, once.
async fn forward_or(state: &AppState, error: ServiceError, request: Forward) -> ApiResult {
    let Forward {
        method,
        uri,
        headers,
        body: payload,
    } = request;
    let ServiceError::NotLeader {
        leader: Some(leader),
    } = error
    else {
        return Err(error.into());
    };
    if headers.contains_key(FORWARDED_HEADER) || leader == NodeId(state.service.status().id) {
        return Err(ServiceError::NotLeader { leader: None }.into());
    }
    let Some(address) = state.service.client_addr(leader) else {
        return Err(ServiceError::NotLeader { leader: None }.into());
    };
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let target: Uri = format!("http://{address}{path}")
        .parse()
        .map_err(|_| ApiError::invalid("bad path"))?;
    let mut forwarded = axum::http::Request::builder().method(method).uri(target);
    if let Some(content_type) = headers.get(axum::http::header::CONTENT_TYPE) {
        forwarded = forwarded.header(axum::http::header::CONTENT_TYPE, content_type);
    }
    let forwarded = forwarded
        .header(FORWARDED_HEADER, "1")
        .body(Full::new(payload))
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    // Once sent, the write may be applied: any failure after this is an unknown outcome.
    let response = state
        .forwarder
        .request(forwarded)
        .await
        .map_err(|_| ApiError::from(ServiceError::Unknown))?;
    let (parts, body) = response.into_parts();
    let bytes = body
        .collect()
        .await
        .map_err(|_| ApiError::from(ServiceError::Unknown))?
        .to_bytes();
    Ok(Response::from_parts(parts, axum::body::Body::from(bytes)))
}

async fn put_key(
    State(state): State<AppState>,
    Path(key): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    payload: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let result = async {
        let value = body(payload)?;
        let outcome = state
            .service
            .put(Bytes::from(key.into_bytes()), value.clone())
            .await;
        answer_or_forward(
            &state,
            outcome,
            Forward {
                method: Method::PUT,
                uri,
                headers,
                body: value,
            },
        )
        .await
    }
    .await;
    observe(&state, "put", started, result)
}

async fn delete_key(
    State(state): State<AppState>,
    Path(key): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let started = Instant::now();
    let outcome = state.service.delete(Bytes::from(key.into_bytes())).await;
    let request = Forward {
        method: Method::DELETE,
        uri,
        headers,
        body: Bytes::new(),
    };
    let result = answer_or_forward(&state, outcome, request).await;
    observe(&state, "delete", started, result)
}

async fn get_key(
    State(state): State<AppState>,
    Path(key): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let started = Instant::now();
    let result = async {
        let consistency = consistency(&query)?;
        match state
            .service
            .get(Bytes::from(key.into_bytes()), consistency)
            .await?
        {
            Some((value, revision)) => {
                let mut response = (StatusCode::OK, value).into_response();
                response
                    .headers_mut()
                    .insert(REVISION_HEADER, HeaderValue::from(revision));
                Ok(response)
            }
            None => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such key",
            )),
        }
    }
    .await;
    observe(&state, "get", started, result)
}

async fn range(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let started = Instant::now();
    let result = async {
        let consistency = consistency(&query)?;
        let prefix = query.get("prefix").cloned().unwrap_or_default();
        let limit = match query.get("limit") {
            None => None,
            Some(raw) => Some(
                raw.parse::<usize>()
                    .map_err(|_| ApiError::invalid("limit must be a number"))?,
            ),
        };
        let answer = state
            .service
            .range(Bytes::from(prefix.into_bytes()), limit, consistency)
            .await?;
        Ok(axum::Json(answer).into_response())
    }
    .await;
    observe(&state, "range", started, result)
}

async fn txn(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    payload: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let result = async {
        let raw = body(payload)?;
        let outcome = state.service.txn(json_body(&raw)?).await;
        answer_or_forward(
            &state,
            outcome,
            Forward {
                method: Method::POST,
                uri,
                headers,
                body: raw,
            },
        )
        .await
    }
    .await;
    observe(&state, "txn", started, result)
}

async fn status(State(state): State<AppState>) -> Response {
    axum::Json(state.service.status()).into_response()
}

async fn members(State(state): State<AppState>) -> Response {
    let started = Instant::now();
    let result = state
        .service
        .members_linearizable()
        .await
        .map(|m| axum::Json(m).into_response())
        .map_err(ApiError::from);
    observe(&state, "members", started, result)
}

async fn add_member(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    payload: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let result = async {
        let raw = body(payload)?;
        let outcome = state
            .service
            .add_member(json_body(&raw)?)
            .await
            .map(|()| state.service.members());
        answer_or_forward(
            &state,
            outcome,
            Forward {
                method: Method::POST,
                uri,
                headers,
                body: raw,
            },
        )
        .await
    }
    .await;
    observe(&state, "add_member", started, result)
}

fn member_id(raw: &str) -> Result<u64, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::invalid("member id must be a number"))
}

async fn promote(
    State(state): State<AppState>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let started = Instant::now();
    let result = async {
        let outcome = state
            .service
            .promote(member_id(&id)?)
            .await
            .map(|()| state.service.members());
        answer_or_forward(
            &state,
            outcome,
            Forward {
                method: Method::POST,
                uri,
                headers,
                body: Bytes::new(),
            },
        )
        .await
    }
    .await;
    observe(&state, "promote_member", started, result)
}

async fn remove_member(
    State(state): State<AppState>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let started = Instant::now();
    let result = async {
        let outcome = state
            .service
            .remove(member_id(&id)?)
            .await
            .map(|()| state.service.members());
        answer_or_forward(
            &state,
            outcome,
            Forward {
                method: Method::DELETE,
                uri,
                headers,
                body: Bytes::new(),
            },
        )
        .await
    }
    .await;
    observe(&state, "remove_member", started, result)
}

async fn transfer(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    payload: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let result = async {
        let raw = body(payload)?;
        let request: api::TransferRequest = if raw.is_empty() {
            api::TransferRequest::default()
        } else {
            json_body(&raw)?
        };
        let outcome = state.service.transfer_leader(request.to).await;
        answer_or_forward(
            &state,
            outcome,
            Forward {
                method: Method::POST,
                uri,
                headers,
                body: raw,
            },
        )
        .await
    }
    .await;
    observe(&state, "transfer_leader", started, result)
}

async fn snapshot(State(state): State<AppState>) -> Response {
    let started = Instant::now();
    let result = state
        .service
        .snapshot()
        .await
        .map(|a| axum::Json(a).into_response())
        .map_err(ApiError::from);
    observe(&state, "snapshot", started, result)
}

async fn metrics(State(state): State<AppState>) -> Response {
    (state.metrics_source)();
    let text = state.service.metrics().render();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        text,
    )
        .into_response()
}

async fn livez() -> Response {
    (StatusCode::OK, "ok\n").into_response()
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.service.ready() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn not_found() -> Response {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route").into_response()
}

/// How long a graceful HTTP shutdown may take.
pub const HTTP_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
