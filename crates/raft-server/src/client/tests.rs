//! The client against the in-memory mock server: every route's success path,
//! error bodies, and the failover rules (what is retried, what never is).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::mock::{Fault, MockOptions, MockServer};
use super::*;
use crate::api::{Compare, TxnOp, TxnOpResult, TxnRequest};

/// Short waits so the failover tests stay quick; nothing asserts on time.
fn quick() -> ClientConfig {
    ClientConfig {
        max_retry_after: Duration::from_millis(20),
        round_backoff: Duration::from_millis(10),
        request_timeout: Duration::from_secs(5),
        ..ClientConfig::default()
    }
}

fn client(endpoints: &[Endpoint]) -> Client {
    Client::with_config(endpoints.to_vec(), quick()).expect("endpoints given")
}

/// An endpoint where nothing listens: bind a port, then free it.
async fn dead_endpoint() -> Endpoint {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr.to_string().parse().unwrap()
}

/// A server that reads one request and closes the connection without answering:
/// the request was sent, its fate unknown. Returns the endpoint and a counter
/// of connections accepted.
async fn hang_up_endpoint() -> (Endpoint, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = listener.local_addr().unwrap().to_string().parse().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::Relaxed);
            let mut buffer = [0u8; 4096];
            let _ = stream.read(&mut buffer).await;
            let _ = stream.shutdown().await;
        }
    });
    (endpoint, accepted)
}

#[test]
fn endpoints_parse() {
    let endpoints = parse_endpoints("http://127.0.0.1:7001, 10.0.0.2:7001/,").unwrap();
    let urls: Vec<&str> = endpoints.iter().map(Endpoint::as_str).collect();
    assert_eq!(urls, ["http://127.0.0.1:7001", "http://10.0.0.2:7001"]);
    for bad in [
        "https://a:1",
        "ftp://a:1",
        "http://a:1/v1",
        "http://a:1?x=1",
        "",
    ] {
        assert!(
            matches!(bad.parse::<Endpoint>(), Err(Error::InvalidEndpoint { .. })),
            "{bad}"
        );
    }
    assert!(matches!(parse_endpoints(" , "), Err(Error::NoEndpoints)));
    assert!(matches!(Client::new(Vec::new()), Err(Error::NoEndpoints)));
}

#[test]
fn keys_are_one_path_segment() {
    assert_eq!(kv_path(b"a-b_c~9").unwrap(), "/v1/kv/a-b_c~9");
    assert_eq!(kv_path(b"a/b c?%.").unwrap(), "/v1/kv/a%2Fb%20c%3F%25%2E");
    assert_eq!(kv_path(&[0xff, 0]).unwrap(), "/v1/kv/%FF%00");
    assert!(matches!(kv_path(b""), Err(Error::InvalidKey { length: 0 })));
    assert!(kv_path(&[b'k'; MAX_KEY_BYTES]).is_ok());
    assert!(matches!(
        kv_path(&[b'k'; MAX_KEY_BYTES + 1]),
        Err(Error::InvalidKey { .. })
    ));
}

#[test]
fn consistency_round_trips() {
    for consistency in [
        Consistency::Linearizable,
        Consistency::Lease,
        Consistency::Stale,
    ] {
        assert_eq!(consistency.as_str().parse::<Consistency>(), Ok(consistency));
    }
    assert!("strong".parse::<Consistency>().is_err());
}

