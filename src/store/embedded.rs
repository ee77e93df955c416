//! The embedded store: one redb file, `<data_dir>/enforcer.redb`. redb is crash-safe
//! (copy-on-write B-trees with checksummed commits): a `kill -9` at any moment leaves
//! the last committed flush readable, which is what bounds the loss to one interval.
//!
//! Tables: `buckets` (api, tier, start) → postcard bucket image; `lists` (list,
//! identifier) → postcard entry; `meta` name → bytes, where `format` holds the layout
//! version checked at open.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{Batch, BucketKey, Loaded, Store, StoreError};

/// The layout this build reads and writes.
pub const FORMAT: u32 = 1;
/// The file name inside the data directory.
pub const FILE_NAME: &str = "enforcer.redb";

const BUCKETS: TableDefinition<(&str, u8, i64), &[u8]> = TableDefinition::new("buckets");
const LISTS: TableDefinition<(u8, &str), &[u8]> = TableDefinition::new("lists");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// redb's page cache. Its default (1 GiB) would let the store alone grow the process by
/// that much under a steady flush of changed buckets; the store is written far more than
/// it is read (reads happen once, at start-up), so a small cache costs nothing.
const CACHE_BYTES: usize = 32 << 20;

/// The redb-backed [`Store`].
pub struct Embedded {
    /// `None` after a failed write: redb refuses every later operation on a handle that
    /// saw an I/O error, so the next commit reopens the file (running its recovery).
    db: Option<Database>,
    file: PathBuf,
}

impl Embedded {
    /// Opens (or creates) the store in `data_dir`, recovering from an unclean stop, and
    /// checks its format. Damage is reported, never panicked on.
    pub fn open(data_dir: &Path) -> Result<Embedded, StoreError> {
        let file = data_dir.join(FILE_NAME);
        // redb would take an empty file for a new store and start from nothing; a store
        // that was created is never empty, so an empty one was truncated (a full disk, a
        // bad copy) and is damage like any other.
        if std::fs::metadata(&file).is_ok_and(|m| m.len() == 0) {
            return Err(StoreError::Corrupt {
                file,
                reason: "the file is empty (truncated, or not a store)".into(),
            });
        }
        let db = open_file(&file)?;
        prepare(&db, &file)?;
        Ok(Embedded { db: Some(db), file })
    }

    fn read_all(&self) -> Result<Loaded, redb::Error> {
        let mut out = self.read_state()?;
        out.buckets = self.read_buckets()?;
        Ok(out)
    }

    fn read_buckets(&self) -> Result<Vec<(BucketKey, Vec<u8>)>, redb::Error> {
        let Some(db) = &self.db else {
            return Ok(Vec::new());
        };
        let tx = db.begin_read()?;
        let mut out = Vec::new();
        for row in tx.open_table(BUCKETS)?.iter()? {
            let (k, v) = row?;
            let (api, tier, start) = k.value();
            let key = BucketKey {
                api: api.to_string(),
                tier,
                start,
            };
            out.push((key, v.value().to_vec()));
        }
        Ok(out)
    }

