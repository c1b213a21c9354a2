//! `raftctl` tests: argument parsing, output formatting, and the commands run
//! against the in-memory mock server.

use super::*;
use crate::api::Member;
use crate::client::GetResponse;
use crate::client::mock::MockServer;
use bytes::Bytes;

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("raftctl").chain(args.iter().copied()))
}

async fn run_to_string(args: &[&str], stdin: &str) -> Result<String, CliError> {
    let mut out = Vec::new();
    run(
        parse(args).expect("valid arguments"),
        &mut out,
        stdin.as_bytes(),
    )
    .await?;
    Ok(String::from_utf8(out).expect("UTF-8 output"))
}

fn status(id: u64, role: &str, commit: u64, applied: u64) -> StatusResponse {
    StatusResponse {
        id,
        cluster_id: "c".into(),
        role: role.into(),
        term: 3,
        leader_id: Some(1),
        commit_index: commit,
        applied_index: applied,
        last_log_index: commit,
        snapshot_index: 0,
        catching_up: false,
        members: Vec::new(),
        version: "v".into(),
    }
}

#[test]
fn global_flags_and_subcommands_parse() {
    let cli = parse(&[
        "get",
        "k",
        "--consistency",
        "stale",
        "--endpoints",
        "http://a:1,b:2",
        "--output",
        "json",
    ])
    .unwrap();
    assert!(
        matches!(cli.command, Command::Get { ref key, consistency: Consistency::Stale } if key == "k")
    );
    assert_eq!(
        cli.endpoints
            .iter()
            .map(Endpoint::as_str)
            .collect::<Vec<_>>(),
        ["http://a:1", "http://b:2"]
    );
    assert_eq!(cli.output, Output::Json);

    let cli = parse(&["members", "add", "4", "10.0.0.4:7101", "10.0.0.4:7001"]).unwrap();
    assert!(matches!(
        cli.command,
        Command::Members {
            command: MembersCommand::Add { id: 4, .. }
        }
    ));
    assert!(matches!(
        parse(&["transfer-leader"]).unwrap().command,
        Command::TransferLeader { id: None }
    ));
    assert!(matches!(
        parse(&["transfer-leader", "2"]).unwrap().command,
        Command::TransferLeader { id: Some(2) }
    ));
    assert!(matches!(
        parse(&["del", "k"]).unwrap().command,
        Command::Del { .. }
    ));
    assert!(matches!(
        parse(&["get", "k"]).unwrap().command,
        Command::Get {
            consistency: Consistency::Linearizable,
            ..
        }
    ));
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["get", "k", "--consistency", "strong"][..],
        &["put", "k"],
        &["--endpoints", "https://a:1", "status"],
        &["members", "promote", "x"],
        &["txn", "--file", "t.json", "--key", "k"],
        &["txn", "--key", "k", "--new-value", "v"],
        &[
            "txn",
            "--key",
            "k",
            "--new-value",
            "v",
            "--expect-absent",
            "--expect-revision",
            "3",
        ],
        &["frobnicate"],
    ] {
        let error = parse(args).expect_err(&format!("{args:?} must be rejected"));
        assert_eq!(error.exit_code(), 2, "{args:?}");
    }
    assert_eq!(CliError::Usage("x".into()).exit_code(), 2);
    assert_eq!(CliError::KeyNotFound { key: "k".into() }.exit_code(), 1);
}

#[test]
fn txn_from_flags_or_json() {
    let Command::Txn(args) = parse(&[
        "txn",
        "--key",
        "k",
        "--new-value",
        "v2",
        "--expect-revision",
        "7",
    ])
    .unwrap()
    .command
    else {
        panic!("not a txn");
    };
    let request = txn_request(&args, std::io::empty()).unwrap();
    assert_eq!(request.compare[0].mod_revision, Some(7));
    assert_eq!(
        request.success,
        [TxnOp::Put {
            key: "k".into(),
            value: "v2".into()
        }]
    );
    assert_eq!(request.failure, [TxnOp::Get { key: "k".into() }]);

    let Command::Txn(args) = parse(&["txn"]).unwrap().command else {
        panic!("not a txn")
    };
    let json =
        r#"{"compare":[{"key":"k","exists":false}],"success":[{"put":{"key":"k","value":"v"}}]}"#;
    let request = txn_request(&args, json.as_bytes()).unwrap();
    assert_eq!(request.compare[0].exists, Some(false));
    assert!(request.failure.is_empty());
    let error = txn_request(&args, "{\"compare\":[{\"nope\":1}]}".as_bytes()).unwrap_err();
    assert_eq!(error.exit_code(), 2);
}

