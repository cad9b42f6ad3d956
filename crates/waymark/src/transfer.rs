//! `waymark export --to DIR` and `waymark import --from DIR`: every record as
//! JSON lines, out of one installation and into an empty one of either
//! backend (SQLite to PostgreSQL is the way to grow out of one machine).
//!
//! The folder holds `tables/<table>.jsonl` (one JSON array per row, in the
//! columns' order, parents' tables before their children's), `objects/…`
//! (the stored files and delivery exports the records name, by their object
//! store keys), and last `manifest.json`: the format, the source backend and
//! schema, each table's columns, row count and SHA-256, each object's size
//! and SHA-256. `import` checks every hash before it touches the database,
//! loads all the records in one transaction (ids, versions, history, the
//! audit chain and the events as they were), puts the objects into the
//! target's object store, and verifies the audit chain. The table work is the
//! store's (`waymark_store::dump`).

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use waymark_client::progress::Progress;
use waymark_store::{Backend, DumpTable, Store, schema_version};

use crate::config::{Overrides, Settings};
use crate::serve::{open_existing_store, open_store};

/// The format a dump names in its manifest.
const FORMAT: &str = "waymark-export/1";
const MANIFEST: &str = "manifest.json";
const TABLES: &str = "tables";
const OBJECTS: &str = "objects";
/// Rows per insert batch on import.
const CHUNK: usize = 1000;
/// The tables whose rows name objects in the object store.
const WITH_OBJECTS: &[&str] = &["files", "exports"];

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The folder to write (new or empty)
    #[arg(long)]
    to: PathBuf,
    #[command(flatten)]
    flags: Overrides,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// A folder written by `waymark export`
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
    source: Backend,
    /// The last schema migration of the source.
    schema_version: i64,
    tables: Vec<TableEntry>,
    objects: Vec<ObjectEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
struct TableEntry {
    #[serde(flatten)]
    table: DumpTable,
    rows: u64,
    sha256: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct ObjectEntry {
    key: String,
    size: u64,
    sha256: String,
}

/// Where a table's rows are, in the folder.
fn table_path(dir: &Path, table: &str) -> Result<PathBuf> {
    ensure!(
        !table.is_empty() && table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "the manifest names a table `{table}`, which no Waymark has"
    );
    Ok(dir.join(TABLES).join(format!("{table}.jsonl")))
}

/// Where an object is, in the folder: its key, checked to stay inside.
fn object_path(dir: &Path, key: &str) -> Result<PathBuf> {
    let safe = !key.is_empty()
        && key.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        });
    ensure!(
        safe,
        "the manifest names an object `{key}` outside the folder"
    );
    Ok(dir.join(OBJECTS).join(key))
}

/// Writes what it is given while hashing it.
struct Hashed<W> {
    inner: W,
    hash: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashed<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn hex(digest: impl AsRef<[u8]>) -> String {
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 and size of a file.
fn hash_file(path: &Path) -> Result<(String, u64)> {
    let mut f = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hash = Sha256::new();
    let mut buf = vec![0; 1 << 16];
    let mut size = 0;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex(hash.finalize()), size))
}

