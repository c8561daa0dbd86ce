//! The app catalog (DESIGN §6): one YAML file per app, embedded in the binary plus extra
//! directories from the configuration, validated strictly, searchable, reloadable, and
//! rendered into a compose project + `.env` per deploy.
//!
//! - [`model`]: the file format; [`validate`]: the rules (`file:field: message` issues);
//! - [`load`]: sources and overrides; [`render`]: compose/.env for one app, secrets generated;
//! - [`Catalog`]: the shared, swappable in-memory view (`get`, `list`, `search`, ...).

pub mod load;
pub mod model;
pub mod render;
pub mod validate;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;

pub use load::Source;
pub use model::CatalogEntry;
pub use render::{OsSecrets, RenderError, Rendered, SecretGen, render, render_for_domain};
pub use validate::Issue;

/// Catalog loading failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// The built-in catalog is invalid (a build defect); every issue listed.
    #[error("built-in catalog is invalid:\n{}", .0.iter().map(|i| i.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Issue>),
}

/// Counts for dashboards.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CatalogStats {
    /// Number of apps.
    pub apps: usize,
    /// Number of categories in use.
    pub categories: usize,
    /// Apps from the built-in set.
    pub builtin: usize,
    /// Apps from extra directories.
    pub extra: usize,
    /// Built-in (or earlier) entries replaced by a later directory.
    pub overridden: usize,
    /// Warnings of the last load (overrides, skipped files).
    pub warnings: Vec<String>,
}

/// A category and how many apps it has.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CategoryCount {
    /// Category name.
    pub name: String,
    /// Apps in it.
    pub count: usize,
}

struct Snapshot {
    loaded: load::Loaded,
}

/// The catalog shared by the API and the platform. Cheap to clone; `reload` swaps the
/// whole view atomically, readers never block.
#[derive(Clone)]
pub struct Catalog {
    dirs: Arc<Vec<PathBuf>>,
    snap: Arc<ArcSwap<Snapshot>>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog").field("dirs", &self.dirs).field("apps", &self.snap.load().loaded.entries.len()).finish()
    }
}

impl Catalog {
    /// Load the built-in catalog plus `dirs` (later directories override by id, with a
    /// warning logged). Errors only when the built-in set is invalid.
    pub fn load(dirs: Vec<PathBuf>) -> Result<Catalog, CatalogError> {
        let loaded = load::load_all(&dirs).map_err(CatalogError::Invalid)?;
        for w in &loaded.warnings {
            tracing::warn!(target: "catalog", "{w}");
        }
        Ok(Catalog { dirs: Arc::new(dirs), snap: Arc::new(ArcSwap::from_pointee(Snapshot { loaded })) })
    }

    /// Only the built-in catalog.
    pub fn builtin() -> Result<Catalog, CatalogError> {
        Catalog::load(Vec::new())
    }

    /// Re-read every source and swap the view in; on error the previous view stays.
    /// Returns the new stats.
    pub fn reload(&self) -> Result<CatalogStats, CatalogError> {
        let loaded = load::load_all(&self.dirs).map_err(CatalogError::Invalid)?;
        for w in &loaded.warnings {
            tracing::warn!(target: "catalog", "{w}");
        }
        self.snap.store(Arc::new(Snapshot { loaded }));
        Ok(self.stats())
    }

    /// One entry by id.
    pub fn get(&self, id: &str) -> Option<Arc<CatalogEntry>> {
        self.snap.load().loaded.entries.get(id).map(|(e, _)| e.clone())
    }

    /// Where an entry came from.
    pub fn source(&self, id: &str) -> Option<Source> {
        self.snap.load().loaded.entries.get(id).map(|(_, s)| s.clone())
    }

    /// Every entry, sorted by name (case-insensitive), then id.
    pub fn list(&self) -> Vec<Arc<CatalogEntry>> {
        let snap = self.snap.load();
        let mut v: Vec<Arc<CatalogEntry>> = snap.loaded.entries.values().map(|(e, _)| e.clone()).collect();
        v.sort_by(|a, b| a.name.to_lowercase().cmp(&b.name.to_lowercase()).then(a.id.cmp(&b.id)));
        v
    }

    /// Entries matching a free-text query (case-insensitive; every word must match the id,
    /// name, description, category or a tag) and optionally a category (case-insensitive).
    /// Best matches first: exact id/name, then name prefix, then name/tag, then description.
    pub fn search(&self, q: &str, category: Option<&str>) -> Vec<Arc<CatalogEntry>> {
        search_entries(&self.list(), q, category)
    }

    /// Categories in use with their app counts, sorted by name.
    pub fn categories(&self) -> Vec<CategoryCount> {
        let mut m: BTreeMap<String, usize> = BTreeMap::new();
        for (e, _) in self.snap.load().loaded.entries.values() {
            *m.entry(e.category.clone()).or_default() += 1;
        }
        m.into_iter().map(|(name, count)| CategoryCount { name, count }).collect()
    }

