//! `raftctl`: argument parsing, the commands and their output, kept here so they
//! can be tested without spawning the binary. The binary only parses, runs and
//! maps errors to exit codes (2 for usage errors, 1 for everything else).

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Parser, Subcommand, ValueEnum};
use serde::Serialize;

use super::{Client, Consistency, Endpoint, Error};
use crate::api::{
    AddMemberRequest, Compare, DeleteResponse, KeyValue, MembersResponse, PutResponse,
    SnapshotResponse, StatusResponse, TransferResponse, TxnOp, TxnOpResult, TxnRequest,
    TxnResponse,
};

/// The default `--endpoints`.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:7001";

/// `raftctl`'s command line.
#[derive(Debug, Parser)]
#[command(
    name = "raftctl",
    version,
    about = "Operate a raftd cluster and read and write its keys over the HTTP API"
)]
pub struct Cli {
    /// Members' client URLs, comma-separated; requests fail over between them.
    #[arg(
        long,
        global = true,
        env = "RAFTCTL_ENDPOINTS",
        default_value = DEFAULT_ENDPOINT,
        value_delimiter = ',',
        value_name = "URL[,URL...]"
    )]
    pub endpoints: Vec<Endpoint>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// How results are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// For humans: values raw, tables aligned.
    Table,
    /// One JSON document (the API's own shapes where there is one).
    Json,
}

/// A `raftctl` subcommand.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write VALUE under KEY.
    Put {
        /// The key (1..=4096 bytes).
        key: String,
        /// The value.
        value: String,
    },
    /// Print the value of KEY (exit 1 if it does not exist).
    Get {
        /// The key.
        key: String,
        /// The read path.
        #[arg(
            long,
            default_value = "linearizable",
            value_parser = PossibleValuesParser::new(["linearizable", "lease", "stale"])
                .map(|s| s.parse::<Consistency>().expect("only listed values get here"))
        )]
        consistency: Consistency,
    },
    /// Delete KEY.
    Del {
        /// The key.
        key: String,
    },
    /// Run an atomic compare-and-swap transaction.
    #[command(long_about = TXN_HELP)]
    Txn(TxnArgs),
    /// Show every member's status: id, role, term, leader, commit, applied, last
    /// index and lag (the highest commit index seen minus the member's applied index).
    Status,
    /// List, add, promote or remove members.
    Members {
        /// The members operation.
        #[command(subcommand)]
        command: MembersCommand,
    },
    /// Hand leadership to voter ID, or to the most caught-up voter.
    TransferLeader {
        /// The voter to become leader.
        id: Option<u64>,
    },
    /// Snapshot now and compact the log (on the member that answers).
    Snapshot,
}

const TXN_HELP: &str = "Run an atomic compare-and-swap transaction.

Either a full transaction as JSON, read from --file FILE (or standard input when
neither --file nor --key is given, or with --file -):
  {\"compare\":[{\"key\":\"k\",\"value\":\"v\"} | {\"key\":\"k\",\"mod_revision\":N} | {\"key\":\"k\",\"exists\":false}],
   \"success\":[{\"put\":{\"key\":\"k\",\"value\":\"v\"}} | {\"delete\":{\"key\":\"k\"}} | {\"get\":{\"key\":\"k\"}}],
   \"failure\":[...]}
or a single compare-and-swap from flags:
  raftctl txn --key K --new-value V (--expect-value OLD | --expect-revision N | --expect-absent)
which writes V under K if the condition holds, and otherwise reads K.
Exit status is 0 whether or not the compare held; the output says which.";

/// `raftctl txn`'s arguments.
#[derive(Debug, clap::Args)]
pub struct TxnArgs {
    /// A JSON TxnRequest file; `-` is standard input.
    #[arg(long, short, conflicts_with_all = ["key", "new_value", "expect_value", "expect_revision", "expect_absent"])]
    pub file: Option<PathBuf>,
    /// Compare-and-swap: the key.
    #[arg(long, requires = "new_value", requires = "expect")]
    pub key: Option<String>,
    /// Compare-and-swap: the value to write if the condition holds.
    #[arg(long, requires = "key")]
    pub new_value: Option<String>,
    /// Compare-and-swap: the key's current value must be this.
    #[arg(long, group = "expect")]
    pub expect_value: Option<String>,
    /// Compare-and-swap: the key's last write must have this revision.
    #[arg(long, group = "expect")]
    pub expect_revision: Option<u64>,
    /// Compare-and-swap: the key must not exist.
    #[arg(long, group = "expect")]
    pub expect_absent: bool,
}

/// `raftctl members` subcommands.
#[derive(Debug, Subcommand)]
pub enum MembersCommand {
    /// List the members.
    List,
    /// Add a member as a learner.
    Add {
        /// The new member's id (never reused).
        id: u64,
        /// Its peer (QUIC) address, host:port.
        peer_addr: String,
        /// Its client (HTTP) address, host:port.
        client_addr: String,
    },
    /// Make a learner a voter.
    Promote {
        /// The learner's id.
        id: u64,
    },
    /// Remove a member.
    Remove {
        /// The member's id.
        id: u64,
    },
}

/// Why a `raftctl` command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// Bad arguments or input that clap could not reject (exit 2).
    #[error("{0}")]
    Usage(String),
    /// `get` of a key that does not exist (exit 1).
    #[error("key not found: {key}")]
    KeyNotFound {
        /// The key.
        key: String,
    },
    /// The API call failed (exit 1).
    #[error(transparent)]
    Client(#[from] Error),
    /// `status` reached no member (exit 1).
    #[error("no member answered: {message}")]
    NoMemberAnswered {
        /// The first member's error.
        message: String,
    },
    /// Reading input or writing output failed (exit 1).
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl CliError {
    /// The process exit code: 2 for usage errors, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Usage(_) => 2,
            _ => 1,
        }
    }
}

