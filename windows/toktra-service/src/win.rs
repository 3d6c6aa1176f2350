//! Small helpers shared by the Win32 wrappers.

use std::ffi::OsStr;
use std::os::windows::ffi::OsStrExt;

/// A NUL-terminated UTF-16 copy of `s`, as every `...W` function wants.
pub fn wide(s: impl AsRef<OsStr>) -> Vec<u16> {
    s.as_ref().encode_wide().chain(std::iter::once(0)).collect()
}

/// The calling thread's last Win32 error, as an io::Error (which prints its text).
pub fn last_error() -> std::io::Error {
    std::io::Error::last_os_error()
}

/// True under Wine (ntdll exports `wine_get_version` there and nowhere else). Used only
/// to explain, in logs and tests, behaviour that differs from Windows; never to take
/// another code path in the product.
pub fn running_under_wine() -> bool {
    use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleW, GetProcAddress};
    let ntdll = wide("ntdll.dll");
    // SAFETY: ntdll is always loaded; the name is NUL-terminated.
    unsafe {
        let module = GetModuleHandleW(ntdll.as_ptr());
        !module.is_null() && GetProcAddress(module, c"wine_get_version".as_ptr().cast()).is_some()
    }
}