#[tokio::test]
async fn key_value_routes() {
    let server = MockServer::start().await;
    let client = client(&[server.endpoint()]);

    let first = client.put("a/1", "one").await.unwrap();
    let second = client.put("a/2", Bytes::from_static(b"two")).await.unwrap();
    assert!(second.revision > first.revision);
    assert_eq!(server.value("a/1").as_deref(), Some(&b"one"[..]));

    let got = client
        .get("a/1", Consistency::Stale)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        got,
        GetResponse {
            value: Bytes::from_static(b"one"),
            mod_revision: first.revision
        }
    );
    assert_eq!(
        client.get("missing", Consistency::default()).await.unwrap(),
        None
    );

    let range = client.range("a/", None).await.unwrap();
    let keys: Vec<&str> = range.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["a/1", "a/2"]);
    assert_eq!(client.range("a/", Some(1)).await.unwrap().kvs.len(), 1);

    let deleted = client.delete("a/1").await.unwrap();
    assert!(deleted.deleted && deleted.revision > second.revision);
    assert!(!client.delete("a/1").await.unwrap().deleted);
}

#[tokio::test]
async fn transactions() {
    let server = MockServer::start().await;
    let client = client(&[server.endpoint()]);
    let cas = |expected: &str, new: &str| TxnRequest {
        compare: vec![Compare {
            key: "k".into(),
            value: Some(expected.into()),
            mod_revision: None,
            exists: None,
        }],
        success: vec![TxnOp::Put {
            key: "k".into(),
            value: new.into(),
        }],
        failure: vec![TxnOp::Get { key: "k".into() }],
    };
    client.put("k", "v1").await.unwrap();
    let swapped = client.txn(&cas("v1", "v2")).await.unwrap();
    assert!(swapped.succeeded);
    assert!(matches!(swapped.results[..], [TxnOpResult::Put { .. }]));
    let refused = client.txn(&cas("v1", "v3")).await.unwrap();
    assert!(!refused.succeeded);
    match &refused.results[..] {
        [TxnOpResult::Get { kv: Some(kv) }] => assert_eq!(kv.value.as_deref(), Some("v2")),
        other => panic!("unexpected results {other:?}"),
    }
}

#[tokio::test]
async fn cluster_routes() {
    let server = MockServer::start_with(MockOptions {
        id: 7,
        ..MockOptions::default()
    })
    .await;
    let client = client(&[server.endpoint()]);

    let status = client.status().await.unwrap();
    assert_eq!(
        (status.id, status.leader_id, status.role.as_str()),
        (7, Some(7), "leader")
    );
    assert_eq!(client.status_at(&server.endpoint()).await.unwrap().id, 7);

    client
        .add_member(&AddMemberRequest {
            id: 8,
            peer_addr: "h:1".into(),
            client_addr: "h:2".into(),
        })
        .await
        .unwrap();
    let members = client.members().await.unwrap().members;
    assert_eq!(
        members.iter().map(|m| (m.id, m.voter)).collect::<Vec<_>>(),
        [(7, true), (8, false)]
    );
    client.promote_member(8).await.unwrap();
    assert!(client.members().await.unwrap().members[1].voter);
    assert_eq!(client.transfer_leader(Some(8)).await.unwrap().leader, 8);
    assert_eq!(client.transfer_leader(None).await.unwrap().leader, 7);
    client.remove_member(8).await.unwrap();
    assert_eq!(client.members().await.unwrap().members.len(), 1);

    client.put("k", "v").await.unwrap();
    let snapshot = client.snapshot().await.unwrap();
    assert_eq!(snapshot.index, client.status().await.unwrap().commit_index);

    assert!(
        client
            .metrics_at(&server.endpoint())
            .await
            .unwrap()
            .contains("raft_commit_index")
    );
    client.livez_at(&server.endpoint()).await.unwrap();
    client.readyz_at(&server.endpoint()).await.unwrap();
    server.set_fault(Fault::NoLeader {
        retry_after_secs: 1,
    });
    assert_eq!(
        client
            .readyz_at(&server.endpoint())
            .await
            .unwrap_err()
            .status(),
        Some(503)
    );
}

