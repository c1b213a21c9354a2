//! `raftd`'s configuration: the TOML file, `RAFTD_*` environment variables and the
//! flags of `raftd run`, merged into one validated [`ServerConfig`]. Precedence is
//! flag > environment > file > default, and every error names the key it is about
//! (docs/configuration.md lists the keys).

use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use layer::{Layer, env_layer, flag_layer, read_file};

/// Prefix of every environment variable `raftd` reads: key `tls.ca` is `RAFTD_TLS_CA`.
pub const ENV_PREFIX: &str = "RAFTD_";
/// Environment variable naming the configuration file when `--config` is not given.
pub const CONFIG_ENV: &str = "RAFTD_CONFIG";

/// Default of [`ServerConfig::max_value_bytes`]: 1 MiB.
pub const DEFAULT_MAX_VALUE_BYTES: u64 = 1 << 20;
/// Default of [`ServerConfig::snapshot_every_entries`].
pub const DEFAULT_SNAPSHOT_EVERY_ENTRIES: u64 = 100_000;
/// Default of [`ServerConfig::ready_lag`], in entries.
pub const DEFAULT_READY_LAG: u64 = 1_000;
/// Default of [`ServerConfig::tick_interval_ms`].
pub const DEFAULT_TICK_INTERVAL_MS: u64 = 100;
/// Default of [`ServerConfig::election_timeout_ticks`].
pub const DEFAULT_ELECTION_TIMEOUT_TICKS: u32 = 10;
/// Default of [`ServerConfig::heartbeat_interval_ticks`].
pub const DEFAULT_HEARTBEAT_INTERVAL_TICKS: u32 = 2;
/// Default of [`ServerConfig::request_timeout_ms`].
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 5_000;
/// Default of [`ServerConfig::shutdown_transfer_timeout_ms`].
pub const DEFAULT_SHUTDOWN_TRANSFER_TIMEOUT_MS: u64 = 5_000;
/// Default of [`ServerConfig::segment_size_bytes`]: 64 MiB.
pub const DEFAULT_SEGMENT_SIZE_BYTES: u64 = 64 << 20;
/// Default of [`ServerConfig::log_level`].
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// Room a WAL segment needs beyond the largest value: the key (up to 4096 bytes), the
/// command's encoding and the entry framing.
const SEGMENT_HEADROOM_BYTES: u64 = 64 << 10;

