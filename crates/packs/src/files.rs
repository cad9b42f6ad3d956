//! The files of a pack, read from a folder, from the binary, or from a stored
//! bundle, with the size limits every source obeys.

use std::collections::BTreeMap;
use std::path::Path;

use include_dir::Dir;

use crate::Problem;

/// Largest pack accepted, all files together.
pub const MAX_PACK_BYTES: usize = 4 * 1024 * 1024;
/// Largest `pack.yaml` accepted.
pub const MAX_MANIFEST_BYTES: usize = 256 * 1024;
/// Most files a pack may hold.
pub const MAX_FILES: usize = 1000;

/// A pack's files by path (`/`-separated, relative to the pack folder).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackFiles(BTreeMap<String, String>);

impl PackFiles {
    /// Files from a map of path to text, checking the limits.
    pub fn from_map(files: BTreeMap<String, String>) -> Result<Self, Problem> {
        let files = PackFiles(files);
        files.check_limits()?;
        for path in files.0.keys() {
            check_relative(path).map_err(|m| Problem::in_file(path, m))?;
        }
        Ok(files)
    }

    /// Every file under `dir`, skipping hidden ones (`.git`, `.DS_Store`).
    pub fn from_dir(dir: &Path) -> Result<Self, Problem> {
        let root = dir.display().to_string();
        if !dir.is_dir() {
            return Err(Problem::in_file(
                &root,
                "is not a folder; give the folder that holds pack.yaml",
            ));
        }
        let mut files = BTreeMap::new();
        let mut pending = vec![dir.to_path_buf()];
        let mut total = 0usize;
        while let Some(d) = pending.pop() {
            let entries = std::fs::read_dir(&d)
                .map_err(|e| Problem::in_file(&d.display().to_string(), e.to_string()))?;
            for entry in entries {
                let entry =
                    entry.map_err(|e| Problem::in_file(&d.display().to_string(), e.to_string()))?;
                let path = entry.path();
                if entry.file_name().to_string_lossy().starts_with('.') {
                    continue;
                }
                if path.is_dir() {
                    pending.push(path);
                    continue;
                }
                let rel = path
                    .strip_prefix(dir)
                    .map(|p| {
                        p.components()
                            .map(|c| c.as_os_str().to_string_lossy())
                            .collect::<Vec<_>>()
                            .join("/")
                    })
                    .unwrap_or_default();
                let bytes = std::fs::read(&path)
                    .map_err(|e| Problem::in_file(&rel, format!("cannot be read: {e}")))?;
                total += bytes.len();
                if total > MAX_PACK_BYTES || files.len() >= MAX_FILES {
                    return Err(too_big());
                }
                let text = String::from_utf8(bytes)
                    .map_err(|_| Problem::in_file(&rel, "is not UTF-8 text"))?;
                files.insert(rel, text);
            }
        }
        Self::from_map(files)
    }

    /// The files of an embedded folder.
    pub fn from_embedded(dir: &Dir<'_>) -> Result<Self, Problem> {
        let mut files = BTreeMap::new();
        collect_embedded(dir, dir.path(), &mut files)?;
        Self::from_map(files)
    }

    /// The text of `path`, if the pack holds it.
    pub fn get(&self, path: &str) -> Option<&str> {
        self.0.get(path).map(String::as_str)
    }

    /// Every file, by path.
    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    /// Total size in bytes.
    pub fn size(&self) -> usize {
        self.0.values().map(String::len).sum()
    }

    fn check_limits(&self) -> Result<(), Problem> {
        if self.size() > MAX_PACK_BYTES || self.0.len() > MAX_FILES {
            return Err(too_big());
        }
        if let Some(m) = self.0.get("pack.yaml")
            && m.len() > MAX_MANIFEST_BYTES
        {
            return Err(Problem::in_file(
                "pack.yaml",
                format!(
                    "is {} bytes; the limit is {MAX_MANIFEST_BYTES}: move schemas and prompts into their own files",
                    m.len()
                ),
            ));
        }
        Ok(())
    }
}

fn too_big() -> Problem {
    Problem::in_file(
        ".",
        format!(
            "the pack is larger than {} MiB or has more than {MAX_FILES} files; keep only pack.yaml, schemas, examples, prompts and templates",
            MAX_PACK_BYTES / (1024 * 1024)
        ),
    )
}

fn collect_embedded(
    dir: &Dir<'_>,
    root: &Path,
    files: &mut BTreeMap<String, String>,
) -> Result<(), Problem> {
    for f in dir.files() {
        let rel = f
            .path()
            .strip_prefix(root)
            .unwrap_or(f.path())
            .to_string_lossy()
            .replace('\\', "/");
        let text = f
            .contents_utf8()
            .ok_or_else(|| Problem::in_file(&rel, "is not UTF-8 text"))?;
        files.insert(rel, text.to_owned());
    }
    for d in dir.dirs() {
        collect_embedded(d, root, files)?;
    }
    Ok(())
}

/// A path inside the pack: relative, `/`-separated, without `..`.
pub(crate) fn check_relative(path: &str) -> Result<(), String> {
    let bad = path.is_empty()
        || path.starts_with('/')
        || path.contains('\\')
        || path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        Err(format!(
            "`{path}` is not a path inside the pack; write it relative to the pack folder, like schemas/intake.json"
        ))
    } else {
        Ok(())
    }
}
