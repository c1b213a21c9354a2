//! The segment preparer thread: creates and zero-fills the next segment ahead of
//! need and deletes compacted segments, so that neither file creation nor directory
//! syncs sit on the commit path. Any failure here poisons the log.

use std::sync::Arc;

use crate::error::{Result, WalError};
use crate::shared::{Shared, prepare_segment};

/// Removes segment files oldest first, then syncs the directory.
pub(crate) fn delete_segments(shared: &Shared, paths: &[std::path::PathBuf]) -> Result<()> {
    for path in paths {
        shared
            .storage
            .remove_file(path)
            .map_err(|error| WalError::io(path, error))?;
    }
    shared
        .storage
        .sync_dir(&shared.wal_dir)
        .map_err(|error| WalError::io(&shared.wal_dir, error))
}

/// The preparer thread: prepares the next segment ahead of time and deletes
/// compacted segments, off the commit path.
pub(crate) fn run_preparer(shared: Arc<Shared>) {
    let _guard = PreparerExit(Arc::clone(&shared));
    loop {
        let (wanted, deletions) = {
            let mut state = shared.preparer();
            loop {
                let wanted = if state.ready.is_none() && !state.closed {
                    state.wanted.take()
                } else {
                    None
                };
                let deletions = std::mem::take(&mut state.deletions);
                if wanted.is_some() || !deletions.is_empty() {
                    break (wanted, deletions);
                }
                if state.closed {
                    return;
                }
                state = shared
                    .preparer_ready
                    .wait(state)
                    .unwrap_or_else(|p| p.into_inner());
            }
        };
        if !deletions.is_empty()
            && let Err(error) = delete_segments(&shared, &deletions)
        {
            shared.poison_with(&error);
        }
        if let Some(id) = wanted {
            let prepared = prepare_segment(
                shared.storage.as_ref(),
                &shared.wal_dir,
                id,
                shared.segment_size_bytes,
            );
            if let Err(error) = &prepared {
                shared.poison_with(error);
            }
            shared.preparer().ready = Some(prepared);
            shared.preparer_ready.notify_all();
        }
    }
}

/// Runs when the preparer thread ends: a writer waiting for a segment must not wait
/// forever if the preparer died.
struct PreparerExit(Arc<Shared>);

impl Drop for PreparerExit {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.poison_with(&WalError::Closed);
            let mut state = self.0.preparer();
            if state.ready.is_none() {
                state.ready = Some(Err(WalError::Closed));
            }
        }
        self.0.preparer_ready.notify_all();
    }
}
