//! Agent configuration, layered: built-in defaults, then each further layer (the
//! Linux agent.toml, `TOKTRA_*` environment, command-line flags; on Windows the
//! registry) overrides only the keys it sets. Every layer is a [`ConfigLayer`] with
//! all fields optional; [`ConfigLayer::resolve`] turns the merged result into a
//! checked [`Config`] or one [`ConfigError`] that names the key and the fix.

use serde::Deserialize;
use std::path::{Path, PathBuf};
use toktra_proto::config::{self as keys, LogLevel};

/// Default bound of the spool on disk.
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 100 * 1024 * 1024;
/// Default age after which spooled events are dropped (and reported as a gap).
pub const DEFAULT_SPOOL_MAX_AGE_SECS: u64 = 7 * 24 * 3600;
/// Where the Linux agent keeps its certificate, key, device id, spool and status.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/toktra";
pub const DEFAULT_CONFIG_PATH: &str = "/etc/toktra/agent.toml";

/// One layer of configuration. `None` means "this layer does not set it".
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigLayer {
    pub ingest_url: Option<String>,
    pub org_id: Option<String>,
    pub device_id: Option<String>,
    pub cert_subject: Option<String>,
    pub log_level: Option<u32>,
    pub enroll_token: Option<String>,
    /// PEM file with the CA that signed the server's TLS certificate, for servers
    /// that are not under a public CA (`toktra up`, private deployments).
    pub server_ca: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    /// Destination ports whose TCP and UDP traffic the Linux tap observes.
    pub capture_ports: Option<Vec<u16>>,
    pub spool_max_bytes: Option<u64>,
    pub spool_max_age_secs: Option<u64>,
}

/// The checked configuration the agent runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub ingest_url: String,
    pub org_id: String,
    /// Empty until [`crate::identity::ensure_device_id`] generated and persisted one.
    pub device_id: Option<String>,
    pub cert_subject: String,
    pub log_level: LogLevel,
    pub enroll_token: Option<String>,
    pub server_ca: Option<PathBuf>,
    pub state_dir: PathBuf,
    pub capture_ports: Vec<u16>,
    pub spool_max_bytes: u64,
    pub spool_max_age_secs: u64,
}

/// A configuration problem: which key, where it came from, what is wrong and how to
/// fix it — in one line an administrator can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration key {key}: {problem}. Fix: {fix}")]
pub struct ConfigError {
    /// The key as administrators know it (registry spelling, e.g. `IngestUrl`).
    pub key: &'static str,
    pub problem: String,
    pub fix: String,
}