pub async fn export(config: Option<&Path>, args: ExportArgs) -> Result<()> {
    let settings = Settings::load(config, &args.flags)?;
    let dir = &args.to;
    if dir.exists() {
        let mut inside =
            std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
        ensure!(
            inside.next().is_none(),
            "{} is not empty: an export goes into a new or empty folder",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir.join(TABLES))
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    let (store, label) = open_existing_store(&settings).await?;
    let outcome = export_into(&store, &settings, dir, &label).await;
    store.close().await;
    outcome
}

async fn export_into(
    store: &waymark_store::SqlStore,
    settings: &Settings,
    dir: &Path,
    label: &str,
) -> Result<()> {
    store.migrate().await.context("migrations failed")?;
    let tables = store.dump_tables().await?;
    eprintln!("export: {} tables from {label}", tables.len());
    // Every table's file, open at once: the rows come from one snapshot.
    let mut files = Vec::with_capacity(tables.len());
    for t in &tables {
        let path = table_path(dir, &t.name)?;
        let f = File::create(&path).with_context(|| format!("cannot write {}", path.display()))?;
        files.push(Hashed {
            inner: BufWriter::new(f),
            hash: Sha256::new(),
            bytes: 0,
        });
    }
    let index: std::collections::HashMap<String, usize> = tables
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.clone(), i))
        .collect();
    // The objects the records name: (key, sha256, size) from `storage_key`.
    let key_columns: Vec<Option<(usize, usize)>> = tables
        .iter()
        .map(|t| {
            let col = |n: &str| t.columns.iter().position(|c| c.name == n);
            WITH_OBJECTS
                .contains(&t.name.as_str())
                .then(|| Some((col("storage_key")?, col("sha256")?)))
                .flatten()
        })
        .collect();
    let mut objects: Vec<(String, String)> = Vec::new();
    let bar = Progress::new("export", 0, "rows", false);
    let mut written = 0u64;
    let mut failed: Option<anyhow::Error> = None;
    let counts = store
        .dump_rows(&tables, &mut |table, row| {
            let i = index[table];
            if let Some((key, sha)) = key_columns[i] {
                match serde_json::from_str::<Vec<Value>>(row) {
                    Ok(v) => {
                        if let (Some(k), Some(s)) = (v[key].as_str(), v[sha].as_str()) {
                            objects.push((k.to_owned(), s.to_owned()));
                        }
                    }
                    Err(e) => failed = Some(e.into()),
                }
            }
            let f = &mut files[i];
            f.write_all(row.as_bytes())?;
            f.write_all(b"\n")?;
            written += 1;
            if written.is_multiple_of(10_000) {
                bar.set(written, written);
            }
            Ok(())
        })
        .await
        .context("reading the records failed")?;
    if let Some(e) = failed {
        return Err(e.context("a stored file's row cannot be read"));
    }
    bar.set(written, written);
    bar.finish();
    let mut entries = Vec::with_capacity(tables.len());
    for ((t, f), rows) in tables.into_iter().zip(files).zip(counts) {
        let Hashed {
            mut inner, hash, ..
        } = f;
        inner.flush()?;
        inner.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        entries.push(TableEntry {
            table: t,
            rows,
            sha256: hex(hash.finalize()),
        });
    }

    objects.sort();
    objects.dedup();
    let blobs = settings.blobs()?;
    let obar = Progress::new("objects", objects.len() as u64, "files", false);
    let mut object_entries = Vec::with_capacity(objects.len());
    for (n, (key, sha256)) in objects.iter().enumerate() {
        let target = object_path(dir, key)?;
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let fetched = blobs.fetch(key).await.with_context(|| {
            format!("the stored file {key} is missing from the object store; the export stops")
        })?;
        std::fs::copy(&fetched, &target)
            .with_context(|| format!("cannot write {}", target.display()))?;
        let (got, size) = hash_file(&target)?;
        ensure!(
            &got == sha256,
            "the stored file {key} does not have the content its record names (SHA-256 {got}, \
             recorded {sha256}); the object store was changed behind Waymark's back"
        );
        object_entries.push(ObjectEntry {
            key: key.clone(),
            size,
            sha256: got,
        });
        obar.set(n as u64 + 1, objects.len() as u64);
    }
    obar.finish();

    let manifest = Manifest {
        format: FORMAT.into(),
        waymark_version: env!("CARGO_PKG_VERSION").into(),
        created_at: OffsetDateTime::now_utc(),
        source: store.backend(),
        schema_version: schema_version(),
        tables: entries,
        objects: object_entries,
    };
    let part = dir.join(format!("{MANIFEST}.part"));
    let mut f = File::create(&part)?;
    f.write_all(&serde_json::to_vec_pretty(&manifest)?)?;
    f.sync_all()?;
    std::fs::rename(&part, dir.join(MANIFEST))?;
    let rows: u64 = manifest.tables.iter().map(|t| t.rows).sum();
    println!(
        "exported {rows} records in {} tables and {} stored files to {}",
        manifest.tables.len(),
        manifest.objects.len(),
        dir.display()
    );
    Ok(())
}