/// The complete, validated configuration of one `raftd` member.
///
/// Build it with [`load`] (file, environment and flags) or, in tests, with
/// [`ServerConfig::new`] and field updates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// This member's id (`id`), 1 or more; recorded in the data directory.
    pub id: u64,
    /// The data directory (`data_dir`): lock file, identity, `wal/`, `snap/`. A relative
    /// path in the file is resolved against the file's directory.
    pub data_dir: PathBuf,
    /// Where to bind the peer endpoint (`listen_peer`): UDP, QUIC with mutual TLS.
    pub listen_peer: SocketAddr,
    /// The peer address other members use (`advertise_peer`); defaults to
    /// `listen_peer`, and must not be a wildcard address.
    pub advertise_peer: SocketAddr,
    /// Where to bind the client endpoint (`listen_client`): TCP, the HTTP API and
    /// `/metrics`.
    pub listen_client: SocketAddr,
    /// The client address given to clients and other members (`advertise_client`);
    /// defaults to `listen_client`, and must not be a wildcard address.
    pub advertise_client: SocketAddr,
    /// The members that bootstrap the cluster together (`initial_members`); empty for
    /// a member that waits to be added. Ids are unique.
    pub initial_members: Vec<InitialMember>,
    /// The PEM files for mutual TLS between members (`[tls]`).
    pub tls: TlsPaths,
    /// Largest accepted value, in bytes (`max_value_bytes`, default 1 MiB); larger
    /// writes are answered 413 `too_large`.
    pub max_value_bytes: u64,
    /// Take a snapshot and compact the log after this many applied entries since the
    /// last one (`snapshot_every_entries`, default 100000, as etcd's `--snapshot-count`).
    pub snapshot_every_entries: u64,
    /// `/readyz` answers 200 only while the applied index is within this many entries
    /// of the commit index (`ready_lag`, default 1000).
    pub ready_lag: u64,
    /// Length of one Raft tick, in milliseconds (`tick_interval_ms`, default 100).
    pub tick_interval_ms: u64,
    /// Election timeout in ticks (`election_timeout_ticks`, default 10): each
    /// election waits a random number of ticks in `[n, 2n)`.
    pub election_timeout_ticks: u32,
    /// A leader sends heartbeats every this many ticks (`heartbeat_interval_ticks`,
    /// default 2); below `election_timeout_ticks`.
    pub heartbeat_interval_ticks: u32,
    /// How long a client request may wait for commit and apply before 504 `timeout`,
    /// in milliseconds (`request_timeout_ms`, default 5000).
    pub request_timeout_ms: u64,
    /// On SIGTERM, how long a leader tries to hand leadership to the most caught-up
    /// voter before it exits anyway, in milliseconds (`shutdown_transfer_timeout_ms`,
    /// default 5000; 0 skips the transfer).
    pub shutdown_transfer_timeout_ms: u64,
    /// Size of one WAL segment file, in bytes (`segment_size_bytes`, default 64 MiB);
    /// at least `max_value_bytes` + 64 KiB so the largest entry fits.
    pub segment_size_bytes: u64,
    /// Log output format (`log_format`, default text).
    pub log_format: LogFormat,
    /// Log filter (`log_level`, default `info`): a level (`error`, `warn`, `info`,
    /// `debug`, `trace`, `off`) or `tracing-subscriber` directives such as
    /// `info,raft_server=debug`.
    pub log_level: String,
}

/// One member of the initial configuration (`[[initial_members]]`).
///
/// As a flag or environment value it is written `ID=PEER_ADDR/CLIENT_ADDR`, e.g.
/// `1=10.0.0.1:7101/10.0.0.1:7001`; a list joins members with commas.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitialMember {
    /// The member's id.
    pub id: u64,
    /// Its peer (QUIC) address.
    pub peer_addr: SocketAddr,
    /// Its client (HTTP) address.
    pub client_addr: SocketAddr,
}

/// The PEM files a member presents to and checks its peers with (`[tls]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsPaths {
    /// The cluster CA certificate (`tls.ca`); peers must chain to it.
    pub ca: PathBuf,
    /// This member's certificate (`tls.cert`).
    pub cert: PathBuf,
    /// This member's private key (`tls.key`).
    pub key: PathBuf,
}

/// How log lines are written.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// A configuration that cannot be used: `key` names the offending key (`tls.ca`,
/// `initial_members`, ...; `config` for the file as a whole) and `message` says why.
/// `raftd` exits with code 2 on it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("bad configuration `{key}`: {message}")]
pub struct ConfigError {
    /// The key, dotted for nested keys (`tls.cert`).
    pub key: String,
    /// What is wrong with it, naming the file or variable it came from.
    pub message: String,
}

impl ConfigError {
    /// An error about `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            key: key.into(),
            message: message.into(),
        }
    }

    /// The process exit code for a bad configuration: 2.
    pub fn exit_code(&self) -> i32 {
        2
    }
}

