//! The Source and Build actions on one machine: a directory or git repository becomes CodePipeline's
//! CODE_ZIP, and the app's buildspec.yml runs as CodeBuild would run it (phases in order, each phase's
//! commands in one shell, stop at the first failing command), its `artifacts` section collected into the
//! output artifact.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::Deserialize;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("source {path}: {reason}")]
    Source { path: String, reason: String },
    #[error("buildspec: {0}")]
    Spec(String),
    #[error("build phase `{phase}` failed: command `{command}` exited with {status}\n{output}")]
    Phase {
        phase: String,
        command: String,
        status: String,
        output: String,
    },
    #[error("artifacts: {0}")]
    Artifacts(String),
}

/// The source as CodePipeline hands it over: a zip and a revision id.
pub struct Source {
    pub zip: Vec<u8>,
    /// A git commit id, or for a plain directory a content hash of the same shape.
    pub commit: String,
    pub branch: String,
}

/// Zips `dir` (a git repository's tracked files via `git archive`, else every file but `.git`).
pub fn source(dir: &Path) -> Result<Source, BuildError> {
    let fail = |reason: String| BuildError::Source {
        path: dir.display().to_string(),
        reason,
    };
    if !dir.is_dir() {
        return Err(fail("not a directory".into()));
    }
    let git = |args: &[&str]| -> Option<String> {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let is_repo_root = git(&["rev-parse", "--show-toplevel"])
        .and_then(|top| std::fs::canonicalize(top).ok())
        == std::fs::canonicalize(dir).ok();
    if is_repo_root {
        if let Some(commit) = git(&["rev-parse", "HEAD"]) {
            let out = std::process::Command::new("git")
                .arg("-C")
                .arg(dir)
                .args(["archive", "--format=zip", "HEAD"])
                .output()
                .map_err(|e| fail(format!("git archive: {e}")))?;
            if out.status.success() {
                let branch =
                    git(&["rev-parse", "--abbrev-ref", "HEAD"]).unwrap_or_else(|| "main".into());
                return Ok(Source {
                    zip: out.stdout,
                    commit,
                    branch,
                });
            }
        }
    }
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_entry(|e| e.file_name() != ".git")
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().to_path_buf())
        .collect();
    files.sort();
    let mut hash = Sha256::new();
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for path in &files {
        let name = path
            .strip_prefix(dir)
            .map_err(|e| fail(e.to_string()))?
            .to_string_lossy()
            .replace('\\', "/");
        let bytes = std::fs::read(path).map_err(|e| fail(format!("{name}: {e}")))?;
        hash.update(name.as_bytes());
        hash.update(&bytes);
        zip.start_file(&name, zip::write::SimpleFileOptions::default())
            .map_err(|e| fail(e.to_string()))?;
        zip.write_all(&bytes).map_err(|e| fail(e.to_string()))?;
    }
    let zip = zip.finish().map_err(|e| fail(e.to_string()))?.into_inner();
    let commit: String = hex::encode(hash.finalize()).chars().take(40).collect();
    Ok(Source {
        zip,
        commit,
        branch: "main".into(),
    })
}

#[derive(Debug, Deserialize, Default)]
struct Spec {
    #[serde(default)]
    env: EnvSection,
    #[serde(default)]
    phases: BTreeMap<String, Phase>,
    #[serde(default)]
    artifacts: Option<Artifacts>,
}

#[derive(Debug, Deserialize, Default)]
struct EnvSection {
    #[serde(default)]
    variables: BTreeMap<String, serde_yaml_ng::Value>,
}

#[derive(Debug, Deserialize, Default)]
struct Phase {
    #[serde(default)]
    commands: Vec<String>,
}

#[derive(Debug, Deserialize, Default)]
struct Artifacts {
    #[serde(default)]
    files: Vec<String>,
    #[serde(rename = "base-directory", default)]
    base_directory: Option<String>,
    #[serde(rename = "discard-paths", default)]
    discard_paths: Option<serde_yaml_ng::Value>,
}

