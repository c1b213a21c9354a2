//! The hard-state file `<data_dir>/hardstate`: two checksummed slots, 4 KiB apart,
//! each holding a sequence number, the term, the vote and the catching-up mark.
//! Writes alternate between the slots and each is synced before anything that
//! depends on it is acknowledged, so a torn slot write always leaves the other slot
//! valid. It must keep true: the slot with the highest valid sequence holds a term
//! and vote at least as new as every acknowledged vote, even if the log group that
//! recorded them is later lost. The byte layout is in `docs/wal-format.md`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::HardState;
use crate::error::{CorruptReason, Result, WalError};
use crate::format::{read_u32, read_u64};
use crate::storage::{OpenMode, Storage, StorageFile};

/// Name of the file inside the data directory.
pub(crate) const HARD_STATE_FILE_NAME: &str = "hardstate";
const SLOT_MAGIC: [u8; 8] = *b"RAFTHS\0\0";
const SLOT_VERSION: u32 = 1;
/// Slots start this far apart, so that no device sector holds parts of both.
const SLOT_SPACING_BYTES: u64 = 4096;
/// Bytes of one slot that are written (the rest of its 4 KiB stays zero).
const SLOT_LEN: usize = 64;
const FILE_LEN_BYTES: u64 = 2 * SLOT_SPACING_BYTES;
/// Flag bit: the log may have lost acknowledged records after `catching_up_after`.
const FLAG_CATCHING_UP: u32 = 1;

/// What one slot holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SlotState {
    /// Increases by one per write; the valid slot with the highest one is current.
    pub(crate) sequence: u64,
    pub(crate) term: u64,
    pub(crate) vote: u64,
    /// The log may have lost acknowledged records after this index.
    pub(crate) catching_up_after: Option<u64>,
}

impl SlotState {
    fn encode(&self) -> [u8; SLOT_LEN] {
        let mut out = [0u8; SLOT_LEN];
        out[0..8].copy_from_slice(&SLOT_MAGIC);
        out[8..12].copy_from_slice(&SLOT_VERSION.to_le_bytes());
        let flags = if self.catching_up_after.is_some() {
            FLAG_CATCHING_UP
        } else {
            0
        };
        out[12..16].copy_from_slice(&flags.to_le_bytes());
        out[16..24].copy_from_slice(&self.sequence.to_le_bytes());
        out[24..32].copy_from_slice(&self.term.to_le_bytes());
        out[32..40].copy_from_slice(&self.vote.to_le_bytes());
        out[40..48].copy_from_slice(&self.catching_up_after.unwrap_or(0).to_le_bytes());
        let crc = crc32fast::hash(&out[0..48]);
        out[48..52].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// A slot that verifies, or `None` (never written, torn, or rotted).
    fn decode(bytes: &[u8]) -> Option<SlotState> {
        if bytes[0..8] != SLOT_MAGIC
            || crc32fast::hash(&bytes[0..48]) != read_u32(bytes, 48)
            || read_u32(bytes, 8) != SLOT_VERSION
            || bytes[52..SLOT_LEN].iter().any(|&b| b != 0)
        {
            return None;
        }
        let flags = read_u32(bytes, 12);
        if flags & !FLAG_CATCHING_UP != 0 {
            return None;
        }
        Some(SlotState {
            sequence: read_u64(bytes, 16),
            term: read_u64(bytes, 24),
            vote: read_u64(bytes, 32),
            catching_up_after: (flags & FLAG_CATCHING_UP != 0).then(|| read_u64(bytes, 40)),
        })
    }
}

/// The open hard-state file and its current (highest-sequence valid) slot.
#[derive(Debug)]
pub(crate) struct HardStateFile {
    file: Arc<dyn StorageFile>,
    path: PathBuf,
    current: SlotState,
}

impl HardStateFile {
    /// Opens `<data_dir>/hardstate`, creating it (both slots empty) if missing: a
    /// data directory from a version without it, or a crash before it got its name.
    pub(crate) fn open(storage: &dyn Storage, data_dir: &Path) -> Result<HardStateFile> {
        let path = data_dir.join(HARD_STATE_FILE_NAME);
        let temporary = data_dir.join(format!("{HARD_STATE_FILE_NAME}.tmp"));
        let io_error = |path: &Path| {
            let path = path.to_path_buf();
            move |error| WalError::io(path, error)
        };
        let file = match storage.open(&path, OpenMode::ReadWrite) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                // Created full size under a temporary name, synced, then named: the
                // file either does not exist or has both (empty) slots.
                match storage.remove_file(&temporary) {
                    Err(error) if error.kind() != io::ErrorKind::NotFound => {
                        return Err(WalError::io(&temporary, error));
                    }
                    _ => {}
                }
                let file = storage
                    .open(&temporary, OpenMode::CreateNew)
                    .map_err(io_error(&temporary))?;
                file.write_all_at(&vec![0u8; FILE_LEN_BYTES as usize], 0)
                    .map_err(io_error(&temporary))?;
                file.sync_data().map_err(io_error(&temporary))?;
                storage
                    .rename(&temporary, &path)
                    .map_err(io_error(&temporary))?;
                storage.sync_dir(data_dir).map_err(io_error(data_dir))?;
                file
            }
            Err(error) => return Err(WalError::io(&path, error)),
        };
        if file.len_bytes().map_err(io_error(&path))? != FILE_LEN_BYTES {
            return Err(WalError::corrupt(&path, 0, CorruptReason::BadSize));
        }
        let mut current = SlotState::default();
        for slot in 0..2 {
            let mut bytes = [0u8; SLOT_LEN];
            file.read_exact_at(&mut bytes, slot * SLOT_SPACING_BYTES)
                .map_err(io_error(&path))?;
            if let Some(state) = SlotState::decode(&bytes)
                && state.sequence >= current.sequence
            {
                current = state;
            }
        }
        Ok(HardStateFile {
            file,
            path,
            current,
        })
    }

    /// The current slot.
    pub(crate) fn current(&self) -> SlotState {
        self.current
    }

    /// Whether writing `term`, `vote` and `catching_up_after` would change anything.
    pub(crate) fn differs(&self, term: u64, vote: u64, catching_up_after: Option<u64>) -> bool {
        (
            self.current.term,
            self.current.vote,
            self.current.catching_up_after,
        ) != (term, vote, catching_up_after)
    }

    /// Writes the next slot (the one not holding the current state) and syncs it.
    /// A failure leaves the current slot intact; the caller poisons the log.
    pub(crate) fn write(
        &mut self,
        term: u64,
        vote: u64,
        catching_up_after: Option<u64>,
    ) -> Result<()> {
        let next = SlotState {
            sequence: self.current.sequence + 1,
            term,
            vote,
            catching_up_after,
        };
        let offset = (next.sequence % 2) * SLOT_SPACING_BYTES;
        let io_error = |error| WalError::io(&self.path, error);
        self.file
            .write_all_at(&next.encode(), offset)
            .map_err(io_error)?;
        self.file.sync_data().map_err(io_error)?;
        self.current = next;
        Ok(())
    }
}

