//! Where the agent keeps its files: %ProgramData%\Toktra\Agent (logs, the protected
//! key, the spool). ProgramData is machine-wide and writable by SYSTEM; the key file
//! gets its own, tighter ACL.

use std::path::PathBuf;

/// %ProgramData%\Toktra\Agent. `TOKTRA_DATA_DIR` overrides it (tests, portable runs).
pub fn data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TOKTRA_DATA_DIR") {
        return PathBuf::from(dir);
    }
    let program_data =
        std::env::var_os("ProgramData").map_or_else(|| PathBuf::from(r"C:\ProgramData"), PathBuf::from);
    program_data.join("Toktra").join("Agent")
}

pub fn log_dir() -> PathBuf {
    data_dir().join("logs")
}

pub fn key_file() -> PathBuf {
    data_dir().join("identity").join("device-key.dpapi")
}

pub fn spool_file() -> PathBuf {
    data_dir().join("spool.sqlite")
}
