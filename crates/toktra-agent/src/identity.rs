//! Device identity: an Ed25519 key generated on this device, a certificate from the
//! server's enrollment CA (EST `simpleenroll` with the organization's token, renewal
//! with `simplereenroll` over mTLS), and where both are kept.
//!
//! Storage is behind [`IdentityStore`] because it differs per platform: on Linux,
//! [`FileIdentityStore`] (one 0600 file in the state directory); on Windows, the
//! service keeps the certificate in LocalMachine\My and the key DPAPI-protected.

use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use toktra_proto::identity::DeviceIdentity;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("identity storage {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("stored identity in {0} is unreadable: {1}")]
    Corrupt(PathBuf, String),
    #[error("cannot create the device key or CSR: {0}")]
    Key(#[from] rcgen::Error),
    #[error("certificate from the server is invalid: {0}")]
    BadCertificate(String),
    #[error("enrollment at {url} failed: {reason}")]
    Enroll { url: String, reason: String },
    #[error(
        "this device has no valid certificate and no enrollment token; set EnrollToken \
         (enroll_token in agent.toml, TOKTRA_ENROLL_TOKEN, or --enroll-token) to a token \
         from the server's admin"
    )]
    NoToken,
    #[error(
        "the server refused the enrollment token (HTTP {status}): {body}. Fix: create a new token on the server and set EnrollToken"
    )]
    TokenRefused { status: u16, body: String },
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// The device's private key and certificate chain (leaf first), both PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredIdentity {
    pub key_pem: String,
    pub cert_pem: String,
}

impl std::fmt::Debug for StoredIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key into a log.
        f.debug_struct("StoredIdentity")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

/// What the agent needs to know about its certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub identity: Option<DeviceIdentity>,
    pub subject_cn: Option<String>,
}

impl StoredIdentity {
    pub fn cert_info(&self) -> Result<CertInfo, IdentityError> {
        let der = first_cert_der(&self.cert_pem)?;
        cert_info_der(&der)
    }
}

pub fn cert_info_der(der: &[u8]) -> Result<CertInfo, IdentityError> {
    use x509_parser::prelude::*;
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
    let ts = |t: ASN1Time| {
        DateTime::<Utc>::from_timestamp(t.timestamp(), 0)
            .ok_or_else(|| IdentityError::BadCertificate("validity out of range".into()))
    };
    let mut identity = None;
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::URI(uri) = name
                && let Ok(id) = DeviceIdentity::parse_uri(uri)
            {
                identity = Some(id);
            }
        }
    }
    let subject_cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned);
    Ok(CertInfo {
        not_before: ts(cert.validity().not_before)?,
        not_after: ts(cert.validity().not_after)?,
        identity,
        subject_cn,
    })
}

fn first_cert_der(pem: &str) -> Result<Vec<u8>, IdentityError> {
    let mut rd = pem.as_bytes();
    match rustls_pemfile::certs(&mut rd).next() {
        Some(Ok(c)) => Ok(c.to_vec()),
        _ => Err(IdentityError::BadCertificate(
            "no CERTIFICATE block in the stored chain".into(),
        )),
    }
}

impl CertInfo {
    /// When to renew: two thirds into the lifetime, moved by up to ±1/30 of the
    /// lifetime so a fleet enrolled on one day does not renew in the same second.
    pub fn renew_at(&self, rng: &mut impl rand::Rng) -> DateTime<Utc> {
        let life = (self.not_after - self.not_before).num_seconds().max(3);
        let base = self.not_before + Duration::seconds(life * 2 / 3);
        let spread = (life / 30).max(1);
        base + Duration::seconds(rng.random_range(-spread..=spread))
    }

    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        now >= self.not_after
    }
}

/// Where the identity is kept.
pub trait IdentityStore: Send + Sync {
    fn load(&self) -> Result<Option<StoredIdentity>, IdentityError>;
    /// Must replace the previous identity atomically: a crash leaves the old one or
    /// the new one, never a key of one and a certificate of the other.
    fn save(&self, identity: &StoredIdentity) -> Result<(), IdentityError>;
}

