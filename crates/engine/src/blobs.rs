//! Where uploaded files' bytes live: an object store (`object_store`), a
//! folder under the data folder by default or an S3-compatible bucket.
//!
//! Objects are content-addressed: `clients/<client id>/<first two hex
//! digits>/<sha256>`, so the same bytes uploaded twice for a client are one
//! object, and a client's objects share one prefix. Uploads are staged in a
//! local folder first (streamed to disk while hashed, never whole in
//! memory); only a complete, accepted file is put, in parts, into the store.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::stream::BoxStream;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use tokio::io::AsyncReadExt;
use waymark_domain::ClientId;

/// Bytes read and sent per part of a multipart put (S3's minimum is 5 MiB).
const PART: usize = 8 * 1024 * 1024;

/// Where objects go.
#[derive(Debug, Clone)]
pub enum BlobSettings {
    /// A folder (created when missing).
    Local { root: PathBuf },
    /// An S3-compatible bucket.
    S3(S3Settings),
}

/// An S3-compatible bucket.
#[derive(Clone)]
pub struct S3Settings {
    pub bucket: String,
    /// The service's URL (`http://127.0.0.1:9000` for a local server); AWS's
    /// own when unset.
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// A failure of the object store.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("the file's bytes are not in the object store ({0})")]
    Missing(String),
    #[error("the object store failed: {0}")]
    Store(#[from] object_store::Error),
    #[error("reading or writing a staged file failed: {0}")]
    Io(#[from] std::io::Error),
}

/// The object store of uploaded files, and the folder uploads are staged in.
#[derive(Clone)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
    staging: PathBuf,
    describe: String,
}

impl std::fmt::Debug for Blobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe)
    }
}

impl Blobs {
    /// Opens the store; `staging` is a local folder for uploads in progress
    /// and files being read (created when missing).
    pub fn open(settings: &BlobSettings, staging: &Path) -> Result<Blobs, BlobError> {
        std::fs::create_dir_all(staging)?;
        let (store, describe): (Arc<dyn ObjectStore>, String) = match settings {
            BlobSettings::Local { root } => {
                std::fs::create_dir_all(root)?;
                let fs = LocalFileSystem::new_with_prefix(root)?.with_automatic_cleanup(true);
                (Arc::new(fs), format!("folder {}", root.display()))
            }
            BlobSettings::S3(s3) => {
                let mut b = AmazonS3Builder::new()
                    .with_bucket_name(&s3.bucket)
                    .with_region(&s3.region);
                if let Some(endpoint) = &s3.endpoint {
                    b = b
                        .with_endpoint(endpoint)
                        .with_allow_http(endpoint.starts_with("http://"))
                        .with_virtual_hosted_style_request(false);
                }
                if let Some(k) = &s3.access_key_id {
                    b = b.with_access_key_id(k);
                }
                if let Some(k) = &s3.secret_access_key {
                    b = b.with_secret_access_key(k);
                }
                let describe = match &s3.endpoint {
                    Some(e) => format!("bucket {} at {e}", s3.bucket),
                    None => format!("bucket {}", s3.bucket),
                };
                (Arc::new(b.build()?), describe)
            }
        };
        Ok(Blobs {
            store,
            staging: staging.to_path_buf(),
            describe,
        })
    }

    /// A local folder of its own (tests, benchmarks).
    pub fn local(root: &Path) -> Result<Blobs, BlobError> {
        Self::open(
            &BlobSettings::Local {
                root: root.join("objects"),
            },
            &root.join("staging"),
        )
    }

    /// The folder uploads are staged in.
    pub fn staging(&self) -> &Path {
        &self.staging
    }

    /// The key of a client's object with this SHA-256 (hex).
    pub fn key(client: ClientId, sha256: &str) -> String {
        let prefix = sha256.get(..2).unwrap_or("00");
        format!("clients/{client}/{prefix}/{sha256}")
    }

    /// Puts the staged file at `key`, streamed in parts; an interrupted put
    /// leaves no object (the multipart upload is aborted).
    pub async fn put_file(&self, key: &str, path: &Path) -> Result<(), BlobError> {
        let location = ObjectPath::from(key);
        let mut file = tokio::fs::File::open(path).await?;
        let size = file.metadata().await?.len();
        if size <= PART as u64 {
            let mut buf = Vec::with_capacity(size as usize);
            file.read_to_end(&mut buf).await?;
            self.store.put(&location, PutPayload::from(buf)).await?;
            return Ok(());
        }
        let upload = self.store.put_multipart(&location).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
        let mut buf = vec![0u8; 1024 * 1024];
        let copied: Result<(), BlobError> = async {
            loop {
                let n = file.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                writer.wait_for_capacity(2).await?;
                writer.write(&buf[..n]);
            }
            Ok(())
        }
        .await;
        match copied {
            Ok(()) => {
                writer.finish().await?;
                Ok(())
            }
            Err(e) => {
                let _ = writer.abort().await;
                Err(e)
            }
        }
    }

    /// The object's bytes as a stream, and its size.
    pub async fn stream(
        &self,
        key: &str,
    ) -> Result<
        (
            u64,
            BoxStream<'static, Result<bytes::Bytes, object_store::Error>>,
        ),
        BlobError,
    > {
        let got = match self.store.get(&ObjectPath::from(key)).await {
            Err(object_store::Error::NotFound { .. }) => {
                return Err(BlobError::Missing(key.to_owned()));
            }
            other => other?,
        };
        let size = got.meta.size;
        Ok((size, got.into_stream()))
    }

    /// Copies the object into a staged file of its own (deleted when the
    /// answer is dropped), for a reader that needs a file.
    pub async fn fetch(&self, key: &str) -> Result<tempfile::TempPath, BlobError> {
        use futures::StreamExt;
        use tokio::io::AsyncWriteExt;
        let (_, mut stream) = self.stream(key).await?;
        let path = tempfile::Builder::new()
            .prefix("read-")
            .tempfile_in(&self.staging)?
            .into_temp_path();
        let mut out = tokio::fs::File::create(&path).await?;
        while let Some(chunk) = stream.next().await {
            out.write_all(&chunk?).await?;
        }
        out.flush().await?;
        Ok(path)
    }

    /// Deletes the object (nothing when it is already gone).
    pub async fn delete(&self, key: &str) -> Result<(), BlobError> {
        match self.store.delete(&ObjectPath::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether the object exists.
    pub async fn exists(&self, key: &str) -> Result<bool, BlobError> {
        match self.store.head(&ObjectPath::from(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}