pub async fn import(config: Option<&Path>, args: ImportArgs) -> Result<()> {
    let settings = Settings::load(config, &args.flags)?;
    let dir = &args.from;
    let manifest: Manifest = {
        let path = dir.join(MANIFEST);
        let bytes = std::fs::read(&path).with_context(|| {
            format!(
                "{} is not a Waymark export: it has no readable {MANIFEST} (an export that did \
                 not finish has none)",
                dir.display()
            )
        })?;
        serde_json::from_slice(&bytes).with_context(|| format!("{MANIFEST} cannot be read"))?
    };
    ensure!(
        manifest.format == FORMAT,
        "this export is in the format {}, which this Waymark ({}) does not read",
        manifest.format,
        env!("CARGO_PKG_VERSION")
    );
    ensure!(
        manifest.schema_version <= schema_version(),
        "this export comes from a newer Waymark ({}, schema {}); import it with that version or \
         a later one",
        manifest.waymark_version,
        manifest.schema_version
    );
    // Everything is checked before the database is touched.
    let check = Progress::new(
        "checking",
        (manifest.tables.len() + manifest.objects.len()) as u64,
        "files",
        false,
    );
    for t in &manifest.tables {
        let path = table_path(dir, &t.table.name)?;
        let (sha256, _) = hash_file(&path)?;
        ensure!(
            sha256 == t.sha256,
            "{} does not match the manifest (SHA-256 {sha256}, expected {}): the export was \
             changed or damaged; nothing was imported",
            path.display(),
            t.sha256
        );
        check.inc();
    }
    for o in &manifest.objects {
        let path = object_path(dir, &o.key)?;
        let (sha256, size) = hash_file(&path)?;
        ensure!(
            sha256 == o.sha256 && size == o.size,
            "{} does not match the manifest: the export was changed or damaged; nothing was \
             imported",
            path.display()
        );
        check.inc();
    }
    check.finish();

    let (store, label) = open_store(&settings).await?;
    let outcome = import_into(&store, &settings, dir, &manifest, &label).await;
    store.close().await;
    outcome
}

async fn import_into(
    store: &waymark_store::SqlStore,
    settings: &Settings,
    dir: &Path,
    manifest: &Manifest,
    label: &str,
) -> Result<()> {
    store.migrate().await.context("migrations failed")?;
    let mut loader = store.loader(manifest.source).await?;
    let total: u64 = manifest.tables.iter().map(|t| t.rows).sum();
    let bar = Progress::new("import", total, "rows", false);
    let mut done = 0u64;
    let order = loader.order();
    let mut tables: Vec<&TableEntry> = manifest.tables.iter().collect();
    // In this database's order (parents first); tables it does not know last,
    // where loading them says so.
    tables.sort_by_key(|t| order.iter().position(|n| n == &t.table.name));
    tables.sort_by_key(|t| !order.contains(&t.table.name));
    for t in tables {
        let path = table_path(dir, &t.table.name)?;
        let reader = BufReader::new(File::open(&path)?);
        let mut chunk = Vec::with_capacity(CHUNK);
        let mut rows = 0u64;
        for (n, line) in reader.lines().enumerate() {
            let line = line?;
            let row: Vec<Value> = serde_json::from_str(&line)
                .with_context(|| format!("{} line {}: not a JSON array", path.display(), n + 1))?;
            chunk.push(row);
            if chunk.len() == CHUNK {
                loader.load(&t.table, &chunk).await?;
                rows += chunk.len() as u64;
                done += chunk.len() as u64;
                bar.set(done, total);
                chunk.clear();
            }
        }
        loader.load(&t.table, &chunk).await?;
        rows += chunk.len() as u64;
        done += chunk.len() as u64;
        bar.set(done, total);
        ensure!(
            rows == t.rows,
            "{} holds {rows} rows, the manifest says {}: nothing was imported",
            path.display(),
            t.rows
        );
    }
    bar.finish();
    // The stored files go in before the records commit: a record never names
    // an object that is not there (objects are content-addressed; putting one
    // twice is harmless).
    if !manifest.objects.is_empty() {
        let blobs = settings.blobs()?;
        let obar = Progress::new("objects", manifest.objects.len() as u64, "files", false);
        for o in &manifest.objects {
            blobs
                .put_file(&o.key, &object_path(dir, &o.key)?)
                .await
                .with_context(|| {
                    format!(
                        "cannot store {} in the object store; nothing was imported",
                        o.key
                    )
                })?;
            obar.inc();
        }
        obar.finish();
    }

    loader
        .finish()
        .await
        .context("the import failed; nothing was imported")?;

    match crate::audit::verify(store).await? {
        Ok((count, head)) => {
            println!(
                "imported {total} records ({} tables) and {} stored files into {label}; audit \
                 chain intact: {count} records, head {head}",
                manifest.tables.len(),
                manifest.objects.len()
            );
            Ok(())
        }
        Err(broken) => bail!(
            "imported, but the audit chain does not verify at record {}: {broken}",
            broken.seq()
        ),
    }
}
