//! The enrollment CA: a root and the "Toktra Intermediate CA" kept under the data
//! directory (or supplied by an administrator), the agent face's TLS certificate, and
//! device certificates issued from PKCS#10 requests.
//!
//! Device identity never comes from the CSR: the caller passes the [`DeviceIdentity`]
//! the server assigned, and only the CSR's public key and (checked) CN are used.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType, SerialNumber,
    SubjectPublicKeyInfo,
};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};
use toktra_proto::identity::DeviceIdentity;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509Certificate};

pub const INTERMEDIATE_CN: &str = "Toktra Intermediate CA";
pub const ROOT_CN: &str = "Toktra Root CA";
const OID_ED25519: &str = "1.3.101.112";
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a usable CA file: {reason}")]
    BadCaFile { path: PathBuf, reason: String },
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("the CSR is not valid DER PKCS#10")]
    CsrParse,
    #[error("the CSR's self-signature does not verify")]
    CsrSignature,
    #[error("the CSR's key must be Ed25519 or ECDSA P-256, not {0}")]
    CsrKeyType(String),
    #[error("the CSR's subject CN must be {expected:?}, not {got:?}")]
    CsrSubject { expected: String, got: String },
}

/// PEM-encoded pieces the agent face and EST need.
pub struct Ca {
    root_der: Vec<u8>,
    intermediate_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
    pub server_chain_pem: String,
    pub server_key_pem: String,
    device_cert_lifetime: std::time::Duration,
}

/// The shortest device-certificate lifetime the CA issues. Agents renew at two thirds
/// of it; below a minute renewal and upload would compete for every request.
pub const MIN_DEVICE_CERT_LIFETIME: std::time::Duration = std::time::Duration::from_secs(60);

/// The default device-certificate lifetime (ARCHITECTURE.md: 90 days).
pub fn default_device_cert_lifetime() -> std::time::Duration {
    std::time::Duration::from_secs(toktra_proto::api::DEVICE_CERT_DAYS as u64 * 86_400)
}

/// A certificate issued to a device.
pub struct IssuedCert {
    pub der: Vec<u8>,
    /// Lower-case hex, no separators, as x509-parser prints it without colons.
    pub serial: String,
    pub not_after: chrono::DateTime<chrono::Utc>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CaError + '_ {
    move |source| CaError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes a file readable by its owner only: private keys and the CA.
fn write_private(path: &Path, contents: &str) -> Result<(), CaError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path))?;
    f.write_all(contents.as_bytes()).map_err(io_err(path))?;
    Ok(())
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    // Positive and without a leading zero byte, so every tool prints the same hex.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

pub fn serial_hex(raw: &[u8]) -> String {
    let trimmed: &[u8] = match raw {
        [0, rest @ ..] if !rest.is_empty() => rest,
        other => other,
    };
    trimmed.iter().map(|b| format!("{b:02x}")).collect()
}

fn dn(cn: &str) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::OrganizationName, "Toktra");
    d.push(DnType::CommonName, cn);
    d
}

fn ca_params(cn: &str, years: i64, path_len: Option<u8>) -> CertificateParams {
    let now = OffsetDateTime::now_utc();
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(cn);
    p.not_before = now - Duration::hours(1);
    p.not_after = now + Duration::days(365 * years);
    p.is_ca = match path_len {
        Some(n) => IsCa::Ca(BasicConstraints::Constrained(n)),
        None => IsCa::Ca(BasicConstraints::Unconstrained),
    };
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.serial_number = Some(random_serial());
    p.use_authority_key_identifier_extension = true;
    p
}

fn pem_to_der(path: &Path, pem: &str) -> Result<Vec<u8>, CaError> {
    let mut reader = pem.as_bytes();
    match rustls_pemfile::certs(&mut reader).next() {
        Some(Ok(c)) => Ok(c.to_vec()),
        _ => Err(CaError::BadCaFile {
            path: path.to_owned(),
            reason: "no PEM CERTIFICATE block".into(),
        }),
    }
}

fn der_to_pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