/// The flags of `raftd run`. Every flag is optional: a flag overrides the
/// environment variable, which overrides the file, which overrides the default.
#[derive(Clone, Debug, Default, clap::Parser)]
#[command(name = "run")]
pub struct RunArgs {
    /// The TOML configuration file [env: RAFTD_CONFIG]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// This member's id, 1 or more [env: RAFTD_ID]
    #[arg(long, value_name = "ID")]
    pub id: Option<u64>,
    /// The data directory [env: RAFTD_DATA_DIR]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Peer (QUIC, UDP) bind address [env: RAFTD_LISTEN_PEER]
    #[arg(long, value_name = "ADDR")]
    pub listen_peer: Option<SocketAddr>,
    /// Peer address announced to other members [default: listen-peer] [env: RAFTD_ADVERTISE_PEER]
    #[arg(long, value_name = "ADDR")]
    pub advertise_peer: Option<SocketAddr>,
    /// Client (HTTP, TCP) bind address [env: RAFTD_LISTEN_CLIENT]
    #[arg(long, value_name = "ADDR")]
    pub listen_client: Option<SocketAddr>,
    /// Client address announced to clients and members [default: listen-client] [env: RAFTD_ADVERTISE_CLIENT]
    #[arg(long, value_name = "ADDR")]
    pub advertise_client: Option<SocketAddr>,
    /// Bootstrap members, ID=PEER_ADDR/CLIENT_ADDR joined by commas (or repeat the flag) [env: RAFTD_INITIAL_MEMBERS]
    #[arg(long, value_name = "MEMBERS", value_delimiter = ',')]
    pub initial_members: Option<Vec<InitialMember>>,
    /// Cluster CA certificate, PEM [env: RAFTD_TLS_CA]
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// This member's certificate, PEM [env: RAFTD_TLS_CERT]
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// This member's private key, PEM [env: RAFTD_TLS_KEY]
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Largest value in bytes [default: 1048576] [env: RAFTD_MAX_VALUE_BYTES]
    #[arg(long, value_name = "BYTES")]
    pub max_value_bytes: Option<u64>,
    /// Snapshot after this many applied entries [default: 100000] [env: RAFTD_SNAPSHOT_EVERY_ENTRIES]
    #[arg(long, value_name = "ENTRIES")]
    pub snapshot_every_entries: Option<u64>,
    /// /readyz tolerance between applied and commit index [default: 1000] [env: RAFTD_READY_LAG]
    #[arg(long, value_name = "ENTRIES")]
    pub ready_lag: Option<u64>,
    /// Length of a Raft tick [default: 100] [env: RAFTD_TICK_INTERVAL_MS]
    #[arg(long, value_name = "MS")]
    pub tick_interval_ms: Option<u64>,
    /// Election timeout n; each election waits [n, 2n) ticks [default: 10] [env: RAFTD_ELECTION_TIMEOUT_TICKS]
    #[arg(long, value_name = "TICKS")]
    pub election_timeout_ticks: Option<u32>,
    /// Leader heartbeat interval [default: 2] [env: RAFTD_HEARTBEAT_INTERVAL_TICKS]
    #[arg(long, value_name = "TICKS")]
    pub heartbeat_interval_ticks: Option<u32>,
    /// Client request timeout [default: 5000] [env: RAFTD_REQUEST_TIMEOUT_MS]
    #[arg(long, value_name = "MS")]
    pub request_timeout_ms: Option<u64>,
    /// Leadership hand-off bound on shutdown [default: 5000] [env: RAFTD_SHUTDOWN_TRANSFER_TIMEOUT_MS]
    #[arg(long, value_name = "MS")]
    pub shutdown_transfer_timeout_ms: Option<u64>,
    /// WAL segment size [default: 67108864] [env: RAFTD_SEGMENT_SIZE_BYTES]
    #[arg(long, value_name = "BYTES")]
    pub segment_size_bytes: Option<u64>,
    /// Log format [default: text] [env: RAFTD_LOG_FORMAT]
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Log filter: a level or tracing directives [default: info] [env: RAFTD_LOG_LEVEL]
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
}

/// Loads the configuration of `raftd run`: the file named by `--config` (or
/// `RAFTD_CONFIG`), then the `RAFTD_*` environment variables, then the flags, each
/// overriding the one before, then the defaults; and validates the result.
pub fn load(args: RunArgs) -> Result<ServerConfig, ConfigError> {
    load_with_env(args, |name| std::env::var_os(name))
}

