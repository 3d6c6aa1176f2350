//! The LocalMachine\My certificate store: where administrators (certlm.msc, PowerShell
//! `Cert:\LocalMachine\My`) see the device certificate, and where the service finds it
//! by subject at start-up.

use std::ptr;

use windows_sys::Win32::Security::Cryptography::{
    CERT_CONTEXT, CERT_FIND_SUBJECT_STR_W, CERT_STORE_ADD_REPLACE_EXISTING, CERT_STORE_CTRL_COMMIT,
    CERT_STORE_PROV_SYSTEM_W, CERT_SYSTEM_STORE_LOCAL_MACHINE, CertAddEncodedCertificateToStore,
    CertCloseStore, CertControlStore, CertDeleteCertificateFromStore, CertFindCertificateInStore,
    CertOpenStore, HCERTSTORE, PKCS_7_ASN_ENCODING, X509_ASN_ENCODING,
};

use crate::win::{last_error, wide};

const ENCODING: u32 = X509_ASN_ENCODING | PKCS_7_ASN_ENCODING;

#[derive(Debug, thiserror::Error)]
pub enum CertStoreError {
    #[error("opening the LocalMachine\\{store} certificate store: {source}")]
    Open {
        store: String,
        #[source]
        source: std::io::Error,
    },
    #[error("adding the device certificate to LocalMachine\\My: {0}")]
    Add(#[source] std::io::Error),
    #[error("deleting a replaced certificate from LocalMachine\\My: {0}")]
    Delete(#[source] std::io::Error),
}

/// An open system store of the local machine.
pub struct MachineStore {
    handle: HCERTSTORE,
}

// SAFETY: a certificate store handle may be used from any thread (CryptoAPI stores
// are internally locked); we never share a CERT_CONTEXT across threads.
unsafe impl Send for MachineStore {}

impl MachineStore {
    /// Opens (creating if needed) LocalMachine\`name`, e.g. "My".
    pub fn open(name: &str) -> Result<Self, CertStoreError> {
        let w = wide(name);
        // SAFETY: valid NUL-terminated name; the handle is closed in Drop.
        let handle = unsafe {
            CertOpenStore(
                CERT_STORE_PROV_SYSTEM_W,
                0,
                0,
                CERT_SYSTEM_STORE_LOCAL_MACHINE,
                w.as_ptr().cast(),
            )
        };
        if handle.is_null() {
            return Err(CertStoreError::Open {
                store: name.to_owned(),
                source: last_error(),
            });
        }
        Ok(Self { handle })
    }

    /// Adds (or replaces the identical) certificate, DER-encoded.
    pub fn add(&self, der: &[u8]) -> Result<(), CertStoreError> {
        let len = u32::try_from(der.len())
            .map_err(|_| CertStoreError::Add(std::io::Error::other("certificate too large")))?;
        // SAFETY: `der` is valid for `len` bytes; no context is requested back.
        let ok = unsafe {
            CertAddEncodedCertificateToStore(
                self.handle,
                ENCODING,
                der.as_ptr(),
                len,
                CERT_STORE_ADD_REPLACE_EXISTING,
                ptr::null_mut(),
            )
        };
        if ok == 0 {
            return Err(CertStoreError::Add(last_error()));
        }
        Ok(())
    }

    /// DER of every certificate whose subject contains `subject` (CryptoAPI's
    /// CERT_FIND_SUBJECT_STR is a case-insensitive substring match; callers that need
    /// an exact CN check it themselves).
    pub fn find_by_subject(&self, subject: &str) -> Vec<Vec<u8>> {
        let w = wide(subject);
        let mut found = Vec::new();
        let mut prev: *const CERT_CONTEXT = ptr::null();
        loop {
            // SAFETY: `prev` is null or the context returned by the previous call, which
            // this call frees; the returned context is valid until the next call.
            let ctx = unsafe {
                CertFindCertificateInStore(
                    self.handle,
                    ENCODING,
                    0,
                    CERT_FIND_SUBJECT_STR_W,
                    w.as_ptr().cast(),
                    prev,
                )
            };
            if ctx.is_null() {
                break;
            }
            // SAFETY: a non-null context points at its encoded certificate.
            let der = unsafe {
                std::slice::from_raw_parts((*ctx).pbCertEncoded, (*ctx).cbCertEncoded as usize)
            };
            found.push(der.to_vec());
            prev = ctx;
        }
        found
    }

    /// Deletes every certificate matching `subject` for which `remove` says so, then
    /// commits the store (Wine only persists deletes after a commit; on Windows the
    /// commit is a harmless no-op).
    pub fn delete_where(
        &self,
        subject: &str,
        mut remove: impl FnMut(&[u8]) -> bool,
    ) -> Result<usize, CertStoreError> {
        let w = wide(subject);
        let mut deleted = 0;
        'restart: loop {
            let mut prev: *const CERT_CONTEXT = ptr::null();
            loop {
                // SAFETY: as in find_by_subject.
                let ctx = unsafe {
                    CertFindCertificateInStore(
                        self.handle,
                        ENCODING,
                        0,
                        CERT_FIND_SUBJECT_STR_W,
                        w.as_ptr().cast(),
                        prev,
                    )
                };
                if ctx.is_null() {
                    break 'restart;
                }
                // SAFETY: valid context, see above.
                let der = unsafe {
                    std::slice::from_raw_parts((*ctx).pbCertEncoded, (*ctx).cbCertEncoded as usize)
                };
                if remove(der) {
                    // SAFETY: the delete frees `ctx`, so the enumeration starts over.
                    if unsafe { CertDeleteCertificateFromStore(ctx) } == 0 {
                        return Err(CertStoreError::Delete(last_error()));
                    }
                    deleted += 1;
                    continue 'restart;
                }
                prev = ctx;
            }
        }
        if deleted > 0 {
            // SAFETY: valid store handle.
            if unsafe { CertControlStore(self.handle, 0, CERT_STORE_CTRL_COMMIT, ptr::null()) } == 0
            {
                tracing::debug!("CertControlStore(COMMIT) failed: {}", last_error());
            }
        }
        Ok(deleted)
    }
}

impl Drop for MachineStore {
    fn drop(&mut self) {
        // SAFETY: the handle came from CertOpenStore and is closed once.
        unsafe {
            CertCloseStore(self.handle, 0);
        }
    }
}
