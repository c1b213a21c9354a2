//! Writes, reads, transactions and ranges through every member of a 3-member cluster,
//! and the API's answers to bad input.

use raft_server::api::{Compare, TxnOp, TxnRequest};
use raft_server::client::Consistency;

use crate::cluster::TestCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_and_reads_through_every_member() {
    let mut cluster = TestCluster::new(3);
    cluster.start_all();
    cluster.wait_ready().await;
    // A write at each member (followers forward to the leader), read back at each.
    for i in 0..3 {
        let key = format!("key-{i}");
        let put = cluster
            .client(i)
            .put(&key, format!("value-{i}"))
            .await
            .expect("put");
        for j in 0..3 {
            for consistency in [Consistency::Linearizable, Consistency::Lease] {
                let got = cluster
                    .client(j)
                    .get(&key, consistency)
                    .await
                    .expect("get")
                    .expect("exists");
                assert_eq!(got.value, format!("value-{i}").as_bytes());
                assert_eq!(got.mod_revision, put.revision);
            }
        }
    }
    // Revisions grow; deletes report whether the key existed.
    let first = cluster.client(1).put("counter", "1").await.expect("put");
    let second = cluster.client(2).put("counter", "2").await.expect("put");
    assert!(second.revision > first.revision);
    let deleted = cluster.client(0).delete("counter").await.expect("delete");
    assert!(deleted.deleted);
    assert!(
        !cluster
            .client(1)
            .delete("counter")
            .await
            .expect("delete")
            .deleted
    );
    assert!(
        cluster
            .client(2)
            .get("counter", Consistency::Linearizable)
            .await
            .expect("get")
            .is_none()
    );
    // Range by prefix, with a limit.
    let range = cluster.client(1).range("key-", None).await.expect("range");
    let keys: Vec<&str> = range.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["key-0", "key-1", "key-2"]);
    let limited = cluster
        .client(2)
        .range("key-", Some(2))
        .await
        .expect("range");
    assert_eq!(limited.kvs.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_and_swap_succeeds_and_fails() {
    let mut cluster = TestCluster::new(3);
    cluster.start_all();
    cluster.wait_ready().await;
    let client = cluster.client(1);
    let cas = |expected: &str, new: &str| TxnRequest {
        compare: vec![Compare {
            key: "lock".into(),
            value: Some(expected.into()),
            mod_revision: None,
            exists: None,
        }],
        success: vec![TxnOp::Put {
            key: "lock".into(),
            value: new.into(),
        }],
        failure: vec![TxnOp::Get { key: "lock".into() }],
    };
    let create = TxnRequest {
        compare: vec![Compare {
            key: "lock".into(),
            value: None,
            mod_revision: None,
            exists: Some(false),
        }],
        success: vec![TxnOp::Put {
            key: "lock".into(),
            value: "a".into(),
        }],
        failure: vec![],
    };
    assert!(client.txn(&create).await.expect("txn").succeeded);
    assert!(
        !client.txn(&create).await.expect("txn").succeeded,
        "the key exists now"
    );
    assert!(client.txn(&cas("a", "b")).await.expect("txn").succeeded);
    let failed = client.txn(&cas("a", "c")).await.expect("txn");
    assert!(!failed.succeeded, "the value is b, not a");
    assert_eq!(failed.results.len(), 1);
    let value = cluster
        .client(2)
        .get("lock", Consistency::Linearizable)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(value.value, "b".as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors() {
    let mut cluster = TestCluster::new(3);
    cluster.start_all();
    cluster.wait_ready().await;
    let (status, body) = cluster
        .raw(0, "POST", "/v1/txn", b"{not json".to_vec())
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("\"code\":\"invalid\""), "{body}");
    let (status, body) = cluster.raw(0, "GET", "/v1/nowhere", Vec::new()).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("\"code\":\"not_found\""), "{body}");
    let (status, body) = cluster
        .raw(0, "PUT", "/v1/kv/big", vec![b'x'; 2 * 1024 * 1024])
        .await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("\"code\":\"too_large\""), "{body}");
    let long_key = "k".repeat(5000);
    let (status, body) = cluster
        .raw(0, "PUT", &format!("/v1/kv/{long_key}"), b"v".to_vec())
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = cluster
        .raw(0, "GET", "/v1/kv/x?consistency=sometimes", Vec::new())
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = cluster.raw(0, "GET", "/livez", Vec::new()).await;
    assert_eq!(status, 200);
}