#[tokio::test]
async fn error_bodies_are_parsed() {
    let options = MockOptions {
        max_value_bytes: 4,
        ..MockOptions::default()
    };
    let server = MockServer::start_with(options).await;
    let client = client(&[server.endpoint()]);

    let error = client.put("k", "too long").await.unwrap_err();
    match &error {
        Error::Api {
            status,
            code,
            message,
            endpoint,
            ..
        } => {
            assert_eq!((*status, code), (413, &ErrorCode::TooLarge));
            assert!(!message.is_empty());
            assert_eq!(endpoint, server.endpoint().as_str());
        }
        other => panic!("expected an API error, got {other:?}"),
    }
    assert!(!error.is_unknown_outcome());

    let error = client.remove_member(99).await.unwrap_err();
    assert_eq!(
        (error.status(), error.code()),
        (Some(404), Some(&ErrorCode::NotFound))
    );

    let error = client.transfer_leader(Some(42)).await.unwrap_err();
    assert_eq!(error.code(), Some(&ErrorCode::Invalid));
    assert!(error.to_string().contains("HTTP 400 invalid"), "{error}");

    // A body that is not the API's error shape (the mock's 405 for an unknown
    // method) is reported as such, with the status.
    let answer = client
        .attempt(&server.endpoint(), &plain_get("/v1/txn"))
        .await
        .unwrap_err();
    assert!(
        matches!(answer, Error::UnexpectedResponse { status: 405, .. }),
        "{answer:?}"
    );

    assert!(matches!(
        client.put("", "v").await,
        Err(Error::InvalidKey { length: 0 })
    ));
    assert_eq!(
        server.requests(),
        4,
        "an invalid key never reaches the server"
    );
}

#[tokio::test]
async fn fails_over_when_connection_refused() {
    let server = MockServer::start().await;
    let client = client(&[dead_endpoint().await, server.endpoint()]);
    client.put("k", "v").await.unwrap();
    assert_eq!(server.requests(), 1);
    // The member that answered is tried first from now on.
    assert_eq!(client.preferred_endpoint(), &server.endpoint());
    assert!(
        client
            .get("k", Consistency::Linearizable)
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn every_endpoint_refused_reports_connect_error() {
    let dead = dead_endpoint().await;
    let error = client(std::slice::from_ref(&dead))
        .put("k", "v")
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::Connect { endpoint, .. } if endpoint == dead.as_str()),
        "{error:?}"
    );
    assert!(!error.is_unknown_outcome(), "nothing was sent");
}

#[tokio::test]
async fn fails_over_on_no_leader_and_shutting_down() {
    let no_leader = MockServer::start_with(MockOptions {
        fault: Fault::NoLeader {
            retry_after_secs: 30,
        },
        ..MockOptions::default()
    })
    .await;
    let stopping = MockServer::start_with(MockOptions {
        fault: Fault::ShuttingDown,
        ..MockOptions::default()
    })
    .await;
    let healthy = MockServer::start().await;
    let client = client(&[
        no_leader.endpoint(),
        stopping.endpoint(),
        healthy.endpoint(),
    ]);
    // Retry-After: 30 is capped by max_retry_after, so this returns quickly.
    client.put("k", "v").await.unwrap();
    assert_eq!(
        (
            no_leader.requests(),
            stopping.requests(),
            healthy.requests()
        ),
        (1, 1, 1)
    );
    assert_eq!(healthy.value("k").as_deref(), Some(&b"v"[..]));
    assert_eq!(no_leader.value("k"), None);
}

#[tokio::test]
async fn no_leader_anywhere_is_reported_after_bounded_retries() {
    let no_leader = MockServer::start_with(MockOptions {
        fault: Fault::NoLeader {
            retry_after_secs: 1,
        },
        ..MockOptions::default()
    })
    .await;
    let error = client(&[no_leader.endpoint()])
        .put("k", "v")
        .await
        .unwrap_err();
    match error {
        Error::Api {
            status: 503,
            code: ErrorCode::NoLeader,
            retry_after,
            ..
        } => {
            assert_eq!(retry_after, Some(Duration::from_secs(1)));
        }
        other => panic!("expected no_leader, got {other:?}"),
    }
    assert_eq!(no_leader.requests(), quick().rounds as u64);
}