impl Ca {
    /// Loads the CA from `dir` (`root.pem`, `intermediate.pem`, `intermediate.key`),
    /// creating a new root and intermediate on first start, then issues a fresh TLS
    /// server certificate for `hostnames`. An administrator who brings their own CA puts
    /// its files there before the first start; the root key is never needed after
    /// creation, so it may be moved offline.
    pub fn load_or_create(dir: &Path, hostnames: &[String]) -> Result<Self, CaError> {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err(dir))?;
        let root_path = dir.join("root.pem");
        let int_path = dir.join("intermediate.pem");
        let int_key_path = dir.join("intermediate.key");
        if !int_path.exists() {
            let root_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
            let root_params = ca_params(ROOT_CN, 20, None);
            let root_cert = root_params.self_signed(&root_key)?;
            let root_issuer = Issuer::new(root_params, root_key);
            let int_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
            let int_cert =
                ca_params(INTERMEDIATE_CN, 10, Some(0)).signed_by(&int_key, &root_issuer)?;
            write_private(&root_path, &root_cert.pem())?;
            write_private(&dir.join("root.key"), &root_issuer.key().serialize_pem())?;
            write_private(&int_key_path, &int_key.serialize_pem())?;
            write_private(&int_path, &int_cert.pem())?;
        }
        let read = |p: &Path| fs::read_to_string(p).map_err(io_err(p));
        let int_pem = read(&int_path)?;
        let int_der = pem_to_der(&int_path, &int_pem)?;
        let root_der = if root_path.exists() {
            pem_to_der(&root_path, &read(&root_path)?)?
        } else {
            int_der.clone()
        };
        let int_key = KeyPair::from_pem(&read(&int_key_path)?).map_err(|e| CaError::BadCaFile {
            path: int_key_path.clone(),
            reason: e.to_string(),
        })?;
        let issuer = Issuer::from_ca_cert_der(&int_der.clone().into(), int_key).map_err(|e| {
            CaError::BadCaFile {
                path: int_path.clone(),
                reason: e.to_string(),
            }
        })?;

        let server_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let names: Vec<String> = if hostnames.is_empty() {
            vec!["localhost".into()]
        } else {
            hostnames.to_vec()
        };
        let mut sp = CertificateParams::new(names.clone())?;
        sp.distinguished_name = dn(&names[0]);
        let now = OffsetDateTime::now_utc();
        sp.not_before = now - Duration::hours(1);
        sp.not_after = now + Duration::days(365);
        sp.serial_number = Some(random_serial());
        sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        sp.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        sp.use_authority_key_identifier_extension = true;
        let server_cert = sp.signed_by(&server_key, &issuer)?;
        let server_chain_pem = format!("{}{}", server_cert.pem(), der_to_pem(&int_der));
        let server_key_pem = server_key.serialize_pem();
        write_private(&dir.join("server.pem"), &server_chain_pem)?;
        write_private(&dir.join("server.key"), &server_key_pem)?;
        Ok(Self {
            root_der,
            intermediate_der: int_der,
            issuer,
            server_chain_pem,
            server_key_pem,
            device_cert_lifetime: default_device_cert_lifetime(),
        })
    }

    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    pub fn intermediate_der(&self) -> &[u8] {
        &self.intermediate_der
    }

    /// The root in PEM: what agents pin to trust the agent face and EST.
    pub fn root_pem(&self) -> String {
        der_to_pem(&self.root_der)
    }

    pub fn intermediate_pem(&self) -> String {
        der_to_pem(&self.intermediate_der)
    }

    /// How long device certificates issued from now on are valid (default 90 days).
    /// Shorter lifetimes limit what a stolen device key is worth, and let tests see a
    /// real renewal; values under [`MIN_DEVICE_CERT_LIFETIME`] are raised to it.
    pub fn set_device_cert_lifetime(&mut self, lifetime: std::time::Duration) {
        self.device_cert_lifetime = lifetime.max(MIN_DEVICE_CERT_LIFETIME);
    }

    pub fn device_cert_lifetime(&self) -> std::time::Duration {
        self.device_cert_lifetime
    }

    /// Checks a PKCS#10 request and issues a client certificate for `identity`, valid
    /// for the configured lifetime.
    pub fn issue_device_cert(
        &self,
        csr_der: &[u8],
        expected_cn: &str,
        identity: &DeviceIdentity,
    ) -> Result<IssuedCert, CaError> {
        let (_, csr) =
            X509CertificationRequest::from_der(csr_der).map_err(|_| CaError::CsrParse)?;
        let info = &csr.certification_request_info;
        let alg = info.subject_pki.algorithm.algorithm.to_id_string();
        let key_ok = match alg.as_str() {
            OID_ED25519 => true,
            OID_EC_PUBLIC_KEY => info
                .subject_pki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .is_some_and(|o| o.to_id_string() == OID_P256),
            _ => false,
        };
        if !key_ok {
            return Err(CaError::CsrKeyType(alg));
        }
        csr.verify_signature().map_err(|_| CaError::CsrSignature)?;
        let cns: Vec<String> = info
            .subject
            .iter_common_name()
            .map(|a| a.as_str().unwrap_or("").to_owned())
            .collect();
        if cns.len() != 1 || cns[0] != expected_cn {
            return Err(CaError::CsrSubject {
                expected: expected_cn.to_owned(),
                got: cns.join(","),
            });
        }
        let spki = SubjectPublicKeyInfo::from_der(info.subject_pki.raw)?;

        let now = OffsetDateTime::now_utc();
        let mut p = CertificateParams::default();
        let mut d = DistinguishedName::new();
        d.push(DnType::CommonName, expected_cn);
        p.distinguished_name = d;
        p.subject_alt_names = vec![SanType::URI(identity.to_uri().try_into()?)];
        // A little back-dating absorbs clock skew between server and device; at most a
        // tenth of the lifetime, so that a short lifetime is not mostly in the past
        // (agents renew two thirds in, counted from not_before).
        let lifetime = Duration::try_from(self.device_cert_lifetime)
            .unwrap_or(Duration::days(toktra_proto::api::DEVICE_CERT_DAYS));
        p.not_before = now - std::cmp::min(lifetime / 10_i32, Duration::minutes(5));
        p.not_after = now + lifetime;
        let serial = random_serial();
        let serial_str = serial_hex(&serial.to_bytes());
        p.serial_number = Some(serial);
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.use_authority_key_identifier_extension = true;
        let cert = p.signed_by(&spki, &self.issuer)?;
        let not_after =
            chrono::DateTime::from_timestamp(p.not_after.unix_timestamp(), 0).unwrap_or_default();
        Ok(IssuedCert {
            der: cert.der().to_vec(),
            serial: serial_str,
            not_after,
        })
    }
}