/// What a build produced.
pub struct Built {
    pub zip: Vec<u8>,
    pub files: usize,
    /// Each phase's output, for the progress display.
    pub log: String,
}

/// Runs `buildspec.yml` (or `spec`) in `dir`, where the source zip has been unpacked.
pub async fn build(
    dir: &Path,
    spec_name: &str,
    env: &[(String, String)],
) -> Result<Built, BuildError> {
    let spec_path = dir.join(spec_name);
    let text = std::fs::read_to_string(&spec_path)
        .map_err(|e| BuildError::Spec(format!("{}: {e}", spec_path.display())))?;
    let spec: Spec = serde_yaml_ng::from_str(&text)
        .map_err(|e| BuildError::Spec(format!("{}: {e}", spec_path.display())))?;
    let mut variables: Vec<(String, String)> = env.to_vec();
    for (k, v) in &spec.env.variables {
        let value = match v {
            serde_yaml_ng::Value::String(s) => s.clone(),
            other => serde_yaml_ng::to_string(other)
                .unwrap_or_default()
                .trim()
                .to_string(),
        };
        variables.push((k.clone(), value));
    }
    let mut log = String::new();
    for phase in ["install", "pre_build", "build", "post_build"] {
        let Some(p) = spec.phases.get(phase) else {
            continue;
        };
        for command in &p.commands {
            let out = tokio::process::Command::new("bash")
                .args(["-o", "pipefail", "-c", command])
                .current_dir(dir)
                .envs(variables.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .stdin(Stdio::null())
                .output()
                .await
                .map_err(|e| BuildError::Spec(format!("could not run bash: {e}")))?;
            let output = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            log.push_str(&format!("[{phase}] $ {command}\n{output}"));
            if !out.status.success() {
                // The build's output so far, as CodeBuild's log would show it before the failure.
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(20)..].join("\n");
                return Err(BuildError::Phase {
                    phase: phase.into(),
                    command: command.clone(),
                    status: out.status.to_string(),
                    output: tail,
                });
            }
        }
    }
    let artifacts = spec.artifacts.ok_or_else(|| {
        BuildError::Spec("no `artifacts` section: the build has no output".into())
    })?;
    let (zip, files) = collect(dir, &artifacts)?;
    Ok(Built { zip, files, log })
}

fn collect(dir: &Path, artifacts: &Artifacts) -> Result<(Vec<u8>, usize), BuildError> {
    let base = match &artifacts.base_directory {
        Some(b) => dir.join(b),
        None => dir.to_path_buf(),
    };
    let discard = matches!(
        &artifacts.discard_paths,
        Some(serde_yaml_ng::Value::Bool(true))
    ) || matches!(&artifacts.discard_paths, Some(serde_yaml_ng::Value::String(s)) if s == "yes");
    let mut globs = globset::GlobSetBuilder::new();
    for pattern in &artifacts.files {
        globs.add(
            globset::GlobBuilder::new(pattern)
                .literal_separator(true)
                .build()
                .map_err(|e| BuildError::Artifacts(format!("pattern {pattern}: {e}")))?,
        );
    }
    let globs = globs
        .build()
        .map_err(|e| BuildError::Artifacts(e.to_string()))?;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let mut count = 0;
    let mut entries: Vec<PathBuf> = walkdir::WalkDir::new(&base)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().to_path_buf())
        .collect();
    entries.sort();
    for path in entries {
        let relative = path
            .strip_prefix(&base)
            .map_err(|e| BuildError::Artifacts(e.to_string()))?;
        if !globs.is_match(relative) {
            continue;
        }
        let name = if discard {
            relative
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default()
        } else {
            relative.to_string_lossy().replace('\\', "/")
        };
        let bytes =
            std::fs::read(&path).map_err(|e| BuildError::Artifacts(format!("{name}: {e}")))?;
        zip.start_file(&name, zip::write::SimpleFileOptions::default())
            .map_err(|e| BuildError::Artifacts(e.to_string()))?;
        zip.write_all(&bytes)
            .map_err(|e| BuildError::Artifacts(e.to_string()))?;
        count += 1;
    }
    if count == 0 {
        return Err(BuildError::Artifacts(format!(
            "no file under {} matches {:?}",
            base.display(),
            artifacts.files
        )));
    }
    let zip = zip
        .finish()
        .map_err(|e| BuildError::Artifacts(e.to_string()))?
        .into_inner();
    Ok((zip, count))
}

