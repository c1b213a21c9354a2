//! Nothing the Raft driver calls on its own task waits for a disk: compaction and
//! snapshot install are submitted like appends and report through a completion
//! (a future). A disk that never finishes a sync must not stall the caller.

use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use raft_wal::storage::FaultyStorage;

use crate::common::{self, unit};

/// Long enough that only a call that waits for the held sync misses it.
const DEADLOCK_BOUND: Duration = Duration::from_secs(30);

#[test]
fn compaction_and_install_are_submitted_without_waiting_for_the_disk() {
    let storage = FaultyStorage::new();
    let wal = std::sync::Arc::new(common::open(&storage, common::small_options()).unwrap());
    wal.append(unit(1..=10, 1, None)).unwrap();
    let mut writer = wal.snapshot_writer(5, 1, Bytes::from_static(b"m")).unwrap();
    std::io::Write::write_all(&mut writer, b"state").unwrap();
    let meta = writer.finish().unwrap();

    // The disk stops answering syncs: the writer thread is stuck in one.
    storage.hold_syncs();
    let append = wal.submit(unit(11..=12, 1, None));
    let (sent, received) = mpsc::channel();
    let caller = {
        let wal = std::sync::Arc::clone(&wal);
        std::thread::spawn(move || {
            let compact = wal.submit_compact(3);
            let install = wal.submit_install_snapshot(&meta);
            sent.send(()).unwrap();
            (compact, install)
        })
    };
    let returned = received.recv_timeout(DEADLOCK_BOUND);
    storage.release_syncs();
    assert!(returned.is_ok(), "submitting waited for the disk");
    let (compact, install) = caller.join().unwrap();
    append.wait().unwrap();
    compact.wait().unwrap();
    let installed = install.wait().unwrap();
    assert_eq!((installed.last_index, installed.last_term), (12, 1));
    assert_eq!(wal.first_index(), 6);
    assert_eq!(wal.hard_state().commit, 5);
}
