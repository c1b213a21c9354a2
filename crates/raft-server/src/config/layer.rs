//! One source of configuration at a time: the TOML file, the `RAFTD_*` environment
//! and the flags each become a [`Layer`] with every key optional; layers are stacked
//! by precedence and then completed with defaults. Every error names its key.

use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;

use super::*;

/// One source's view of the configuration: every key optional. The file is
/// deserialized into it directly, so its shape is the file's shape.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Layer {
    id: Option<u64>,
    data_dir: Option<PathBuf>,
    listen_peer: Option<SocketAddr>,
    advertise_peer: Option<SocketAddr>,
    listen_client: Option<SocketAddr>,
    advertise_client: Option<SocketAddr>,
    initial_members: Option<Vec<InitialMember>>,
    tls: Option<TlsLayer>,
    max_value_bytes: Option<u64>,
    snapshot_every_entries: Option<u64>,
    ready_lag: Option<u64>,
    tick_interval_ms: Option<u64>,
    election_timeout_ticks: Option<u32>,
    heartbeat_interval_ticks: Option<u32>,
    request_timeout_ms: Option<u64>,
    shutdown_transfer_timeout_ms: Option<u64>,
    segment_size_bytes: Option<u64>,
    log_format: Option<LogFormat>,
    log_level: Option<String>,
}

/// The `[tls]` table of one source.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TlsLayer {
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

impl Layer {
    /// This layer with its unset keys taken from `lower`.
    pub(super) fn over(self, lower: Layer) -> Layer {
        let (tls, lower_tls) = (self.tls.unwrap_or_default(), lower.tls.unwrap_or_default());
        Layer {
            id: self.id.or(lower.id),
            data_dir: self.data_dir.or(lower.data_dir),
            listen_peer: self.listen_peer.or(lower.listen_peer),
            advertise_peer: self.advertise_peer.or(lower.advertise_peer),
            listen_client: self.listen_client.or(lower.listen_client),
            advertise_client: self.advertise_client.or(lower.advertise_client),
            initial_members: self.initial_members.or(lower.initial_members),
            tls: Some(TlsLayer {
                ca: tls.ca.or(lower_tls.ca),
                cert: tls.cert.or(lower_tls.cert),
                key: tls.key.or(lower_tls.key),
            }),
            max_value_bytes: self.max_value_bytes.or(lower.max_value_bytes),
            snapshot_every_entries: self.snapshot_every_entries.or(lower.snapshot_every_entries),
            ready_lag: self.ready_lag.or(lower.ready_lag),
            tick_interval_ms: self.tick_interval_ms.or(lower.tick_interval_ms),
            election_timeout_ticks: self.election_timeout_ticks.or(lower.election_timeout_ticks),
            heartbeat_interval_ticks: self
                .heartbeat_interval_ticks
                .or(lower.heartbeat_interval_ticks),
            request_timeout_ms: self.request_timeout_ms.or(lower.request_timeout_ms),
            shutdown_transfer_timeout_ms: self
                .shutdown_transfer_timeout_ms
                .or(lower.shutdown_transfer_timeout_ms),
            segment_size_bytes: self.segment_size_bytes.or(lower.segment_size_bytes),
            log_format: self.log_format.or(lower.log_format),
            log_level: self.log_level.or(lower.log_level),
        }
    }

