//! An upload on its way in: each file streams to a private temporary directory on local disk,
//! counted and hashed as it arrives, so nothing is held in memory and every limit is enforced
//! while the bytes come in, not after. Dropping the staging (a refused upload, a client that
//! hung up, a failed store) removes every byte of it; a process killed meanwhile leaves a
//! directory that the janitor removes.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::SubmitError;
use crate::config::UploadLimits;

/// Where stagings live under the data directory; the janitor sweeps it.
pub fn staging_root(data_dir: &Path) -> PathBuf {
    data_dir.join("tmp").join("uploads")
}

pub struct StagedFile {
    /// As the client declared it (checked later by inspection).
    pub declared_name: String,
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
}

pub struct Staging {
    dir: tempfile::TempDir,
    limits: UploadLimits,
    files: Vec<StagedFile>,
    total: u64,
    current: Option<(tokio::fs::File, Sha256)>,
    /// Everything the request carried, for `Idempotency-Key`: a retry must be the same upload.
    fingerprint: Sha256,
}

impl Staging {
    pub fn new(root: &Path, limits: &UploadLimits) -> std::io::Result<Staging> {
        std::fs::create_dir_all(root)?;
        Ok(Staging {
            dir: tempfile::Builder::new().prefix("upload-").tempdir_in(root)?,
            limits: limits.clone(),
            files: vec![],
            total: 0,
            current: None,
            fingerprint: Sha256::new(),
        })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts the next file. `index` names it in errors as `files[index]`.
    pub async fn start_file(&mut self, declared_name: String) -> Result<(), SubmitError> {
        if self.files.len() >= self.limits.max_files {
            return Err(SubmitError::TooLarge {
                field: "files".into(),
                detail: format!("at most {} files can be handed in at once", self.limits.max_files),
            });
        }
        let path = self.dir.path().join(format!("file-{}", self.files.len()));
        let file = tokio::fs::File::create(&path).await.map_err(SubmitError::Io)?;
        // Length-prefixed, so no file's bytes can pass for another part's boundary.
        self.fingerprint.update(b"file");
        self.fingerprint.update((declared_name.len() as u64).to_be_bytes());
        self.fingerprint.update(declared_name.as_bytes());
        self.files.push(StagedFile { declared_name, path, size: 0, sha256: String::new() });
        self.current = Some((file, Sha256::new()));
        Ok(())
    }

    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), SubmitError> {
        let index = self.files.len() - 1;
        let limits = &self.limits;
        let staged = &mut self.files[index];
        staged.size += chunk.len() as u64;
        self.total += chunk.len() as u64;
        if staged.size > limits.max_file_bytes {
            return Err(SubmitError::TooLarge {
                field: format!("files[{index}]"),
                detail: format!(
                    "{} is larger than {}",
                    display(&staged.declared_name),
                    megabytes(limits.max_file_bytes)
                ),
            });
        }
        if self.total > limits.max_submission_bytes {
            return Err(SubmitError::TooLarge {
                field: "files".into(),
                detail: format!("the files together are larger than {}", megabytes(limits.max_submission_bytes)),
            });
        }
        let (file, hash) = self.current.as_mut().expect("a file was started");
        hash.update(chunk);
        file.write_all(chunk).await.map_err(SubmitError::Io)
    }

    pub async fn finish_file(&mut self) -> Result<(), SubmitError> {
        let (mut file, hash) = self.current.take().expect("a file was started");
        file.flush().await.map_err(SubmitError::Io)?;
        file.sync_all().await.map_err(SubmitError::Io)?;
        let staged = self.files.last_mut().expect("a file was started");
        staged.sha256 = hex::encode(hash.finalize());
        self.fingerprint.update(staged.size.to_be_bytes());
        self.fingerprint.update(staged.sha256.as_bytes());
        Ok(())
    }

    pub fn note_part(&mut self, note: &str) {
        self.fingerprint.update(b"note");
        self.fingerprint.update((note.len() as u64).to_be_bytes());
        self.fingerprint.update(note.as_bytes());
    }

    pub fn files(&self) -> &[StagedFile] {
        &self.files
    }

    pub fn total_bytes(&self) -> u64 {
        self.total
    }

    /// Hex SHA-256 of the method, the target and every part, in order.
    pub fn fingerprint(&self, method: &str, target: &str) -> String {
        let mut h = self.fingerprint.clone();
        h.update(b"\0");
        h.update(method.as_bytes());
        h.update(b"\0");
        h.update(target.as_bytes());
        hex::encode(h.finalize())
    }
}

/// A file name as it may appear in an error message: without control characters, bounded.
pub fn display(name: &str) -> String {
    let clean: String = name.chars().filter(|c| !c.is_control()).take(80).collect();
    format!("\"{clean}\"")
}

pub fn megabytes(bytes: u64) -> String {
    let mb = bytes as f64 / (1024.0 * 1024.0);
    if mb >= 1.0 { format!("{mb:.0} MB") } else { format!("{bytes} bytes") }
}
