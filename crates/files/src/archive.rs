//! A zip archive read within limits: the container of DOCX and XLSX files.
//!
//! An archive is refused before anything is decompressed when it has too many
//! entries, when its entries declare more bytes in all than allowed, or when one
//! entry of over 1 MiB declares a ratio of uncompressed to compressed size above
//! the limit. Then every entry is read through a meter that stops at the size the
//! entry declared, so a header that lies about the size cannot pass either.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Take};
use std::path::Path;

use zip::{CompressionMethod, ZipArchive};

use crate::extract::{ExtractError, Limits};

/// Entries at least this large (uncompressed) must respect [`Limits::max_ratio`].
const RATIO_FLOOR: u64 = 1 << 20;

/// An opened zip archive whose entries are read within limits.
pub(crate) struct Archive {
    zip: ZipArchive<BufReader<File>>,
    /// Bytes that may still be decompressed, all entries together.
    budget: u64,
}

impl Archive {
    /// Opens the archive at `path` and checks its central directory against
    /// `limits` (entries, declared total size, declared ratios).
    pub(crate) fn open(path: &Path, limits: &Limits) -> Result<Archive, ExtractError> {
        let zip = open_zip(path)?;
        if zip.len() > limits.max_entries {
            return Err(ExtractError::ZipBomb(format!(
                "{} entries, more than the {} allowed",
                zip.len(),
                limits.max_entries
            )));
        }
        let mut total: u64 = 0;
        for i in 0..zip.len() {
            let entry = zip
                .by_index_data(i)
                .map_err(|e| ExtractError::Corrupt(format!("a bad zip entry: {e}")))?;
            let size = entry.size();
            let compressed = entry.compressed_size().max(1);
            total = total.saturating_add(size);
            if size > RATIO_FLOOR && size / compressed > limits.max_ratio {
                return Err(ExtractError::ZipBomb(format!(
                    "an entry of {} bytes expands {} times, more than the {} allowed",
                    size,
                    size / compressed,
                    limits.max_ratio
                )));
            }
        }
        if total > limits.max_uncompressed {
            return Err(ExtractError::ZipBomb(format!(
                "{total} bytes uncompressed, more than the {} allowed",
                limits.max_uncompressed
            )));
        }
        Ok(Archive {
            zip,
            budget: limits.max_uncompressed,
        })
    }

    /// Whether the archive has an entry named `name`.
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.zip.index_for_name(name).is_some()
    }

    /// The names of the entries, in the archive's order.
    pub(crate) fn names(&self) -> Vec<String> {
        self.zip
            .file_names()
            .filter_map(Result::ok)
            .map(Into::into)
            .collect()
    }

    /// Calls `read` with the decompressed content of the entry `name`, which must
    /// exist. The content stops at the size the entry declared; an entry that holds
    /// more is a [`ExtractError::ZipBomb`], whatever `read` returned.
    pub(crate) fn with_entry<T>(
        &mut self,
        name: &str,
        read: impl FnOnce(&mut dyn BufRead) -> Result<T, ExtractError>,
    ) -> Result<T, ExtractError> {
        let file = self
            .zip
            .by_name(name)
            .map_err(|e| ExtractError::Corrupt(format!("{name} could not be opened: {e}")))?;
        if file.encrypted() {
            return Err(ExtractError::Encrypted);
        }
        match file.compression() {
            CompressionMethod::Stored | CompressionMethod::Deflated => {}
            other => {
                return Err(ExtractError::Corrupt(format!(
                    "{name} is compressed with {other}, which Office documents do not use"
                )));
            }
        }
        let declared = file.size();
        if declared > self.budget {
            return Err(ExtractError::ZipBomb(format!(
                "{name} declares {declared} bytes, more than the {} left to read",
                self.budget
            )));
        }
        let mut reader = BufReader::new(Metered {
            inner: file.take(declared.saturating_add(1)),
            read: 0,
            limit: declared,
            oversize: false,
        });
        let result = read(&mut reader);
        let metered = reader.get_ref();
        if metered.read > metered.limit || metered.oversize {
            return Err(ExtractError::ZipBomb(format!(
                "{name} holds more than the {declared} bytes its header declares"
            )));
        }
        self.budget -= metered.read;
        result
    }
}

/// Opens `path` as a zip archive.
pub(crate) fn open_zip(path: &Path) -> Result<ZipArchive<BufReader<File>>, ExtractError> {
    let file = File::open(path).map_err(crate::extract::io_error)?;
    ZipArchive::new(BufReader::new(file))
        .map_err(|e| ExtractError::Corrupt(format!("not a readable zip archive: {e}")))
}

/// Counts the bytes read and fails once there are more than `limit`.
///
/// The `zip` crate also stops an entry at its declared size, with an error of
/// its own; `oversize` records that the error was that one.
struct Metered<R> {
    inner: Take<R>,
    read: u64,
    limit: u64,
    oversize: bool,
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf).inspect_err(|e| {
            self.oversize |= e.kind() == io::ErrorKind::InvalidData
                && e.to_string().contains("larger than its declared");
        })?;
        self.read += n as u64;
        if self.read > self.limit {
            return Err(io::Error::other(
                "the entry is larger than its header declares",
            ));
        }
        Ok(n)
    }
}
