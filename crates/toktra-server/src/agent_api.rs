//! The agent face: EST enrollment, batch ingest and budget status. Every route but
//! `cacerts` and `simpleenroll` requires the client certificate of an enrolled, unlocked
//! device whose current (or previous) certificate it is.

use crate::AppState;
use crate::ca::{CaError, IssuedCert, PeerIdentity, pkcs7_certs_only};
use crate::classify::classify;
use crate::ops::{secret_hash, valid_id};
use crate::store::{Device, DeviceStatus, StoreError};
use crate::tls::Peer;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use chrono::Utc;
use std::io::Read;
use std::time::Instant;
use toktra_proto::api;
use toktra_proto::event::{MAX_BODY_BYTES, MAX_DECOMPRESSED_BODY_BYTES};
use toktra_proto::{Batch, IngestResponse};

/// A refusal with a status and a message that says what to fix.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            axum::Json(serde_json::json!({"error": self.code, "message": self.message})),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"toktra-est\""),
            );
        }
        r
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("{m} not found"))
            }
            StoreError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            other => {
                tracing::error!("store: {other}");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the store failed; retry later",
                )
            }
        }
    }
}

pub fn router(state: AppState) -> axum::Router {
    axum::Router::new()
        .route(api::EST_CACERTS, get(cacerts))
        .route(api::EST_SIMPLEENROLL, post(simpleenroll))
        .route(api::EST_SIMPLEREENROLL, post(simplereenroll))
        .route(api::INGEST_BATCHES, post(ingest))
        .route(api::AGENT_BUDGET, get(agent_budget))
        .route("/healthz", get(|| async { "ok" }))
        // Our own limit check below gives the 413 with a message; this one only keeps
        // axum's default (2 MiB) from cutting in first.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES + 1))
        .with_state(state)
}

/// Signs off the async runtime: key checks and signing are CPU work.
async fn issue(
    st: &AppState,
    csr: Vec<u8>,
    subject: String,
    identity: toktra_proto::identity::DeviceIdentity,
) -> Result<IssuedCert, ApiError> {
    let ca = st.ca.clone();
    tokio::task::spawn_blocking(move || ca.issue_device_cert(&csr, &subject, &identity))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "ca_error", e.to_string()))?
        .map_err(csr_error)
}

/// The EST answer for a newly issued certificate, with the device id the server
/// settled on (the agent's id was only a hint).
fn issued_response(issued: &IssuedCert, device_id: &str) -> Response {
    let mut r = pkcs7_response(&[&issued.der]);
    if let Ok(v) = HeaderValue::from_str(device_id) {
        r.headers_mut().insert(api::HEADER_DEVICE_ID, v);
    }
    r
}

fn pkcs7_response(certs: &[&[u8]]) -> Response {
    let body = base64::engine::general_purpose::STANDARD.encode(pkcs7_certs_only(certs));
    // RFC 7030 §4.1.3: base64 in the body, announced with Content-Transfer-Encoding.
    let mut wrapped = String::with_capacity(body.len() + body.len() / 64 + 2);
    for chunk in body.as_bytes().chunks(64) {
        wrapped.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        wrapped.push('\n');
    }
    (
        [
            (
                header::CONTENT_TYPE,
                "application/pkcs7-mime; smime-type=certs-only",
            ),
            (
                header::HeaderName::from_static("content-transfer-encoding"),
                "base64",
            ),
        ],
        wrapped,
    )
        .into_response()
}

async fn cacerts(State(st): State<AppState>) -> Response {
    pkcs7_response(&[st.ca.intermediate_der(), st.ca.root_der()])
}

/// Accepts base64 (RFC 7030), PEM or raw DER.
fn decode_csr(body: &[u8]) -> Result<Vec<u8>, ApiError> {
    if body.first() == Some(&0x30) {
        return Ok(body.to_vec());
    }
    let text = std::str::from_utf8(body).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_csr",
            "the body is neither DER nor base64 text",
        )
    })?;
    let b64: String = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .flat_map(|l| l.chars())
        .filter(|c| !c.is_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_csr",
                format!("the body is not base64 PKCS#10: {e}"),
            )
        })
}

