//! Where the agent keeps its files: %ProgramData%\Toktra\Agent (logs, the protected
//! key, the spool). ProgramData is machine-wide and writable by SYSTEM; the key file
//! gets its own, tighter ACL.

use std::path::PathBuf;

/// %ProgramData%\Toktra\Agent. `TOKTRA_DATA_DIR` overrides it (tests, portable runs).
pub fn data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TOKTRA_DATA_DIR") {
        return PathBuf::from(dir);
    }
    let program_data = known_program_data()
        .or_else(|| std::env::var_os("ProgramData").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(r"C:\ProgramData"));
    program_data.join("Toktra").join("Agent")
}

/// FOLDERID_ProgramData from the shell, not the environment: a service and an
/// administrator's console can have different environments (Wine gives its services
/// another %ProgramData%), and both must find the same files.
fn known_program_data() -> Option<PathBuf> {
    use std::os::windows::ffi::OsStringExt;
    use windows_sys::Win32::System::Com::CoTaskMemFree;
    use windows_sys::Win32::UI::Shell::{FOLDERID_ProgramData, SHGetKnownFolderPath};

    let mut raw: *mut u16 = std::ptr::null_mut();
    // SAFETY: FOLDERID_ProgramData is a valid GUID, a null token means the current
    // user, and `raw` receives a CoTaskMem string that is freed below on every path.
    let hr =
        unsafe { SHGetKnownFolderPath(&FOLDERID_ProgramData, 0, std::ptr::null_mut(), &mut raw) };
    if raw.is_null() {
        return None;
    }
    let path = if hr >= 0 {
        // SAFETY: on success `raw` is a NUL-terminated UTF-16 string.
        let len = (0..).take_while(|&i| unsafe { *raw.add(i) } != 0).count();
        // SAFETY: `len` u16s before the terminator were just read.
        let wide = unsafe { std::slice::from_raw_parts(raw, len) };
        Some(PathBuf::from(std::ffi::OsString::from_wide(wide)))
    } else {
        None
    };
    // SAFETY: allocated by SHGetKnownFolderPath, freed exactly once.
    unsafe { CoTaskMemFree(raw as *const core::ffi::c_void) };
    path
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