impl ConfigError {
    fn new(key: &'static str, problem: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            key,
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

fn key_help(k: keys::Key) -> String {
    format!(
        "set `{}` in {DEFAULT_CONFIG_PATH}, the environment variable {}, or the flag --{}",
        k.toml,
        k.env,
        k.toml.replace('_', "-")
    )
}

impl ConfigLayer {
    /// Values `other` sets win over ours.
    pub fn merge(mut self, other: ConfigLayer) -> ConfigLayer {
        macro_rules! take {
            ($($f:ident),*) => { $( if other.$f.is_some() { self.$f = other.$f; } )* };
        }
        take!(
            ingest_url,
            org_id,
            device_id,
            cert_subject,
            log_level,
            enroll_token,
            server_ca,
            state_dir,
            capture_ports,
            spool_max_bytes,
            spool_max_age_secs
        );
        self
    }

    /// Parses agent.toml text. Unknown keys are an error so that a typo does not
    /// silently fall back to a default.
    pub fn from_toml(text: &str, origin: &Path) -> Result<ConfigLayer, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let msg = e.message().to_owned();
            ConfigError::new(
                "agent.toml",
                format!("{} is not valid: {msg}", origin.display()),
                format!(
                    "correct the file; valid keys are {}",
                    valid_toml_keys().join(", ")
                ),
            )
        })
    }

    /// Reads agent.toml; a missing file is an empty layer only when `required` is
    /// false (the default path may legitimately not exist).
    pub fn from_file(path: &Path, required: bool) -> Result<ConfigLayer, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_toml(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                Ok(ConfigLayer::default())
            }
            Err(e) => Err(ConfigError::new(
                "agent.toml",
                format!("cannot read {}: {e}", path.display()),
                "check the path given to --config and its permissions",
            )),
        }
    }

    /// The `TOKTRA_*` environment layer, through `get` so tests need not touch the
    /// process environment.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<ConfigLayer, ConfigError> {
        let non_empty = |name: &str| get(name).filter(|v| !v.is_empty());
        let log_level = match non_empty(keys::LOG_LEVEL.env) {
            Some(v) => Some(v.trim().parse::<u32>().map_err(|_| {
                ConfigError::new(
                    keys::LOG_LEVEL.registry,
                    format!("{}={v:?} is not a number", keys::LOG_LEVEL.env),
                    "use 0 (Error), 1 (Warn), 2 (Info) or 3 (Debug)",
                )
            })?),
            None => None,
        };
        let capture_ports = match non_empty("TOKTRA_CAPTURE_PORTS") {
            Some(v) => Some(parse_ports(&v)?),
            None => None,
        };
        let num = |name: &'static str| -> Result<Option<u64>, ConfigError> {
            non_empty(name)
                .map(|v| {
                    v.trim().parse::<u64>().map_err(|_| {
                        ConfigError::new(
                            name,
                            format!("{v:?} is not a number"),
                            "use a whole number",
                        )
                    })
                })
                .transpose()
        };
        Ok(ConfigLayer {
            ingest_url: non_empty(keys::INGEST_URL.env),
            org_id: non_empty(keys::ORG_ID.env),
            device_id: non_empty(keys::DEVICE_ID.env),
            cert_subject: non_empty(keys::CERT_SUBJECT.env),
            log_level,
            enroll_token: non_empty(keys::ENROLL_TOKEN.env),
            server_ca: non_empty("TOKTRA_SERVER_CA").map(PathBuf::from),
            state_dir: non_empty("TOKTRA_STATE_DIR").map(PathBuf::from),
            capture_ports,
            spool_max_bytes: num("TOKTRA_SPOOL_MAX_BYTES")?,
            spool_max_age_secs: num("TOKTRA_SPOOL_MAX_AGE_SECS")?,
        })
    }

    /// Checks every key and fills defaults.
    pub fn resolve(self) -> Result<Config, ConfigError> {
        let ingest_url = self
            .ingest_url
            .unwrap_or_else(|| keys::DEFAULT_INGEST_URL.to_owned());
        let ingest_url = ingest_url.trim_end_matches('/').to_owned();
        if !ingest_url.starts_with("https://") || ingest_url.len() <= "https://".len() {
            return Err(ConfigError::new(
                keys::INGEST_URL.registry,
                format!("{ingest_url:?} is not an https:// URL"),
                format!(
                    "use the server's address, e.g. https://toktra.example.com:8443; {}",
                    key_help(keys::INGEST_URL)
                ),
            ));
        }
        let org_id = self.org_id.unwrap_or_default();
        if org_id.is_empty() {
            return Err(ConfigError::new(
                keys::ORG_ID.registry,
                "is not set",
                format!(
                    "{} to the organization id shown by the server's admin",
                    key_help(keys::ORG_ID)
                ),
            ));
        }
        if toktra_proto::identity::DeviceIdentity::new(&org_id, "x").is_err() {
            return Err(ConfigError::new(
                keys::ORG_ID.registry,
                format!(
                    "{org_id:?} contains characters other than letters, digits, '-', '_' or '.' (or is longer than 64)"
                ),
                "copy the organization id exactly as the server shows it",
            ));
        }
        let device_id = self.device_id.filter(|d| !d.is_empty());
        if let Some(d) = &device_id
            && toktra_proto::identity::DeviceIdentity::new(&org_id, d).is_err()
        {
            return Err(ConfigError::new(
                keys::DEVICE_ID.registry,
                format!(
                    "{d:?} contains characters other than letters, digits, '-', '_' or '.' (or is longer than 64)"
                ),
                "leave it empty to have one generated, or use such characters only",
            ));
        }
        let cert_subject = self
            .cert_subject
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| keys::DEFAULT_CERT_SUBJECT.to_owned());
        if cert_subject.len() > 64 || cert_subject.chars().any(char::is_control) {
            return Err(ConfigError::new(
                keys::CERT_SUBJECT.registry,
                "must be at most 64 printable characters",
                format!(
                    "shorten it; the default is {:?}",
                    keys::DEFAULT_CERT_SUBJECT
                ),
            ));
        }
        let log_level = match self.log_level {
            None => LogLevel::default(),
            Some(v) => LogLevel::try_from(v).map_err(|e| {
                ConfigError::new(
                    keys::LOG_LEVEL.registry,
                    e.to_string(),
                    key_help(keys::LOG_LEVEL),
                )
            })?,
        };
        let capture_ports = self.capture_ports.unwrap_or_else(|| vec![443]);
        if capture_ports.is_empty() || capture_ports.contains(&0) {
            return Err(ConfigError::new(
                "capture_ports",
                "must list at least one port, none of them 0",
                "use e.g. capture_ports = [443]",
            ));
        }
        let spool_max_bytes = self.spool_max_bytes.unwrap_or(DEFAULT_SPOOL_MAX_BYTES);
        if spool_max_bytes < 64 * 1024 {
            return Err(ConfigError::new(
                "spool_max_bytes",
                format!("{spool_max_bytes} is too small"),
                "use at least 65536 (the default is 104857600, 100 MiB)",
            ));
        }
        let spool_max_age_secs = self
            .spool_max_age_secs
            .unwrap_or(DEFAULT_SPOOL_MAX_AGE_SECS);
        if spool_max_age_secs == 0 {
            return Err(ConfigError::new(
                "spool_max_age_secs",
                "must be more than 0",
                "use e.g. 604800 (7 days, the default)",
            ));
        }
        Ok(Config {
            ingest_url,
            org_id,
            device_id,
            cert_subject,
            log_level,
            enroll_token: self.enroll_token.filter(|t| !t.is_empty()),
            server_ca: self.server_ca,
            state_dir: self
                .state_dir
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
            capture_ports,
            spool_max_bytes,
            spool_max_age_secs,
        })
    }
}