/// [`load`] with the environment given as a lookup function (`RAFTD_ID` ->
/// `Some("3")`), so tests need not touch the process environment. A variable set to
/// the empty string counts as unset.
pub fn load_with_env(
    args: RunArgs,
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<ServerConfig, ConfigError> {
    let env = |name: &str| env(name).filter(|value| !value.is_empty());
    let config_path = args
        .config
        .clone()
        .or_else(|| env(CONFIG_ENV).map(PathBuf::from));
    let file = match &config_path {
        Some(path) => read_file(path)?,
        None => Layer::default(),
    };
    let env = env_layer(&env)?;
    let flags = flag_layer(args);
    flags.over(env).over(file).finish()
}

/// The environment variable of `key`: `tls.ca` -> `RAFTD_TLS_CA`.
pub fn env_var_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.replace('.', "_").to_ascii_uppercase())
}

impl ServerConfig {
    /// A configuration with the required keys given and every other key at its
    /// default (advertised addresses equal to the listen addresses, no initial
    /// members). For tests and tools; `raftd` itself uses [`load`].
    pub fn new(
        id: u64,
        data_dir: PathBuf,
        listen_peer: SocketAddr,
        listen_client: SocketAddr,
        tls: TlsPaths,
    ) -> ServerConfig {
        ServerConfig {
            id,
            data_dir,
            listen_peer,
            advertise_peer: listen_peer,
            listen_client,
            advertise_client: listen_client,
            initial_members: Vec::new(),
            tls,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            snapshot_every_entries: DEFAULT_SNAPSHOT_EVERY_ENTRIES,
            ready_lag: DEFAULT_READY_LAG,
            tick_interval_ms: DEFAULT_TICK_INTERVAL_MS,
            election_timeout_ticks: DEFAULT_ELECTION_TIMEOUT_TICKS,
            heartbeat_interval_ticks: DEFAULT_HEARTBEAT_INTERVAL_TICKS,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            shutdown_transfer_timeout_ms: DEFAULT_SHUTDOWN_TRANSFER_TIMEOUT_MS,
            segment_size_bytes: DEFAULT_SEGMENT_SIZE_BYTES,
            log_format: LogFormat::Text,
            log_level: DEFAULT_LOG_LEVEL.to_owned(),
        }
    }

    /// Checks the values that do not depend on each other's source: ids, ranges,
    /// advertised addresses, the log filter. [`load`] calls it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id == 0 {
            return Err(ConfigError::new(
                "id",
                "must be 1 or more (0 means no member)",
            ));
        }
        check_advertised("advertise_peer", "listen_peer", self.advertise_peer)?;
        check_advertised("advertise_client", "listen_client", self.advertise_client)?;
        check_members(&self.initial_members)?;
        let at_least_one = [
            ("max_value_bytes", self.max_value_bytes),
            ("snapshot_every_entries", self.snapshot_every_entries),
            ("tick_interval_ms", self.tick_interval_ms),
            ("request_timeout_ms", self.request_timeout_ms),
            (
                "heartbeat_interval_ticks",
                u64::from(self.heartbeat_interval_ticks),
            ),
        ];
        for (key, value) in at_least_one {
            if value == 0 {
                return Err(ConfigError::new(key, "must be 1 or more"));
            }
        }
        if self.election_timeout_ticks <= self.heartbeat_interval_ticks {
            return Err(ConfigError::new(
                "election_timeout_ticks",
                format!(
                    "{} must be above heartbeat_interval_ticks ({}), or followers would \
                     start elections between heartbeats",
                    self.election_timeout_ticks, self.heartbeat_interval_ticks
                ),
            ));
        }
        if self.election_timeout_ticks > u32::MAX / 2 {
            return Err(ConfigError::new(
                "election_timeout_ticks",
                format!(
                    "{} is too large (at most {})",
                    self.election_timeout_ticks,
                    u32::MAX / 2
                ),
            ));
        }
        let segment_minimum = self.max_value_bytes.saturating_add(SEGMENT_HEADROOM_BYTES);
        if self.segment_size_bytes < segment_minimum {
            return Err(ConfigError::new(
                "segment_size_bytes",
                format!(
                    "{} is too small: a segment must hold the largest entry, at least \
                     max_value_bytes + 64 KiB = {segment_minimum}",
                    self.segment_size_bytes
                ),
            ));
        }
        check_log_level(&self.log_level)
    }

    /// The length of one tick.
    pub fn tick_interval(&self) -> Duration {
        Duration::from_millis(self.tick_interval_ms)
    }

    /// The randomized election timeout range in ticks, `[n, 2n)`, for raft-core's
    /// `election_timeout_ticks_min` and `election_timeout_ticks_max`.
    pub fn election_timeout_ticks_range(&self) -> (u32, u32) {
        (
            self.election_timeout_ticks,
            self.election_timeout_ticks.saturating_mul(2),
        )
    }

    /// How long a client request may wait.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// How long a leader tries to hand off leadership on shutdown.
    pub fn shutdown_transfer_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_transfer_timeout_ms)
    }
}