fn csr_error(e: CaError) -> ApiError {
    match e {
        CaError::CsrParse
        | CaError::CsrSignature
        | CaError::CsrKeyType(_)
        | CaError::CsrSubject { .. } => {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_csr", e.to_string())
        }
        other => {
            tracing::error!("issuing a certificate: {other}");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ca_error",
                "the CA could not issue the certificate",
            )
        }
    }
}

/// `(org_id, token)` from Basic `ORG_ID:TOKEN` or `(None, token)` from Bearer.
fn enrollment_credentials(headers: &HeaderMap) -> Result<(Option<String>, String), ApiError> {
    let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            unauthorized(
                "enrollment needs an organization token: HTTP Basic ORG_ID:TOKEN or Bearer TOKEN",
            )
        })?;
    if let Some(b) = value.strip_prefix("Basic ") {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b.trim())
            .map_err(|_| unauthorized("malformed Basic credentials"))?;
        let text =
            String::from_utf8(raw).map_err(|_| unauthorized("malformed Basic credentials"))?;
        let (org, token) = text
            .split_once(':')
            .ok_or_else(|| unauthorized("Basic credentials must be ORG_ID:TOKEN"))?;
        return Ok((Some(org.to_owned()), token.to_owned()));
    }
    if let Some(t) = value.strip_prefix("Bearer ") {
        return Ok((None, t.trim().to_owned()));
    }
    Err(unauthorized(
        "unsupported Authorization scheme; use Basic or Bearer",
    ))
}

fn header_text(headers: &HeaderMap, name: &str, max: usize) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty() && s.len() <= max && !s.chars().any(char::is_control))
        .map(str::to_owned)
}

async fn simpleenroll(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let result = enroll(&st, &headers, &body).await;
    if let Err(e) = &result {
        st.metrics
            .rejection(if e.status == StatusCode::UNAUTHORIZED {
                "enroll_unauthorized"
            } else {
                "enroll_bad_request"
            });
    }
    result
}

async fn enroll(st: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<Response, ApiError> {
    let (org_hint, token) = enrollment_credentials(headers)?;
    let csr = decode_csr(body)?;
    let now = Utc::now();
    // The token is checked (and one use counted) before anything is issued; a wrong
    // CSR after that costs the device one use, which is the safe side.
    let org_id = st
        .store
        .use_enrollment_token(org_hint.as_deref(), &secret_hash(&token), now)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "the enrollment token is unknown, revoked, expired, used up or of another organization"))?;
    let org = st.store.get_org(&org_id).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the organization no longer exists",
        )
    })?;

    let hint = header_text(headers, api::HEADER_DEVICE_ID, 64).filter(|h| valid_id(h));
    if let Some(h) = &hint
        && let Some(existing) = st.store.get_device(&org.id, h).await?
        && existing.status == DeviceStatus::Enrolled
        && existing.cert_expires_at.is_some_and(|t| t <= now)
    {
        return reenroll_expired(st, &org.id, &org.cert_subject, existing, &csr).await;
    }
    for attempt in 0..3 {
        let hint = hint.clone();
        let device_id = match hint {
            Some(h) if attempt == 0 && !st.store.device_exists(&org.id, &h).await? => h,
            _ => uuid::Uuid::now_v7().to_string(),
        };
        let identity = toktra_proto::identity::DeviceIdentity::new(&org.id, &device_id)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_identity", e.to_string()))?;
        let issued = issue(st, csr.clone(), org.cert_subject.clone(), identity).await?;
        let device = Device {
            org_id: org.id.clone(),
            id: device_id.clone(),
            hostname: header_text(headers, api::HEADER_HOSTNAME, 253),
            platform: header_text(headers, api::HEADER_PLATFORM, 64),
            agent_version: header_text(headers, api::HEADER_AGENT_VERSION, 64),
            status: DeviceStatus::Enrolled,
            cert_serial: Some(issued.serial.clone()),
            prev_cert_serial: None,
            cert_expires_at: Some(issued.not_after),
            enrolled_at: now,
            last_seen: None,
        };
        match st.store.insert_device(&device).await {
            Ok(()) => {
                st.metrics.enrollment();
                tracing::info!(org = %org.id, device = %device_id, "device enrolled");
                return Ok(issued_response(&issued, &device_id));
            }
            // Another enrollment took the hinted id between our check and insert.
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "busy",
        "could not allocate a device id; retry",
    ))
}

