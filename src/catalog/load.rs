//! Reading catalog files: the built-in set embedded in the binary (`catalog/*.yaml`) and extra
//! directories from the configuration. Later sources override earlier ones by id (with a
//! warning). The built-in set must be valid; a broken extra file is skipped with a warning.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rust_embed::RustEmbed;

use super::model::CatalogEntry;
use super::validate::{Issue, parse_file};

#[derive(RustEmbed)]
#[folder = "catalog/"]
struct Builtin;

/// Where an entry came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "path")]
pub enum Source {
    /// Embedded in the binary.
    Builtin,
    /// A file in an extra directory.
    File(PathBuf),
}

/// Result of loading every source.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// Entries by id.
    pub entries: BTreeMap<String, (Arc<CatalogEntry>, Source)>,
    /// Non-fatal problems (overrides, skipped files).
    pub warnings: Vec<String>,
    /// Number of entries replaced by a later source.
    pub overridden: usize,
}

/// The embedded files as `(name, text)`, sorted by name.
pub fn builtin_files() -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = Builtin::iter()
        .filter(|n| n.ends_with(".yaml") && !n.contains('/'))
        .filter_map(|n| {
            let f = Builtin::get(&n)?;
            Some((n.to_string(), String::from_utf8_lossy(&f.data).into_owned()))
        })
        .collect();
    v.sort();
    v
}

/// Validate the built-in catalog (all issues, labelled `catalog/<file>`).
pub fn validate_builtin() -> (usize, Vec<Issue>) {
    let mut issues = Vec::new();
    let files = builtin_files();
    for (name, text) in &files {
        let stem = name.trim_end_matches(".yaml");
        if let Err(mut i) = parse_file(&format!("catalog/{name}"), stem, text) {
            issues.append(&mut i);
        }
    }
    (files.len(), issues)
}

/// Validate every `.yaml` file of a directory; `.yml` files are reported (use `.yaml`).
pub fn validate_dir(dir: &Path) -> Result<(Vec<CatalogEntry>, Vec<Issue>), std::io::Error> {
    let mut entries = Vec::new();
    let mut issues = Vec::new();
    for path in yaml_files(dir)? {
        let label = path.display().to_string();
        if path.extension().is_some_and(|e| e == "yml") {
            issues.push(Issue { file: label, field: "(file)".into(), message: "catalog files must be named <id>.yaml".into() });
            continue;
        }
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        match std::fs::read_to_string(&path) {
            Err(e) => issues.push(Issue { file: label, field: "(file)".into(), message: format!("cannot read: {e}") }),
            Ok(text) => match parse_file(&label, &stem, &text) {
                Ok(e) => entries.push(e),
                Err(mut i) => issues.append(&mut i),
            },
        }
    }
    Ok((entries, issues))
}

fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>, std::io::Error> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    v.sort();
    Ok(v)
}

/// Load the built-in catalog plus `dirs` (in order). Fails only when the built-in set is
/// invalid (a build defect); problems in extra directories become warnings.
pub fn load_all(dirs: &[PathBuf]) -> Result<Loaded, Vec<Issue>> {
    let mut out = Loaded::default();
    let mut issues = Vec::new();
    for (name, text) in builtin_files() {
        let stem = name.trim_end_matches(".yaml");
        match parse_file(&format!("catalog/{name}"), stem, &text) {
            Ok(e) => {
                out.entries.insert(e.id.clone(), (Arc::new(e), Source::Builtin));
            }
            Err(mut i) => issues.append(&mut i),
        }
    }
    if !issues.is_empty() {
        return Err(issues);
    }
    for dir in dirs {
        match validate_dir(dir) {
            Err(e) => out.warnings.push(format!("catalog directory {}: {e}", dir.display())),
            Ok((entries, issues)) => {
                for i in issues {
                    out.warnings.push(format!("{i} (file skipped)"));
                }
                for e in entries {
                    let path = dir.join(format!("{}.yaml", e.id));
                    if let Some((_, old)) = out.entries.get(&e.id) {
                        let was = match old {
                            Source::Builtin => "the built-in entry".to_string(),
                            Source::File(p) => p.display().to_string(),
                        };
                        out.warnings.push(format!("{}: overrides {was} for app {:?}", path.display(), e.id));
                        out.overridden += 1;
                    }
                    out.entries.insert(e.id.clone(), (Arc::new(e), Source::File(path)));
                }
            }
        }
    }
    Ok(out)
}