impl FromStr for InitialMember {
    type Err = String;

    /// Parses `ID=PEER_ADDR/CLIENT_ADDR`.
    fn from_str(text: &str) -> Result<InitialMember, String> {
        let expected = "expected ID=PEER_ADDR/CLIENT_ADDR, e.g. 1=10.0.0.1:7101/10.0.0.1:7001";
        let text = text.trim();
        let (id, addrs) = text
            .split_once('=')
            .ok_or_else(|| format!("`{text}`: no `=`; {expected}"))?;
        let (peer, client) = addrs
            .split_once('/')
            .ok_or_else(|| format!("`{text}`: no `/` between the addresses; {expected}"))?;
        let id = id
            .trim()
            .parse()
            .map_err(|error| format!("`{text}`: bad id `{id}`: {error}; {expected}"))?;
        let address = |addr: &str| {
            addr.trim()
                .parse::<SocketAddr>()
                .map_err(|error| format!("`{text}`: bad address `{addr}`: {error}; {expected}"))
        };
        Ok(InitialMember {
            id,
            peer_addr: address(peer)?,
            client_addr: address(client)?,
        })
    }
}

impl fmt::Display for InitialMember {
    /// Writes `ID=PEER_ADDR/CLIENT_ADDR`, the form [`InitialMember::from_str`] reads.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}/{}", self.id, self.peer_addr, self.client_addr)
    }
}

impl FromStr for LogFormat {
    type Err = String;

    /// Parses `text` or `json` (any case).
    fn from_str(text: &str) -> Result<LogFormat, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!(
                "`{text}` is not a log format; expected `text` or `json`"
            )),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

fn check_advertised(key: &str, listen_key: &str, addr: SocketAddr) -> Result<(), ConfigError> {
    if addr.ip().is_unspecified() {
        return Err(ConfigError::new(
            key,
            format!(
                "{addr} is a wildcard address other members and clients cannot reach; set \
                 `{key}` when `{listen_key}` binds all interfaces"
            ),
        ));
    }
    Ok(())
}

fn check_members(members: &[InitialMember]) -> Result<(), ConfigError> {
    for (at, member) in members.iter().enumerate() {
        if member.id == 0 {
            return Err(ConfigError::new(
                "initial_members",
                format!("member {member}: id must be 1 or more"),
            ));
        }
        for earlier in &members[..at] {
            let clash = if earlier.id == member.id {
                "id"
            } else if earlier.peer_addr == member.peer_addr {
                "peer_addr"
            } else if earlier.client_addr == member.client_addr {
                "client_addr"
            } else {
                continue;
            };
            return Err(ConfigError::new(
                "initial_members",
                format!("members {earlier} and {member} have the same {clash}"),
            ));
        }
    }
    Ok(())
}

fn check_log_level(level: &str) -> Result<(), ConfigError> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let level = level.trim();
    // A bare word would parse as a target name and silently log everything, so a
    // single directive without `=` must be a level.
    let directives = level.contains(['=', ',']);
    if !directives && !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
        return Err(ConfigError::new(
            "log_level",
            format!("`{level}` is not a level (off, error, warn, info, debug, trace)"),
        ));
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(level)
        .map(drop)
        .map_err(|error| ConfigError::new("log_level", format!("`{level}`: {error}")))
}

mod layer;

#[cfg(test)]
mod tests;
