//! Unit tests of configuration loading: each source alone, their precedence, and
//! that every error names its key.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;

use clap::Parser;

use super::*;

const MINIMAL: &str = r#"
id = 1
data_dir = "/var/lib/raftd"
listen_peer = "10.0.0.1:7101"
listen_client = "10.0.0.1:7001"
[tls]
ca = "/etc/raftd/ca.pem"
cert = "/etc/raftd/node1.pem"
key = "/etc/raftd/node1-key.pem"
"#;

/// An environment made of the given pairs only.
fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> + use<> {
    let map: BTreeMap<String, OsString> = pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), OsString::from(value)))
        .collect();
    move |name| map.get(name).cloned()
}

fn no_env() -> impl Fn(&str) -> Option<OsString> + use<> {
    env_of(&[])
}

/// Writes `text` as `raftd.toml` in a fresh directory and returns `run` flags naming it.
fn with_file(text: &str) -> (tempfile::TempDir, RunArgs) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raftd.toml");
    fs::write(&path, text).unwrap();
    let args = RunArgs {
        config: Some(path),
        ..RunArgs::default()
    };
    (dir, args)
}

fn args(flags: &[&str]) -> RunArgs {
    RunArgs::try_parse_from(std::iter::once("run").chain(flags.iter().copied())).unwrap()
}

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

#[test]
fn file_only_with_defaults() {
    let (_dir, args) = with_file(MINIMAL);
    let config = load_with_env(args, no_env()).unwrap();
    let tls = TlsPaths {
        ca: "/etc/raftd/ca.pem".into(),
        cert: "/etc/raftd/node1.pem".into(),
        key: "/etc/raftd/node1-key.pem".into(),
    };
    let expected = ServerConfig::new(
        1,
        "/var/lib/raftd".into(),
        addr("10.0.0.1:7101"),
        addr("10.0.0.1:7001"),
        tls,
    );
    assert_eq!(config, expected);
    assert_eq!(config.advertise_peer, addr("10.0.0.1:7101"));
    assert_eq!(config.advertise_client, addr("10.0.0.1:7001"));
    assert_eq!(config.max_value_bytes, 1 << 20);
    assert_eq!(config.snapshot_every_entries, 100_000);
    assert_eq!(config.ready_lag, 1_000);
    assert_eq!(config.tick_interval(), Duration::from_millis(100));
    assert_eq!(config.election_timeout_ticks_range(), (10, 20));
    assert_eq!(config.heartbeat_interval_ticks, 2);
    assert_eq!(config.request_timeout(), Duration::from_secs(5));
    assert_eq!(config.shutdown_transfer_timeout(), Duration::from_secs(5));
    assert_eq!(config.segment_size_bytes, 64 << 20);
    assert_eq!(config.log_format, LogFormat::Text);
    assert_eq!(config.log_level, "info");
    assert!(config.initial_members.is_empty());
}

#[test]
fn every_key_from_the_file() {
    let text = r#"
id = 2
data_dir = "/data"
listen_peer = "0.0.0.0:7102"
advertise_peer = "10.0.0.2:7102"
listen_client = "[::]:7002"
advertise_client = "[fd00::2]:7002"
max_value_bytes = 4096
snapshot_every_entries = 50
ready_lag = 7
tick_interval_ms = 10
election_timeout_ticks = 20
heartbeat_interval_ticks = 3
request_timeout_ms = 900
shutdown_transfer_timeout_ms = 0
segment_size_bytes = 1048576
log_format = "json"
log_level = "info,raft_server=debug"
[[initial_members]]
id = 1
peer_addr = "10.0.0.1:7101"
client_addr = "10.0.0.1:7001"
[[initial_members]]
id = 2
peer_addr = "10.0.0.2:7102"
client_addr = "[fd00::2]:7002"
[tls]
ca = "/ca.pem"
cert = "/node2.pem"
key = "/node2-key.pem"
"#;
    let (_dir, args) = with_file(text);
    let config = load_with_env(args, no_env()).unwrap();
    assert_eq!(config.id, 2);
    assert_eq!(config.listen_peer, addr("0.0.0.0:7102"));
    assert_eq!(config.advertise_peer, addr("10.0.0.2:7102"));
    assert_eq!(config.listen_client, addr("[::]:7002"));
    assert_eq!(config.advertise_client, addr("[fd00::2]:7002"));
    assert_eq!(config.initial_members.len(), 2);
    assert_eq!(
        config.initial_members[1].client_addr,
        addr("[fd00::2]:7002")
    );
    assert_eq!(config.max_value_bytes, 4096);
    assert_eq!(config.snapshot_every_entries, 50);
    assert_eq!(config.ready_lag, 7);
    assert_eq!(config.tick_interval_ms, 10);
    assert_eq!(config.election_timeout_ticks, 20);
    assert_eq!(config.heartbeat_interval_ticks, 3);
    assert_eq!(config.request_timeout_ms, 900);
    assert_eq!(config.shutdown_transfer_timeout_ms, 0);
    assert_eq!(config.segment_size_bytes, 1 << 20);
    assert_eq!(config.log_format, LogFormat::Json);
    assert_eq!(config.log_level, "info,raft_server=debug");
}

