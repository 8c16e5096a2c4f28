//! Project uploads: how much one request, one submission and one student may store, how long
//! an upload may take, what an archive may unpack to, and how often the janitor sweeps.

use std::time::Duration;

use super::{ConfigError, err, parse};

const MIB: u64 = 1024 * 1024;

#[derive(Clone, Debug)]
pub struct UploadLimits {
    pub max_file_bytes: u64,
    pub max_submission_bytes: u64,
    pub max_files: usize,
    /// Uploads in flight at once on one instance; each may stage up to `max_submission_bytes`.
    pub max_concurrent: usize,
    /// Bytes one student's files may take in the store, every version of every project.
    pub quota_bytes: u64,
    /// The upload route's own deadline (the API-wide request timeout is far too short for a
    /// 100 MB upload on a school's connection).
    pub timeout: Duration,
    pub zip_max_entries: usize,
    pub zip_max_uncompressed_bytes: u64,
    pub zip_max_ratio: u64,
    /// How often stale uploads (objects no row refers to, temporary files) are swept.
    pub janitor_interval: Duration,
    /// How often pending malware scans are retried.
    pub scan_retry_interval: Duration,
}

impl UploadLimits {
    /// What a whole multipart request may weigh: every file at its limit plus room for the
    /// note and the part headers.
    pub fn max_request_bytes(&self) -> u64 {
        self.max_submission_bytes + 64 * 1024 + self.max_files as u64 * 1024
    }

    /// An object without a row is only stale once no upload that wrote it can still be
    /// running: twice the upload deadline (the deadline covers the commit too).
    pub fn stale_after(&self) -> Duration {
        self.timeout * 2 + self.timeout.min(Duration::from_secs(60))
    }
}

pub(super) fn upload_limits(
    var: &impl Fn(&str) -> Option<String>,
    positive: &impl Fn(&'static str, u64) -> Result<u64, ConfigError>,
) -> Result<UploadLimits, ConfigError> {
    let bytes = |name: &'static str, default: u64| positive(name, parse(var, name, default)?);
    let max_file_bytes = bytes("CIFIX_UPLOAD_MAX_FILE_BYTES", 100 * MIB)?;
    let max_submission_bytes = bytes("CIFIX_UPLOAD_MAX_SUBMISSION_BYTES", 200 * MIB)?;
    if max_submission_bytes < max_file_bytes {
        return Err(err("CIFIX_UPLOAD_MAX_SUBMISSION_BYTES", "must be at least CIFIX_UPLOAD_MAX_FILE_BYTES"));
    }
    let quota_bytes = bytes("CIFIX_UPLOAD_QUOTA_BYTES", 1024 * MIB)?;
    if quota_bytes < max_submission_bytes {
        return Err(err("CIFIX_UPLOAD_QUOTA_BYTES", "must be at least CIFIX_UPLOAD_MAX_SUBMISSION_BYTES"));
    }
    let max_files = bytes("CIFIX_UPLOAD_MAX_FILES", 20)?;
    if max_files > 1000 {
        return Err(err("CIFIX_UPLOAD_MAX_FILES", "must be at most 1000"));
    }
    Ok(UploadLimits {
        max_file_bytes,
        max_submission_bytes,
        max_files: max_files as usize,
        max_concurrent: bytes("CIFIX_UPLOAD_MAX_CONCURRENT", 8)? as usize,
        quota_bytes,
        timeout: Duration::from_secs(bytes("CIFIX_UPLOAD_TIMEOUT_SECS", 600)?),
        zip_max_entries: bytes("CIFIX_ZIP_MAX_ENTRIES", 1000)? as usize,
        zip_max_uncompressed_bytes: bytes("CIFIX_ZIP_MAX_UNCOMPRESSED_BYTES", 500 * MIB)?,
        zip_max_ratio: bytes("CIFIX_ZIP_MAX_RATIO", 100)?,
        janitor_interval: Duration::from_secs(bytes("CIFIX_UPLOAD_JANITOR_INTERVAL_SECS", 3600)?),
        scan_retry_interval: Duration::from_secs(bytes("CIFIX_SCAN_RETRY_INTERVAL_SECS", 60)?),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<UploadLimits, ConfigError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let var = |k: &str| map.get(k).cloned();
        let positive = |name: &'static str, v: u64| if v == 0 { Err(err(name, "must be positive")) } else { Ok(v) };
        upload_limits(&var, &positive)
    }

    #[test]
    fn defaults_are_documented_values() {
        let l = load(&[]).unwrap();
        assert_eq!((l.max_file_bytes, l.max_submission_bytes, l.quota_bytes), (100 * MIB, 200 * MIB, 1024 * MIB));
        assert_eq!((l.max_files, l.timeout), (20, Duration::from_secs(600)));
        assert!(l.stale_after() > l.timeout);
    }

    #[test]
    fn limits_must_nest() {
        let e = load(&[("CIFIX_UPLOAD_MAX_FILE_BYTES", "300000000")]).unwrap_err();
        assert_eq!(e.var, "CIFIX_UPLOAD_MAX_SUBMISSION_BYTES");
        let e = load(&[("CIFIX_UPLOAD_QUOTA_BYTES", "1000")]).unwrap_err();
        assert_eq!(e.var, "CIFIX_UPLOAD_QUOTA_BYTES");
        assert_eq!(load(&[("CIFIX_UPLOAD_MAX_FILES", "0")]).unwrap_err().var, "CIFIX_UPLOAD_MAX_FILES");
    }
}