/// Builds the transaction `raftctl txn` sends; `stdin` is read only when no file
/// or flags are given (or the file is `-`).
pub fn txn_request(args: &TxnArgs, stdin: impl Read) -> Result<TxnRequest, CliError> {
    if let Some(key) = &args.key {
        let new_value = args
            .new_value
            .clone()
            .ok_or_else(|| CliError::Usage("--key needs --new-value".to_owned()))?;
        let mut compare = Compare {
            key: key.clone(),
            value: None,
            mod_revision: None,
            exists: None,
        };
        if let Some(value) = &args.expect_value {
            compare.value = Some(value.clone());
        } else if let Some(revision) = args.expect_revision {
            compare.mod_revision = Some(revision);
        } else if args.expect_absent {
            compare.exists = Some(false);
        } else {
            return Err(CliError::Usage(
                "--key needs one of --expect-value, --expect-revision, --expect-absent".to_owned(),
            ));
        }
        return Ok(TxnRequest {
            compare: vec![compare],
            success: vec![TxnOp::Put {
                key: key.clone(),
                value: new_value,
            }],
            failure: vec![TxnOp::Get { key: key.clone() }],
        });
    }
    let text = match args.file.as_deref() {
        Some(path) if path.as_os_str() != "-" => std::fs::read_to_string(path)
            .map_err(|error| CliError::Usage(format!("cannot read {}: {error}", path.display())))?,
        _ => {
            let mut text = String::new();
            let mut stdin = stdin;
            stdin.read_to_string(&mut text)?;
            text
        }
    };
    serde_json::from_str(&text)
        .map_err(|error| CliError::Usage(format!("invalid transaction JSON: {error}")))
}

/// Runs one command, writing its result to `out`.
pub async fn run(cli: Cli, out: &mut dyn Write, stdin: impl Read) -> Result<(), CliError> {
    let client = Arc::new(Client::new(cli.endpoints.clone())?);
    let output = cli.output;
    match cli.command {
        Command::Put { key, value } => {
            let response = client.put(&key, value.into_bytes()).await?;
            out.write_all(format_put(&response, output).as_bytes())?;
        }
        Command::Get { key, consistency } => {
            let Some(response) = client.get(&key, consistency).await? else {
                return Err(CliError::KeyNotFound { key });
            };
            out.write_all(&format_get(&key, &response, output))?;
        }
        Command::Del { key } => {
            let response = client.delete(&key).await?;
            out.write_all(format_delete(&response, output).as_bytes())?;
        }
        Command::Txn(args) => {
            let request = txn_request(&args, stdin)?;
            let response = client.txn(&request).await?;
            out.write_all(format_txn(&response, output).as_bytes())?;
        }
        Command::Status => {
            let rows = status_rows(&client).await;
            out.write_all(format_status(&rows, output).as_bytes())?;
            if let Some(message) = all_failed(&rows) {
                return Err(CliError::NoMemberAnswered { message });
            }
        }
        Command::Members { command } => match command {
            MembersCommand::List => {
                let response = client.members().await?;
                out.write_all(format_members(&response, output).as_bytes())?;
            }
            MembersCommand::Add {
                id,
                peer_addr,
                client_addr,
            } => {
                client
                    .add_member(&AddMemberRequest {
                        id,
                        peer_addr,
                        client_addr,
                    })
                    .await?;
                out.write_all(
                    format_done(&format!("member {id} added as a learner"), output).as_bytes(),
                )?;
            }
            MembersCommand::Promote { id } => {
                client.promote_member(id).await?;
                out.write_all(
                    format_done(&format!("member {id} promoted to voter"), output).as_bytes(),
                )?;
            }
            MembersCommand::Remove { id } => {
                client.remove_member(id).await?;
                out.write_all(format_done(&format!("member {id} removed"), output).as_bytes())?;
            }
        },
        Command::TransferLeader { id } => {
            let response = client.transfer_leader(id).await?;
            out.write_all(format_transfer(&response, output).as_bytes())?;
        }
        Command::Snapshot => {
            let response = client.snapshot().await?;
            out.write_all(format_snapshot(&response, output).as_bytes())?;
        }
    }
    Ok(())
}