/// Unpacks a zip into `dir` (entries escaping it are refused by the zip crate).
pub fn unpack(zip: &[u8], dir: &Path) -> Result<(), BuildError> {
    let mut archive =
        zip::ZipArchive::new(std::io::Cursor::new(zip)).map_err(|e| BuildError::Source {
            path: dir.display().to_string(),
            reason: e.to_string(),
        })?;
    archive.extract(dir).map_err(|e| BuildError::Source {
        path: dir.display().to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_phases_and_collects_artifacts() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("app.py"), "print(1)").unwrap();
        std::fs::create_dir(dir.path().join("static")).unwrap();
        std::fs::write(dir.path().join("static/a.css"), "a{}").unwrap();
        std::fs::write(
            dir.path().join("buildspec.yml"),
            "version: 0.2\nenv:\n  variables:\n    GREETING: hi\nphases:\n  build:\n    commands:\n      - echo \"$GREETING $CODEBUILD_RESOLVED_SOURCE_VERSION\" > VERSION\nartifacts:\n  files:\n    - app.py\n    - VERSION\n    - 'static/**/*'\n",
        )
        .unwrap();
        let built = build(
            dir.path(),
            "buildspec.yml",
            &[("CODEBUILD_RESOLVED_SOURCE_VERSION".into(), "abc".into())],
        )
        .await
        .unwrap();
        assert_eq!(built.files, 3);
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(built.zip)).unwrap();
        let mut version = String::new();
        std::io::Read::read_to_string(&mut zip.by_name("VERSION").unwrap(), &mut version).unwrap();
        assert_eq!(version, "hi abc\n");
        assert!(zip.by_name("static/a.css").is_ok());

        std::fs::write(
            dir.path().join("buildspec.yml"),
            "version: 0.2\nphases:\n  build:\n    commands:\n      - echo compiling\n      - exit 3\nartifacts:\n  files: ['**/*']\n",
        )
        .unwrap();
        let err = build(dir.path(), "buildspec.yml", &[])
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("`exit 3` exited with exit status: 3") && err.contains("compiling"),
            "{err}"
        );
    }

    #[test]
    fn a_git_repository_source_is_its_head_commit_and_only_what_it_tracks() {
        let dir = tempfile::tempdir().unwrap();
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .arg("-C")
                .arg(dir.path())
                .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "git {args:?}: {out:?}");
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        };
        git(&["init", "--quiet", "--initial-branch=release"]);
        std::fs::create_dir(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join("src/app.py"), "print(1)").unwrap();
        git(&["add", "."]);
        git(&["commit", "--quiet", "-m", "one"]);
        std::fs::write(dir.path().join("untracked"), "not committed").unwrap();
        std::fs::write(dir.path().join("src/app.py"), "print(2)").unwrap();
        let source = source(dir.path()).unwrap();
        assert_eq!(source.commit, git(&["rev-parse", "HEAD"]));
        assert_eq!(source.branch, "release");
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(source.zip)).unwrap();
        let mut app = String::new();
        std::io::Read::read_to_string(&mut zip.by_name("src/app.py").unwrap(), &mut app).unwrap();
        assert_eq!(app, "print(1)", "the commit, not the working tree");
        assert!(zip.by_name("untracked").is_err());
    }

    #[test]
    fn a_directory_source_gets_a_stable_content_id() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), "1").unwrap();
        let a = source(dir.path()).unwrap();
        let b = source(dir.path()).unwrap();
        assert_eq!(a.commit, b.commit);
        assert_eq!(a.commit.len(), 40);
        std::fs::write(dir.path().join("a"), "2").unwrap();
        assert_ne!(source(dir.path()).unwrap().commit, a.commit);
    }
}
