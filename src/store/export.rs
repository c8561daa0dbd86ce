//! `proximity db export|import`: the whole database as one JSON document, for backups of
//! the appliance itself.
//!
//! Format: `{"format":"proximity-db","schema_version":N,"tables":{name:{key:value}}}`.

use std::collections::BTreeMap;

use redb::{ReadableDatabase, ReadableTable, TableDefinition, TableHandle};
use serde::{Deserialize, Serialize};

use super::{SCHEMA_VERSION, Store, StoreError};

/// The exported document.
#[derive(Debug, Serialize, Deserialize)]
pub struct Dump {
    /// Always `proximity-db`.
    pub format: String,
    /// Schema version of the exporting build.
    pub schema_version: u32,
    /// Table name → key → JSON value.
    pub tables: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
}

impl Store {
    /// Export every table.
    pub fn export(&self) -> Result<Dump, StoreError> {
        let tx = self.raw().begin_read()?;
        let mut tables = BTreeMap::new();
        for handle in tx.list_tables()? {
            let name = handle.name().to_string();
            if name.starts_with('_') {
                continue;
            }
            let def: TableDefinition<&str, &[u8]> = TableDefinition::new(&name);
            let t = tx.open_table(def)?;
            let mut rows = BTreeMap::new();
            for item in t.iter()? {
                let (k, v) = item?;
                let value: serde_json::Value = serde_json::from_slice(v.value()).map_err(|e| StoreError::Corrupt {
                    table: name.clone(),
                    key: k.value().into(),
                    detail: e.to_string(),
                })?;
                rows.insert(k.value().to_string(), value);
            }
            tables.insert(name, rows);
        }
        Ok(Dump {
            format: "proximity-db".into(),
            schema_version: self.schema_version()?,
            tables,
        })
    }

    /// Import a dump into this (empty) database in one transaction. Refuses a non-empty
    /// database unless `replace` is set, in which case the tables in the dump replace
    /// the existing ones.
    pub fn import(&self, dump: &Dump, replace: bool) -> Result<usize, StoreError> {
        if dump.format != "proximity-db" {
            return Err(StoreError::Invalid(format!(
                "not a proximity database export (format `{}`)",
                dump.format
            )));
        }
        if dump.schema_version > SCHEMA_VERSION {
            return Err(StoreError::Invalid(format!(
                "export has schema version {}, newer than this build ({SCHEMA_VERSION}); use a newer proximity",
                dump.schema_version
            )));
        }
        let tx = self.raw().begin_write()?;
        let existing: Vec<String> = tx
            .list_tables()?
            .map(|h| h.name().to_string())
            .filter(|n| !n.starts_with('_'))
            .collect();
        let nonempty = existing.iter().any(|n| {
            let def: TableDefinition<&str, &[u8]> = TableDefinition::new(n);
            tx.open_table(def).ok().and_then(|t| t.first().ok().flatten().map(|_| ())).is_some()
        });
        if nonempty && !replace {
            return Err(StoreError::Invalid("database is not empty; pass --replace to overwrite it".into()));
        }
        let mut n = 0;
        for (name, rows) in &dump.tables {
            if name.starts_with('_') || name.is_empty() {
                return Err(StoreError::Invalid(format!("table name `{name}` is reserved")));
            }
            let def: TableDefinition<&str, &[u8]> = TableDefinition::new(name);
            if existing.contains(name) {
                tx.delete_table(def)?;
            }
            let mut t = tx.open_table(def)?;
            for (k, v) in rows {
                let bytes = serde_json::to_vec(v).map_err(|e| StoreError::Invalid(e.to_string()))?;
                t.insert(k.as_str(), bytes.as_slice())?;
                n += 1;
            }
        }
        tx.commit()?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::super::Table;
    use super::*;

    #[test]
    fn export_import_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let a = Store::open(&dir.path().join("a.redb")).unwrap();
        const T: Table<serde_json::Value> = Table::new("apps");
        a.put(T, "x", &serde_json::json!({"hostname": "nginx-01"})).unwrap();
        let dump = a.export().unwrap();
        let text = serde_json::to_string(&dump).unwrap();
        let b = Store::open(&dir.path().join("b.redb")).unwrap();
        assert_eq!(b.import(&serde_json::from_str(&text).unwrap(), false).unwrap(), 1);
        assert_eq!(b.get(T, "x").unwrap().unwrap()["hostname"], "nginx-01");
        assert!(b.import(&dump, false).is_err(), "non-empty import must need --replace");
        assert!(b.import(&dump, true).is_ok());
    }
}