/// One line of `raftctl status`: a member and what its `/v1/status` said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusRow {
    /// The member's client URL.
    pub endpoint: String,
    /// Its status, or why it could not be read.
    pub status: Result<StatusResponse, String>,
}

/// Asks every member for its status: the members come from the first member that
/// answers; if none does, each given endpoint gets a row with its error.
pub async fn status_rows(client: &Arc<Client>) -> Vec<StatusRow> {
    let mut targets: Vec<Endpoint> = Vec::new();
    if let Ok(status) = client.status().await {
        for member in &status.members {
            if let Ok(endpoint) = member.client_addr.parse::<Endpoint>() {
                targets.push(endpoint);
            }
        }
    }
    if targets.is_empty() {
        targets = client.endpoints().to_vec();
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (index, endpoint) in targets.into_iter().enumerate() {
        let client = Arc::clone(client);
        tasks.spawn(async move {
            let status = client
                .status_at(&endpoint)
                .await
                .map_err(|error| error.to_string());
            (
                index,
                StatusRow {
                    endpoint: endpoint.to_string(),
                    status,
                },
            )
        });
    }
    let mut rows: Vec<(usize, StatusRow)> = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        if let Ok(row) = joined {
            rows.push(row);
        }
    }
    rows.sort_by_key(|(index, _)| *index);
    rows.into_iter().map(|(_, row)| row).collect()
}

/// The first error if no row has a status.
fn all_failed(rows: &[StatusRow]) -> Option<String> {
    if rows.iter().any(|row| row.status.is_ok()) {
        return None;
    }
    Some(
        rows.first()
            .and_then(|row| row.status.clone().err())
            .unwrap_or_default(),
    )
}

/// `put`'s output.
pub fn format_put(response: &PutResponse, output: Output) -> String {
    match output {
        Output::Table => format!("OK revision {}\n", response.revision),
        Output::Json => to_json(response),
    }
}

/// `get`'s output: the raw value and a newline, or a [`KeyValue`] in JSON.
pub fn format_get(key: &str, response: &super::GetResponse, output: Output) -> Vec<u8> {
    match output {
        Output::Table => {
            let mut bytes = response.value.to_vec();
            bytes.push(b'\n');
            bytes
        }
        Output::Json => {
            let (value, value_base64) = match std::str::from_utf8(&response.value) {
                Ok(text) => (Some(text.to_owned()), None),
                Err(_) => (None, Some(base64(&response.value))),
            };
            let kv = KeyValue {
                key: key.to_owned(),
                value,
                value_base64,
                mod_revision: response.mod_revision,
            };
            to_json(&kv).into_bytes()
        }
    }
}

/// `del`'s output.
pub fn format_delete(response: &DeleteResponse, output: Output) -> String {
    match output {
        Output::Table if response.deleted => format!("deleted, revision {}\n", response.revision),
        Output::Table => format!("not found, revision {}\n", response.revision),
        Output::Json => to_json(response),
    }
}

/// `txn`'s output: which branch ran, then one line per operation result.
pub fn format_txn(response: &TxnResponse, output: Output) -> String {
    if output == Output::Json {
        return to_json(response);
    }
    let branch = if response.succeeded {
        "SUCCESS"
    } else {
        "FAILURE"
    };
    let mut text = format!("{branch} revision {}\n", response.revision);
    for result in &response.results {
        let _ = match result {
            TxnOpResult::Put { revision } => writeln!(text, "put: revision {revision}"),
            TxnOpResult::Delete { deleted } => writeln!(text, "delete: deleted={deleted}"),
            TxnOpResult::Get { kv: Some(kv) } => {
                let value = kv
                    .value
                    .as_deref()
                    .or(kv.value_base64.as_deref())
                    .unwrap_or("");
                writeln!(
                    text,
                    "get: {} = {} (mod_revision {})",
                    kv.key, value, kv.mod_revision
                )
            }
            TxnOpResult::Get { kv: None } => writeln!(text, "get: not found"),
        };
    }
    text
}