    fn read_state(&self) -> Result<Loaded, redb::Error> {
        let Some(db) = &self.db else {
            return Ok(Loaded::default());
        };
        let tx = db.begin_read()?;
        let mut out = Loaded::default();
        for row in tx.open_table(LISTS)?.iter()? {
            let (k, v) = row?;
            let (list, id) = k.value();
            out.entries
                .push(((list, id.to_string()), v.value().to_vec()));
        }
        for row in tx.open_table(META)?.iter()? {
            let (k, v) = row?;
            out.meta.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }

    fn write(db: &Database, batch: &Batch) -> Result<(), redb::Error> {
        let tx = db.begin_write()?;
        {
            let mut buckets = tx.open_table(BUCKETS)?;
            for (k, v) in &batch.put_buckets {
                buckets.insert((k.api.as_str(), k.tier, k.start), v.as_slice())?;
            }
            for k in &batch.delete_buckets {
                buckets.remove((k.api.as_str(), k.tier, k.start))?;
            }
            let mut lists = tx.open_table(LISTS)?;
            for ((list, id), v) in &batch.put_entries {
                lists.insert((*list, id.as_str()), v.as_slice())?;
            }
            for (list, id) in &batch.delete_entries {
                lists.remove((*list, id.as_str()))?;
            }
            let mut meta = tx.open_table(META)?;
            for (k, v) in &batch.put_meta {
                meta.insert(k.as_str(), v.as_slice())?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

impl Store for Embedded {
    fn load(&mut self) -> Result<Loaded, StoreError> {
        let file = self.file.clone();
        quietly(&file, || self.read_all())?.map_err(|e| StoreError::Corrupt {
            file,
            reason: e.to_string(),
        })
    }

    fn load_state(&mut self) -> Result<Loaded, StoreError> {
        let file = self.file.clone();
        quietly(&file, || self.read_state())?.map_err(|e| StoreError::Corrupt {
            file,
            reason: e.to_string(),
        })
    }

    fn load_buckets(&mut self) -> Result<Vec<(BucketKey, Vec<u8>)>, StoreError> {
        let file = self.file.clone();
        quietly(&file, || self.read_buckets())?.map_err(|e| StoreError::Corrupt {
            file,
            reason: e.to_string(),
        })
    }

    fn commit(&mut self, batch: Batch) -> Result<(), StoreError> {
        let file = self.file.clone();
        let db = match self.db.take() {
            Some(db) => db,
            None => open_file(&file)?,
        };
        match quietly(&file, || Embedded::write(&db, &batch))? {
            Ok(()) => {
                self.db = Some(db);
                Ok(())
            }
            Err(e) => Err(StoreError::Io {
                file,
                reason: e.to_string(),
            }),
        }
    }

    fn describe(&self) -> String {
        format!("redb {}", self.file.display())
    }
}

/// Opens (or creates) the file, running redb's recovery after an unclean stop.
fn open_file(file: &Path) -> Result<Database, StoreError> {
    quietly(file, || {
        redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(file)
    })?
    .map_err(|e| open_error(file, e))
}

/// Creates the tables on first use and checks the format of an existing file.
fn prepare(db: &Database, file: &Path) -> Result<(), StoreError> {
    let io = |e: &dyn std::fmt::Display| StoreError::Io {
        file: file.to_path_buf(),
        reason: e.to_string(),
    };
    let tx = db.begin_write().map_err(|e| io(&e))?;
    {
        tx.open_table(BUCKETS).map_err(|e| io(&e))?;
        tx.open_table(LISTS).map_err(|e| io(&e))?;
        let mut meta = tx.open_table(META).map_err(|e| io(&e))?;
        let found = meta
            .get("format")
            .map_err(|e| io(&e))?
            .map(|v| v.value().to_vec());
        match found {
            None => {
                meta.insert("format", FORMAT.to_le_bytes().as_slice())
                    .map_err(|e| io(&e))?;
            }
            Some(v) if v == FORMAT.to_le_bytes() => {}
            Some(v) => {
                let found = <[u8; 4]>::try_from(v.as_slice())
                    .map(|b| u32::from_le_bytes(b).to_string())
                    .unwrap_or_else(|_| format!("{v:?}"));
                return Err(StoreError::Version {
                    file: file.to_path_buf(),
                    found,
                    expected: FORMAT,
                });
            }
        }
    }
    tx.commit().map_err(|e| io(&e))
}

fn open_error(file: &Path, e: redb::DatabaseError) -> StoreError {
    let file = file.to_path_buf();
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked { file },
        redb::DatabaseError::UpgradeRequired(v) => StoreError::Version {
            file,
            found: format!("redb file format {v}"),
            expected: FORMAT,
        },
        redb::DatabaseError::Storage(redb::StorageError::Io(io))
            if io.kind() != std::io::ErrorKind::InvalidData
                && io.kind() != std::io::ErrorKind::UnexpectedEof =>
        {
            StoreError::Io {
                file,
                reason: io.to_string(),
            }
        }
        other => StoreError::Corrupt {
            file,
            reason: other.to_string(),
        },
    }
}

/// Runs a store operation, turning a panic inside the store engine (some of redb's
/// consistency checks assert in debug builds) into a "damaged" error instead of a crash.
fn quietly<T>(file: &Path, f: impl FnOnce() -> T) -> Result<T, StoreError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|panic| {
        let reason = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "internal consistency check failed".into());
        StoreError::Corrupt {
            file: file.to_path_buf(),
            reason,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(start: i64) -> BucketKey {
        BucketKey {
            api: "shop".into(),
            tier: 0,
            start,
        }
    }

    #[test]
    fn a_batch_reads_back_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = Embedded::open(dir.path()).unwrap();
            s.commit(Batch {
                put_buckets: vec![(key(60), vec![1, 2]), (key(120), vec![3])],
                put_entries: vec![((0, "ip\u{0}1.2.3.4".into()), vec![9])],
                put_meta: vec![("tokens".into(), b"{}".to_vec())],
                ..Batch::default()
            })
            .unwrap();
            s.commit(Batch {
                delete_buckets: vec![key(60)],
                ..Batch::default()
            })
            .unwrap();
        }
        let loaded = Embedded::open(dir.path()).unwrap().load().unwrap();
        assert_eq!(loaded.buckets, vec![(key(120), vec![3])]);
        assert_eq!(
            loaded.entries,
            vec![((0, "ip\u{0}1.2.3.4".into()), vec![9])]
        );
        assert!(loaded.meta.iter().any(|(k, v)| k == "tokens" && v == b"{}"));
    }

    #[test]
    fn garbage_is_reported_as_damage_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), vec![0x5a; 8192]).unwrap();
        let e = Embedded::open(dir.path()).err().unwrap().to_string();
        assert!(e.contains(FILE_NAME) && e.contains("move it aside"), "{e}");
    }

    #[test]
    fn an_unknown_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Embedded::open(dir.path()).unwrap();
            let tx = s.db.as_ref().unwrap().begin_write().unwrap();
            tx.open_table(META)
                .unwrap()
                .insert("format", 99u32.to_le_bytes().as_slice())
                .unwrap();
            tx.commit().unwrap();
        }
        let e = Embedded::open(dir.path()).err().unwrap().to_string();
        assert!(e.contains("format 99") && e.contains("mv "), "{e}");
    }

    #[test]
    fn a_second_process_is_told_the_store_is_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Embedded::open(dir.path()).unwrap();
        let e = Embedded::open(dir.path()).err().unwrap().to_string();
        assert!(e.contains("in use"), "{e}");
    }
}
