//! Compaction: once the journal outgrows the snapshot, a new snapshot is made from
//! the old one and the journal's entries, then the journal starts again with only
//! the entries appended meanwhile. The snapshot is made from the files on a thread
//! of its own, not under the writer's lock: at a million keys it takes seconds,
//! and admin writes go on appending meanwhile. Only the journal's restart (a copy
//! of the entries appended during the compaction) holds the lock.
//! A crash at any point leaves a readable state: before the snapshot's rename, the
//! old snapshot and the whole journal; after it, a journal whose first entries the
//! new snapshot holds, which replay skips by sequence number.

use super::journal;
use super::rebuild::Rebuilt;
use super::snapshot;
use std::path::Path;

/// The journal is compacted when it holds as many bytes as the snapshot, and at
/// least this many (about 300 key creations): a start replays no more than it
/// reads in the snapshot, and each byte appended costs at most about one byte
/// rewritten.
pub const MIN_BYTES: u64 = 64 * 1024;

/// The journal's size that starts a compaction, for a snapshot of `snapshot_bytes`.
pub fn bound(snapshot_bytes: u64) -> u64 {
    snapshot_bytes.max(MIN_BYTES)
}

/// Replaces the snapshot with one that holds the journal's first `journal_len`
/// bytes too; the new snapshot's size.
pub fn make_snapshot(state_file: &Path, journal_len: u64) -> Result<u64, String> {
    let (doc, _) = snapshot::read(state_file)?;
    let mut rebuilt = Rebuilt::from_snapshot(doc);
    for entry in journal::read(&journal::path_of(state_file), Some(journal_len))?.entries {
        rebuilt.replay(entry.seq, entry.change);
    }
    snapshot::write(state_file, &rebuilt.into_doc())
}
