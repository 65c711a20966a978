//! The demo's later releases, made from the example app: a changed copy (v2, with a migration) and a bad
//! third release (`--bad-release`).

use std::path::{Path, PathBuf};

/// The demo's second release: a [`changed_copy`] that also ships the migration `next/<migration>` of
/// the example app (`0002_orders_note.sql`, an expansion; or `0002_orders_note_required.sql`, the
/// same column made required, which `--break-migration` deploys), which the app's code reads as its expected schema.
pub fn next_release(
    source: &Path,
    into: &Path,
    marker: &str,
    migration: &str,
) -> Result<PathBuf, String> {
    let target = changed_copy(source, into, marker)?;
    let from = source.join("next").join(migration);
    let to = target.join("migrations").join(migration);
    std::fs::create_dir_all(target.join("migrations")).map_err(|e| e.to_string())?;
    std::fs::copy(&from, &to).map_err(|e| format!("{}: {e}", from.display()))?;
    Ok(target)
}

/// The demo's bad third release (`--bad-release`): a copy of `v2` that ships a bug answering 5 % of
/// requests with 500 (the example app's `ERROR_PERCENT` file). It passes the smoke test (a few requests)
/// and fails under production's load after the swap, which the swap's bake catches.
pub fn bad_release(v2: &Path, into: &Path) -> Result<PathBuf, String> {
    let target = copy_tree(v2, &into.join("app-v3"))?;
    std::fs::write(target.join("RELEASE"), "third release, with a bug\n")
        .map_err(|e| e.to_string())?;
    std::fs::write(target.join("ERROR_PERCENT"), "5\n").map_err(|e| e.to_string())?;
    // The build ships the file with the rest of the app.
    let buildspec = target.join("buildspec.yml");
    let spec = std::fs::read_to_string(&buildspec).map_err(|e| e.to_string())?;
    let shipped = spec.replace("    - VERSION\n", "    - VERSION\n    - ERROR_PERCENT\n");
    if shipped == spec {
        return Err(format!(
            "{}: no `- VERSION` artifact line to ship ERROR_PERCENT beside",
            buildspec.display()
        ));
    }
    std::fs::write(&buildspec, shipped).map_err(|e| e.to_string())?;
    Ok(target)
}

/// A copy of `source` with a change, so the second deployment of the demo is a new version.
pub fn changed_copy(source: &Path, into: &Path, marker: &str) -> Result<PathBuf, String> {
    let target = copy_tree(source, &into.join("app-v2"))?;
    std::fs::write(target.join("RELEASE"), marker).map_err(|e| e.to_string())?;
    Ok(target)
}

fn copy_tree(source: &Path, target: &Path) -> Result<PathBuf, String> {
    for entry in walkdir::WalkDir::new(source)
        .into_iter()
        .filter_map(Result::ok)
    {
        let relative = entry
            .path()
            .strip_prefix(source)
            .map_err(|e| e.to_string())?;
        let to = target.join(relative);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&to).map_err(|e| format!("{}: {e}", to.display()))?;
        } else if entry.file_type().is_file() {
            std::fs::copy(entry.path(), &to).map_err(|e| format!("{}: {e}", to.display()))?;
        }
    }
    Ok(target.to_path_buf())
}