#[tokio::test]
async fn write_is_not_retried_after_504() {
    let timing_out = MockServer::start_with(MockOptions {
        fault: Fault::TimeoutWrites,
        ..MockOptions::default()
    })
    .await;
    let healthy = MockServer::start().await;
    let client = client(&[timing_out.endpoint(), healthy.endpoint()]);

    let error = client.put("k", "v").await.unwrap_err();
    assert!(error.is_unknown_outcome(), "{error:?}");
    assert_eq!(
        (error.status(), error.code()),
        (Some(504), Some(&ErrorCode::Timeout))
    );
    assert_eq!(healthy.requests(), 0, "the write must not be sent again");
    // The mock applied it before answering 504: the ambiguity is real.
    assert_eq!(timing_out.value("k").as_deref(), Some(&b"v"[..]));

    let error = client
        .txn(&TxnRequest {
            compare: vec![],
            success: vec![],
            failure: vec![],
        })
        .await
        .unwrap_err();
    assert!(error.is_unknown_outcome());
    assert_eq!(healthy.requests(), 0);

    // Reads are served by the same member (the fault only hits writes).
    assert!(
        client
            .get("k", Consistency::Linearizable)
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn write_is_not_retried_after_the_connection_drops() {
    let (hang_up, accepted) = hang_up_endpoint().await;
    let healthy = MockServer::start().await;
    let client = client(&[hang_up.clone(), healthy.endpoint()]);

    let error = client.delete("k").await.unwrap_err();
    match &error {
        Error::UnknownOutcome { source } => {
            assert!(matches!(**source, Error::Transport { .. }), "{source:?}");
        }
        other => panic!("expected an unknown outcome, got {other:?}"),
    }
    assert_eq!(error.endpoint(), Some(hang_up.as_str()));
    assert_eq!(healthy.requests(), 0);
    assert_eq!(accepted.load(Ordering::Relaxed), 1);

    // A read is harmless to repeat: it moves on to the healthy member.
    assert_eq!(client.get("k", Consistency::Stale).await.unwrap(), None);
    assert_eq!(healthy.requests(), 1);
}

#[tokio::test]
async fn write_times_out_as_unknown_outcome() {
    // Accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent: Endpoint = listener.local_addr().unwrap().to_string().parse().unwrap();
    let _keep = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            open.push(stream);
        }
    });
    let healthy = MockServer::start().await;
    let config = ClientConfig {
        request_timeout: Duration::from_millis(200),
        ..quick()
    };
    let client = Client::with_config(vec![silent, healthy.endpoint()], config).unwrap();
    let error = client.put("k", "v").await.unwrap_err();
    assert!(
        matches!(&error, Error::UnknownOutcome { source } if matches!(**source, Error::Timeout { .. })),
        "{error:?}"
    );
    assert_eq!(healthy.requests(), 0);
}

#[tokio::test]
async fn follows_redirects() {
    let leader = MockServer::start().await;
    let follower = MockServer::start_with(MockOptions {
        fault: Fault::Redirect {
            to: leader.endpoint(),
        },
        ..MockOptions::default()
    })
    .await;
    let client = client(&[follower.endpoint()]);
    let put = client.put("k/1", "v").await.unwrap();
    assert_eq!(leader.value("k/1").as_deref(), Some(&b"v"[..]));
    let got = client
        .get("k/1", Consistency::Lease)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.mod_revision, put.revision);
    assert_eq!((follower.requests(), leader.requests()), (2, 2));
}

#[tokio::test]
async fn redirect_loops_are_cut() {
    let server = MockServer::start().await;
    server.set_fault(Fault::Redirect {
        to: server.endpoint(),
    });
    let error = client(&[server.endpoint()])
        .put("k", "v")
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::UnexpectedResponse { status: 307, .. }),
        "{error:?}"
    );
    assert_eq!(server.requests(), MAX_REDIRECTS as u64 + 1);
}
