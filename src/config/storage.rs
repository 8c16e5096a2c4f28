//! Where uploaded files are kept (a local directory or an S3-compatible bucket) and whether
//! they are scanned for malware (clamd).

use std::{path::PathBuf, time::Duration};

use super::{ConfigError, Environment, err, parse, parse_bool};

/// Where uploaded files are kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum StorageConfig {
    /// Files under `CIFIX_DATA_DIR/uploads`.
    #[default]
    Local,
    S3(S3Config),
}

/// An S3 bucket (AWS, or an S3-compatible store such as SeaweedFS or MinIO at `endpoint`).
#[derive(Clone, PartialEq, Eq)]
pub struct S3Config {
    pub bucket: String,
    /// `None` is AWS itself (virtual-hosted addressing); an S3-compatible store is addressed
    /// path-style at this URL, so that its bucket needs no DNS name of its own.
    pub endpoint: Option<String>,
    pub region: String,
    /// Both or neither; neither means the credentials of the EC2 instance's role.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Put before every key (without its trailing `/`), so that several deployments, or many
    /// tests, share one bucket without seeing each other's objects.
    pub prefix: Option<String>,
    pub allow_http: bool,
}

impl std::fmt::Debug for S3Config {
    // Hand-written so that the secret key can never reach a log line through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key.as_ref().map(|_| "<set>"))
            .field("prefix", &self.prefix)
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

/// Where clamd listens; `None` in [`ScannerConfig`] turns scanning off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClamdAddress {
    /// `host:port`, resolved when connecting.
    Tcp(String),
    Unix(PathBuf),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScannerConfig {
    pub clamd: Option<ClamdAddress>,
    /// The longest one scan may take, from connecting to clamd to its verdict.
    pub timeout: Duration,
}

impl Default for ScannerConfig {
    fn default() -> Self {
        ScannerConfig { clamd: None, timeout: Duration::from_secs(60) }
    }
}

/// Whether `s` may be (part of) an object key: the characters the storage accepts in keys.
pub fn is_key_text(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"/-_.".contains(&b))
}

pub(super) fn storage_config(
    var: &impl Fn(&str) -> Option<String>,
    env: Environment,
) -> Result<StorageConfig, ConfigError> {
    match var("CIFIX_STORAGE").as_deref() {
        None | Some("local") => {
            // A bucket named but not chosen would silently keep production files on one disk.
            if var("CIFIX_S3_BUCKET").is_some() {
                return Err(err("CIFIX_STORAGE", "CIFIX_S3_BUCKET is set but storage is local; set CIFIX_STORAGE=s3"));
            }
            Ok(StorageConfig::Local)
        }
        Some("s3") => s3_config(var, env).map(StorageConfig::S3),
        Some(other) => Err(err("CIFIX_STORAGE", format!("expected local or s3, got {other:?}"))),
    }
}