/// What the server reads from a verified client certificate.
#[derive(Debug, Clone)]
pub struct PeerIdentity {
    pub identity: DeviceIdentity,
    pub serial: String,
    pub subject_cn: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PeerCertError {
    #[error("the client certificate does not parse")]
    Parse,
    #[error("the client certificate carries no Toktra device URI")]
    NoIdentity,
}

/// Reads the device identity (SAN URI) and serial from a certificate rustls verified.
pub fn peer_identity(der: &[u8]) -> Result<PeerIdentity, PeerCertError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|_| PeerCertError::Parse)?;
    let mut identity = None;
    for ext in cert.extensions() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() {
            for name in &san.general_names {
                if let GeneralName::URI(uri) = name
                    && let Ok(id) = DeviceIdentity::parse_uri(uri)
                {
                    identity = Some(id);
                }
            }
        }
    }
    let subject_cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .unwrap_or("")
        .to_owned();
    Ok(PeerIdentity {
        identity: identity.ok_or(PeerCertError::NoIdentity)?,
        serial: serial_hex(cert.raw_serial()),
        subject_cn,
    })
}

/// An RFC 7030 "certs-only" reply: a degenerate PKCS#7/CMS SignedData (RFC 5652 §5.1)
/// with no signers, carrying `certs`. Written by hand because it is four nested DER
/// structures, far less than a CMS crate.
pub fn pkcs7_certs_only(certs: &[&[u8]]) -> Vec<u8> {
    const OID_SIGNED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];
    const OID_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];
    let version = tlv(0x02, &[1]);
    let digest_algorithms = tlv(0x31, &[]);
    let encap = tlv(0x30, &tlv(0x06, OID_DATA));
    let certificates = tlv(0xa0, &certs.concat());
    let signer_infos = tlv(0x31, &[]);
    let signed_data = tlv(
        0x30,
        &[
            version,
            digest_algorithms,
            encap,
            certificates,
            signer_infos,
        ]
        .concat(),
    );
    tlv(
        0x30,
        &[tlv(0x06, OID_SIGNED_DATA), tlv(0xa0, &signed_data)].concat(),
    )
}

/// The certificates (DER) inside a certs-only PKCS#7, as EST clients read them.
pub fn pkcs7_certs(der: &[u8]) -> Option<Vec<Vec<u8>>> {
    let (tag, content_info, _) = read_tlv(der)?;
    if tag != 0x30 {
        return None;
    }
    let (_, _oid, rest) = read_tlv(content_info)?;
    let (_, explicit, _) = read_tlv(rest)?;
    let (_, signed_data, _) = read_tlv(explicit)?;
    let mut rest = signed_data;
    for _ in 0..3 {
        rest = read_tlv(rest)?.2; // version, digestAlgorithms, encapContentInfo
    }
    let (tag, mut certs, _) = read_tlv(rest)?;
    if tag != 0xa0 {
        return None;
    }
    let mut out = Vec::new();
    while !certs.is_empty() {
        let (_, _, after) = read_tlv(certs)?;
        out.push(certs[..certs.len() - after.len()].to_vec());
        certs = after;
    }
    Some(out)
}