#[test]
fn env_overrides_file() {
    let (_dir, args) = with_file(MINIMAL);
    let env = env_of(&[
        ("RAFTD_ID", "7"),
        ("RAFTD_LISTEN_CLIENT", "10.0.0.9:8001"),
        ("RAFTD_TLS_CA", "/other/ca.pem"),
        ("RAFTD_MAX_VALUE_BYTES", "100"),
        ("RAFTD_LOG_FORMAT", "JSON"),
        ("RAFTD_INITIAL_MEMBERS", "7=10.0.0.1:7101/10.0.0.1:7001"),
        // Empty means unset: the file's value stays.
        ("RAFTD_DATA_DIR", ""),
    ]);
    let config = load_with_env(args, env).unwrap();
    assert_eq!(config.id, 7);
    assert_eq!(config.listen_client, addr("10.0.0.9:8001"));
    assert_eq!(config.advertise_client, addr("10.0.0.9:8001"));
    assert_eq!(config.tls.ca, PathBuf::from("/other/ca.pem"));
    assert_eq!(config.tls.cert, PathBuf::from("/etc/raftd/node1.pem"));
    assert_eq!(config.max_value_bytes, 100);
    assert_eq!(config.log_format, LogFormat::Json);
    assert_eq!(config.data_dir, PathBuf::from("/var/lib/raftd"));
    assert_eq!(config.initial_members[0].id, 7);
}

#[test]
fn flag_overrides_env_and_file() {
    let (_dir, mut flags) = with_file(MINIMAL);
    let config_path = flags.config.take();
    flags = args(&[
        "--id",
        "9",
        "--tls-cert",
        "/flag/node.pem",
        "--log-level",
        "debug",
    ]);
    flags.config = config_path;
    let env = env_of(&[
        ("RAFTD_ID", "7"),
        ("RAFTD_TLS_CERT", "/env/node.pem"),
        ("RAFTD_LOG_LEVEL", "warn"),
        ("RAFTD_READY_LAG", "5"),
    ]);
    let config = load_with_env(flags, env).unwrap();
    assert_eq!(config.id, 9);
    assert_eq!(config.tls.cert, PathBuf::from("/flag/node.pem"));
    assert_eq!(config.log_level, "debug");
    assert_eq!(config.ready_lag, 5, "env still beats the default");
}

#[test]
fn config_path_from_the_environment() {
    let (_dir, args) = with_file(MINIMAL);
    let path = args.config.unwrap();
    let env = env_of(&[("RAFTD_CONFIG", path.to_str().unwrap())]);
    let config = load_with_env(RunArgs::default(), env).unwrap();
    assert_eq!(config.id, 1);
}

#[test]
fn flags_alone_suffice() {
    let flags = args(&[
        "--id=3",
        "--data-dir=/d",
        "--listen-peer=127.0.0.1:7103",
        "--listen-client=127.0.0.1:7003",
        "--tls-ca=/ca.pem",
        "--tls-cert=/n.pem",
        "--tls-key=/k.pem",
        "--log-format=json",
        "--election-timeout-ticks=30",
    ]);
    let config = load_with_env(flags, no_env()).unwrap();
    assert_eq!(config.id, 3);
    assert_eq!(config.log_format, LogFormat::Json);
    assert_eq!(config.election_timeout_ticks_range(), (30, 60));
}

