//! Agent configuration keys, one set for every platform: registry value names on
//! Windows (HKLM\SOFTWARE\Toktra\Agent), keys of /etc/toktra/agent.toml on Linux
//! (snake_case there), `TOKTRA_*` environment variables and MSI properties.

use serde::{Deserialize, Serialize};

pub const REGISTRY_KEY: &str = r"SOFTWARE\Toktra\Agent";
pub const DEFAULT_INGEST_URL: &str = "https://ingest.toktra.io";
pub const DEFAULT_CERT_SUBJECT: &str = "Toktra Device";

/// A configuration key under its three spellings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// Registry value name (and the name administrators read in docs).
    pub registry: &'static str,
    /// Key in agent.toml.
    pub toml: &'static str,
    /// Environment variable.
    pub env: &'static str,
    /// MSI public property.
    pub msi: &'static str,
}

pub const INGEST_URL: Key = Key {
    registry: "IngestUrl",
    toml: "ingest_url",
    env: "TOKTRA_INGEST_URL",
    msi: "INGEST_URL",
};
pub const ORG_ID: Key = Key {
    registry: "OrgId",
    toml: "org_id",
    env: "TOKTRA_ORG_ID",
    msi: "ORG_ID",
};
pub const DEVICE_ID: Key = Key {
    registry: "DeviceId",
    toml: "device_id",
    env: "TOKTRA_DEVICE_ID",
    msi: "DEVICE_ID",
};
pub const CERT_SUBJECT: Key = Key {
    registry: "CertSubject",
    toml: "cert_subject",
    env: "TOKTRA_CERT_SUBJECT",
    msi: "CERT_SUBJECT",
};
pub const LOG_LEVEL: Key = Key {
    registry: "LogLevel",
    toml: "log_level",
    env: "TOKTRA_LOG_LEVEL",
    msi: "LOG_LEVEL",
};
pub const ENROLL_TOKEN: Key = Key {
    registry: "EnrollToken",
    toml: "enroll_token",
    env: "TOKTRA_ENROLL_TOKEN",
    msi: "ENROLL_TOKEN",
};

pub const ALL_KEYS: [Key; 6] = [
    INGEST_URL,
    ORG_ID,
    DEVICE_ID,
    CERT_SUBJECT,
    LOG_LEVEL,
    ENROLL_TOKEN,
];

/// LogLevel as stored: 0=Error, 1=Warn, 2=Info, 3=Debug.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub enum LogLevel {
    Error = 0,
    Warn = 1,
    #[default]
    Info = 2,
    Debug = 3,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("LogLevel must be 0 (Error), 1 (Warn), 2 (Info) or 3 (Debug), not {0}")]
pub struct BadLogLevel(pub u32);

impl TryFrom<u32> for LogLevel {
    type Error = BadLogLevel;
    fn try_from(v: u32) -> Result<Self, BadLogLevel> {
        Ok(match v {
            0 => LogLevel::Error,
            1 => LogLevel::Warn,
            2 => LogLevel::Info,
            3 => LogLevel::Debug,
            other => return Err(BadLogLevel(other)),
        })
    }
}

impl From<LogLevel> for u32 {
    fn from(l: LogLevel) -> u32 {
        l as u32
    }
}

impl LogLevel {
    /// The matching `tracing` filter directive.
    pub fn as_filter(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_level_bounds() {
        assert_eq!(LogLevel::try_from(3).unwrap(), LogLevel::Debug);
        assert_eq!(LogLevel::default(), LogLevel::Info);
        let e = LogLevel::try_from(7).unwrap_err().to_string();
        assert!(e.contains("not 7"), "{e}");
    }
}