/// Combines the hard state replayed from the log with the slot file's: the higher
/// term wins; at the same term a vote is never forgotten (the slot's if it has one,
/// else the log's). The commit index comes from the log, which alone knows which
/// entries survived.
pub(crate) fn combine(log: HardState, slot: SlotState) -> HardState {
    if slot.term > log.term {
        HardState {
            term: slot.term,
            vote: slot.vote,
            commit: log.commit,
        }
    } else if slot.term == log.term && slot.vote != 0 {
        HardState {
            vote: slot.vote,
            ..log
        }
    } else {
        log
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_round_trip_and_reject_any_flip() {
        let state = SlotState {
            sequence: 9,
            term: 4,
            vote: 2,
            catching_up_after: Some(17),
        };
        let bytes = state.encode();
        assert_eq!(SlotState::decode(&bytes), Some(state));
        for bit in 0..SLOT_LEN * 8 {
            let mut flipped = bytes;
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(SlotState::decode(&flipped), None, "bit {bit}");
        }
        assert_eq!(SlotState::decode(&[0u8; SLOT_LEN]), None);
    }

    #[test]
    fn the_higher_term_wins_and_a_vote_is_never_forgotten() {
        let log = HardState {
            term: 3,
            vote: 0,
            commit: 5,
        };
        let slot = |term, vote| SlotState {
            sequence: 1,
            term,
            vote,
            catching_up_after: None,
        };
        assert_eq!(
            combine(log, slot(4, 2)),
            HardState {
                term: 4,
                vote: 2,
                commit: 5
            }
        );
        assert_eq!(combine(log, slot(3, 2)).vote, 2);
        assert_eq!(combine(log, slot(2, 9)), log);
        let voted = HardState { vote: 1, ..log };
        assert_eq!(combine(voted, slot(3, 0)), voted);
    }
}
