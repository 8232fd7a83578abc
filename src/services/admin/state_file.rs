//! Writes a single instance's runtime consumers to `state_file`, atomically: the
//! new content goes to a temporary file beside it, is synced to disk, and is
//! renamed over the old one (then the directory is synced), so a crash leaves
//! either the old state or the new one, never half of either.

use crate::vocab::stored_consumers::{Change, StateDoc};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

pub struct StateFileWriter {
    path: PathBuf,
    /// What the file holds now; writes are serialised under it.
    doc: Mutex<StateDoc>,
}

impl StateFileWriter {
    pub fn new(path: PathBuf, doc: StateDoc) -> Self {
        StateFileWriter {
            path,
            doc: Mutex::new(doc),
        }
    }

    /// Writes the state with `change` applied; on error the file and the held
    /// state are as they were.
    pub fn save(&self, change: &Change) -> Result<(), String> {
        let mut held = self.doc.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = held.clone();
        next.apply(change);
        let shown = self.path.display();
        let bytes = serde_json::to_vec_pretty(&next).map_err(|e| e.to_string())?;
        let mut tmp = self.path.clone().into_os_string();
        // Per process: an old and a new process overlap during an upgrade.
        tmp.push(format!(".{}.tmp", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        };
        write().map_err(|e| format!("state file {shown}: {e}"))?;
        // Renamed: the file holds the change, whatever the directory's sync says.
        *held = next;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| format!("state file {shown}: written, but its directory did not sync: {e}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_save_replaces_the_file_whole_and_a_failed_one_changes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        let writer = StateFileWriter::new(path.clone(), StateDoc::default());
        let set = Change::SetTier {
            consumer: "alice".into(),
            tier: "gold".into(),
        };
        writer.save(&set).expect("save");
        let read: StateDoc = serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("parse");
        assert_eq!(read.tiers.get("alice").map(String::as_str), Some("gold"));
        assert!(
            std::fs::read_dir(dir.path()).expect("dir").count() == 1,
            "no temporary file left"
        );
        let gone = StateFileWriter::new(dir.path().join("missing/state.json"), StateDoc::default());
        let err = gone.save(&set).expect_err("no directory");
        assert!(err.contains("missing/state.json"), "{err}");
        assert_eq!(*gone.doc.lock().expect("doc"), StateDoc::default());
    }
}