/// A device whose certificate ran out while it was offline, back with the token: it
/// keeps its id, so its history stays one device. Only an expired certificate is
/// replaced this way; a token must not let one device take over another's live
/// identity (a live device renews with `simplereenroll`), and a locked device stays
/// locked.
async fn reenroll_expired(
    st: &AppState,
    org_id: &str,
    subject: &str,
    device: Device,
    csr: &[u8],
) -> Result<Response, ApiError> {
    let identity = toktra_proto::identity::DeviceIdentity::new(org_id, &device.id)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_identity", e.to_string()))?;
    let issued = issue(st, csr.to_vec(), subject.to_owned(), identity).await?;
    st.store
        .renew_device_cert(org_id, &device.id, &issued.serial, issued.not_after)
        .await?;
    st.metrics.enrollment();
    tracing::info!(org = %org_id, device = %device.id, "device re-enrolled after its certificate expired");
    Ok(issued_response(&issued, &device.id))
}

/// The device behind a request's client certificate, checked against its record.
pub async fn authorize_device(
    st: &AppState,
    peer: &Peer,
) -> Result<(PeerIdentity, Device), ApiError> {
    let forbidden = |code: &'static str, m: String| ApiError::new(StatusCode::FORBIDDEN, code, m);
    let Some(peer) = &peer.0 else {
        st.metrics.rejection("no_client_certificate");
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "client_certificate_required",
            "this route needs the device certificate (mTLS); enroll first",
        ));
    };
    let peer = match peer.as_ref() {
        Ok(p) => p.clone(),
        Err(e) => {
            st.metrics.rejection("bad_client_certificate");
            return Err(forbidden("bad_client_certificate", e.clone()));
        }
    };
    let id = &peer.identity;
    let Some(device) = st.store.get_device(&id.org_id, &id.device_id).await? else {
        st.metrics.rejection("unknown_device");
        return Err(forbidden(
            "unknown_device",
            format!(
                "device {} is not enrolled in organization {}",
                id.device_id, id.org_id
            ),
        ));
    };
    if device.status == DeviceStatus::Locked {
        st.metrics.rejection("locked_device");
        return Err(forbidden(
            "device_locked",
            format!("device {} is locked by an administrator", id.device_id),
        ));
    }
    let current = device.cert_serial.as_deref() == Some(peer.serial.as_str());
    let previous = device.prev_cert_serial.as_deref() == Some(peer.serial.as_str());
    if !(current || previous) {
        st.metrics.rejection("superseded_certificate");
        return Err(forbidden(
            "certificate_not_current",
            format!(
                "certificate {} is not the current certificate of device {}; re-enroll",
                peer.serial, id.device_id
            ),
        ));
    }
    Ok((peer, device))
}

/// A CSR is a few hundred bytes; this leaves room for RSA keys and PEM wrapping.
const MAX_CSR_BODY_BYTES: usize = 64 * 1024;

async fn simplereenroll(
    State(st): State<AppState>,
    Extension(peer): Extension<Peer>,
    body: Body,
) -> Result<Response, ApiError> {
    // As in ingest: the bounded body first, then the verdict on the device. Refusing
    // while the client still sends makes the server close a socket with unread data,
    // and the client sees a connection reset instead of the 401/403 it should act on.
    let raw = read_limited(body, MAX_CSR_BODY_BYTES).await;
    let (peer, device) = authorize_device(&st, &peer).await?;
    let csr = decode_csr(&raw?)?;
    // RFC 7030 §4.2.2: the same subject as the certificate being renewed.
    let issued = issue(&st, csr, peer.subject_cn.clone(), peer.identity.clone()).await?;
    st.store
        .renew_device_cert(&device.org_id, &device.id, &issued.serial, issued.not_after)
        .await?;
    st.metrics.enrollment();
    Ok(issued_response(&issued, &device.id))
}