fn s3_config(var: &impl Fn(&str) -> Option<String>, env: Environment) -> Result<S3Config, ConfigError> {
    let bucket = var("CIFIX_S3_BUCKET").ok_or_else(|| err("CIFIX_S3_BUCKET", "is required with CIFIX_STORAGE=s3"))?;
    let bucket_chars = bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !(3..=63).contains(&bucket.len()) || !bucket_chars {
        return Err(err("CIFIX_S3_BUCKET", "must be 3 to 63 characters of a-z, 0-9, '-' and '.'"));
    }

    let allow_http = parse_bool(var, "CIFIX_S3_ALLOW_HTTP", false)?;
    let endpoint = var("CIFIX_S3_ENDPOINT").map(|e| e.trim_end_matches('/').to_string());
    if let Some(endpoint) = &endpoint {
        let (scheme, rest) = endpoint
            .split_once("://")
            .ok_or_else(|| err("CIFIX_S3_ENDPOINT", "must be an http(s) URL like https://s3.example.com"))?;
        let host_port = rest.split('/').next().unwrap_or_default();
        let host = match host_port.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => host_port.split(':').next().unwrap_or_default(),
        };
        if !(scheme == "http" || scheme == "https") || host.is_empty() || rest.contains(['?', '#', '@']) {
            return Err(err("CIFIX_S3_ENDPOINT", "must be an http(s) URL like https://s3.example.com"));
        }
        // Signed requests and the files themselves must not cross the network in clear text;
        // in production not even loopback is assumed safe without saying so.
        let loopback = matches!(host, "localhost" | "127.0.0.1" | "::1");
        if scheme == "http" && !allow_http && (env == Environment::Production || !loopback) {
            return Err(err(
                "CIFIX_S3_ENDPOINT",
                "plain http is refused (allowed for localhost outside production); use https or set CIFIX_S3_ALLOW_HTTP=true",
            ));
        }
    }

    let region = var("CIFIX_S3_REGION").or_else(|| var("AWS_REGION")).unwrap_or_else(|| "us-east-1".into());
    if region.is_empty() || !region.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(err("CIFIX_S3_REGION", format!("{region:?} is not a region like eu-west-1")));
    }

    // The pair comes from one place: half of our own and half of the generic AWS variables is a
    // mistake rather than a configuration.
    let (id_var, secret_var) = if var("CIFIX_S3_ACCESS_KEY_ID").is_some() || var("CIFIX_S3_SECRET_ACCESS_KEY").is_some()
    {
        ("CIFIX_S3_ACCESS_KEY_ID", "CIFIX_S3_SECRET_ACCESS_KEY")
    } else {
        ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    };
    let (access_key_id, secret_access_key) = (var(id_var), var(secret_var));
    match (&access_key_id, &secret_access_key) {
        (Some(_), None) => return Err(err(secret_var, format!("is required with {id_var}"))),
        (None, Some(_)) => return Err(err(id_var, format!("is required with {secret_var}"))),
        // Only AWS hands out credentials to an instance; any other store needs keys.
        (None, None) if endpoint.is_some() => {
            return Err(err(
                "CIFIX_S3_ACCESS_KEY_ID",
                "is required with CIFIX_S3_ENDPOINT (with CIFIX_S3_SECRET_ACCESS_KEY)",
            ));
        }
        _ => {}
    }

    let prefix = var("CIFIX_S3_PREFIX").map(|p| p.trim_matches('/').to_string()).filter(|p| !p.is_empty());
    if let Some(p) = &prefix
        && (!is_key_text(p) || p.contains("//") || p.split('/').any(|s| s == "." || s == ".."))
    {
        return Err(err(
            "CIFIX_S3_PREFIX",
            "must be made of a-z, 0-9, '/', '-', '_' and '.', without '.' or '..' parts",
        ));
    }

    Ok(S3Config { bucket, endpoint, region, access_key_id, secret_access_key, prefix, allow_http })
}