    /// Fills in defaults, insists on the required keys and validates.
    pub(super) fn finish(self) -> Result<ServerConfig, ConfigError> {
        let tls = self.tls.unwrap_or_default();
        let listen_peer = required("listen_peer", self.listen_peer)?;
        let listen_client = required("listen_client", self.listen_client)?;
        let config = ServerConfig {
            id: required("id", self.id)?,
            data_dir: required("data_dir", self.data_dir)?,
            listen_peer,
            advertise_peer: self.advertise_peer.unwrap_or(listen_peer),
            listen_client,
            advertise_client: self.advertise_client.unwrap_or(listen_client),
            initial_members: self.initial_members.unwrap_or_default(),
            tls: TlsPaths {
                ca: required("tls.ca", tls.ca)?,
                cert: required("tls.cert", tls.cert)?,
                key: required("tls.key", tls.key)?,
            },
            max_value_bytes: self.max_value_bytes.unwrap_or(DEFAULT_MAX_VALUE_BYTES),
            snapshot_every_entries: self
                .snapshot_every_entries
                .unwrap_or(DEFAULT_SNAPSHOT_EVERY_ENTRIES),
            ready_lag: self.ready_lag.unwrap_or(DEFAULT_READY_LAG),
            tick_interval_ms: self.tick_interval_ms.unwrap_or(DEFAULT_TICK_INTERVAL_MS),
            election_timeout_ticks: self
                .election_timeout_ticks
                .unwrap_or(DEFAULT_ELECTION_TIMEOUT_TICKS),
            heartbeat_interval_ticks: self
                .heartbeat_interval_ticks
                .unwrap_or(DEFAULT_HEARTBEAT_INTERVAL_TICKS),
            request_timeout_ms: self
                .request_timeout_ms
                .unwrap_or(DEFAULT_REQUEST_TIMEOUT_MS),
            shutdown_transfer_timeout_ms: self
                .shutdown_transfer_timeout_ms
                .unwrap_or(DEFAULT_SHUTDOWN_TRANSFER_TIMEOUT_MS),
            segment_size_bytes: self
                .segment_size_bytes
                .unwrap_or(DEFAULT_SEGMENT_SIZE_BYTES),
            log_format: self.log_format.unwrap_or_default(),
            log_level: self
                .log_level
                .unwrap_or_else(|| DEFAULT_LOG_LEVEL.to_owned()),
        };
        config.validate()?;
        Ok(config)
    }
}

fn required<T>(key: &str, value: Option<T>) -> Result<T, ConfigError> {
    value.ok_or_else(|| {
        ConfigError::new(
            key,
            format!(
                "missing: set `{key}` in the config file, {} or --{}",
                env_var_name(key),
                key.replace(['.', '_'], "-")
            ),
        )
    })
}

/// Parses the TOML text of a configuration file. Relative paths (`data_dir`,
/// `tls.*`) are resolved against `base_dir`; `file` only names the file in errors.
/// Keys missing from the text stay unset, so the result may still lack required keys.
fn parse_file(text: &str, file: &Path, base_dir: &Path) -> Result<Layer, ConfigError> {
    let table: toml::Table = toml::from_str(text).map_err(|error| {
        ConfigError::new(
            "config",
            format!(
                "{} is not valid TOML{}: {}",
                file.display(),
                line_suffix(text, error.span()),
                error.message()
            ),
        )
    })?;
    let mut layer: Layer = table
        .try_into()
        .map_err(|error| file_error(text, file, error))?;
    let resolve = |path: &mut PathBuf| {
        if path.is_relative() {
            *path = base_dir.join(&*path);
        }
    };
    if let Some(path) = &mut layer.data_dir {
        resolve(path);
    }
    if let Some(tls) = &mut layer.tls {
        tls.ca
            .iter_mut()
            .chain(&mut tls.cert)
            .chain(&mut tls.key)
            .for_each(resolve);
    }
    Ok(layer)
}

pub(super) fn read_file(path: &Path) -> Result<Layer, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        ConfigError::new("config", format!("cannot read {}: {error}", path.display()))
    })?;
    // Relative paths in the file mean "next to the file", wherever raftd starts.
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let base_dir = absolute.parent().unwrap_or(Path::new("")).to_path_buf();
    parse_file(&text, path, &base_dir)
}

/// Turns a deserialization error into one naming the key. `toml::Table::try_into`
/// reports the path of the failing value (`in `tls.ca``) but not its position, so
/// the text is parsed once more for the line.
fn file_error(text: &str, file: &Path, error: toml::de::Error) -> ConfigError {
    let rendered = error.to_string();
    let rendered = rendered.trim_end();
    let path = rendered
        .rsplit_once("\nin `")
        .and_then(|(_, rest)| rest.strip_suffix('`'))
        .map(str::to_owned);
    let message = error.message();
    let unknown = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(name, _)| name.to_owned());
    let key = match (path, &unknown) {
        (Some(path), Some(name)) => format!("{path}.{name}"),
        (None, Some(name)) => name.clone(),
        (Some(path), None) => path,
        (None, None) => "config".to_owned(),
    };
    let span = toml::from_str::<Layer>(text)
        .err()
        .and_then(|error| error.span());
    let location = format!("{}{}", file.display(), line_suffix(text, span));
    let message = match unknown {
        Some(_) => format!("unknown key in {location} ({message})"),
        None => format!("{message} in {location}"),
    };
    ConfigError::new(key, message)
}

