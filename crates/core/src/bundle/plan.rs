//! What normalisation makes of an inspected bundle ([`Plan`]): OS metadata dropped, `\` names rewritten,
//! a top-level folder (or chain of folders) flattened away, and the entry point found; then the checks
//! that only make sense on the final layout (symlinks that escape, entries inside files). Apart because it
//! is pure: no file, no zip library, just names and kinds.

use std::collections::{BTreeMap, HashMap};

use super::inspect::Seen;
use super::names::{components, is_os_metadata, path_key};
use super::{BundleError, Clash, Normalise};

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
}

/// An entry that stays in the bundle, under its final name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedEntry {
    pub index: usize,
    pub original: String,
    /// The final name (`/` separated, `/`-terminated for folders).
    pub name: String,
    pub kind: Kind,
    /// A symlink's target.
    pub target: Option<String>,
}

/// The outcome of [`inspect()`](super::inspect()): what the bundle holds and what normalisation will change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub entries: Vec<PlannedEntry>,
    /// The folder everything was moved up out of: a top-level folder (`shop`) or a chain of folders each
    /// holding nothing but the next (`outer/inner`), `/` separated without a trailing `/`.
    pub flattened: Option<String>,
    /// Entries left out as OS metadata.
    pub dropped: Vec<String>,
    /// Entries whose names used `\` and were rewritten with `/`.
    pub backslash_names: usize,
    pub files: usize,
    pub uncompressed_bytes: u64,
    /// Which known entry point the root holds (`Procfile`, `package.json`, ...), if any.
    pub entry_point: Option<String>,
}

impl Plan {
    /// Whether the bundle must be rewritten; otherwise it can be copied as it is.
    pub fn needs_rewrite(&self) -> bool {
        self.flattened.is_some() || !self.dropped.is_empty() || self.backslash_names > 0
    }

    /// One sentence per change, for the summary.
    pub fn changes(&self) -> Vec<String> {
        let mut out = vec![];
        if let Some(folder) = &self.flattened {
            let under = if folder.contains('/') {
                format!("the folders `{folder}/`, each holding nothing but the next")
            } else {
                format!("the top-level folder `{folder}/`")
            };
            out.push(format!(
                "flattened: every file sat under {under}, which Elastic Beanstalk would not look into; moved everything up out of `{folder}/` to the root"
            ));
        }
        if !self.dropped.is_empty() {
            out.push(format!(
                "dropped {} macOS metadata entries ({})",
                self.dropped.len(),
                sample(&self.dropped)
            ));
        }
        if self.backslash_names > 0 {
            out.push(format!(
                "rewrote {} entry names that used `\\` as the folder separator",
                self.backslash_names
            ));
        }
        out
    }

    /// Warnings for the summary.
    pub fn warnings(&self) -> Vec<String> {
        match self.entry_point {
            Some(_) => vec![],
            None => vec![format!(
                "warning: no Procfile or known entry point at the bundle root (looked for {}); the platform's default start command will be used and may not start this app",
                ENTRY_POINTS_TEXT
            )],
        }
    }
}

fn sample(names: &[String]) -> String {
    let mut s: Vec<String> = names.iter().take(3).map(|n| format!("`{n}`")).collect();
    if names.len() > 3 {
        s.push("...".into());
    }
    s.join(", ")
}

/// Root files that tell a Beanstalk platform how to start the app.
const ENTRY_POINT_FILES: &[&str] = &[
    "Procfile",
    "Dockerfile",
    "Dockerrun.aws.json",
    "docker-compose.yml",
    "docker-compose.yaml",
    "package.json",
    "app.js",
    "server.js",
    "application.py",
    "application",
    "application.go",
    "config.ru",
    "index.php",
    "composer.json",
    "aws-windows-deployment-manifest.json",
];
const ENTRY_POINTS_TEXT: &str = "Procfile, Dockerfile, Dockerrun.aws.json, docker-compose.yml, package.json, app.js, server.js, application.py, application, config.ru, index.php, composer.json, aws-windows-deployment-manifest.json, *.jar, *.war, WEB-INF/";