/// Linux: key and chain together in one PEM file, mode 0600, replaced by rename.
pub struct FileIdentityStore {
    path: PathBuf,
}

impl FileIdentityStore {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            path: state_dir.join("identity.pem"),
        }
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl IdentityStore for FileIdentityStore {
    fn load(&self) -> Result<Option<StoredIdentity>, IdentityError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(IdentityError::Io {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        let key_start = text.find("-----BEGIN PRIVATE KEY-----");
        let key_end = text.find("-----END PRIVATE KEY-----");
        let (Some(ks), Some(ke)) = (key_start, key_end) else {
            return Err(IdentityError::Corrupt(
                self.path.clone(),
                "no PRIVATE KEY block".into(),
            ));
        };
        let ke = ke + "-----END PRIVATE KEY-----".len();
        let key_pem = format!("{}\n", &text[ks..ke]);
        let cert_pem = format!("{}{}", &text[..ks], &text[ke..]).trim().to_owned() + "\n";
        let id = StoredIdentity { key_pem, cert_pem };
        id.cert_info()
            .map_err(|e| IdentityError::Corrupt(self.path.clone(), e.to_string()))?;
        Ok(Some(id))
    }

    fn save(&self, identity: &StoredIdentity) -> Result<(), IdentityError> {
        let text = format!("{}{}", identity.key_pem, identity.cert_pem);
        write_private_file(&self.path, text.as_bytes())
    }
}

/// Writes `bytes` to `path` readable by the owner only, durably and atomically.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> Result<(), IdentityError> {
    let io = |source| IdentityError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(io)?;
    #[cfg(unix)]
    {
        // `mode` applies only when the file is created; an old tmp file keeps its bits.
        use std::os::unix::fs::PermissionsExt as _;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io)?;
    }
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(())
}

/// The device id: configured, else persisted in the state directory, else a new
/// random one that is persisted before it is used.
pub fn ensure_device_id(
    configured: Option<&str>,
    state_dir: &Path,
) -> Result<String, IdentityError> {
    if let Some(d) = configured {
        return Ok(d.to_owned());
    }
    let path = state_dir.join("device_id");
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(IdentityError::Io { path, source }),
    }
    let id = uuid::Uuid::new_v4().to_string();
    write_private_file(&path, format!("{id}\n").as_bytes())?;
    Ok(id)
}

/// A fresh Ed25519 key and a PKCS#10 request for it (DER). The CN is the configured
/// CertSubject; the server puts the device identity in a SAN URI itself.
pub fn new_key_and_csr(cert_subject: &str) -> Result<(rcgen::KeyPair, Vec<u8>), IdentityError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cert_subject);
    let csr = params.serialize_request(&key)?;
    Ok((key, csr.der().to_vec()))
}

fn der_to_pem(der: &[u8]) -> String {
    pem_block("CERTIFICATE", der)
}