/// Reads at most `limit` bytes. Past it, up to [`DRAIN_BYTES`] more are read and
/// dropped before the 413 goes out: a client still sending when the server answers
/// early often sees a reset instead of the status, and would retry blindly.
async fn read_limited(body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    use futures_util::StreamExt;
    const DRAIN_BYTES: usize = 8 * 1024 * 1024;
    let mut stream = body.into_data_stream();
    let mut out = Vec::new();
    let mut excess = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_body",
                format!("reading the body: {e}"),
            )
        })?;
        if excess == 0 && out.len() + chunk.len() <= limit {
            out.extend_from_slice(&chunk);
        } else {
            excess += chunk.len();
            if excess > DRAIN_BYTES {
                break;
            }
        }
    }
    if excess > 0 {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body is larger than {limit} bytes"),
        ));
    }
    Ok(out)
}

/// Gunzips with a hard output limit, so a zip bomb costs at most the limit.
fn gunzip_limited(data: &[u8], limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::with_capacity(data.len() * 4);
    let mut dec = flate2::read::GzDecoder::new(data).take(limit as u64 + 1);
    dec.read_to_end(&mut out).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_encoding",
            format!("the gzip body does not decode: {e}"),
        )
    })?;
    if out.len() > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body decompresses to more than {limit} bytes"),
        ));
    }
    Ok(out)
}

async fn ingest(
    State(st): State<AppState>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    // Read the (bounded) body before judging the device: answering 401/403 while the
    // client is still sending makes the server close a socket with unread data, and
    // the client then sees a connection reset instead of the refusal.
    let raw = read_limited(body, MAX_BODY_BYTES).await;
    let (_, device) = authorize_device(&st, &peer).await?;
    let result = match raw {
        Ok(raw) => ingest_inner(&st, &device, &headers, raw).await,
        Err(e) => Err(e),
    };
    match &result {
        Ok(r) => st
            .metrics
            .batch(r.accepted, r.duplicates, started.elapsed().as_secs_f64()),
        Err(e) => st.metrics.rejection(match e.status {
            StatusCode::PAYLOAD_TOO_LARGE => "too_large",
            StatusCode::BAD_REQUEST => "invalid_batch",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            _ => "store_error",
        }),
    }
    result.map(|r| axum::Json(r).into_response())
}

async fn ingest_inner(
    st: &AppState,
    device: &Device,
    headers: &HeaderMap,
    raw: Vec<u8>,
) -> Result<IngestResponse, ApiError> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    let json = match encoding.as_str() {
        "identity" | "" => raw,
        "gzip" | "x-gzip" => gunzip_limited(&raw, MAX_DECOMPRESSED_BODY_BYTES)?,
        other => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_encoding",
                format!("Content-Encoding {other:?} is not supported; send identity or gzip"),
            ));
        }
    };
    if let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        && !ct
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("application/json")
    {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("Content-Type {ct:?}: send application/json"),
        ));
    }
    let batch: Batch = serde_json::from_slice(&json).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_batch",
            format!("the batch is not valid Event v1 JSON: {e}"),
        )
    })?;
    let now = Utc::now();
    batch
        .validate(now)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_batch", e.to_string()))?;
    let Batch {
        batch_id,
        agent_version,
        events,
        dropped,
    } = batch;
    let stored: Vec<_> = events.into_iter().map(classify).collect();
    let outcome = st
        .store
        .ingest(
            &device.org_id,
            &device.id,
            batch_id,
            &agent_version,
            dropped.map(|d| d.count.min(i64::MAX as u64) as i64),
            &stored,
            now,
        )
        .await?;
    let budget =
        crate::budget::device_status(st.store.as_ref(), &device.org_id, &device.id, now).await?;
    Ok(IngestResponse {
        batch_id,
        accepted: outcome.accepted,
        duplicates: outcome.duplicates,
        budget: Some(budget),
    })
}

async fn agent_budget(
    State(st): State<AppState>,
    Extension(peer): Extension<Peer>,
) -> Result<Response, ApiError> {
    let (_, device) = authorize_device(&st, &peer).await?;
    let status =
        crate::budget::device_status(st.store.as_ref(), &device.org_id, &device.id, Utc::now())
            .await?;
    Ok(axum::Json(status).into_response())
}