fn line_suffix(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(span) => {
            let start = span.start.min(text.len());
            let line = text.as_bytes()[..start]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1;
            format!(" (line {line})")
        }
        None => String::new(),
    }
}

pub(super) fn env_layer(env: &impl Fn(&str) -> Option<OsString>) -> Result<Layer, ConfigError> {
    let tls = TlsLayer {
        ca: env(&env_var_name("tls.ca")).map(PathBuf::from),
        cert: env(&env_var_name("tls.cert")).map(PathBuf::from),
        key: env(&env_var_name("tls.key")).map(PathBuf::from),
    };
    Ok(Layer {
        id: env_value(env, "id")?,
        data_dir: env(&env_var_name("data_dir")).map(PathBuf::from),
        listen_peer: env_value(env, "listen_peer")?,
        advertise_peer: env_value(env, "advertise_peer")?,
        listen_client: env_value(env, "listen_client")?,
        advertise_client: env_value(env, "advertise_client")?,
        initial_members: env_string(env, "initial_members")?
            .map(|text| parse_members(&text))
            .transpose()
            .map_err(|message| env_error("initial_members", message))?,
        tls: Some(tls),
        max_value_bytes: env_value(env, "max_value_bytes")?,
        snapshot_every_entries: env_value(env, "snapshot_every_entries")?,
        ready_lag: env_value(env, "ready_lag")?,
        tick_interval_ms: env_value(env, "tick_interval_ms")?,
        election_timeout_ticks: env_value(env, "election_timeout_ticks")?,
        heartbeat_interval_ticks: env_value(env, "heartbeat_interval_ticks")?,
        request_timeout_ms: env_value(env, "request_timeout_ms")?,
        shutdown_transfer_timeout_ms: env_value(env, "shutdown_transfer_timeout_ms")?,
        segment_size_bytes: env_value(env, "segment_size_bytes")?,
        log_format: env_value(env, "log_format")?,
        log_level: env_string(env, "log_level")?,
    })
}

/// Parses a comma-separated list of `ID=PEER_ADDR/CLIENT_ADDR`.
fn parse_members(text: &str) -> Result<Vec<InitialMember>, String> {
    text.split(',')
        .filter(|part| !part.trim().is_empty())
        .map(str::parse)
        .collect()
}

fn env_error(key: &str, message: impl fmt::Display) -> ConfigError {
    ConfigError::new(key, format!("{}: {message}", env_var_name(key)))
}

fn env_string(
    env: &impl Fn(&str) -> Option<OsString>,
    key: &str,
) -> Result<Option<String>, ConfigError> {
    env(&env_var_name(key))
        .map(|value| {
            value
                .into_string()
                .map_err(|_| env_error(key, "not valid UTF-8"))
        })
        .transpose()
}

fn env_value<T>(
    env: &impl Fn(&str) -> Option<OsString>,
    key: &str,
) -> Result<Option<T>, ConfigError>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    env_string(env, key)?
        .map(|text| {
            text.trim()
                .parse()
                .map_err(|error| env_error(key, format!("`{text}`: {error}")))
        })
        .transpose()
}

pub(super) fn flag_layer(args: RunArgs) -> Layer {
    Layer {
        id: args.id,
        data_dir: args.data_dir,
        listen_peer: args.listen_peer,
        advertise_peer: args.advertise_peer,
        listen_client: args.listen_client,
        advertise_client: args.advertise_client,
        initial_members: args.initial_members,
        tls: Some(TlsLayer {
            ca: args.tls_ca,
            cert: args.tls_cert,
            key: args.tls_key,
        }),
        max_value_bytes: args.max_value_bytes,
        snapshot_every_entries: args.snapshot_every_entries,
        ready_lag: args.ready_lag,
        tick_interval_ms: args.tick_interval_ms,
        election_timeout_ticks: args.election_timeout_ticks,
        heartbeat_interval_ticks: args.heartbeat_interval_ticks,
        request_timeout_ms: args.request_timeout_ms,
        shutdown_transfer_timeout_ms: args.shutdown_transfer_timeout_ms,
        segment_size_bytes: args.segment_size_bytes,
        log_format: args.log_format,
        log_level: args.log_level,
    }
}
