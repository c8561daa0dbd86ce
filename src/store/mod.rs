//! Storage: one redb file with a schema version and typed JSON-valued tables.
//!
//! Every table maps a string key to a JSON document of one Rust type (`Table<V>`). Writes
//! that must change several records together go through [`Store::write`], one redb
//! transaction (all or nothing, durable on commit).
//!
//! **Invariant:** a file whose schema version is newer than [`SCHEMA_VERSION`] (or has no
//! readable version) is refused with [`StoreError::SchemaTooNew`]/[`StoreError::SchemaUnknown`],
//! never opened silently.

pub mod export;

use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle};
use serde::{Serialize, de::DeserializeOwned};

/// Schema version this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

const META: TableDefinition<&str, &str> = TableDefinition::new("_meta");
const META_SCHEMA_KEY: &str = "schema_version";

/// Storage failures. Each message says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The file was written by a newer Proximity.
    #[error(
        "database {path} has schema version {found}, newer than this build supports ({supported}); upgrade proximity or restore a backup with `proximity db import`"
    )]
    SchemaTooNew {
        /// File.
        path: PathBuf,
        /// Version in the file.
        found: u32,
        /// Version of this build.
        supported: u32,
    },
    /// Tables exist but no version is recorded, or it is unreadable.
    #[error(
        "database {path} has no readable schema version ({detail}); it was not written by proximity — move it away or restore with `proximity db import`"
    )]
    SchemaUnknown {
        /// File.
        path: PathBuf,
        /// What was found.
        detail: String,
    },
    /// The file cannot be opened (locked by another process, permissions, corruption).
    #[error("cannot open database {path}: {source}; is another proximity running with the same --data-dir?")]
    Open {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: redb::DatabaseError,
    },
    /// A stored value does not decode as its table's type.
    #[error("record {table}/{key} is corrupt: {detail}")]
    Corrupt {
        /// Table.
        table: String,
        /// Key.
        key: String,
        /// Decoder message.
        detail: String,
    },
    /// Any other redb failure.
    #[error("storage error: {0}")]
    Redb(String),
    /// Import/export problems.
    #[error("{0}")]
    Invalid(String),
}

macro_rules! redb_err {
    ($($t:ty),*) => {$(impl From<$t> for StoreError { fn from(e: $t) -> Self { StoreError::Redb(e.to_string()) } })*};
}
redb_err!(redb::TransactionError, redb::TableError, redb::StorageError, redb::CommitError);

/// A typed table: string keys, JSON values of type `V`.
pub struct Table<V> {
    name: &'static str,
    _v: PhantomData<fn() -> V>,
}

impl<V> Clone for Table<V> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<V> Copy for Table<V> {}

impl<V: Serialize + DeserializeOwned> Table<V> {
    /// Declare a table. Names starting with `_` are reserved.
    pub const fn new(name: &'static str) -> Self {
        Table { name, _v: PhantomData }
    }

    /// The table's name in the file.
    pub fn name(&self) -> &'static str {
        self.name
    }

    fn def(&self) -> TableDefinition<'static, &'static str, &'static [u8]> {
        TableDefinition::new(self.name)
    }
}

fn decode<V: DeserializeOwned>(table: &str, key: &str, bytes: &[u8]) -> Result<V, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        table: table.into(),
        key: key.into(),
        detail: e.to_string(),
    })
}

/// Handle to the open database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.path.display())
    }
}

/// Default page cache of the redb file (`general.store_cache_mib`). redb's own default
/// (1 GiB) lets the cache, and with it the daemon's RSS, grow with the file; the
/// appliance's working set is a few MiB.
pub const STORE_CACHE_BYTES: usize = 32 << 20;

/// The database holds password hashes, sessions and sealed keys: create it readable by
/// its owner only (redb would use 0666 minus the umask), and tighten an existing file.
fn owner_only(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let err = |e: std::io::Error| StoreError::Invalid(format!("cannot set up {}: {e}", path.display()));
    match std::fs::metadata(path) {
        Ok(m) if m.permissions().mode() & 0o077 != 0 => std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // An empty file: redb initialises a new database in it.
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map(drop)
                .map_err(err)
        }
        Err(e) => Err(err(e)),
    }
}

