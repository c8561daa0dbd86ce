//! `proximity catalog validate [DIR]`: prints `file:field: message` per problem, exit 1 if any.

use std::path::Path;
use std::process::ExitCode;

use crate::catalog::load;

/// Validate `dir` (or the built-in catalog) and report on stdout.
pub fn validate(dir: Option<&Path>) -> ExitCode {
    let (count, issues) = match dir {
        None => load::validate_builtin(),
        Some(d) => match load::validate_dir(d) {
            Ok((entries, issues)) => (entries.len() + issues.iter().map(|i| &i.file).collect::<std::collections::BTreeSet<_>>().len(), issues),
            Err(e) => {
                println!("{}:(dir): cannot read directory: {e}", d.display());
                return ExitCode::FAILURE;
            }
        },
    };
    let label = dir.map(|d| d.display().to_string()).unwrap_or_else(|| "built-in catalog".into());
    if issues.is_empty() {
        if count == 0 {
            println!("{label}:(dir): no <id>.yaml files found");
            return ExitCode::FAILURE;
        }
        println!("{label}: {count} apps ok");
        ExitCode::SUCCESS
    } else {
        for i in &issues {
            println!("{i}");
        }
        eprintln!("{label}: {} problem(s)", issues.len());
        ExitCode::FAILURE
    }
}
