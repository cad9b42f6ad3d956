//! Waymark's uploaded files: what a file is, a safe name for it, and its text.
//!
//! Pure and synchronous: no async runtime and no I/O beyond reading the file
//! whose path is given. The caller (the server, a worker) runs [`extract`] on a
//! blocking thread and stores what it returns.
//!
//! - [`detect`]: decides a file's [`FileKind`] from its content (never from its
//!   name alone) or refuses it with a [`Refusal`] saying what it is.
//! - [`sanitize_name`]: a display name that cannot point elsewhere or hide its
//!   extension.
//! - [`extract`] / [`extract_guarded`]: the text of a file within [`Limits`]
//!   (size, zip expansion, XML depth, pages, a deadline), and for CSV and XLSX
//!   the shape of the data as a [`Table`]; or an [`ExtractError`] with a stable
//!   code and a sentence for a person.
//! - `fixtures` (feature `fixtures`): hand-built PDF, DOCX and XLSX files, and
//!   hostile ones, for tests and benchmarks.
//!
//! DOCX and XLSX are read with the same guarded zip reader, so the limits on
//! entries, expansion and XML depth apply to both; XML document type
//! declarations are refused, so no entity can expand.

mod archive;
mod detect;
mod extract;
mod kind;
mod name;
mod office;
mod pdf;
mod plain;
mod table;
mod xml;

#[cfg(feature = "fixtures")]
pub mod fixtures;

pub use detect::{Refusal, detect};
pub use extract::{ExtractError, Extracted, Limits, PAGE_BREAK, extract, extract_guarded};
pub use kind::FileKind;
pub use name::{MAX_NAME_BYTES, sanitize_name};
pub use table::{ColumnType, SAMPLE_ROWS, Table};