pub(super) fn scanner_config(
    var: &impl Fn(&str) -> Option<String>,
    positive: &impl Fn(&'static str, u64) -> Result<u64, ConfigError>,
) -> Result<ScannerConfig, ConfigError> {
    let clamd = match var("CLAMD_ADDR") {
        None => None,
        Some(addr) => {
            let path = addr.strip_prefix("unix:").or(addr.starts_with('/').then_some(addr.as_str()));
            match path {
                Some(path) if path.starts_with('/') => Some(ClamdAddress::Unix(PathBuf::from(path))),
                Some(_) => {
                    return Err(err(
                        "CLAMD_ADDR",
                        "a unix socket must be an absolute path (unix:/run/clamav/clamd.ctl)",
                    ));
                }
                None => {
                    let valid = addr
                        .rsplit_once(':')
                        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
                    if !valid {
                        return Err(err(
                            "CLAMD_ADDR",
                            "must be host:port (127.0.0.1:3310) or unix:/path/to/clamd.sock",
                        ));
                    }
                    Some(ClamdAddress::Tcp(addr))
                }
            }
        }
    };
    let timeout =
        Duration::from_secs(positive("CIFIX_CLAMD_TIMEOUT_SECS", parse(var, "CIFIX_CLAMD_TIMEOUT_SECS", 60)?)?);
    Ok(ScannerConfig { clamd, timeout })
}

#[cfg(test)]
mod tests {
    use super::super::tests::cfg;
    use super::*;

    const BUCKET: (&str, &str) = ("CIFIX_S3_BUCKET", "cifix-files");
    const KEYS: [(&str, &str); 2] =
        [("CIFIX_S3_ACCESS_KEY_ID", "AKIDEXAMPLE"), ("CIFIX_S3_SECRET_ACCESS_KEY", "s3-hunter4")];

    fn s3(pairs: &[(&str, &str)]) -> Result<S3Config, ConfigError> {
        let all = [&[("CIFIX_STORAGE", "s3"), BUCKET][..], pairs].concat();
        match cfg(&all)?.storage {
            StorageConfig::S3(s3) => Ok(s3),
            StorageConfig::Local => panic!("CIFIX_STORAGE=s3 gave local storage"),
        }
    }

    #[test]
    fn storage_is_local_and_scanning_off_by_default() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.storage, StorageConfig::Local);
        assert_eq!(cfg(&[("CIFIX_STORAGE", "local")]).unwrap().storage, StorageConfig::Local);
        assert_eq!(c.scanner, ScannerConfig { clamd: None, timeout: Duration::from_secs(60) });
    }

    #[test]
    fn s3_needs_a_valid_bucket() {
        assert_eq!(cfg(&[("CIFIX_STORAGE", "s3")]).unwrap_err().var, "CIFIX_S3_BUCKET");
        for bad in ["ab", "Uploads", "my_bucket", &"x".repeat(64)] {
            let e = cfg(&[("CIFIX_STORAGE", "s3"), ("CIFIX_S3_BUCKET", bad)]).unwrap_err();
            assert_eq!(e.var, "CIFIX_S3_BUCKET", "{bad}");
        }
        assert_eq!(cfg(&[("CIFIX_STORAGE", "ftp")]).unwrap_err().var, "CIFIX_STORAGE");
    }

    #[test]
    fn a_bucket_without_choosing_s3_is_refused() {
        assert_eq!(cfg(&[BUCKET]).unwrap_err().var, "CIFIX_STORAGE");
    }

    #[test]
    fn s3_defaults_to_aws_in_us_east_1() {
        let c = s3(&[]).unwrap();
        assert_eq!((c.endpoint, c.region.as_str(), c.prefix), (None, "us-east-1", None));
        assert!(c.access_key_id.is_none() && c.secret_access_key.is_none(), "the instance role");
        assert_eq!(s3(&[("AWS_REGION", "eu-west-1")]).unwrap().region, "eu-west-1");
        let ours = s3(&[("AWS_REGION", "eu-west-1"), ("CIFIX_S3_REGION", "eu-central-1")]).unwrap();
        assert_eq!(ours.region, "eu-central-1");
        assert_eq!(s3(&[("CIFIX_S3_REGION", "eu west")]).unwrap_err().var, "CIFIX_S3_REGION");
    }

    #[test]
    fn s3_keys_come_as_a_pair_ours_before_aws() {
        let c = s3(&KEYS).unwrap();
        assert_eq!(c.access_key_id.as_deref(), Some("AKIDEXAMPLE"));
        assert_eq!(c.secret_access_key.as_deref(), Some("s3-hunter4"));
        let aws = s3(&[("AWS_ACCESS_KEY_ID", "AKIDAWS"), ("AWS_SECRET_ACCESS_KEY", "aws-secret")]).unwrap();
        assert_eq!(aws.access_key_id.as_deref(), Some("AKIDAWS"));
        let both = s3(&[&KEYS[..], &[("AWS_ACCESS_KEY_ID", "AKIDAWS"), ("AWS_SECRET_ACCESS_KEY", "x")]].concat());
        assert_eq!(both.unwrap().access_key_id.as_deref(), Some("AKIDEXAMPLE"));
        assert_eq!(s3(&KEYS[..1]).unwrap_err().var, "CIFIX_S3_SECRET_ACCESS_KEY");
        assert_eq!(s3(&KEYS[1..]).unwrap_err().var, "CIFIX_S3_ACCESS_KEY_ID");
        let mixed = s3(&[KEYS[0], ("AWS_SECRET_ACCESS_KEY", "aws-secret")]).unwrap_err();
        assert_eq!(mixed.var, "CIFIX_S3_SECRET_ACCESS_KEY", "no half from each");
        assert_eq!(s3(&[("AWS_ACCESS_KEY_ID", "AKIDAWS")]).unwrap_err().var, "AWS_SECRET_ACCESS_KEY");
    }

    #[test]
    fn an_endpoint_needs_keys_and_https_unless_local() {
        let local = ("CIFIX_S3_ENDPOINT", "http://127.0.0.1:8333/");
        assert_eq!(s3(&[local]).unwrap_err().var, "CIFIX_S3_ACCESS_KEY_ID", "no instance role off AWS");
        let c = s3(&[&KEYS[..], &[local]].concat()).unwrap();
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:8333"));
        for fine in ["http://localhost:9000", "http://[::1]:9000", "https://s3.example.com", "https://10.0.0.5:9000"] {
            assert!(s3(&[&KEYS[..], &[("CIFIX_S3_ENDPOINT", fine)]].concat()).is_ok(), "{fine}");
        }
        let remote = ("CIFIX_S3_ENDPOINT", "http://seaweedfs.internal:8333");
        assert_eq!(s3(&[&KEYS[..], &[remote]].concat()).unwrap_err().var, "CIFIX_S3_ENDPOINT");
        let allowed = s3(&[&KEYS[..], &[remote, ("CIFIX_S3_ALLOW_HTTP", "true")]].concat()).unwrap();
        assert!(allowed.allow_http);
        for bad in ["s3.example.com", "ftp://s3.example.com", "https://", "https://u:p@s3.example.com", "https://h?x=1"]
        {
            let e = s3(&[&KEYS[..], &[("CIFIX_S3_ENDPOINT", bad)]].concat()).unwrap_err();
            assert_eq!(e.var, "CIFIX_S3_ENDPOINT", "{bad}");
        }
    }

    #[test]
    fn production_refuses_plain_http_even_on_loopback_unless_allowed() {
        let key = "ab".repeat(32);
        let prod = [
            ("CIFIX_ENV", "production"),
            ("CIFIX_JWT_SECRET", "x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x"),
            ("DATABASE_URL", "postgres://db/cifix"),
            ("CIFIX_SECRETS_KEY", key.as_str()),
            ("CIFIX_ALLOW_FILE_EMAIL_IN_PRODUCTION", "true"),
            ("CIFIX_S3_ENDPOINT", "http://127.0.0.1:8333"),
        ];
        assert_eq!(s3(&[&prod[..], &KEYS[..]].concat()).unwrap_err().var, "CIFIX_S3_ENDPOINT");
        assert!(s3(&[&prod[..], &KEYS[..], &[("CIFIX_S3_ALLOW_HTTP", "true")]].concat()).is_ok());
    }

    #[test]
    fn the_prefix_is_a_clean_key_path() {
        assert_eq!(s3(&[("CIFIX_S3_PREFIX", "/staging/cifix/")]).unwrap().prefix.as_deref(), Some("staging/cifix"));
        assert_eq!(s3(&[("CIFIX_S3_PREFIX", "/")]).unwrap().prefix, None);
        for bad in ["Staging", "a//b", "a/../b", "a b", "./a"] {
            assert_eq!(s3(&[("CIFIX_S3_PREFIX", bad)]).unwrap_err().var, "CIFIX_S3_PREFIX", "{bad}");
        }
    }

    #[test]
    fn the_secret_key_never_shows() {
        let c = cfg(&[("CIFIX_STORAGE", "s3"), BUCKET, KEYS[0], KEYS[1]]).unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3-hunter4"), "{shown}");
        assert!(shown.contains("secret_access_key: Some(\"<set>\")"), "{shown}");
    }

    #[test]
    fn clamd_is_a_tcp_address_or_a_unix_socket() {
        let clamd = |v: &str| cfg(&[("CLAMD_ADDR", v)]).map(|c| c.scanner.clamd);
        assert_eq!(clamd("127.0.0.1:3310").unwrap(), Some(ClamdAddress::Tcp("127.0.0.1:3310".into())));
        assert_eq!(clamd("clamav:3310").unwrap(), Some(ClamdAddress::Tcp("clamav:3310".into())));
        assert_eq!(clamd("[::1]:3310").unwrap(), Some(ClamdAddress::Tcp("[::1]:3310".into())));
        let socket = Some(ClamdAddress::Unix("/run/clamav/clamd.ctl".into()));
        assert_eq!(clamd("unix:/run/clamav/clamd.ctl").unwrap(), socket);
        assert_eq!(clamd("/run/clamav/clamd.ctl").unwrap(), socket);
        for bad in ["clamav", "clamav:", ":3310", "clamav:99999", "clamav:0", "unix:clamd.sock"] {
            assert_eq!(clamd(bad).unwrap_err().var, "CLAMD_ADDR", "{bad}");
        }
    }

    #[test]
    fn the_clamd_timeout_is_positive_seconds() {
        let c = cfg(&[("CLAMD_ADDR", "127.0.0.1:3310"), ("CIFIX_CLAMD_TIMEOUT_SECS", "5")]).unwrap();
        assert_eq!(c.scanner.timeout, Duration::from_secs(5));
        for bad in ["0", "soon", "-1"] {
            assert_eq!(cfg(&[("CIFIX_CLAMD_TIMEOUT_SECS", bad)]).unwrap_err().var, "CIFIX_CLAMD_TIMEOUT_SECS");
        }
    }
}
