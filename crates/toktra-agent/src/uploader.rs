//! Sending batches: one keep-alive mTLS client, exponential backoff with jitter,
//! Retry-After honoured. A batch keeps its id and its events' ids across retries (the
//! spool fixed them), so a retry after a lost acknowledgement is never counted twice.

use rand::Rng as _;
use std::time::Duration;
use toktra_proto::{Batch, IngestResponse};

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// Worth retrying later: network trouble, 5xx, overload.
    #[error("{0}")]
    Transient(String),
    /// The server asked to wait (429/503 with Retry-After).
    #[error("server busy (HTTP {status}), retrying after {after:?}")]
    RetryAfter { status: u16, after: Duration },
    /// The certificate was not accepted: renew or re-enroll.
    #[error("the server refused the device certificate (HTTP {0}); re-enrolling")]
    Unauthorized(u16),
    /// The server will never take this batch (4xx); retrying would block the spool.
    #[error("the server rejected the batch (HTTP {status}): {message}")]
    Rejected { status: u16, message: String },
}

/// Exponential backoff with "equal jitter": the wait is between half and all of
/// the current step, so agents that lost the server together do not return together.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    step: u32,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Self { base, max, step: 0 }
    }
    pub fn reset(&mut self) {
        self.step = 0;
    }
    pub fn next_delay(&mut self) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << self.step.min(20))
            .min(self.max);
        self.step = self.step.saturating_add(1);
        let half = exp / 2;
        half + rand::rng().random_range(Duration::ZERO..=half)
    }
}

/// Retry-After as delta-seconds or an HTTP date; capped at an hour so a bad header
/// cannot park the agent for days.
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let v = value.trim();
    let d = if let Ok(secs) = v.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let t = chrono::DateTime::parse_from_rfc2822(v).ok()?;
        (t.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO)
    };
    Some(d.min(Duration::from_secs(3600)))
}

/// POSTs one batch and reads the acknowledgement.
pub async fn send_batch(
    client: &reqwest::Client,
    ingest_url: &str,
    batch: &Batch,
) -> Result<IngestResponse, UploadError> {
    let url = format!("{ingest_url}{}", toktra_proto::api::INGEST_BATCHES);
    let resp = client.post(&url).json(batch).send().await.map_err(|e| {
        UploadError::Transient(format!("{url}: {}", crate::identity::error_chain(&e)))
    })?;
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
    let body = resp
        .bytes()
        .await
        .map_err(|e| UploadError::Transient(format!("{url}: reading the answer: {e}")))?;
    match status {
        200..=299 => serde_json::from_slice::<IngestResponse>(&body)
            .map_err(|e| UploadError::Transient(format!("{url}: unreadable acknowledgement: {e}"))),
        429 | 503 if retry_after.is_some() => Err(UploadError::RetryAfter {
            status,
            after: retry_after.unwrap_or_default(),
        }),
        401 | 403 => Err(UploadError::Unauthorized(status)),
        400 | 404 | 413 | 422 => Err(UploadError::Rejected {
            status,
            message: String::from_utf8_lossy(&body).chars().take(500).collect(),
        }),
        _ => Err(UploadError::Transient(format!(
            "{url}: HTTP {status}: {}",
            String::from_utf8_lossy(&body)
                .chars()
                .take(200)
                .collect::<String>()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let d: Vec<_> = (0..10).map(|_| b.next_delay()).collect();
        assert!(d[0] >= Duration::from_millis(500) && d[0] <= Duration::from_secs(1));
        assert!(d[3] >= Duration::from_secs(4) && d[3] <= Duration::from_secs(8));
        assert!(d[9] >= Duration::from_secs(30) && d[9] <= Duration::from_secs(60));
        b.reset();
        assert!(b.next_delay() <= Duration::from_secs(1));
    }

    #[test]
    fn retry_after_forms() {
        let now: chrono::DateTime<chrono::Utc> = "2026-11-26T07:00:00Z".parse().unwrap();
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Thu, 26 Nov 2026 07:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("999999", now),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
