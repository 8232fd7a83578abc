//! The state file's journal, `<state_file>.journal`: one JSON line per change,
//! `{"seq":N,"change":{...}}`, appended and synced before the admin API answers.
//! A crash mid-append leaves a last line without its newline, a write never
//! acknowledged: reading ignores it and the writer cuts it off. Any other line
//! that does not parse stops the start, named by file and line.

use crate::consumers::stored::Change;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// `C` is `&Change` when written, `Change` when read.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry<C> {
    pub seq: u64,
    pub change: C,
}

pub fn path_of(state_file: &Path) -> PathBuf {
    let mut path = state_file.as_os_str().to_owned();
    path.push(".journal");
    PathBuf::from(path)
}

/// A journal as read: its entries in order, and the length of its whole lines.
#[derive(Default)]
pub struct Contents {
    pub entries: Vec<Entry<Change>>,
    pub complete_len: u64,
    /// Whether a last line without its newline follows the whole ones.
    pub torn: bool,
}

/// Reads the journal's first `up_to` bytes (all of it when `None`); none yet is
/// an empty journal.
pub fn read(path: &Path, up_to: Option<u64>) -> Result<Contents, String> {
    let shown = path.display();
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Contents::default()),
        Err(e) => return Err(format!("{shown}: {e}")),
    };
    let mut reader = BufReader::new(file.take(up_to.unwrap_or(u64::MAX)));
    let mut journal = Contents::default();
    let mut line = Vec::new();
    for number in 1.. {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("{shown}: {e}"))?;
        if read == 0 {
            break;
        }
        if line.last() != Some(&b'\n') {
            journal.torn = true;
            break;
        }
        let entry = serde_json::from_slice(&line)
            .map_err(|e| format!("{shown} line {number}: not a floodgate journal entry: {e}"))?;
        journal.entries.push(entry);
        journal.complete_len += read as u64;
    }
    Ok(journal)
}

/// Why a change to the journal failed.
pub enum Failure {
    /// The journal is as it was before, and appends may go on.
    Undone(std::io::Error),
    /// Part of an entry may be left, or the journal was replaced without the
    /// directory's sync: nothing more may be appended.
    Stuck(std::io::Error),
}

/// The journal open for appending.
pub struct Appender {
    file: File,
    len: u64,
}

impl Appender {
    /// Opens the journal for appending after its first `complete_len` bytes, cutting
    /// off a torn last line.
    pub fn open(path: &Path, complete_len: u64) -> std::io::Result<Appender> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        if file.metadata()?.len() != complete_len {
            file.set_len(complete_len)?;
            file.sync_all()?;
            log::warn!(
                "state file: cut a torn last line (a write a crash interrupted, never acknowledged) off {}",
                path.display()
            );
        }
        super::atomic::sync_directory(path)?;
        Ok(Appender {
            file,
            len: complete_len,
        })
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    /// Appends `change` as entry `seq`, on disk when this returns `Ok`.
    pub fn append(&mut self, seq: u64, change: &Change) -> Result<(), Failure> {
        let mut line = serde_json::to_vec(&Entry { seq, change })
            .map_err(|e| Failure::Undone(std::io::Error::other(e)))?;
        line.push(b'\n');
        let written = self.file.write_all(&line).and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            // Cut back to the last whole entry, so a refused change never comes back.
            return match self.file.set_len(self.len).and_then(|()| self.file.sync_data()) {
                Ok(()) => Err(Failure::Undone(e)),
                Err(_) => Err(Failure::Stuck(e)),
            };
        }
        self.len += line.len() as u64;
        Ok(())
    }

    /// Starts the journal again with only what follows its first `from` bytes
    /// (entries a snapshot now holds go), replacing it atomically.
    pub fn restart_after(&mut self, path: &Path, from: u64) -> Result<(), Failure> {
        let mut rest = Vec::new();
        let read = File::open(path).and_then(|mut file| {
            file.seek(SeekFrom::Start(from))?;
            file.take(self.len.saturating_sub(from)).read_to_end(&mut rest)
        });
        read.map_err(Failure::Undone)?;
        match (
            super::atomic::replace(path, |file| file.write_all(&rest)),
            self.is_at(path),
        ) {
            (Err(e), true) => Err(Failure::Undone(e)),
            (Err(e), false) => Err(Failure::Stuck(e)),
            (Ok(()), _) => {
                *self = Appender::open(path, rest.len() as u64).map_err(Failure::Stuck)?;
                Ok(())
            }
        }
    }

    /// Whether `path` still names the file this appends to.
    fn is_at(&self, path: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (self.file.metadata(), std::fs::metadata(path)) {
            (Ok(held), Ok(named)) => (held.dev(), held.ino()) == (named.dev(), named.ino()),
            _ => false,
        }
    }
}