/// (tag, content, rest) of the first DER TLV in `b`.
fn read_tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *b.first()?;
    let first = *b.get(1)? as usize;
    let (len, head) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *b.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let end = head.checked_add(len)?;
    Some((tag, b.get(head..end)?, &b[end..]))
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A device's key and the request parameters it would send, subject CN only.
    fn device_request(cn: &str) -> (KeyPair, CertificateParams) {
        let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        (key, params)
    }

    #[test]
    fn issues_device_cert_with_server_identity_only() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_create(dir.path(), &["localhost".into()]).unwrap();
        let (key, mut params) = device_request("Toktra Device");
        // The CSR asks for a SAN of another org: it must be ignored.
        params.subject_alt_names = vec![SanType::URI(
            "urn:toktra:org:evil:device:x"
                .to_string()
                .try_into()
                .unwrap(),
        )];
        let csr = params.serialize_request(&key).unwrap();
        let id = DeviceIdentity::new("acme", "dev1").unwrap();
        let issued = ca
            .issue_device_cert(csr.der(), "Toktra Device", &id)
            .unwrap();
        let peer = peer_identity(&issued.der).unwrap();
        assert_eq!(peer.identity, id);
        assert_eq!(peer.serial, issued.serial);
        assert_eq!(peer.subject_cn, "Toktra Device");

        let err = ca
            .issue_device_cert(csr.der(), "Other Subject", &id)
            .err()
            .unwrap();
        assert!(matches!(err, CaError::CsrSubject { .. }), "{err}");
        let mut bad = csr.der().to_vec();
        let n = bad.len();
        bad[n - 3] ^= 0xff;
        assert!(matches!(
            ca.issue_device_cert(&bad, "Toktra Device", &id),
            Err(CaError::CsrSignature | CaError::CsrParse)
        ));

        // Files are private and a second start reuses the same CA.
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.path().join("intermediate.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = Ca::load_or_create(dir.path(), &[]).unwrap();
        assert_eq!(again.intermediate_der(), ca.intermediate_der());
    }

    #[test]
    fn device_cert_lifetime_is_configurable_with_a_floor() {
        let dir = tempfile::tempdir().unwrap();
        let mut ca = Ca::load_or_create(dir.path(), &["localhost".into()]).unwrap();
        let (key, params) = device_request("Toktra Device");
        let csr = params.serialize_request(&key).unwrap();
        let id = DeviceIdentity::new("acme", "dev1").unwrap();
        let validity = |ca: &Ca| {
            let issued = ca
                .issue_device_cert(csr.der(), "Toktra Device", &id)
                .unwrap();
            let (_, c) = X509Certificate::from_der(&issued.der).unwrap();
            let nb = c.validity().not_before.timestamp();
            let na = c.validity().not_after.timestamp();
            assert_eq!(na, issued.not_after.timestamp());
            (na - nb, na - chrono::Utc::now().timestamp())
        };
        let (life, left) = validity(&ca);
        assert_eq!(life, 90 * 86_400 + 300);
        assert!((90 * 86_400 - 5..=90 * 86_400).contains(&left), "{left}");

        ca.set_device_cert_lifetime(std::time::Duration::from_secs(600));
        let (life, left) = validity(&ca);
        assert_eq!(life, 660, "back-dated by a tenth of the lifetime");
        assert!((595..=600).contains(&left), "{left}");

        ca.set_device_cert_lifetime(std::time::Duration::from_secs(5));
        assert_eq!(ca.device_cert_lifetime(), MIN_DEVICE_CERT_LIFETIME);
    }

    #[test]
    fn pkcs7_round_trip() {
        let a = tlv(0x30, &[1u8; 300]);
        let b = tlv(0x30, &[2u8; 5]);
        let p7 = pkcs7_certs_only(&[&a, &b]);
        assert_eq!(pkcs7_certs(&p7).unwrap(), vec![a, b]);
        assert!(pkcs7_certs(&p7[..p7.len() - 1]).is_none());
    }

    #[test]
    fn der_lengths() {
        assert_eq!(tlv(0x04, &[0; 3])[..2], [0x04, 3]);
        assert_eq!(tlv(0x04, &[0; 200])[..3], [0x04, 0x81, 200]);
        assert_eq!(tlv(0x04, &[0; 300])[..4], [0x04, 0x82, 1, 44]);
    }
}