/// The lag column: the highest commit index any member reported minus this
/// member's applied index.
fn lag(rows: &[StatusRow], status: &StatusResponse) -> u64 {
    let commit = rows
        .iter()
        .filter_map(|row| row.status.as_ref().ok())
        .map(|s| s.commit_index)
        .max();
    commit.unwrap_or(0).saturating_sub(status.applied_index)
}

/// `status`'s output: an aligned table, or a JSON array of
/// `{"endpoint", "status", "lag"}` / `{"endpoint", "error"}`.
pub fn format_status(rows: &[StatusRow], output: Output) -> String {
    if output == Output::Json {
        #[derive(Serialize)]
        struct JsonRow<'a> {
            endpoint: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            status: Option<&'a StatusResponse>,
            #[serde(skip_serializing_if = "Option::is_none")]
            lag: Option<u64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            error: Option<&'a str>,
        }
        let json: Vec<JsonRow<'_>> = rows
            .iter()
            .map(|row| JsonRow {
                endpoint: &row.endpoint,
                status: row.status.as_ref().ok(),
                lag: row.status.as_ref().ok().map(|status| lag(rows, status)),
                error: row.status.as_ref().err().map(String::as_str),
            })
            .collect();
        return to_json(&json);
    }
    let header = [
        "ENDPOINT",
        "ID",
        "ROLE",
        "TERM",
        "LEADER",
        "COMMIT",
        "APPLIED",
        "LAST INDEX",
        "LAG",
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| match &row.status {
            Ok(status) => vec![
                row.endpoint.clone(),
                status.id.to_string(),
                status.role.clone(),
                status.term.to_string(),
                status
                    .leader_id
                    .map_or_else(|| "-".to_owned(), |id| id.to_string()),
                status.commit_index.to_string(),
                status.applied_index.to_string(),
                status.last_log_index.to_string(),
                lag(rows, status).to_string(),
            ],
            Err(error) => vec![row.endpoint.clone(), format!("unreachable: {error}")],
        })
        .collect();
    table(&header, &cells)
}

/// `members list`'s output.
pub fn format_members(response: &MembersResponse, output: Output) -> String {
    if output == Output::Json {
        return to_json(response);
    }
    let cells: Vec<Vec<String>> = response
        .members
        .iter()
        .map(|member| {
            vec![
                member.id.to_string(),
                if member.voter { "voter" } else { "learner" }.to_owned(),
                member.peer_addr.clone(),
                member.client_addr.clone(),
            ]
        })
        .collect();
    table(&["ID", "ROLE", "PEER ADDR", "CLIENT ADDR"], &cells)
}

/// `transfer-leader`'s output.
pub fn format_transfer(response: &TransferResponse, output: Output) -> String {
    match output {
        Output::Table => format!("leader is now {}\n", response.leader),
        Output::Json => to_json(response),
    }
}

/// `snapshot`'s output.
pub fn format_snapshot(response: &SnapshotResponse, output: Output) -> String {
    match output {
        Output::Table => format!(
            "snapshot at index {} (term {}), {} bytes\n",
            response.index, response.term, response.bytes
        ),
        Output::Json => to_json(response),
    }
}

/// Output of commands whose answer carries nothing to show.
pub fn format_done(message: &str, output: Output) -> String {
    match output {
        Output::Table => format!("{message}\n"),
        Output::Json => to_json(&serde_json::json!({ "ok": true, "message": message })),
    }
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> String {
    let mut text = serde_json::to_string_pretty(value).expect("output types serialize");
    text.push('\n');
    text
}

/// Left-aligned columns separated by two spaces; short rows leave cells out.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        // A short row (an unreachable member) spans the table; it sets no width.
        if row.len() == header.len() {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.len());
            }
        }
    }
    let mut text = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut first = true;
        let mut current = String::new();
        for (cell, width) in cells.zip(widths.iter()) {
            if !first {
                current.push_str("  ");
            }
            first = false;
            let _ = write!(current, "{cell:<width$}");
        }
        text.push_str(current.trim_end());
        text.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    text
}

/// Standard base64 with padding, for non-UTF-8 values in JSON output.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut text = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                text.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                text.push('=');
            }
        }
    }
    text
}

#[cfg(test)]
mod tests;
