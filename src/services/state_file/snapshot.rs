//! The state file itself: the whole state as of a journal entry, in JSON, read at
//! start-up and replaced atomically by each compaction.

use super::atomic;
use crate::consumers::stored::StateDoc;
use std::path::Path;

/// The snapshot and its size in bytes; none yet is an empty state.
pub fn read(path: &Path) -> Result<(StateDoc, u64), String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice::<StateDoc>(&bytes)
            .map(|doc| (doc, bytes.len() as u64))
            .map_err(|e| format!("not a floodgate state file: {e}")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((StateDoc::default(), 0)),
        Err(e) => Err(e.to_string()),
    }
}

/// Replaces the snapshot with `doc`; its size in bytes.
pub fn write(path: &Path, doc: &StateDoc) -> Result<u64, String> {
    atomic::replace(path, |file| {
        serde_json::to_writer(&mut *file, doc).map_err(std::io::Error::other)
    })
    .map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| format!("{}: {e}", path.display()))
}