/// Top-level folders that mean something to Beanstalk at the root: never flattened away.
const MEANINGFUL_ROOT_FOLDERS: &[&str] = &[
    ".ebextensions",
    ".platform",
    ".elasticbeanstalk",
    "WEB-INF",
    "META-INF",
    "node_modules",
];

/// The entry point the root holds, if any.
fn entry_point(root_files: &[&str], root_dirs: &[&str]) -> Option<String> {
    root_files
        .iter()
        .find(|f| ENTRY_POINT_FILES.contains(f) || f.ends_with(".jar") || f.ends_with(".war"))
        .map(|f| f.to_string())
        .or_else(|| {
            root_dirs
                .iter()
                .find(|d| **d == "WEB-INF")
                .map(|d| format!("{d}/"))
        })
}

pub(super) fn plan(
    seen: Vec<Seen>,
    total: u64,
    normalise: &Normalise,
) -> Result<Plan, BundleError> {
    let backslash = normalise.fix_backslashes;
    let mut dropped = vec![];
    let mut kept: Vec<(Seen, Vec<String>)> = vec![];
    for s in seen {
        let parts: Vec<String> = components(&s.name, backslash)
            .into_iter()
            .map(str::to_string)
            .collect();
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        if normalise.drop_os_metadata && is_os_metadata(&refs) {
            dropped.push(s.name);
        } else {
            kept.push((s, parts));
        }
    }
    if !kept.iter().any(|(s, _)| s.kind != Kind::Dir) {
        return Err(BundleError::Empty);
    }
    let chain = if normalise.flatten {
        folder_chain(&kept)
    } else {
        vec![]
    };
    let strip = chain.len();
    let flattened = (!chain.is_empty()).then(|| chain.join("/"));
    let mut entries = vec![];
    let mut backslash_names = 0;
    let mut files = 0;
    for (s, parts) in kept {
        let rest = parts.get(strip..).unwrap_or_default();
        if rest.is_empty() {
            // A folder of the flattened chain itself.
            continue;
        }
        let mut name = rest.join("/");
        if s.kind == Kind::Dir {
            name.push('/');
        }
        if backslash && s.name.contains('\\') {
            backslash_names += 1;
        }
        if s.kind != Kind::Dir {
            files += 1;
        }
        entries.push(PlannedEntry {
            index: s.index,
            original: s.name,
            name,
            kind: s.kind,
            target: s.symlink_target,
        });
    }
    check_symlinks(&entries)?;
    check_nesting(&entries)?;
    let root_files: Vec<&str> = entries
        .iter()
        .filter(|e| e.kind != Kind::Dir && !e.name.contains('/'))
        .map(|e| e.name.as_str())
        .collect();
    let root_dirs: Vec<&str> = entries
        .iter()
        .filter_map(|e| e.name.split('/').next().filter(|_| e.name.contains('/')))
        .collect();
    let entry_point = entry_point(&root_files, &root_dirs);
    Ok(Plan {
        entries,
        flattened,
        dropped,
        backslash_names,
        files,
        uncompressed_bytes: total,
        entry_point,
    })
}