    /// Counts and warnings of the current view.
    pub fn stats(&self) -> CatalogStats {
        let snap = self.snap.load();
        let l = &snap.loaded;
        let builtin = l.entries.values().filter(|(_, s)| *s == Source::Builtin).count();
        CatalogStats {
            apps: l.entries.len(),
            categories: self.categories().len(),
            builtin,
            extra: l.entries.len() - builtin,
            overridden: l.overridden,
            warnings: l.warnings.clone(),
        }
    }
}

/// The ranking behind [`Catalog::search`] (pure, for tests).
pub fn search_entries(entries: &[Arc<CatalogEntry>], q: &str, category: Option<&str>) -> Vec<Arc<CatalogEntry>> {
    let words: Vec<String> = q.split_whitespace().map(str::to_lowercase).collect();
    let mut scored: Vec<(u32, &Arc<CatalogEntry>)> = Vec::new();
    for e in entries {
        if let Some(c) = category
            && !c.is_empty()
            && !e.category.eq_ignore_ascii_case(c)
        {
            continue;
        }
        let id = e.id.to_lowercase();
        let name = e.name.to_lowercase();
        let desc = e.description.to_lowercase();
        let cat = e.category.to_lowercase();
        let tags: Vec<String> = e.tags.iter().map(|t| t.to_lowercase()).collect();
        let mut score = 0u32;
        let mut all = true;
        for w in &words {
            let s = if id == *w || name == *w {
                100
            } else if name.starts_with(w.as_str()) || id.starts_with(w.as_str()) {
                50
            } else if name.contains(w.as_str()) || id.contains(w.as_str()) {
                30
            } else if tags.iter().any(|t| t == w) {
                25
            } else if tags.iter().any(|t| t.contains(w.as_str())) || cat.contains(w.as_str()) {
                15
            } else if desc.contains(w.as_str()) {
                5
            } else {
                0
            };
            if s == 0 {
                all = false;
                break;
            }
            score += s;
        }
        if all {
            scored.push((score, e));
        }
    }
    // Stable sort keeps the name order of `entries` among equal scores.
    scored.sort_by(|a, b| b.0.cmp(&a.0));
    scored.into_iter().map(|(_, e)| e.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_loads_and_searches() {
        let c = Catalog::builtin().expect("built-in catalog is valid");
        assert!(c.list().len() >= 25);
        let ids: Vec<String> = c.search("postgres", None).iter().map(|e| e.id.clone()).collect();
        assert_eq!(ids.first().map(String::as_str), Some("postgres"), "{ids:?}");
        // Other apps mentioning PostgreSQL come after the exact match.
        assert!(ids.contains(&"gitea".to_string()) && ids.contains(&"paperless-ngx".to_string()), "{ids:?}");
        // Category filter (case-insensitive) and multi-word queries (all words must match).
        let db = c.search("", Some("database"));
        assert!(!db.is_empty() && db.iter().all(|e| e.category == "Database"));
        assert!(c.search("postgres", Some("Media")).is_empty());
        let ids: Vec<String> = c.search("bitwarden passwords", None).iter().map(|e| e.id.clone()).collect();
        assert_eq!(ids, vec!["vaultwarden".to_string()]);
        assert!(c.search("no-such-thing-xyz", None).is_empty());
        let cats = c.categories();
        assert_eq!(cats.iter().map(|c| c.count).sum::<usize>(), c.list().len());
        let s = c.stats();
        assert_eq!((s.apps, s.builtin, s.extra, s.overridden), (c.list().len(), c.list().len(), 0, 0));
        assert!(c.get("nginx").is_some() && c.get("nope").is_none());
    }

    #[test]
    fn extra_dirs_override_by_id_and_reload_swaps() {
        let dir = tempfile::tempdir().unwrap();
        let nginx = load::builtin_files().into_iter().find(|(n, _)| n == "nginx.yaml").unwrap().1;
        let custom = nginx.replace("name: NGINX", "name: NGINX (site)");
        std::fs::write(dir.path().join("nginx.yaml"), &custom).unwrap();
        std::fs::write(dir.path().join("broken.yaml"), "id: broken\n").unwrap();
        let c = Catalog::load(vec![dir.path().to_path_buf()]).unwrap();
        assert_eq!(c.get("nginx").unwrap().name, "NGINX (site)");
        assert_eq!(c.source("nginx"), Some(Source::File(dir.path().join("nginx.yaml"))));
        let st = c.stats();
        assert_eq!(st.overridden, 1);
        assert!(st.warnings.iter().any(|w| w.contains("overrides the built-in entry")), "{:?}", st.warnings);
        assert!(st.warnings.iter().any(|w| w.contains("broken.yaml") && w.contains("file skipped")), "{:?}", st.warnings);
        assert!(c.get("broken").is_none());

        // A new app appears after reload; clones of the handle see it too.
        let c2 = c.clone();
        std::fs::write(dir.path().join("site2.yaml"), custom.replace("id: nginx", "id: site2")).unwrap();
        assert!(c2.get("site2").is_none());
        let st = c.reload().unwrap();
        assert_eq!(st.extra, 2);
        assert_eq!(c2.get("site2").unwrap().name, "NGINX (site)");
    }
}
