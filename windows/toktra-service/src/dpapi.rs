//! The device's private key at rest: DPAPI with machine scope (CNG has no Ed25519, so
//! the key cannot live in a key storage provider), in a file whose ACL admits only
//! SYSTEM and Administrators. Machine-scope DPAPI alone would let any local process
//! decrypt the blob; the ACL is what keeps other users out.

use std::fs::File;
use std::io::Write as _;
use std::os::windows::io::FromRawHandle as _;
use std::path::Path;
use std::ptr;

use windows_sys::Win32::Foundation::{GENERIC_WRITE, HLOCAL, INVALID_HANDLE_VALUE, LocalFree};
use windows_sys::Win32::Security::Authorization::{
    ConvertSecurityDescriptorToStringSecurityDescriptorW,
    ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
};
use windows_sys::Win32::Security::Cryptography::{
    CRYPT_INTEGER_BLOB, CRYPTPROTECT_LOCAL_MACHINE, CRYPTPROTECT_UI_FORBIDDEN, CryptProtectData,
    CryptUnprotectData,
};
use windows_sys::Win32::Security::{
    DACL_SECURITY_INFORMATION, GetFileSecurityW, PROTECTED_DACL_SECURITY_INFORMATION,
    PSECURITY_DESCRIPTOR, SECURITY_ATTRIBUTES, SetFileSecurityW,
};
use windows_sys::Win32::Storage::FileSystem::{CREATE_ALWAYS, CreateFileW, FILE_ATTRIBUTE_NORMAL};

use crate::win::{last_error, wide};

/// Protected DACL (nothing inherited): full access for LocalSystem and the
/// Administrators group, no one else.
pub const KEY_FILE_SDDL: &str = "D:P(A;;FA;;;SY)(A;;FA;;;BA)";

/// Mixed into every blob so a DPAPI blob made by another program for another purpose
/// does not decrypt as our key.
const ENTROPY: &[u8] = b"Toktra device key v1";

#[derive(Debug, thiserror::Error)]
pub enum DpapiError {
    #[error("DPAPI CryptProtectData failed: {0}")]
    Protect(#[source] std::io::Error),
    #[error(
        "DPAPI CryptUnprotectData failed: {0} (the key file was made on another machine or is damaged)"
    )]
    Unprotect(#[source] std::io::Error),
    #[error("security descriptor {sddl}: {source}")]
    Sddl {
        sddl: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

fn blob(data: &[u8]) -> CRYPT_INTEGER_BLOB {
    CRYPT_INTEGER_BLOB {
        cbData: data.len() as u32,
        pbData: data.as_ptr().cast_mut(),
    }
}

/// Copies a DPAPI output blob and frees it.
///
/// # Safety
/// `out` must have been filled by CryptProtectData/CryptUnprotectData.
unsafe fn take(out: CRYPT_INTEGER_BLOB) -> Vec<u8> {
    // SAFETY: per the contract, pbData holds cbData bytes allocated with LocalAlloc.
    unsafe {
        let v = std::slice::from_raw_parts(out.pbData, out.cbData as usize).to_vec();
        LocalFree(out.pbData as HLOCAL);
        v
    }
}

/// Encrypts with the machine's DPAPI key.
pub fn protect(plain: &[u8]) -> Result<Vec<u8>, DpapiError> {
    let input = blob(plain);
    let entropy = blob(ENTROPY);
    let mut out = CRYPT_INTEGER_BLOB::default();
    let desc = wide("Toktra device key");
    // SAFETY: all blobs point at live buffers; `out` is freed by `take`.
    let ok = unsafe {
        CryptProtectData(
            &input,
            desc.as_ptr(),
            &entropy,
            ptr::null(),
            ptr::null(),
            CRYPTPROTECT_LOCAL_MACHINE | CRYPTPROTECT_UI_FORBIDDEN,
            &mut out,
        )
    };
    if ok == 0 {
        return Err(DpapiError::Protect(last_error()));
    }
    // SAFETY: filled by CryptProtectData.
    Ok(unsafe { take(out) })
}

pub fn unprotect(sealed: &[u8]) -> Result<Vec<u8>, DpapiError> {
    let input = blob(sealed);
    let entropy = blob(ENTROPY);
    let mut out = CRYPT_INTEGER_BLOB::default();
    // SAFETY: as in `protect`.
    let ok = unsafe {
        CryptUnprotectData(
            &input,
            ptr::null_mut(),
            &entropy,
            ptr::null(),
            ptr::null(),
            CRYPTPROTECT_UI_FORBIDDEN,
            &mut out,
        )
    };
    if ok == 0 {
        return Err(DpapiError::Unprotect(last_error()));
    }
    // SAFETY: filled by CryptUnprotectData.
    Ok(unsafe { take(out) })
}

/// A security descriptor made from SDDL, freed on drop.
pub struct SecurityDescriptor(PSECURITY_DESCRIPTOR);

// SAFETY: the descriptor is an owned, never-mutated heap block; reading it from any
// thread is fine and it is freed once, by Drop.
unsafe impl Send for SecurityDescriptor {}
unsafe impl Sync for SecurityDescriptor {}

impl SecurityDescriptor {
    pub fn from_sddl(sddl: &str) -> Result<Self, DpapiError> {
        let w = wide(sddl);
        let mut sd: PSECURITY_DESCRIPTOR = ptr::null_mut();
        // SAFETY: valid string; `sd` receives a LocalAlloc'd descriptor.
        let ok = unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                w.as_ptr(),
                SDDL_REVISION_1,
                &mut sd,
                ptr::null_mut(),
            )
        };
        if ok == 0 {
            return Err(DpapiError::Sddl {
                sddl: sddl.to_owned(),
                source: last_error(),
            });
        }
        Ok(Self(sd))
    }

    pub fn as_ptr(&self) -> PSECURITY_DESCRIPTOR {
        self.0
    }

    /// SECURITY_ATTRIBUTES pointing at this descriptor (valid while `self` lives).
    pub fn attributes(&self) -> SECURITY_ATTRIBUTES {
        SECURITY_ATTRIBUTES {
            nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
            lpSecurityDescriptor: self.0,
            bInheritHandle: 0,
        }
    }
}

