//! `waymark backup --to FILE` and `waymark restore --from FILE`: a SQLite
//! installation's data folder as one ZIP, taken while the server runs.
//!
//! The archive holds `waymark.db`, a consistent snapshot of the database
//! (`VACUUM INTO`: every record and the installed packs, which live in it),
//! the stored files (`files/…`: uploads and exports) when they are kept in the
//! data folder,
//! `admin-token` when there is one, and last `backup.json`: the format, when,
//! and each other entry's size and SHA-256. `restore` checks every entry
//! against it, refuses anything else, puts the folder together beside the
//! target, verifies the audit chain, and only then moves it into place. On
//! PostgreSQL both say to use the database's own tools.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use waymark_client::progress::Progress;
use waymark_store::{Store, sqlite};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

use crate::config::{Overrides, Settings};

/// The format a backup names in `backup.json`.
const FORMAT: &str = "waymark-backup/1";
const MANIFEST: &str = "backup.json";
const DATABASE: &str = "waymark.db";
const ADMIN_TOKEN: &str = "admin-token";
/// Stored files (the local object store), under the data folder and in the
/// archive.
const OBJECTS: &str = "files";

#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// The ZIP to write (a new file; an existing one is left alone)
    #[arg(long)]
    to: PathBuf,
    #[command(flatten)]
    flags: Overrides,
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// A ZIP written by `waymark backup`
    #[arg(long)]
    from: PathBuf,
    #[command(flatten)]
    flags: Overrides,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: String,
    waymark_version: String,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    /// Whether the stored files are in the archive (not when they live in S3).
    files_included: bool,
    entries: Vec<Entry>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    path: String,
    size: u64,
    sha256: String,
}

fn on_postgres(verb: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "this installation runs on PostgreSQL, which {verb} itself better than Waymark can: use \
         pg_dump --format=custom (pg_restore to put it back), or pg_basebackup for the whole \
         server; stored files live in the object store (S3) or the files folder, which its own \
         tools back up"
    )
}