/// The chain of folders every entry sits in, each holding nothing but the next (`outer/inner/...` with
/// nothing else at any level): Elastic Beanstalk looks for the app at the root, so everything is moved up
/// out of the deepest folder that still holds everything. Empty when the root holds more than one thing.
/// The chain stops before a folder that means something at the root (`.ebextensions`, `WEB-INF`, ...),
/// which must stay a folder.
fn folder_chain(kept: &[(Seen, Vec<String>)]) -> Vec<String> {
    let mut chain: Vec<String> = vec![];
    loop {
        let depth = chain.len();
        // The next folder: named by any entry below this depth (a file needs at least depth + 2 parts).
        let Some(next) = kept
            .iter()
            .find(|(s, parts)| {
                parts.len() > depth + 1 || (s.kind == Kind::Dir && parts.len() > depth)
            })
            .map(|(_, parts)| parts[depth].clone())
        else {
            return chain;
        };
        let holds_everything = kept.iter().all(|(s, parts)| {
            // A folder of the chain itself, or an entry inside `next` (`next/` itself is a folder).
            (s.kind == Kind::Dir && parts.len() <= depth)
                || (parts.get(depth) == Some(&next)
                    && (parts.len() > depth + 1 || s.kind == Kind::Dir))
        });
        if !holds_everything || MEANINGFUL_ROOT_FOLDERS.contains(&next.as_str()) {
            return chain;
        }
        chain.push(next);
    }
}

/// No entry may lie inside a file or symlink (`lib` and `lib/x.py`), in any letter case (see
/// [`Clash::Case`]): such a bundle cannot be unpacked as it is. Runs after [`check_symlinks`], which names
/// the exact-case symlink case in its own words.
fn check_nesting(entries: &[PlannedEntry]) -> Result<(), BundleError> {
    let not_folders: HashMap<String, &PlannedEntry> = entries
        .iter()
        .filter(|e| e.kind != Kind::Dir)
        .map(|e| (path_key(&e.name), e))
        .collect();
    for entry in entries {
        let key = path_key(&entry.name);
        let mut parents = key.match_indices('/').map(|(at, _)| &key[..at]);
        if let Some(parent) = parents.find_map(|p| not_folders.get(p)) {
            return Err(BundleError::Duplicate {
                first: parent.original.clone(),
                first_index: parent.index,
                second: entry.original.clone(),
                second_index: entry.index,
                clash: Clash::InsideFile,
            });
        }
    }
    Ok(())
}

/// Symlinks must resolve inside the (final) bundle without passing through another symlink, and no
/// entry may sit below a symlink (unpacking would write through it).
fn check_symlinks(entries: &[PlannedEntry]) -> Result<(), BundleError> {
    let links: BTreeMap<&str, &str> = entries
        .iter()
        .filter(|e| e.kind == Kind::Symlink)
        .map(|e| (e.name.trim_end_matches('/'), e.original.as_str()))
        .collect();
    if links.is_empty() {
        return Ok(());
    }
    for entry in entries {
        let target = &entry.target;
        let parts: Vec<&str> = entry.name.trim_end_matches('/').split('/').collect();
        for depth in 1..parts.len() {
            let prefix = parts[..depth].join("/");
            if let Some(link) = links.get(prefix.as_str()) {
                return Err(BundleError::ThroughSymlink {
                    entry: entry.original.clone(),
                    link: link.to_string(),
                });
            }
        }
        let Some(target) = target else { continue };
        let escapes = || BundleError::SymlinkEscapes {
            entry: entry.original.clone(),
            target: target.clone(),
        };
        if target.is_empty()
            || target.starts_with('/')
            || target.starts_with('\\')
            || target.as_bytes().get(1) == Some(&b':')
        {
            return Err(escapes());
        }
        let mut resolved: Vec<&str> = parts[..parts.len() - 1].to_vec();
        for part in target.split(['/', '\\']) {
            match part {
                "" | "." => {}
                ".." => {
                    if resolved.pop().is_none() {
                        return Err(escapes());
                    }
                }
                other => {
                    resolved.push(other);
                    if let Some(link) = links.get(resolved.join("/").as_str()) {
                        // The last component may be a symlink only if it is this one (a loop is harmless
                        // to unzip); anything else chains symlinks, which defeats this check.
                        if *link != entry.original {
                            return Err(BundleError::ThroughSymlink {
                                entry: entry.original.clone(),
                                link: link.to_string(),
                            });
                        }
                    }
                }
            }
        }
    }
    Ok(())
}