fn pem_block(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// ring writes Ed25519 keys as PKCS#8 v2 (RFC 5958, with the public key), which
/// OpenSSL 3.0 — what administrators reach for to inspect a key — refuses to read.
/// The v1 form of RFC 8410 carries the same private key, and rustls and rcgen read
/// both, so that is what the agent stores.
const ED25519_V2_PREFIX: [u8; 16] = [
    0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
const ED25519_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// The key as PEM that OpenSSL 3.0 can read too (PKCS#8 v1 for Ed25519; other
/// algorithms as rcgen writes them).
pub fn key_pem(key: &rcgen::KeyPair) -> String {
    let der = key.serialize_der();
    match der
        .strip_prefix(&ED25519_V2_PREFIX[..])
        .and_then(|rest| rest.get(..32))
    {
        Some(seed) => {
            let mut v1 = ED25519_V1_PREFIX.to_vec();
            v1.extend_from_slice(seed);
            pem_block("PRIVATE KEY", &v1)
        }
        None => key.serialize_pem(),
    }
}

/// Certificates from an EST response body: RFC 7030's base64 PKCS#7 certs-only, or
/// (tolerated) PEM or a bare base64 certificate. Leaf first as the server sends it.
pub fn parse_est_certs(body: &[u8]) -> Result<Vec<Vec<u8>>, IdentityError> {
    let bad = |m: &str| IdentityError::BadCertificate(m.to_owned());
    if body
        .windows(27)
        .any(|w| w == b"-----BEGIN CERTIFICATE-----")
    {
        let mut rd = body;
        let certs: Result<Vec<_>, _> = rustls_pemfile::certs(&mut rd).collect();
        let certs = certs.map_err(|e| bad(&e.to_string()))?;
        if certs.is_empty() {
            return Err(bad("PEM response holds no certificate"));
        }
        return Ok(certs.into_iter().map(|c| c.to_vec()).collect());
    }
    let compact: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(&compact)
        .map_err(|_| bad("response is neither PEM nor base64"))?;
    if let Some(certs) = pkcs7_certificates(&der)
        && !certs.is_empty()
    {
        return Ok(certs);
    }
    cert_info_der(&der)?;
    Ok(vec![der])
}

/// One DER TLV: (tag, content, rest). Only what a certs-only SignedData needs; the
/// `x509-parser` crate handles the certificates themselves.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (lb, r) = rest.split_at(n);
        rest = r;
        lb.iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
    };
    if rest.len() < len {
        return None;
    }
    let (content, after) = rest.split_at(len);
    Some((tag, content, after))
}

/// ContentInfo { signedData, [0] SignedData { version, digestAlgs, encapContent,
/// [0] IMPLICIT certificates, ... } } → the certificates.
fn pkcs7_certificates(der: &[u8]) -> Option<Vec<Vec<u8>>> {
    const SIGNED_DATA_OID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];
    let (0x30, ci, _) = tlv(der)? else {
        return None;
    };
    let (0x06, oid, rest) = tlv(ci)? else {
        return None;
    };
    if oid != SIGNED_DATA_OID {
        return None;
    }
    let (0xa0, explicit, _) = tlv(rest)? else {
        return None;
    };
    let (0x30, sd, _) = tlv(explicit)? else {
        return None;
    };
    let (_, _version, rest) = tlv(sd)?;
    let (_, _digests, rest) = tlv(rest)?;
    let (_, _encap, rest) = tlv(rest)?;
    let (0xa0, mut certs, _) = tlv(rest)? else {
        return None;
    };
    let mut out = Vec::new();
    while !certs.is_empty() {
        let start = certs;
        let (tag, _, after) = tlv(certs)?;
        if tag == 0x30 {
            out.push(start[..start.len() - after.len()].to_vec());
        }
        certs = after;
    }
    Some(out)
}

/// Talks EST to the server.
pub struct Enroller {
    pub base_url: String,
    pub org_id: String,
    pub device_id: String,
    pub cert_subject: String,
}

impl Enroller {
    /// Bootstrap: a new key, `simpleenroll` authenticated by `ORG_ID:TOKEN`.
    pub async fn enroll(
        &self,
        client: &reqwest::Client,
        token: &str,
    ) -> Result<StoredIdentity, IdentityError> {
        let (key, csr) = new_key_and_csr(&self.cert_subject)?;
        let url = format!("{}{}", self.base_url, toktra_proto::api::EST_SIMPLEENROLL);
        let req = client.post(&url).basic_auth(&self.org_id, Some(token));
        self.send(self.describe(req), &url, key, csr, true).await
    }

    /// Renewal over the current mTLS client: a new key, `simplereenroll`. The caller
    /// keeps using the old identity until this returns and the new one is saved.
    pub async fn reenroll(&self, mtls: &reqwest::Client) -> Result<StoredIdentity, IdentityError> {
        let (key, csr) = new_key_and_csr(&self.cert_subject)?;
        let url = format!("{}{}", self.base_url, toktra_proto::api::EST_SIMPLEREENROLL);
        let req = mtls.post(&url);
        self.send(self.describe(req), &url, key, csr, false).await
    }

