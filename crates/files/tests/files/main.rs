//! The files crate from the outside: detection, extraction and hostile input,
//! on the hand-built files of `waymark_files::fixtures`.
#![cfg(feature = "fixtures")]

mod detect;
mod extract;
mod fuzz;

use std::io::Write;

use tempfile::NamedTempFile;

/// `bytes` in a temporary file, removed when dropped.
pub fn file(bytes: &[u8]) -> NamedTempFile {
    let mut file = NamedTempFile::new().expect("a temporary file");
    file.write_all(bytes).expect("writing the temporary file");
    file.flush().expect("flushing the temporary file");
    file
}