#[test]
fn status_table_shows_lag_and_unreachable_members() {
    let rows = vec![
        StatusRow {
            endpoint: "http://a:1".into(),
            status: Ok(status(1, "leader", 10, 10)),
        },
        StatusRow {
            endpoint: "http://b:1".into(),
            status: Ok(status(2, "follower", 9, 7)),
        },
        StatusRow {
            endpoint: "http://c:1".into(),
            status: Err("cannot connect".into()),
        },
    ];
    let text = format_status(&rows, Output::Table);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        [
            "ENDPOINT", "ID", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED", "LAST", "INDEX", "LAG"
        ]
    );
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["http://a:1", "1", "leader", "3", "1", "10", "10", "10", "0"]
    );
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        ["http://b:1", "2", "follower", "3", "1", "9", "7", "9", "3"]
    );
    assert!(lines[3].starts_with("http://c:1  unreachable: cannot connect"));
    // Columns line up: every value starts where its header does.
    assert_eq!(lines[0].find("ROLE"), lines[2].find("follower"));

    let json: serde_json::Value =
        serde_json::from_str(&format_status(&rows, Output::Json)).unwrap();
    assert_eq!(json[1]["lag"], 3);
    assert_eq!(json[1]["status"]["role"], "follower");
    assert_eq!(json[2]["error"], "cannot connect");
    assert_eq!(all_failed(&rows), None);
    assert_eq!(all_failed(&rows[2..]), Some("cannot connect".into()));
}

#[test]
fn other_outputs() {
    let got = GetResponse {
        value: Bytes::from_static(b"\xff\x00a"),
        mod_revision: 4,
    };
    assert_eq!(format_get("k", &got, Output::Table), b"\xff\x00a\n");
    let json: serde_json::Value =
        serde_json::from_slice(&format_get("k", &got, Output::Json)).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"key": "k", "value_base64": "/wBh", "mod_revision": 4})
    );
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"ab"), "YWI=");
    assert_eq!(base64(b"abcd"), "YWJjZA==");

    let members = MembersResponse {
        members: vec![Member {
            id: 1,
            peer_addr: "p:1".into(),
            client_addr: "c:1".into(),
            voter: false,
        }],
    };
    assert_eq!(
        format_members(&members, Output::Table),
        "ID  ROLE     PEER ADDR  CLIENT ADDR\n1   learner  p:1        c:1\n"
    );
    assert_eq!(
        format_put(&PutResponse { revision: 9 }, Output::Table),
        "OK revision 9\n"
    );
    assert_eq!(
        format_delete(
            &DeleteResponse {
                revision: 9,
                deleted: false
            },
            Output::Table
        ),
        "not found, revision 9\n"
    );
    let txn = TxnResponse {
        succeeded: false,
        revision: 5,
        results: vec![TxnOpResult::Get { kv: None }],
    };
    assert_eq!(
        format_txn(&txn, Output::Table),
        "FAILURE revision 5\nget: not found\n"
    );
    assert_eq!(
        serde_json::from_str::<TxnResponse>(&format_txn(&txn, Output::Json)).unwrap(),
        txn
    );
}

#[tokio::test]
async fn commands_against_the_mock() {
    let server = MockServer::start().await;
    let url = server.endpoint().to_string();
    let ep = ["--endpoints", url.as_str()];
    let with = |args: &[&'static str]| -> Vec<String> {
        ep.iter().chain(args).map(|s| s.to_string()).collect()
    };
    let call = |args: Vec<String>, stdin: &'static str| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_to_string(&args, stdin).await
    };
    assert_eq!(
        call(with(&["put", "k", "v1"]), "").await.unwrap(),
        "OK revision 2\n"
    );
    assert_eq!(call(with(&["get", "k"]), "").await.unwrap(), "v1\n");
    let error = call(with(&["get", "nope"]), "").await.unwrap_err();
    assert!(matches!(error, CliError::KeyNotFound { .. }) && error.exit_code() == 1);
    let out = call(
        with(&[
            "txn",
            "--key",
            "k",
            "--new-value",
            "v2",
            "--expect-value",
            "v1",
        ]),
        "",
    )
    .await
    .unwrap();
    assert!(out.starts_with("SUCCESS"), "{out}");
    assert_eq!(server.value("k").as_deref(), Some(&b"v2"[..]));
    let out = call(
        with(&["txn"]),
        r#"{"compare":[{"key":"k","exists":false}]}"#,
    )
    .await
    .unwrap();
    assert!(out.starts_with("FAILURE"), "{out}");
    let out = call(with(&["status"]), "").await.unwrap();
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.lines().nth(1).unwrap().contains("leader"), "{out}");
    call(with(&["members", "add", "2", "h:1", "h:2"]), "")
        .await
        .unwrap();
    let out = call(with(&["--output", "json", "members", "list"]), "")
        .await
        .unwrap();
    let members: MembersResponse = serde_json::from_str(&out).unwrap();
    assert_eq!(members.members.len(), 2);
    assert_eq!(
        call(with(&["del", "k"]), "").await.unwrap(),
        format!("deleted, revision {}\n", 6)
    );
    assert!(
        call(with(&["snapshot"]), "")
            .await
            .unwrap()
            .starts_with("snapshot at index")
    );
    assert_eq!(
        call(with(&["transfer-leader"]), "").await.unwrap(),
        "leader is now 1\n"
    );

    let error = run_to_string(&["--endpoints", "127.0.0.1:1", "put", "k", "v"], "")
        .await
        .unwrap_err();
    assert!(
        matches!(error, CliError::Client(Error::Connect { .. })),
        "{error:?}"
    );
}
