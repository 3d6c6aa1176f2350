//! The Windows Event Log (Application log, source "ToktraAgent"): service start, stop
//! and errors go there, where administrators and their monitoring look first.
//!
//! The source is registered with EventMessageFile = %SystemRoot%\System32\EventCreate.exe,
//! whose message table maps ids 1-1000 to "%1": the text we pass is shown as is,
//! without shipping a message DLL of our own.

use std::ptr;

use windows_sys::Win32::System::EventLog::{
    DeregisterEventSource, EVENTLOG_ERROR_TYPE, EVENTLOG_INFORMATION_TYPE, EVENTLOG_WARNING_TYPE,
    RegisterEventSourceW, ReportEventW,
};
use winreg::RegKey;
use winreg::enums::HKEY_LOCAL_MACHINE;

use crate::win::{last_error, wide};

pub const SOURCE: &str = "ToktraAgent";
const SOURCE_KEY: &str = r"SYSTEM\CurrentControlSet\Services\EventLog\Application\ToktraAgent";

/// Event ids (all rendered through EventCreate.exe's "%1").
pub mod ids {
    pub const STARTED: u32 = 1;
    pub const STOPPED: u32 = 2;
    pub const CONFIG_ERROR: u32 = 100;
    pub const ERROR: u32 = 101;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Info,
    Warning,
    Error,
}

/// Registers the event source (done by `install`).
pub fn register_source() -> std::io::Result<()> {
    let (key, _) = RegKey::predef(HKEY_LOCAL_MACHINE).create_subkey(SOURCE_KEY)?;
    key.set_value(
        "EventMessageFile",
        &r"%SystemRoot%\System32\EventCreate.exe",
    )?;
    // EVENTLOG_ERROR_TYPE | EVENTLOG_WARNING_TYPE | EVENTLOG_INFORMATION_TYPE
    key.set_value("TypesSupported", &7u32)?;
    Ok(())
}

pub fn unregister_source() -> std::io::Result<()> {
    match RegKey::predef(HKEY_LOCAL_MACHINE).delete_subkey_all(SOURCE_KEY) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

pub fn is_source_registered() -> bool {
    RegKey::predef(HKEY_LOCAL_MACHINE)
        .open_subkey(SOURCE_KEY)
        .is_ok()
}

/// Writes one event. Failures are returned, never fatal: the file log has the same text.
pub fn report(kind: Kind, id: u32, message: &str) -> std::io::Result<()> {
    let source = wide(SOURCE);
    let text = wide(message);
    let strings = [text.as_ptr()];
    let ty = match kind {
        Kind::Info => EVENTLOG_INFORMATION_TYPE,
        Kind::Warning => EVENTLOG_WARNING_TYPE,
        Kind::Error => EVENTLOG_ERROR_TYPE,
    };
    // SAFETY: the strings outlive the calls; the handle is closed on every path.
    unsafe {
        let h = RegisterEventSourceW(ptr::null(), source.as_ptr());
        if h.is_null() {
            return Err(last_error());
        }
        let ok = ReportEventW(
            h,
            ty,
            0,
            id,
            ptr::null_mut(),
            1,
            0,
            strings.as_ptr(),
            ptr::null(),
        );
        let err = (ok == 0).then(last_error);
        DeregisterEventSource(h);
        match err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
