//! Snapshots in raftd: taking one (the key-value state at the applied index, written
//! through raft-wal's snapshot writer, then compacting the log), sending one to a
//! follower that needs it (through raft-transport's resumable snapshot stream), and
//! staging one that arrived. Keeps true: a snapshot is durable before the log it
//! covers is compacted; a received snapshot is staged (durable, not yet the latest,
//! deleting nothing) before raft-core is told about it, and becomes the latest, with
//! the log cut to match, only in the WAL operation that installs it when raft-core
//! asks. The functions here block; the snapshot manager runs them off the driver.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use raft_core::{LogIndex, Membership, SnapshotMeta, Term};
use raft_transport::{SnapshotHeader, Transport};
use raft_wal::{StagedSnapshot, Wal};

use crate::kv::KvStore;
use crate::storage::{decode_membership, encode_membership};

/// Entries kept in the log behind a snapshot, at most, so a follower slightly behind
/// catches up from the log rather than by a whole snapshot.
const KEEP_ENTRIES: u64 = 1000;

/// How many entries to keep behind a snapshot when one is taken every
/// `snapshot_every_entries` (0: only on demand).
pub(crate) fn keep_entries(snapshot_every_entries: u64) -> u64 {
    if snapshot_every_entries == 0 {
        KEEP_ENTRIES
    } else {
        KEEP_ENTRIES.min(snapshot_every_entries / 2)
    }
}

/// Writes a durable snapshot of `kv` (applied through its applied index, whose entry
/// has `term`, with `membership` in effect). Blocking: run it off the driver, on a
/// copy of the state machine, so the commit path does not wait for it. Returns the
/// WAL's record of the snapshot; compact the log behind it with [`compact`].
pub(crate) fn write(
    wal: &Wal,
    kv: &KvStore,
    term: Term,
    membership: &Membership,
) -> Result<raft_wal::SnapshotMeta, String> {
    let index = kv.applied_index();
    let metadata = encode_membership(membership);
    let mut writer = wal
        .snapshot_writer(index, term.0, metadata.clone())
        .map_err(|e| e.to_string())?;
    kv.write_snapshot(&metadata, &mut writer)
        .map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())
}

/// Removes the log behind a durable snapshot at `index`, keeping its last
/// `keep_entries` entries for followers slightly behind.
pub(crate) fn compact(wal: &Wal, index: u64, keep_entries: u64) -> Result<(), String> {
    fail::fail_point!("snapshot-compact");
    let first_index = index.saturating_sub(keep_entries).max(1);
    if first_index > wal.first_index() {
        wal.compact(first_index).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The state machine in the newest durable snapshot, if there is one.
pub(crate) fn load_latest(wal: &Wal) -> Result<Option<KvStore>, String> {
    let Some(reader) = wal.open_snapshot().map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let (kv, _) = KvStore::read_snapshot(reader).map_err(|e| e.to_string())?;
    Ok(Some(kv))
}

/// The transport header's metadata: the leader's term (to step the snapshot into the
/// follower as a message of that term) and the snapshot's membership.
fn header_metadata(leader_term: Term, membership: &Membership) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u64_le(leader_term.0);
    out.put_slice(&encode_membership(membership));
    out.freeze()
}

/// Reads back [`header_metadata`].
pub(crate) fn parse_header(header: &SnapshotHeader) -> Result<(Term, SnapshotMeta), String> {
    let mut bytes = header.metadata.clone();
    if bytes.remaining() < 8 {
        return Err("snapshot header metadata too short".into());
    }
    let leader_term = Term(bytes.get_u64_le());
    let membership = decode_membership(bytes).map_err(|e| e.to_string())?;
    Ok((
        leader_term,
        SnapshotMeta {
            index: header.index,
            term: header.term,
            membership,
        },
    ))
}

/// Copies the newest snapshot's data to a file under `dir` (the transport reads it at
/// offsets) and streams it to `to`. Runs on a blocking thread for the copy; the
/// returned future completes when the follower acknowledged every byte.
pub(crate) async fn send(
    transport: Transport,
    wal: Arc<Wal>,
    dir: PathBuf,
    to: raft_core::NodeId,
    leader_term: Term,
    snapshot: SnapshotMeta,
) -> Result<(), String> {
    let path = dir.join(format!("send-{}-{}.data", to.0, snapshot.index.0));
    let copy_path = path.clone();
    let total_bytes =
        tokio::task::spawn_blocking(move || copy_latest(&wal, &copy_path, snapshot.index))
            .await
            .map_err(|e| e.to_string())??;
    let header = SnapshotHeader {
        index: snapshot.index,
        term: snapshot.term,
        total_bytes,
        metadata: header_metadata(leader_term, &snapshot.membership),
    };
    let file = File::open(&path).map_err(|e| e.to_string())?;
    let result = match transport.send_snapshot(to, header, Arc::new(file)) {
        Ok(transfer) => transfer.await.map(|_| ()).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let _ = std::fs::remove_file(&path);
    result
}

fn copy_latest(wal: &Wal, path: &Path, index: LogIndex) -> Result<u64, String> {
    let mut reader = wal
        .open_snapshot()
        .map_err(|e| e.to_string())?
        .ok_or("no snapshot to send")?;
    if reader.meta().index != index.0 {
        return Err(format!(
            "the newest snapshot is at {}, not {index}",
            reader.meta().index
        ));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    let mut out = File::create(path).map_err(|e| e.to_string())?;
    let copied = io::copy(&mut reader, &mut out).map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())?;
    Ok(copied)
}

/// Stages a snapshot that arrived at `path` in this member's WAL (durable, but not
/// its latest snapshot until installed) and returns its state machine. raft-core is
/// told afterwards; if it asks to install it, [`raft_wal::Wal::submit_install_staged`]
/// makes it the log's base, otherwise the staged copy is discarded.
pub(crate) fn receive(
    wal: &Wal,
    path: &Path,
    snapshot: &SnapshotMeta,
) -> Result<(KvStore, StagedSnapshot), String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let (kv, _) = KvStore::read_snapshot(io::BufReader::new(file)).map_err(|e| e.to_string())?;
    if kv.applied_index() != snapshot.index.0 {
        return Err(format!(
            "snapshot data is at {}, its header says {}",
            kv.applied_index(),
            snapshot.index
        ));
    }
    let metadata = encode_membership(&snapshot.membership);
    let mut writer = wal
        .snapshot_writer(snapshot.index.0, snapshot.term.0, metadata)
        .map_err(|e| e.to_string())?;
    let mut data = File::open(path).map_err(|e| e.to_string())?;
    io::copy(&mut data, &mut writer).map_err(|e| e.to_string())?;
    let staged = writer.finish_staged().map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(path);
    Ok((kv, staged))
}