fn valid_toml_keys() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = keys::ALL_KEYS.iter().map(|k| k.toml).collect();
    v.extend([
        "server_ca",
        "state_dir",
        "capture_ports",
        "spool_max_bytes",
        "spool_max_age_secs",
    ]);
    v
}

/// `443,8443` → ports.
pub fn parse_ports(text: &str) -> Result<Vec<u16>, ConfigError> {
    text.split(',')
        .map(|p| {
            p.trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| {
                    ConfigError::new(
                        "capture_ports",
                        format!("{p:?} is not a port number"),
                        "use a comma-separated list such as 443,8443",
                    )
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> ConfigLayer {
        ConfigLayer {
            org_id: Some("acme".into()),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_fill_in() {
        let c = base().resolve().unwrap();
        assert_eq!(c.ingest_url, "https://ingest.toktra.io");
        assert_eq!(c.cert_subject, "Toktra Device");
        assert_eq!(c.log_level, LogLevel::Info);
        assert_eq!(c.capture_ports, vec![443]);
        assert_eq!(c.spool_max_bytes, 100 * 1024 * 1024);
        assert_eq!(c.device_id, None);
    }

    #[test]
    fn later_layers_win_key_by_key() {
        let file = ConfigLayer::from_toml(
            "org_id = \"acme\"\ningest_url = \"https://a.example\"\nlog_level = 1\n",
            Path::new("agent.toml"),
        )
        .unwrap();
        let env = ConfigLayer::from_env(|k| match k {
            "TOKTRA_LOG_LEVEL" => Some("3".into()),
            "TOKTRA_CAPTURE_PORTS" => Some("443, 8443".into()),
            _ => None,
        })
        .unwrap();
        let flags = ConfigLayer {
            ingest_url: Some("https://b.example/".into()),
            ..Default::default()
        };
        let c = ConfigLayer::default()
            .merge(file)
            .merge(env)
            .merge(flags)
            .resolve()
            .unwrap();
        assert_eq!(c.ingest_url, "https://b.example");
        assert_eq!(c.log_level, LogLevel::Debug);
        assert_eq!(c.org_id, "acme");
        assert_eq!(c.capture_ports, vec![443, 8443]);
    }

    #[test]
    fn errors_name_the_key_and_the_fix() {
        let e = ConfigLayer::default().resolve().unwrap_err();
        assert_eq!(e.key, "OrgId");
        assert!(e.to_string().contains("TOKTRA_ORG_ID"), "{e}");

        let e = ConfigLayer {
            log_level: Some(9),
            ..base()
        }
        .resolve()
        .unwrap_err();
        assert_eq!(e.key, "LogLevel");
        assert!(e.to_string().contains("not 9"), "{e}");

        let e = ConfigLayer {
            ingest_url: Some("http://plain".into()),
            ..base()
        }
        .resolve()
        .unwrap_err();
        assert_eq!(e.key, "IngestUrl");

        let e = ConfigLayer::from_toml("org_idd = \"x\"", Path::new("/etc/toktra/agent.toml"))
            .unwrap_err();
        assert!(e.to_string().contains("org_idd"), "{e}");
        assert!(e.to_string().contains("ingest_url"), "{e}");

        let e = ConfigLayer::from_env(|k| (k == "TOKTRA_LOG_LEVEL").then(|| "loud".into()))
            .unwrap_err();
        assert_eq!(e.key, "LogLevel");

        let e = ConfigLayer {
            device_id: Some("has space".into()),
            ..base()
        }
        .resolve()
        .unwrap_err();
        assert_eq!(e.key, "DeviceId");
    }

    #[test]
    fn missing_default_file_is_empty_but_missing_explicit_file_is_an_error() {
        let p = Path::new("/nonexistent/toktra/agent.toml");
        assert_eq!(
            ConfigLayer::from_file(p, false).unwrap(),
            ConfigLayer::default()
        );
        assert!(ConfigLayer::from_file(p, true).is_err());
    }
}