impl Store {
    /// Open (or create) the database file with the default page cache, checking its
    /// schema version.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_with_cache(path, STORE_CACHE_BYTES)
    }

    /// [`Store::open`] with a page cache of `cache_bytes` (RSS grows with the file until
    /// the cache is full, then stays flat).
    pub fn open_with_cache(path: &Path, cache_bytes: usize) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Invalid(format!("cannot create {}: {e}", dir.display())))?;
        }
        owner_only(path)?;
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            // A damaged or foreign file fails to open with an error instead of being trusted.
            .set_check_integrity_on_open(true)
            .create(path)
            .map_err(|source| StoreError::Open { path: path.into(), source })?;
        let store = Store {
            db: Arc::new(db),
            path: path.into(),
        };
        store.check_schema()?;
        Ok(store)
    }

    /// Path of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn check_schema(&self) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        {
            let mut meta = tx.open_table(META)?;
            let found = meta.get(META_SCHEMA_KEY)?.map(|v| v.value().to_string());
            match found {
                None => {
                    let others = tx.list_tables()?.filter(|t| t.name() != "_meta").count();
                    if others > 0 {
                        return Err(StoreError::SchemaUnknown {
                            path: self.path.clone(),
                            detail: format!("{others} tables but no version"),
                        });
                    }
                    meta.insert(META_SCHEMA_KEY, SCHEMA_VERSION.to_string().as_str())?;
                }
                Some(v) => match v.parse::<u32>() {
                    Ok(n) if n > SCHEMA_VERSION => {
                        return Err(StoreError::SchemaTooNew {
                            path: self.path.clone(),
                            found: n,
                            supported: SCHEMA_VERSION,
                        });
                    }
                    Ok(n) if n < SCHEMA_VERSION => {
                        // Future migrations go here, one step per version, in this transaction.
                        meta.insert(META_SCHEMA_KEY, SCHEMA_VERSION.to_string().as_str())?;
                    }
                    Ok(_) => {}
                    Err(_) => {
                        return Err(StoreError::SchemaUnknown {
                            path: self.path.clone(),
                            detail: format!("version `{v}`"),
                        });
                    }
                },
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Schema version recorded in the file.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        let tx = self.db.begin_read()?;
        let meta = tx.open_table(META)?;
        let v = meta.get(META_SCHEMA_KEY)?.map(|v| v.value().to_string()).unwrap_or_default();
        v.parse().map_err(|_| StoreError::SchemaUnknown {
            path: self.path.clone(),
            detail: v,
        })
    }

    /// Read one record.
    pub fn get<V: Serialize + DeserializeOwned>(&self, table: Table<V>, key: &str) -> Result<Option<V>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = match tx.open_table(table.def()) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        match t.get(key)? {
            Some(v) => Ok(Some(decode(table.name, key, v.value())?)),
            None => Ok(None),
        }
    }

    /// All records of a table, in key order.
    pub fn list<V: Serialize + DeserializeOwned>(&self, table: Table<V>) -> Result<Vec<(String, V)>, StoreError> {
        self.scan_prefix(table, "")
    }

    /// Records whose key starts with `prefix`, in key order.
    pub fn scan_prefix<V: Serialize + DeserializeOwned>(&self, table: Table<V>, prefix: &str) -> Result<Vec<(String, V)>, StoreError> {
        let mut out = Vec::new();
        self.walk(table, prefix, false, |k, v| out.push((k.to_string(), v)))?;
        Ok(out)
    }

    /// Call `f` with each record of a table in key order, one at a time: unlike
    /// [`Store::list`] the table is never held in memory at once.
    pub fn visit<V: Serialize + DeserializeOwned>(&self, table: Table<V>, f: impl FnMut(&str, V)) -> Result<(), StoreError> {
        self.walk(table, "", false, f)
    }

    /// [`Store::visit`] in reverse key order (newest first for tables keyed by time).
    pub fn visit_rev<V: Serialize + DeserializeOwned>(&self, table: Table<V>, f: impl FnMut(&str, V)) -> Result<(), StoreError> {
        self.walk(table, "", true, f)
    }

    /// The records whose key starts with `prefix`, one at a time, in key order or reversed.
    fn walk<V: Serialize + DeserializeOwned>(
        &self,
        table: Table<V>,
        prefix: &str,
        reverse: bool,
        mut f: impl FnMut(&str, V),
    ) -> Result<(), StoreError> {
        let tx = self.db.begin_read()?;
        let t = match tx.open_table(table.def()) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        debug_assert!(!reverse || prefix.is_empty(), "a reverse walk covers the whole table");
        let range = t.range(prefix..)?;
        let items: Box<dyn Iterator<Item = _>> = if reverse { Box::new(range.rev()) } else { Box::new(range) };
        for item in items {
            let (k, v) = item?;
            let key = k.value();
            if !key.starts_with(prefix) {
                break;
            }
            f(key, decode(table.name, key, v.value())?);
        }
        Ok(())
    }

    /// Number of records in a table.
    pub fn count<V: Serialize + DeserializeOwned>(&self, table: Table<V>) -> Result<u64, StoreError> {
        let tx = self.db.begin_read()?;
        match tx.open_table(table.def()) {
            Ok(t) => Ok(t.len()?),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    /// Write one record (its own durable transaction).
    pub fn put<V: Serialize + DeserializeOwned>(&self, table: Table<V>, key: &str, value: &V) -> Result<(), StoreError> {
        self.write(|tx| tx.put(table, key, value))
    }

    /// Delete one record; returns whether it existed.
    pub fn delete<V: Serialize + DeserializeOwned>(&self, table: Table<V>, key: &str) -> Result<bool, StoreError> {
        self.write(|tx| tx.delete(table, key))
    }

    /// Run `f` in one write transaction: committed durably if `f` returns `Ok`, rolled
    /// back entirely otherwise.
    pub fn write<T, E: From<StoreError>>(&self, f: impl FnOnce(&mut WriteTx) -> Result<T, E>) -> Result<T, E> {
        let tx = self.db.begin_write().map_err(StoreError::from)?;
        let mut w = WriteTx { tx };
        let out = f(&mut w)?;
        w.tx.commit().map_err(StoreError::from)?;
        Ok(out)
    }

    /// Like [`Store::write`] but without fsync on commit: for high-rate writes (leases)
    /// where a later durable commit, or [`Store::sync`], makes them durable.
    pub fn write_eventual<T, E: From<StoreError>>(&self, f: impl FnOnce(&mut WriteTx) -> Result<T, E>) -> Result<T, E> {
        let mut tx = self.db.begin_write().map_err(StoreError::from)?;
        tx.set_durability(redb::Durability::None)
            .map_err(|e| StoreError::Redb(e.to_string()))?;
        let mut w = WriteTx { tx };
        let out = f(&mut w)?;
        w.tx.commit().map_err(StoreError::from)?;
        Ok(out)
    }

    /// Make every earlier commit durable (an empty durable commit).
    pub fn sync(&self) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        tx.commit()?;
        Ok(())
    }

    pub(crate) fn raw(&self) -> &Database {
        &self.db
    }
}

