//! The journal as a directory of JSON files, `<id>.json`, one per run: for
//! the CLI on a dump or without a cluster. Files are written atomically (a
//! temporary file in the same directory, synced, then linked or renamed into
//! place), so a reader or a crash never sees half a record. One writer at a
//! time: unlike the cluster backend there is no optimistic concurrency check
//! between read and write (the CLI is that one writer). The I/O is blocking
//! and small (one file per call).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{check_id, sort_newest_first, JournalError, Listing, RunRecord, RunStatus};

#[derive(Clone, Debug)]
pub struct FileJournal {
    pub dir: PathBuf,
}

impl FileJournal {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn location(&self) -> String {
        format!("directory {}", self.dir.display())
    }

    /// The file of run `id`.
    pub fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    fn io(action: &str, path: &Path, source: std::io::Error) -> JournalError {
        JournalError::Io { action: action.into(), path: path.to_path_buf(), source }
    }

    fn read(&self, path: &Path) -> Result<Option<RunRecord>, JournalError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Self::io("reading", path, e)),
        };
        let record: RunRecord = serde_json::from_slice(&bytes).map_err(|e| JournalError::Corrupt {
            id: path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
            location: format!("file {}", path.display()),
            reason: e.to_string(),
        })?;
        let expected = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        if record.id != expected {
            return Err(JournalError::Corrupt {
                id: expected,
                location: format!("file {}", path.display()),
                reason: format!("it holds run {}, not the run its name says", record.id),
            });
        }
        Ok(Some(record))
    }

    /// Writes `record` to a synced temporary file in the journal directory.
    fn write_temp(&self, record: &RunRecord) -> Result<PathBuf, JournalError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        std::fs::create_dir_all(&self.dir).map_err(|e| Self::io("creating the journal directory", &self.dir, e))?;
        let tmp = self.dir.join(format!(".{}.json.tmp-{}-{}", record.id, std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
        let mut bytes = serde_json::to_vec_pretty(&record.to_stored_json()).expect("record serializes");
        bytes.push(b'\n');
        let written = std::fs::File::create(&tmp).and_then(|mut f| {
            f.write_all(&bytes)?;
            f.sync_all()
        });
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(Self::io("writing", &tmp, e));
        }
        Ok(tmp)
    }

    fn sync_dir(&self) {
        // Makes the rename durable; not every platform can open a directory.
        if let Ok(d) = std::fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
    }

    pub fn create(&self, record: &RunRecord) -> Result<RunRecord, JournalError> {
        check_id(&record.id)?;
        let mut stored = record.clone();
        stored.status.observed_generation.get_or_insert(1);
        let path = self.path(&record.id);
        let tmp = self.write_temp(&stored)?;
        // A hard link fails when the target exists: create-if-absent, atomically.
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(JournalError::AlreadyExists { id: record.id.clone(), location: self.location() }),
            Err(e) => return Err(Self::io("creating", &path, e)),
        }
        self.sync_dir();
        Ok(stored)
    }

    pub fn get(&self, id: &str) -> Result<Option<RunRecord>, JournalError> {
        check_id(id)?;
        self.read(&self.path(id))
    }

    pub fn list(&self) -> Result<Listing, JournalError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Listing::default()),
            Err(e) => return Err(Self::io("listing", &self.dir, e)),
        };
        let mut listing = Listing::default();
        for entry in entries {
            let path = entry.map_err(|e| Self::io("listing", &self.dir, e))?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if name.starts_with('.') || !name.ends_with(".json") {
                continue; // temporary files and anything that is not a record
            }
            match self.read(&path) {
                Ok(record) => listing.records.extend(record),
                Err(e @ JournalError::Corrupt { .. }) => listing.undecodable.push(e),
                Err(e) => return Err(e),
            }
        }
        sort_newest_first(&mut listing.records);
        Ok(listing)
    }

    pub fn update_status_with<F>(&self, id: &str, mut change: F) -> Result<RunRecord, JournalError>
    where
        F: FnMut(&RunRecord) -> Option<RunStatus>,
    {
        check_id(id)?;
        let path = self.path(id);
        let current = self.read(&path)?.ok_or_else(|| JournalError::NotFound { id: id.into(), location: self.location() })?;
        let Some(mut status) = change(&current) else { return Ok(current) };
        status.observed_generation.get_or_insert(1);
        let updated = RunRecord { status, ..current };
        let tmp = self.write_temp(&updated)?;
        if let Err(e) = std::fs::rename(&tmp, &path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(Self::io("replacing", &path, e));
        }
        self.sync_dir();
        Ok(updated)
    }
}
