//! The device identity the Windows way (toktra-agent's [`IdentityStore`]): the
//! certificate in LocalMachine\My, found by subject at start-up; the private key (and
//! the issuing chain) DPAPI-sealed in a file only SYSTEM and Administrators can read.
//!
//! Atomic replacement across two places: a renewal writes the new key file first, then
//! adds the new certificate, then deletes the old one. `load` takes the certificate that
//! matches the key in the file, so a crash between any two steps leaves a consistent
//! pair (the old one, or the new one).

use std::path::PathBuf;

use toktra_agent::identity::{IdentityError, IdentityStore, StoredIdentity, cert_info_der};

use crate::certstore::MachineStore;
use crate::dpapi;

pub struct WindowsIdentityStore {
    pub key_file: PathBuf,
    pub cert_subject: String,
}

/// Marker of certificates our CA issued (the SAN URI); certificates of others that
/// happen to share the CN are never touched.
const TOKTRA_SAN_PREFIX: &[u8] = b"urn:toktra:org:";

fn io_err(path: &std::path::Path, e: impl std::fmt::Display) -> IdentityError {
    IdentityError::Io {
        path: path.to_owned(),
        source: std::io::Error::other(e.to_string()),
    }
}

fn pem_certs(pem: &str) -> Result<Vec<Vec<u8>>, String> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .map(|c| c.map(|c| c.to_vec()).map_err(|e| e.to_string()))
        .collect()
}

fn der_to_pem(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

impl WindowsIdentityStore {
    fn is_ours_with_subject(&self, der: &[u8]) -> bool {
        contains(der, TOKTRA_SAN_PREFIX)
            && cert_info_der(der)
                .ok()
                .and_then(|i| i.subject_cn)
                .is_some_and(|cn| cn == self.cert_subject)
    }

    fn store_err(e: crate::certstore::CertStoreError) -> IdentityError {
        IdentityError::Io {
            path: PathBuf::from(r"Cert:\LocalMachine\My"),
            source: std::io::Error::other(e.to_string()),
        }
    }

    /// DER of the store's certificates with our subject (test and status use).
    pub fn certificates_in_store(&self) -> Result<Vec<Vec<u8>>, IdentityError> {
        let store = MachineStore::open("My").map_err(Self::store_err)?;
        Ok(store
            .find_by_subject(&self.cert_subject)
            .into_iter()
            .filter(|d| self.is_ours_with_subject(d))
            .collect())
    }
}

impl IdentityStore for WindowsIdentityStore {
    fn load(&self) -> Result<Option<StoredIdentity>, IdentityError> {
        let plain = match dpapi::read_key_file(&self.key_file) {
            Ok(Some(p)) => p,
            Ok(None) => return Ok(None),
            Err(e) => return Err(IdentityError::Corrupt(self.key_file.clone(), e.to_string())),
        };
        let text = String::from_utf8(plain)
            .map_err(|_| IdentityError::Corrupt(self.key_file.clone(), "not PEM text".into()))?;
        let end = "-----END PRIVATE KEY-----";
        let split = text.find(end).map(|i| i + end.len()).ok_or_else(|| {
            IdentityError::Corrupt(self.key_file.clone(), "no PRIVATE KEY block".into())
        })?;
        let key_pem = format!("{}\n", text[..split].trim());
        let chain = pem_certs(&text[split..])
            .map_err(|e| IdentityError::Corrupt(self.key_file.clone(), e))?;
        let key = rcgen::KeyPair::from_pem(&key_pem)
            .map_err(|e| IdentityError::Corrupt(self.key_file.clone(), e.to_string()))?;
        let public = key.public_key_raw();
        let leaf = self
            .certificates_in_store()?
            .into_iter()
            .find(|der| contains(der, public));
        let Some(leaf) = leaf else {
            tracing::warn!(
                "no certificate with CN={} in LocalMachine\\My matches the device key; the device enrolls again",
                self.cert_subject
            );
            return Ok(None);
        };
        let mut cert_pem = der_to_pem(&leaf);
        for der in chain.iter().filter(|d| **d != leaf) {
            cert_pem.push_str(&der_to_pem(der));
        }
        tracing::debug!(
            "device certificate found in LocalMachine\\My by subject CN={}",
            self.cert_subject
        );
        Ok(Some(StoredIdentity { key_pem, cert_pem }))
    }

    fn save(&self, identity: &StoredIdentity) -> Result<(), IdentityError> {
        let chain = pem_certs(&identity.cert_pem).map_err(IdentityError::BadCertificate)?;
        let leaf = chain
            .first()
            .ok_or_else(|| IdentityError::BadCertificate("empty certificate chain".into()))?
            .clone();
        if !self.is_ours_with_subject(&leaf) {
            return Err(IdentityError::BadCertificate(format!(
                "the issued certificate's subject is not CN={} with a Toktra device URI",
                self.cert_subject
            )));
        }
        let sealed = format!("{}{}", identity.key_pem, identity.cert_pem);
        dpapi::write_key_file(&self.key_file, sealed.as_bytes())
            .map_err(|e| io_err(&self.key_file, e))?;
        let store = MachineStore::open("My").map_err(Self::store_err)?;
        store.add(&leaf).map_err(Self::store_err)?;
        let removed = store
            .delete_where(&self.cert_subject, |der| {
                der != leaf.as_slice() && self.is_ours_with_subject(der)
            })
            .map_err(Self::store_err)?;
        tracing::info!(
            "device certificate installed in LocalMachine\\My (CN={}), {removed} replaced certificate(s) removed",
            self.cert_subject
        );
        Ok(())
    }
}