#[test]
fn unknown_key_is_named() {
    let (_dir, args) = with_file(&MINIMAL.replace("id = 1\n", "id = 1\nsnapshot_every = 5\n"));
    let error = load_with_env(args.clone(), no_env()).unwrap_err();
    assert_eq!(error.key, "snapshot_every");
    assert!(error.message.contains("raftd.toml"), "{error}");
    assert!(error.message.contains("line 3"), "{error}");
    assert!(error.to_string().contains("snapshot_every"), "{error}");

    let text = format!("{MINIMAL}crl = \"x\"\n");
    fs::write(args.config.as_ref().unwrap(), text).unwrap();
    let error = load_with_env(args.clone(), no_env()).unwrap_err();
    assert_eq!(error.key, "tls.crl");

    let text = format!(
        "{MINIMAL}[[initial_members]]\nid = 1\npeer_addr = \"1.1.1.1:1\"\n\
         client_addr = \"1.1.1.1:2\"\nvoter = true\n"
    );
    fs::write(args.config.as_ref().unwrap(), text).unwrap();
    let error = load_with_env(args, no_env()).unwrap_err();
    assert_eq!(error.key, "initial_members.voter");
}

#[test]
fn bad_values_name_their_key() {
    let cases = [
        (
            "listen_peer = \"10.0.0.1:7101\"",
            "listen_peer = \"10.0.0.1\"",
            "listen_peer",
        ),
        ("id = 1", "id = \"one\"", "id"),
        ("id = 1", "id = 0", "id"),
        ("id = 1", "id = 1\nlog_format = \"xml\"", "log_format"),
        ("id = 1", "id = 1\nlog_level = \"loud\"", "log_level"),
        (
            "id = 1",
            "id = 1\nheartbeat_interval_ticks = 10",
            "election_timeout_ticks",
        ),
        ("id = 1", "id = 1\nmax_value_bytes = 0", "max_value_bytes"),
        (
            "id = 1",
            "id = 1\nsegment_size_bytes = 1048576",
            "segment_size_bytes",
        ),
        ("ca = \"/etc/raftd/ca.pem\"", "ca = 5", "tls.ca"),
        (
            "listen_client = \"10.0.0.1:7001\"",
            "listen_client = \"0.0.0.0:7001\"",
            "advertise_client",
        ),
        ("data_dir = \"/var/lib/raftd\"", "", "data_dir"),
        ("key = \"/etc/raftd/node1-key.pem\"", "", "tls.key"),
        ("id = 1", "id = 1 +", "config"),
    ];
    for (from, to, key) in cases {
        let (_dir, args) = with_file(&MINIMAL.replace(from, to));
        let error = load_with_env(args, no_env()).unwrap_err();
        assert_eq!(error.key, key, "{to}: {error}");
        assert_eq!(error.exit_code(), 2);
    }
}

#[test]
fn bad_env_values_name_their_key_and_variable() {
    let (_dir, args) = with_file(MINIMAL);
    let env = env_of(&[("RAFTD_ADVERTISE_PEER", "nowhere")]);
    let error = load_with_env(args.clone(), env).unwrap_err();
    assert_eq!(error.key, "advertise_peer");
    assert!(error.message.contains("RAFTD_ADVERTISE_PEER"), "{error}");

    let env = env_of(&[("RAFTD_INITIAL_MEMBERS", "1=10.0.0.1:7101")]);
    let error = load_with_env(args, env).unwrap_err();
    assert_eq!(error.key, "initial_members");
}

#[test]
fn missing_file_is_named() {
    let flags = RunArgs {
        config: Some("/nonexistent/raftd.toml".into()),
        ..RunArgs::default()
    };
    let error = load_with_env(flags, no_env()).unwrap_err();
    assert_eq!(error.key, "config");
    assert!(error.message.contains("/nonexistent/raftd.toml"));
}

#[test]
fn initial_members_flag() {
    let flags = args(&[
        "--initial-members",
        "1=10.0.0.1:7101/10.0.0.1:7001,2=[fd00::2]:7102/[fd00::2]:7002",
        "--initial-members=3=10.0.0.3:7103/10.0.0.3:7003",
    ]);
    let members = flags.initial_members.unwrap();
    assert_eq!(
        members,
        vec![
            InitialMember {
                id: 1,
                peer_addr: addr("10.0.0.1:7101"),
                client_addr: addr("10.0.0.1:7001"),
            },
            InitialMember {
                id: 2,
                peer_addr: addr("[fd00::2]:7102"),
                client_addr: addr("[fd00::2]:7002"),
            },
            InitialMember {
                id: 3,
                peer_addr: addr("10.0.0.3:7103"),
                client_addr: addr("10.0.0.3:7003"),
            },
        ]
    );
    assert_eq!(
        members[1].to_string().parse::<InitialMember>(),
        Ok(members[1])
    );

    for bad in [
        "1=10.0.0.1:7101",
        "x=1.1.1.1:1/1.1.1.1:2",
        "1:1.1.1.1:1/1.1.1.1:2",
        "1=a/b",
    ] {
        let parsed = RunArgs::try_parse_from(["run", "--initial-members", bad]);
        let error = parsed.unwrap_err();
        assert_eq!(error.exit_code(), 2);
        assert!(error.to_string().contains("--initial-members"), "{error}");
    }
}

