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