pub async fn backup(config: Option<&Path>, args: BackupArgs) -> Result<()> {
    let settings = Settings::load(config, &args.flags)?;
    if settings.database_url.is_some() {
        return Err(on_postgres("backs up"));
    }
    let data = &settings.data_dir;
    let db = data.join(DATABASE);
    ensure!(
        db.is_file(),
        "no Waymark data in {}: there is no {DATABASE} there; name the folder `waymark serve` \
         uses with --data-dir (WAYMARK_DATA_DIR)",
        data.display()
    );
    ensure!(
        !args.to.exists(),
        "{} already exists; name a new file (a backup never overwrites one)",
        args.to.display()
    );
    let parent = match args.to.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // Everything is written beside the target and renamed into place at the
    // end, so an interrupted backup leaves no file that looks whole.
    let work = tempfile::Builder::new()
        .prefix(".waymark-backup-")
        .tempdir_in(&parent)
        .with_context(|| format!("cannot write in {}", parent.display()))?;
    eprintln!("backup: taking a snapshot of {}", db.display());
    let snapshot = work.path().join(DATABASE);
    sqlite::snapshot(&db, &snapshot)
        .await
        .context("the database snapshot failed")?;

    let mut sources: Vec<(String, PathBuf)> = vec![(DATABASE.into(), snapshot)];
    let token = data.join(ADMIN_TOKEN);
    if token.is_file() {
        sources.push((ADMIN_TOKEN.into(), token));
    }
    // The stored files, when the object store is the local folder (always
    // `<data folder>/files`); in S3 they are the bucket's to keep.
    let files_included = matches!(
        settings.blob_settings()?,
        waymark_engine::blobs::BlobSettings::Local { .. }
    );
    if files_included {
        let objects = data.join(OBJECTS);
        if objects.is_dir() {
            walk(&objects, OBJECTS, &mut sources)?;
        }
    }
    let total: u64 = sources
        .iter()
        .map(|(_, p)| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    let bar = Progress::new("backup", total.div_ceil(1 << 20), "MiB", false);

    let part = work.path().join("backup.zip");
    let mut zip = ZipWriter::new(BufWriter::new(File::create(&part)?));
    let mut entries = Vec::with_capacity(sources.len());
    let mut written = 0u64;
    for (name, path) in &sources {
        let size = std::fs::metadata(path)?.len();
        // Stored files are mostly compressed already (PDF, DOCX, images).
        let method = if name.starts_with(OBJECTS) {
            CompressionMethod::Stored
        } else {
            CompressionMethod::Deflated
        };
        let options = SimpleFileOptions::default()
            .compression_method(method)
            .large_file(size >= u64::from(u32::MAX));
        zip.start_file(name.as_str(), options)?;
        let sha256 = copy_hashed(
            &mut File::open(path).with_context(|| format!("cannot read {}", path.display()))?,
            &mut zip,
        )?;
        written += size;
        bar.set(written >> 20, total.div_ceil(1 << 20));
        entries.push(Entry {
            path: name.clone(),
            size,
            sha256,
        });
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        waymark_version: env!("CARGO_PKG_VERSION").into(),
        created_at: OffsetDateTime::now_utc(),
        files_included,
        entries,
    };
    zip.start_file(MANIFEST, SimpleFileOptions::default())?;
    zip.write_all(&serde_json::to_vec_pretty(&manifest)?)?;
    let mut out = zip.finish()?;
    out.flush()?;
    out.into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()
        .context("cannot write the backup to disk")?;
    std::fs::rename(&part, &args.to)
        .with_context(|| format!("cannot move the backup to {}", args.to.display()))?;
    bar.finish();
    let size = std::fs::metadata(&args.to)?.len();
    println!(
        "backed up {} to {} ({} entries, {:.1} MiB{})",
        data.display(),
        args.to.display(),
        manifest.entries.len(),
        size as f64 / f64::from(1 << 20),
        if files_included {
            ""
        } else {
            "; the stored files are in S3, not in this backup"
        }
    );
    Ok(())
}

pub async fn restore(config: Option<&Path>, args: RestoreArgs) -> Result<()> {
    let settings = Settings::load(config, &args.flags)?;
    if settings.database_url.is_some() {
        return Err(on_postgres("restores"));
    }
    let data = settings.data_dir.clone();
    if data.exists() {
        let mut inside =
            std::fs::read_dir(&data).with_context(|| format!("cannot read {}", data.display()))?;
        ensure!(
            inside.next().is_none(),
            "{} is not empty: a restore goes into an empty or new data folder, so that nothing \
             is mixed or lost; name one with --data-dir (WAYMARK_DATA_DIR)",
            data.display()
        );
    }
    let file = File::open(&args.from)
        .with_context(|| format!("cannot open the backup {}", args.from.display()))?;
    let mut zip = ZipArchive::new(BufReader::new(file)).with_context(|| {
        format!(
            "{} is not a Waymark backup (not a ZIP)",
            args.from.display()
        )
    })?;
    let manifest: Manifest = {
        let mut m = zip.by_name(MANIFEST).with_context(|| {
            format!(
                "{} is not a Waymark backup: it has no {MANIFEST}",
                args.from.display()
            )
        })?;
        let mut bytes = Vec::new();
        m.by_ref().take(1 << 24).read_to_end(&mut bytes)?;
        serde_json::from_slice(&bytes).with_context(|| format!("{MANIFEST} cannot be read"))?
    };
    ensure!(
        manifest.format == FORMAT,
        "this backup is in the format {}, which this Waymark ({}) does not read",
        manifest.format,
        env!("CARGO_PKG_VERSION")
    );
    let names: Vec<String> = zip
        .file_names()
        .map(|n| n.map(std::borrow::Cow::into_owned))
        .collect::<zip::result::ZipResult<_>>()?;
    for name in names {
        ensure!(
            name == MANIFEST
                || name.ends_with('/')
                || manifest.entries.iter().any(|e| e.path == name),
            "the backup holds {name:?}, which its manifest does not list; it was altered"
        );
    }
    ensure!(
        manifest.entries.iter().any(|e| e.path == DATABASE),
        "the backup has no database"
    );

    let parent = match data.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)?;
    let staging = tempfile::Builder::new()
        .prefix(".waymark-restore-")
        .tempdir_in(&parent)
        .with_context(|| format!("cannot write in {}", parent.display()))?;
    let total: u64 = manifest.entries.iter().map(|e| e.size).sum();
    let bar = Progress::new("restore", total.div_ceil(1 << 20), "MiB", false);
    let mut done = 0u64;
    for entry in &manifest.entries {
        let relative = safe_path(&entry.path)?;
        let mut member = zip
            .by_name(&entry.path)
            .with_context(|| format!("the backup lists {} but does not hold it", entry.path))?;
        let target = staging.path().join(&relative);
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut out = File::create(&target)?;
        let sha256 = copy_hashed(&mut member.by_ref().take(entry.size + 1), &mut out)?;
        out.sync_all()?;
        let size = out.metadata()?.len();
        ensure!(
            size == entry.size && sha256 == entry.sha256,
            "{} in the backup does not match its manifest (size {size}, expected {}); the \
             backup is damaged",
            entry.path,
            entry.size
        );
        done += size;
        bar.set(done >> 20, total.div_ceil(1 << 20));
    }
    bar.finish();

    // The restored database is opened, brought up to this version's schema,
    // and its audit chain verified before it takes the data folder's place.
    let store = sqlite::open(&staging.path().join(DATABASE), 2)
        .await
        .context("the restored database cannot be opened")?;
    store
        .migrate()
        .await
        .context("the restored database cannot be migrated")?;
    let verdict = crate::audit::verify(&store).await;
    store.close().await;
    let (records, head) = match verdict? {
        Ok(v) => v,
        Err(broken) => bail!(
            "the restored audit chain is broken at record {}: {broken}; nothing was restored",
            broken.seq()
        ),
    };
    if data.exists() {
        std::fs::remove_dir(&data)
            .with_context(|| format!("cannot replace the empty folder {}", data.display()))?;
    }
    let staged = staging.keep();
    std::fs::rename(&staged, &data).with_context(|| {
        format!(
            "cannot move the restored data from {} to {}",
            staged.display(),
            data.display()
        )
    })?;
    println!(
        "restored the backup of {} into {}: audit chain intact, {records} records, head {head}{}",
        manifest
            .created_at
            .format(&Rfc3339)
            .unwrap_or_else(|_| manifest.created_at.to_string()),
        data.display(),
        if manifest.files_included {
            ""
        } else {
            "; the stored files were in S3 and are not in the backup"
        }
    );
    Ok(())
}