/// An open write transaction; see [`Store::write`].
pub struct WriteTx {
    tx: redb::WriteTransaction,
}

impl WriteTx {
    /// Read a record inside the transaction (sees earlier writes of it).
    pub fn get<V: Serialize + DeserializeOwned>(&mut self, table: Table<V>, key: &str) -> Result<Option<V>, StoreError> {
        let t = self.tx.open_table(table.def())?;
        match t.get(key)? {
            Some(v) => Ok(Some(decode(table.name, key, v.value())?)),
            None => Ok(None),
        }
    }

    /// All records of a table inside the transaction.
    pub fn list<V: Serialize + DeserializeOwned>(&mut self, table: Table<V>) -> Result<Vec<(String, V)>, StoreError> {
        let t = self.tx.open_table(table.def())?;
        let mut out = Vec::new();
        for item in t.iter()? {
            let (k, v) = item?;
            out.push((k.value().to_string(), decode(table.name, k.value(), v.value())?));
        }
        Ok(out)
    }

    /// Insert or replace a record.
    pub fn put<V: Serialize + DeserializeOwned>(&mut self, table: Table<V>, key: &str, value: &V) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value).map_err(|e| StoreError::Invalid(format!("cannot encode {}/{key}: {e}", table.name)))?;
        let mut t = self.tx.open_table(table.def())?;
        t.insert(key, bytes.as_slice())?;
        Ok(())
    }

    /// Delete from the start of a table (in key order) the first `first` records and every
    /// further one whose key sorts below `below`, at most `max` in all; returns how many
    /// went. For tables keyed by time (oldest first), this is retention by count and age.
    pub fn delete_leading<V: Serialize + DeserializeOwned>(
        &mut self,
        table: Table<V>,
        first: u64,
        below: &str,
        max: usize,
    ) -> Result<usize, StoreError> {
        let mut t = self.tx.open_table(table.def())?;
        let mut doomed = Vec::new();
        for item in t.iter()? {
            let (k, _) = item?;
            let key = k.value();
            if doomed.len() >= max || ((doomed.len() as u64) >= first && key >= below) {
                break;
            }
            doomed.push(key.to_string());
        }
        for k in &doomed {
            t.remove(k.as_str())?;
        }
        Ok(doomed.len())
    }

    /// Remove a record; returns whether it existed.
    pub fn delete<V: Serialize + DeserializeOwned>(&mut self, table: Table<V>, key: &str) -> Result<bool, StoreError> {
        let mut t = self.tx.open_table(table.def())?;
        Ok(t.remove(key)?.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Thing {
        n: u32,
        s: String,
    }
    const THINGS: Table<Thing> = Table::new("things");

    #[test]
    fn round_trip_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.redb");
        {
            let s = Store::open(&p).unwrap();
            s.put(THINGS, "a", &Thing { n: 1, s: "one".into() }).unwrap();
            s.put(THINGS, "b", &Thing { n: 2, s: "two".into() }).unwrap();
            assert!(s.delete(THINGS, "b").unwrap());
        }
        let s = Store::open(&p).unwrap();
        assert_eq!(s.get(THINGS, "a").unwrap(), Some(Thing { n: 1, s: "one".into() }));
        assert_eq!(s.get(THINGS, "b").unwrap(), None);
        assert_eq!(s.count(THINGS).unwrap(), 1);
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    }

    #[test]
    fn database_file_is_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.redb");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        drop(Store::open(&p).unwrap());
        assert_eq!(mode(&p), 0o600);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        drop(Store::open(&p).unwrap());
        assert_eq!(mode(&p), 0o600, "an existing file is tightened");
    }

    #[test]
    fn failed_transaction_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("x.redb")).unwrap();
        let r: Result<(), StoreError> = s.write(|tx| {
            tx.put(THINGS, "a", &Thing { n: 1, s: "x".into() })?;
            Err(StoreError::Invalid("boom".into()))
        });
        assert!(r.is_err());
        assert_eq!(s.get(THINGS, "a").unwrap(), None);
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.redb");
        {
            let db = Database::create(&p).unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(META).unwrap().insert(META_SCHEMA_KEY, "99").unwrap();
            tx.commit().unwrap();
        }
        let e = Store::open(&p).unwrap_err();
        assert!(matches!(e, StoreError::SchemaTooNew { found: 99, .. }), "{e}");
        assert!(e.to_string().contains("newer than this build"));
    }

    #[test]
    fn unversioned_foreign_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.redb");
        {
            let db = Database::create(&p).unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(TableDefinition::<&str, &str>::new("foreign"))
                .unwrap()
                .insert("k", "v")
                .unwrap();
            tx.commit().unwrap();
        }
        assert!(matches!(Store::open(&p).unwrap_err(), StoreError::SchemaUnknown { .. }));
    }

    #[test]
    fn prefix_scan() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("x.redb")).unwrap();
        for k in ["a/1", "a/2", "b/1"] {
            s.put(THINGS, k, &Thing { n: 0, s: k.into() }).unwrap();
        }
        let keys: Vec<_> = s.scan_prefix(THINGS, "a/").unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, vec!["a/1", "a/2"]);
    }
}
