//! The agent's configuration from HKLM\SOFTWARE\Toktra\Agent, read at every service
//! start, so values set with `reg add`, Group Policy or Intune apply on the next start
//! without reinstalling. Key names and defaults come from `toktra_proto::config`.

use std::io;

use toktra_proto::config::{
    self as keys, BadLogLevel, DEFAULT_CERT_SUBJECT, DEFAULT_INGEST_URL, LogLevel, REGISTRY_KEY,
};
use winreg::RegKey;
use winreg::enums::{HKEY_LOCAL_MACHINE, KEY_READ, KEY_WRITE};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    pub ingest_url: String,
    pub org_id: String,
    pub device_id: String,
    pub cert_subject: String,
    pub log_level: LogLevel,
    pub enroll_token: Option<String>,
    /// Windows-only extra: PEM file of the CA that signed the server's TLS certificate,
    /// for servers not under a public CA (private deployments, `toktra up`, tests).
    pub server_ca: Option<std::path::PathBuf>,
    /// Windows-only extra: what the tray's "Open dashboard" opens (default: IngestUrl).
    pub dashboard_url: String,
    /// True when DeviceId was empty and this start generated (and stored) one.
    pub device_id_generated: bool,
}

/// What is wrong with the configuration, phrased for the administrator who fixes it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "HKLM\\{REGISTRY_KEY}\\OrgId is not set: the agent does not know its organization. \
         Set it (reg add HKLM\\{REGISTRY_KEY} /v OrgId /t REG_SZ /d <your org id>, the MSI \
         property ORG_ID, or Group Policy/Intune) and start the service again"
    )]
    MissingOrgId,
    #[error("HKLM\\{REGISTRY_KEY}\\{key}: {reason}")]
    Invalid { key: &'static str, reason: String },
    #[error("HKLM\\{REGISTRY_KEY}\\{key} has the wrong type: {expected} expected")]
    WrongType {
        key: &'static str,
        expected: &'static str,
    },
    #[error("reading HKLM\\{REGISTRY_KEY}: {0}")]
    Registry(#[source] io::Error),
    #[error("writing the generated DeviceId to HKLM\\{REGISTRY_KEY}: {0}")]
    WriteBack(#[source] io::Error),
}

/// Raw values as found in the registry (None = value absent).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RawConfig {
    pub ingest_url: Option<String>,
    pub org_id: Option<String>,
    pub device_id: Option<String>,
    pub cert_subject: Option<String>,
    pub log_level: Option<u32>,
    pub enroll_token: Option<String>,
    pub server_ca: Option<String>,
    pub dashboard_url: Option<String>,
}

/// Registry values beyond the shared key set (toktra_proto::config), Windows only.
pub const SERVER_CA_FILE: &str = "ServerCaFile";
pub const DASHBOARD_URL: &str = "DashboardUrl";

fn non_empty(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

impl RawConfig {
    /// Applies defaults and checks every value. A missing DeviceId is generated here;
    /// the caller persists it.
    pub fn resolve(self) -> Result<AgentConfig, ConfigError> {
        let org_id = non_empty(self.org_id).ok_or(ConfigError::MissingOrgId)?;
        let ingest_url = non_empty(self.ingest_url).unwrap_or_else(|| DEFAULT_INGEST_URL.into());
        if !ingest_url.starts_with("https://") || ingest_url.len() <= "https://".len() {
            return Err(ConfigError::Invalid {
                key: keys::INGEST_URL.registry,
                reason: format!("must be an https:// URL, not {ingest_url:?}"),
            });
        }
        let (device_id, device_id_generated) = match non_empty(self.device_id) {
            Some(id) => (id, false),
            None => (uuid::Uuid::now_v7().to_string(), true),
        };
        // The ids end up in the certificate's SAN URI; check them the same way.
        toktra_proto::identity::DeviceIdentity::new(&org_id, &device_id).map_err(|_| {
            ConfigError::Invalid {
                key: keys::ORG_ID.registry,
                reason: format!(
                    "OrgId {org_id:?} and DeviceId {device_id:?} may hold only letters, digits, \
                     '-', '_' and '.', 1 to 64 of them"
                ),
            }
        })?;
        let cert_subject =
            non_empty(self.cert_subject).unwrap_or_else(|| DEFAULT_CERT_SUBJECT.into());
        if cert_subject.len() > 64 || cert_subject.contains(['=', ',', '+', '"', '\\']) {
            return Err(ConfigError::Invalid {
                key: keys::CERT_SUBJECT.registry,
                reason: "must be a plain common name of at most 64 characters".into(),
            });
        }
        let log_level = match self.log_level {
            None => LogLevel::default(),
            Some(v) => LogLevel::try_from(v).map_err(|BadLogLevel(v)| ConfigError::Invalid {
                key: keys::LOG_LEVEL.registry,
                reason: BadLogLevel(v).to_string(),
            })?,
        };
        let ingest_url = ingest_url.trim_end_matches('/').to_owned();
        let dashboard_url = non_empty(self.dashboard_url).unwrap_or_else(|| ingest_url.clone());
        if !dashboard_url.starts_with("https://") && !dashboard_url.starts_with("http://") {
            return Err(ConfigError::Invalid {
                key: DASHBOARD_URL,
                reason: format!("must be an http(s):// URL, not {dashboard_url:?}"),
            });
        }
        Ok(AgentConfig {
            dashboard_url,
            server_ca: non_empty(self.server_ca).map(std::path::PathBuf::from),
            ingest_url,
            org_id,
            device_id,
            cert_subject,
            log_level,
            enroll_token: non_empty(self.enroll_token),
            device_id_generated,
        })
    }
}

fn read_string(key: &RegKey, name: &'static str) -> Result<Option<String>, ConfigError> {
    match key.get_value::<String, _>(name) {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => Err(ConfigError::WrongType {
            key: name,
            expected: "REG_SZ",
        }),
        Err(e) => Err(ConfigError::Registry(e)),
    }
}

fn read_dword(key: &RegKey, name: &'static str) -> Result<Option<u32>, ConfigError> {
    match key.get_value::<u32, _>(name) {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            // Administrators sometimes write numbers as REG_SZ; accept "0".."3".
            match read_string(key, name)? {
                Some(s) => s
                    .trim()
                    .parse()
                    .map(Some)
                    .map_err(|_| ConfigError::WrongType {
                        key: name,
                        expected: "REG_DWORD 0-3",
                    }),
                None => Ok(None),
            }
        }
        Err(e) => Err(ConfigError::Registry(e)),
    }
}

/// Reads the raw values; an absent key reads as all defaults (and then fails on OrgId).
pub fn read_registry() -> Result<RawConfig, ConfigError> {
    let hklm = RegKey::predef(HKEY_LOCAL_MACHINE);
    let key = match hklm.open_subkey_with_flags(REGISTRY_KEY, KEY_READ) {
        Ok(k) => k,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(RawConfig::default()),
        Err(e) => return Err(ConfigError::Registry(e)),
    };
    Ok(RawConfig {
        ingest_url: read_string(&key, keys::INGEST_URL.registry)?,
        org_id: read_string(&key, keys::ORG_ID.registry)?,
        device_id: read_string(&key, keys::DEVICE_ID.registry)?,
        cert_subject: read_string(&key, keys::CERT_SUBJECT.registry)?,
        log_level: read_dword(&key, keys::LOG_LEVEL.registry)?,
        enroll_token: read_string(&key, keys::ENROLL_TOKEN.registry)?,
        server_ca: read_string(&key, SERVER_CA_FILE)?,
        dashboard_url: read_string(&key, DASHBOARD_URL)?,
    })
}

/// Reads, resolves and, when DeviceId was generated, writes it back so the device keeps
/// its id across restarts.
pub fn load() -> Result<AgentConfig, ConfigError> {
    let config = read_registry()?.resolve()?;
    if config.device_id_generated {
        let hklm = RegKey::predef(HKEY_LOCAL_MACHINE);
        let (key, _) = hklm
            .create_subkey_with_flags(REGISTRY_KEY, KEY_READ | KEY_WRITE)
            .map_err(ConfigError::WriteBack)?;
        key.set_value(keys::DEVICE_ID.registry, &config.device_id)
            .map_err(ConfigError::WriteBack)?;
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw() -> RawConfig {
        RawConfig {
            org_id: Some("acme".into()),
            ..RawConfig::default()
        }
    }

    #[test]
    fn defaults_apply() {
        let c = raw().resolve().unwrap();
        assert_eq!(c.ingest_url, DEFAULT_INGEST_URL);
        assert_eq!(c.cert_subject, DEFAULT_CERT_SUBJECT);
        assert_eq!(c.log_level, LogLevel::Info);
        assert!(c.device_id_generated);
        assert_eq!(c.enroll_token, None);
    }

    #[test]
    fn missing_org_id_names_the_fix() {
        let err = RawConfig::default().resolve().unwrap_err();
        assert!(matches!(err, ConfigError::MissingOrgId));
        let text = err.to_string();
        assert!(text.contains("OrgId") && text.contains("reg add"), "{text}");
        let blank = RawConfig {
            org_id: Some("  ".into()),
            ..RawConfig::default()
        };
        assert!(matches!(blank.resolve(), Err(ConfigError::MissingOrgId)));
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = RawConfig {
            log_level: Some(9),
            ..raw()
        }
        .resolve()
        .unwrap_err();
        assert!(e.to_string().contains("LogLevel"), "{e}");
        let e = RawConfig {
            ingest_url: Some("http://plain".into()),
            ..raw()
        }
        .resolve()
        .unwrap_err();
        assert!(e.to_string().contains("IngestUrl"), "{e}");
        let e = RawConfig {
            org_id: Some("a:b".into()),
            ..raw()
        }
        .resolve()
        .unwrap_err();
        assert!(e.to_string().contains("OrgId"), "{e}");
    }

    #[test]
    fn given_device_id_is_kept() {
        let c = RawConfig {
            device_id: Some("dev-1".into()),
            ingest_url: Some("https://127.0.0.1:8443/".into()),
            ..raw()
        }
        .resolve()
        .unwrap();
        assert_eq!(c.device_id, "dev-1");
        assert!(!c.device_id_generated);
        assert_eq!(c.ingest_url, "https://127.0.0.1:8443");
    }
}