/// Every file under `dir`, named in the archive below `prefix`.
fn walk(dir: &Path, prefix: &str, out: &mut Vec<(String, PathBuf)>) -> Result<()> {
    let mut children: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .collect::<std::io::Result<_>>()?;
    children.sort_by_key(|e| e.file_name());
    for child in children {
        let name = child.file_name().to_string_lossy().into_owned();
        let path = child.path();
        let kind = child.file_type()?;
        if kind.is_dir() {
            walk(&path, &format!("{prefix}/{name}"), out)?;
        } else if kind.is_file() && !name.contains('#') {
            // (`name#n` is an object being written, renamed into place when whole.)
            out.push((format!("{prefix}/{name}"), path));
        }
    }
    Ok(())
}

/// An entry's place in the data folder: the database, the admin token, or a
/// stored file under `files/` — never anywhere else.
fn safe_path(name: &str) -> Result<PathBuf> {
    let allowed = name == DATABASE
        || name == ADMIN_TOKEN
        || name
            .strip_prefix(OBJECTS)
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|rest| {
                !rest.is_empty()
                    && rest.split('/').all(|part| {
                        !part.is_empty()
                            && part != "."
                            && part != ".."
                            && part
                                .chars()
                                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                    })
            });
    ensure!(
        allowed,
        "the backup names {name:?}, which is not a place in a data folder; it was altered"
    );
    Ok(PathBuf::from(name))
}

/// Copies `from` into `to`, answering the hex SHA-256 of what was copied.
fn copy_hashed(from: &mut impl Read, to: &mut impl Write) -> Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        to.write_all(&buf[..n])?;
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::safe_path;

    #[test]
    fn only_places_of_a_data_folder_are_restored() {
        for ok in ["waymark.db", "admin-token", "files/clients/cli_0/ab/abcdef"] {
            assert!(safe_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "../waymark.db",
            "/etc/passwd",
            "files/../../x",
            "files/",
            "files//x",
            "staging/x",
            "files/a/./b",
            "filesx/a",
            "files/a#1",
            "waymark.db-wal",
        ] {
            assert!(safe_path(bad).is_err(), "{bad}");
        }
    }
}