#[test]
fn flag_members_replace_file_members_and_are_checked() {
    let file = MINIMAL.replace(
        "[tls]",
        "[[initial_members]]\nid = 1\npeer_addr = \"10.0.0.1:7101\"\n\
         client_addr = \"10.0.0.1:7001\"\n[tls]",
    );
    let (_dir, flags) = with_file(&file);
    let config = load_with_env(flags.clone(), no_env()).unwrap();
    assert_eq!(config.initial_members.len(), 1);

    let mut two =
        args(&["--initial-members=1=10.0.0.1:7101/10.0.0.1:7001,2=10.0.0.2:7102/10.0.0.2:7002"]);
    two.config = flags.config.clone();
    assert_eq!(
        load_with_env(two, no_env()).unwrap().initial_members.len(),
        2
    );

    let mut duplicate =
        args(&["--initial-members=1=10.0.0.1:7101/10.0.0.1:7001,1=10.0.0.2:7102/10.0.0.2:7002"]);
    duplicate.config = flags.config.clone();
    let error = load_with_env(duplicate, no_env()).unwrap_err();
    assert_eq!(error.key, "initial_members");
    assert!(error.message.contains("same id"), "{error}");

    let mut zero = args(&["--initial-members=0=10.0.0.1:7101/10.0.0.1:7001"]);
    zero.config = flags.config;
    assert_eq!(
        load_with_env(zero, no_env()).unwrap_err().key,
        "initial_members"
    );
}

#[test]
fn relative_paths_resolve_against_the_file() {
    let text = MINIMAL
        .replace("/var/lib/raftd", "data")
        .replace("/etc/raftd/ca.pem", "../certs/ca.pem")
        .replace("/etc/raftd/node1.pem", "certs/node1.pem");
    let (dir, args) = with_file(&text);
    let base = std::path::absolute(dir.path()).unwrap();
    let config = load_with_env(args, no_env()).unwrap();
    assert_eq!(config.data_dir, base.join("data"));
    assert_eq!(config.tls.ca, base.join("../certs/ca.pem"));
    assert_eq!(config.tls.cert, base.join("certs/node1.pem"));
    assert_eq!(config.tls.key, PathBuf::from("/etc/raftd/node1-key.pem"));

    // Paths from flags and the environment are taken as given (relative to the
    // working directory).
    let (_dir, mut flags) = with_file(&text);
    flags.tls_key = Some("k.pem".into());
    let env = env_of(&[("RAFTD_TLS_CA", "ca.pem")]);
    let config = load_with_env(flags, env).unwrap();
    assert_eq!(config.tls.key, PathBuf::from("k.pem"));
    assert_eq!(config.tls.ca, PathBuf::from("ca.pem"));
}

#[test]
fn env_var_names() {
    assert_eq!(env_var_name("tls.ca"), "RAFTD_TLS_CA");
    assert_eq!(env_var_name("initial_members"), "RAFTD_INITIAL_MEMBERS");
    assert_eq!(env_var_name("max_value_bytes"), "RAFTD_MAX_VALUE_BYTES");
}

/// The example config shipped for systemd installs loads as it is, and the unit
/// gives a leader's hand-off on stop enough time.
#[test]
fn the_systemd_example_config_loads() {
    let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/systemd");
    let args = RunArgs {
        config: Some(deploy.join("raftd.toml")),
        ..RunArgs::default()
    };
    let config = load_with_env(args, no_env()).unwrap();
    assert_eq!(config.id, 1);
    assert_eq!(config.data_dir, PathBuf::from("/var/lib/raftd"));
    assert_eq!(config.initial_members.len(), 3);
    assert_eq!(config.advertise_peer, addr("10.0.0.1:7101"));
    assert_eq!(config.tls.key, deploy.join("certs/node1-key.pem"));

    let unit = fs::read_to_string(deploy.join("raftd.service")).unwrap();
    let stop_seconds: u64 = unit
        .lines()
        .find_map(|line| line.strip_prefix("TimeoutStopSec="))
        .and_then(|value| value.strip_suffix('s'))
        .and_then(|value| value.parse().ok())
        .expect("TimeoutStopSec=<N>s in raftd.service");
    assert!(
        stop_seconds * 1000 >= 2 * config.shutdown_transfer_timeout_ms,
        "TimeoutStopSec={stop_seconds}s leaves too little room for the hand-off"
    );
}