    /// The enrollment headers that describe this device to the server's device list.
    fn describe(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        use toktra_proto::api::{
            HEADER_AGENT_VERSION, HEADER_DEVICE_ID, HEADER_HOSTNAME, HEADER_PLATFORM,
        };
        req.header(HEADER_DEVICE_ID, &self.device_id)
            .header(HEADER_HOSTNAME, hostname())
            .header(HEADER_PLATFORM, std::env::consts::OS)
            .header(HEADER_AGENT_VERSION, env!("CARGO_PKG_VERSION"))
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        url: &str,
        key: rcgen::KeyPair,
        csr: Vec<u8>,
        with_token: bool,
    ) -> Result<StoredIdentity, IdentityError> {
        let fail = |reason: String| IdentityError::Enroll {
            url: url.to_owned(),
            reason,
        };
        let body = base64::engine::general_purpose::STANDARD.encode(&csr);
        let resp = req
            .header("Content-Type", "application/pkcs10")
            .header("Content-Transfer-Encoding", "base64")
            .body(body)
            .send()
            .await
            .map_err(|e| fail(error_chain(&e)))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| fail(error_chain(&e)))?;
        if with_token && (status.as_u16() == 401 || status.as_u16() == 403) {
            return Err(IdentityError::TokenRefused {
                status: status.as_u16(),
                body: String::from_utf8_lossy(&bytes).chars().take(300).collect(),
            });
        }
        if !status.is_success() {
            return Err(fail(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&bytes)
                    .chars()
                    .take(300)
                    .collect::<String>()
            )));
        }
        let certs = parse_est_certs(&bytes)?;
        let cert_pem: String = certs.iter().map(|c| der_to_pem(c)).collect();
        let id = StoredIdentity {
            key_pem: key_pem(&key),
            cert_pem,
        };
        let info = id.cert_info()?;
        // The issued certificate must be for the key we generated, else mTLS would
        // fail later with a far less helpful error.
        let leaf = &certs[0];
        let pk = key.public_key_raw();
        if !leaf.windows(pk.len()).any(|w| w == pk) {
            return Err(IdentityError::BadCertificate(
                "the issued certificate is not for this device's key".into(),
            ));
        }
        if info.not_after <= Utc::now() {
            return Err(IdentityError::BadCertificate(
                "the issued certificate is already expired; check the clocks".into(),
            ));
        }
        Ok(id)
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// The whole error chain in one line (reqwest hides the useful part in sources).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(days: i64) -> StoredIdentity {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.subject_alt_names = vec![rcgen::SanType::URI(
            "urn:toktra:org:acme:device:d1".try_into().unwrap(),
        )];
        let now = time_now();
        p.not_before = now;
        p.not_after = now + std::time::Duration::from_secs((days * 86400) as u64);
        let cert = p.self_signed(&key).unwrap();
        StoredIdentity {
            key_pem: key_pem(&key),
            cert_pem: cert.pem(),
        }
    }

    fn time_now() -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc()
    }

    #[test]
    fn stored_key_is_pkcs8_v1_that_openssl_reads_and_rustls_loads() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let pem = key_pem(&key);
        // The same key back through rcgen (what the Windows service does) ...
        let back = rcgen::KeyPair::from_pem(&pem).unwrap();
        assert_eq!(back.public_key_raw(), key.public_key_raw());
        // ... and through rustls's ring provider (what mTLS does).
        let der = rustls_pemfile::pkcs8_private_keys(&mut pem.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        rustls::crypto::ring::sign::any_eddsa_type(&der).unwrap();
        // OpenSSL 3.0 refuses ring's v2 encoding; it must read this one and find the
        // same public key.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        std::fs::write(&path, &pem).unwrap();
        let out = std::process::Command::new("openssl")
            .args(["pkey", "-pubout", "-outform", "DER", "-in"])
            .arg(&path)
            .output()
            .expect("openssl must be installed (scripts/setup installs it)");
        assert!(
            out.status.success(),
            "openssl pkey refused the stored key: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout.ends_with(key.public_key_raw()));
    }

    #[test]
    fn file_store_round_trips_with_owner_only_mode() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileIdentityStore::new(dir.path());
        assert!(store.load().unwrap().is_none());
        let id = self_signed(90);
        store.save(&id).unwrap();
        let back = store.load().unwrap().unwrap();
        assert_eq!(back.key_pem.trim(), id.key_pem.trim());
        assert_eq!(back.cert_info().unwrap(), id.cert_info().unwrap());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(store.path())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(store.path(), "garbage").unwrap();
        assert!(matches!(store.load(), Err(IdentityError::Corrupt(..))));
    }

    #[test]
    fn cert_info_reads_the_device_uri_and_renewal_is_two_thirds_in() {
        let info = self_signed(90).cert_info().unwrap();
        assert_eq!(info.identity.as_ref().unwrap().device_id, "d1");
        let mut rng = rand::rng();
        let life = info.not_after - info.not_before;
        for _ in 0..50 {
            let at = info.renew_at(&mut rng);
            let frac = (at - info.not_before).num_seconds() as f64 / life.num_seconds() as f64;
            assert!((0.63..=0.70).contains(&frac), "{frac}");
        }
        assert!(!info.is_expired(Utc::now()));
        assert!(info.is_expired(info.not_after));
    }

    #[test]
    fn device_id_is_generated_once_and_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let a = ensure_device_id(None, dir.path()).unwrap();
        let b = ensure_device_id(None, dir.path()).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            ensure_device_id(Some("fixed"), dir.path()).unwrap(),
            "fixed"
        );
    }

    #[test]
    fn csr_is_ed25519_with_the_subject() {
        let (_, csr) = new_key_and_csr("Toktra Device").unwrap();
        use x509_parser::prelude::*;
        let (_, req) = X509CertificationRequest::from_der(&csr).unwrap();
        let cn = req
            .certification_request_info
            .subject
            .iter_common_name()
            .next()
            .unwrap();
        assert_eq!(cn.as_str().unwrap(), "Toktra Device");
        assert_eq!(
            req.certification_request_info
                .subject_pki
                .algorithm
                .algorithm
                .to_id_string(),
            "1.3.101.112"
        );
    }

    #[test]
    fn est_bodies_in_every_tolerated_shape() {
        let id = self_signed(1);
        let der = first_cert_der(&id.cert_pem).unwrap();
        assert_eq!(
            parse_est_certs(id.cert_pem.as_bytes()).unwrap(),
            vec![der.clone()]
        );
        let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
        assert_eq!(parse_est_certs(b64.as_bytes()).unwrap(), vec![der.clone()]);

        // A hand-built certs-only SignedData around two copies.
        let enc = |tag: u8, content: &[u8]| {
            let mut v = vec![tag];
            let n = content.len();
            if n < 128 {
                v.push(n as u8);
            } else {
                v.extend([0x82, (n >> 8) as u8, n as u8]);
            }
            v.extend_from_slice(content);
            v
        };
        let certs = [der.clone(), der.clone()].concat();
        let sd = enc(
            0x30,
            &[
                enc(0x02, &[1]),
                enc(0x31, &[]),
                enc(
                    0x30,
                    &enc(
                        0x06,
                        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01],
                    ),
                ),
                enc(0xa0, &certs),
                enc(0x31, &[]),
            ]
            .concat(),
        );
        let ci = enc(
            0x30,
            &[
                enc(
                    0x06,
                    &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02],
                ),
                enc(0xa0, &sd),
            ]
            .concat(),
        );
        let body = base64::engine::general_purpose::STANDARD.encode(&ci);
        let wrapped: String = body
            .as_bytes()
            .chunks(64)
            .map(|c| format!("{}\r\n", std::str::from_utf8(c).unwrap()))
            .collect();
        assert_eq!(
            parse_est_certs(wrapped.as_bytes()).unwrap(),
            vec![der.clone(), der]
        );
        assert!(parse_est_certs(b"not a certificate!").is_err());
    }
}