impl Drop for SecurityDescriptor {
    fn drop(&mut self) {
        // SAFETY: allocated by ConvertStringSecurityDescriptorToSecurityDescriptorW.
        unsafe {
            LocalFree(self.0 as HLOCAL);
        }
    }
}

/// Writes `bytes` to `path` through a temporary file created with the key file's ACL
/// (so the data is never readable by others, not even briefly), then renames it into
/// place: a crash leaves the old file or the new one.
pub fn write_protected_file(path: &Path, bytes: &[u8]) -> Result<(), DpapiError> {
    let err = |source| DpapiError::File {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = path.with_extension("tmp");
    let sd = SecurityDescriptor::from_sddl(KEY_FILE_SDDL)?;
    let sa = sd.attributes();
    let w = wide(&tmp);
    // SAFETY: valid path and attributes; the handle is owned by the File below.
    let handle = unsafe {
        CreateFileW(
            w.as_ptr(),
            GENERIC_WRITE,
            0,
            &sa,
            CREATE_ALWAYS,
            FILE_ATTRIBUTE_NORMAL,
            ptr::null_mut(),
        )
    };
    if handle == INVALID_HANDLE_VALUE {
        return Err(err(last_error()));
    }
    // SAFETY: a fresh, valid handle that nothing else owns.
    let mut file = unsafe { File::from_raw_handle(handle) };
    file.write_all(bytes).map_err(err)?;
    file.sync_all().map_err(err)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(err)?;
    // Set the DACL once more on the final name: Windows already applied it at
    // creation, but some file systems (and Wine) only keep a DACL set explicitly.
    let w = wide(path);
    // SAFETY: valid path and descriptor.
    let ok = unsafe {
        SetFileSecurityW(
            w.as_ptr(),
            DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
            sd.as_ptr(),
        )
    };
    if ok == 0 {
        return Err(err(last_error()));
    }
    Ok(())
}

/// The DACL of a file as SDDL, e.g. to check the key file's protection.
pub fn file_dacl_sddl(path: &Path) -> Result<String, DpapiError> {
    let err = |source| DpapiError::File {
        path: path.display().to_string(),
        source,
    };
    let w = wide(path);
    let mut needed = 0u32;
    // SAFETY: a size query with a null buffer.
    unsafe {
        GetFileSecurityW(
            w.as_ptr(),
            DACL_SECURITY_INFORMATION,
            ptr::null_mut(),
            0,
            &mut needed,
        )
    };
    if needed == 0 {
        return Err(err(last_error()));
    }
    let mut buf = vec![0u8; needed as usize];
    // SAFETY: `buf` has the size the system asked for.
    let ok = unsafe {
        GetFileSecurityW(
            w.as_ptr(),
            DACL_SECURITY_INFORMATION,
            buf.as_mut_ptr().cast(),
            needed,
            &mut needed,
        )
    };
    if ok == 0 {
        return Err(err(last_error()));
    }
    let mut text: windows_sys::core::PWSTR = ptr::null_mut();
    // SAFETY: `buf` holds a self-relative descriptor; `text` is LocalAlloc'd.
    let ok = unsafe {
        ConvertSecurityDescriptorToStringSecurityDescriptorW(
            buf.as_mut_ptr().cast(),
            SDDL_REVISION_1,
            DACL_SECURITY_INFORMATION,
            &mut text,
            ptr::null_mut(),
        )
    };
    if ok == 0 {
        return Err(err(last_error()));
    }
    // SAFETY: a NUL-terminated string from the call above, freed right after copying.
    unsafe {
        let len = (0..).take_while(|&i| *text.add(i) != 0).count();
        let s = String::from_utf16_lossy(std::slice::from_raw_parts(text, len));
        LocalFree(text as HLOCAL);
        Ok(s)
    }
}

/// Writes the key sealed with DPAPI; reads it back with [`read_key_file`].
pub fn write_key_file(path: &Path, plain: &[u8]) -> Result<(), DpapiError> {
    write_protected_file(path, &protect(plain)?)
}

/// Ok(None) when there is no key file yet.
pub fn read_key_file(path: &Path) -> Result<Option<Vec<u8>>, DpapiError> {
    match std::fs::read(path) {
        Ok(sealed) => unprotect(&sealed).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(DpapiError::File {
            path: path.display().to_string(),
            source,
        }),
    }
}
