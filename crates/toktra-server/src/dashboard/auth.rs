//! Sign-in primitives: argon2id password hashes, server-side sessions behind an
//! opaque cookie, and per-session CSRF tokens (synchronizer pattern; the sign-in form,
//! which has no session yet, uses a double-submit cookie instead).

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use rand::RngCore;
use std::collections::HashMap;
use std::sync::Mutex;

pub const SESSION_COOKIE: &str = "toktra_session";
pub const LOGIN_CSRF_COOKIE: &str = "toktra_login_csrf";
/// A session ends this long after its last use; a dashboard left open overnight
/// asks for the password again.
pub const SESSION_IDLE: Duration = Duration::hours(8);
/// Shortest password `toktra admin` accepts for an administrator.
pub const MIN_PASSWORD_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("password must be at least {MIN_PASSWORD_LEN} characters")]
    PasswordTooShort,
    #[error("could not hash the password: {0}")]
    Hash(String),
    #[error("stored password hash is not a valid PHC string: {0}")]
    BadStoredHash(String),
}

/// Hashes a password with argon2id (the crate's defaults: 19 MiB, 2 passes), as a
/// PHC string that carries its own salt and parameters.
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(AuthError::PasswordTooShort);
    }
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| AuthError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// Checks a password against a stored PHC hash in constant time.
pub fn verify_password(password: &str, phc: &str) -> Result<bool, AuthError> {
    let parsed = PasswordHash::new(phc).map_err(|e| AuthError::BadStoredHash(e.to_string()))?;
    Ok(Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok())
}

/// A hash to verify against when the e-mail is unknown, so a wrong e-mail costs as
/// much time as a wrong password and does not reveal which accounts exist.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password("decoy-password-never-matches").unwrap_or_default())
}

/// 256 bits from the OS-seeded CSPRNG, URL-safe.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Compares secrets without an early exit, so timing does not reveal a prefix.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Debug, Clone)]
pub struct Session {
    pub admin_id: String,
    pub org_id: String,
    pub email: String,
    pub csrf: String,
    last_used: DateTime<Utc>,
    flash: Option<Flash>,
}

/// A message carried from a form's POST to the page it redirects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    pub ok: bool,
    pub text: String,
    /// A new enrollment token `(id, secret)`, shown on the next page only.
    pub new_token: Option<(String, String)>,
}

/// Sessions live in the server's memory: a restart signs everyone out, which is
/// the safe direction, and no session secret ever reaches the database.
#[derive(Default)]
pub struct Sessions {
    inner: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// Starts a session and returns its cookie value.
    pub fn create(&self, admin_id: &str, org_id: &str, email: &str, now: DateTime<Utc>) -> String {
        let token = random_token();
        let session = Session {
            admin_id: admin_id.to_owned(),
            org_id: org_id.to_owned(),
            email: email.to_owned(),
            csrf: random_token(),
            last_used: now,
            flash: None,
        };
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, s| now - s.last_used < SESSION_IDLE);
        map.insert(token.clone(), session);
        token
    }

    /// The live session for a cookie value, refreshing its idle timer.
    pub fn get(&self, token: &str, now: DateTime<Utc>) -> Option<Session> {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match map.get_mut(token) {
            Some(s) if now - s.last_used < SESSION_IDLE => {
                s.last_used = now;
                Some(s.clone())
            }
            Some(_) => {
                map.remove(token);
                None
            }
            None => None,
        }
    }

    pub fn set_flash(&self, token: &str, flash: Flash) {
        if let Some(s) = self
            .inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(token)
        {
            s.flash = Some(flash);
        }
    }

    /// The pending message, which is then gone (a reload does not show it again).
    pub fn take_flash(&self, token: &str) -> Option<Flash> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(token)
            .and_then(|s| s.flash.take())
    }

    pub fn remove(&self, token: &str) {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(token);
    }
}

/// Failed sign-ins allowed per e-mail within [`THROTTLE_WINDOW`] before that e-mail
/// is refused until the window has passed since the last failure.
pub const MAX_FAILED_SIGN_INS: u32 = 5;
pub const THROTTLE_WINDOW: Duration = Duration::minutes(15);

/// Slows password guessing against one account: argon2 makes each guess cost ~50 ms of
/// CPU, this caps them at a handful per quarter hour.
#[derive(Default)]
pub struct LoginThrottle {
    failures: Mutex<HashMap<String, (u32, DateTime<Utc>)>>,
}

impl LoginThrottle {
    /// Minutes to wait before `email` may try again, if it is throttled now.
    pub fn blocked_for(&self, email: &str, now: DateTime<Utc>) -> Option<i64> {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let (count, last) = map.get(email)?;
        let until = *last + THROTTLE_WINDOW;
        (*count >= MAX_FAILED_SIGN_INS && now < until).then(|| (until - now).num_minutes() + 1)
    }

    pub fn failed(&self, email: &str, now: DateTime<Utc>) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, (_, last)| now - *last < THROTTLE_WINDOW);
        let e = map.entry(email.to_owned()).or_insert((0, now));
        *e = (e.0 + 1, now);
    }

    pub fn succeeded(&self, email: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(email);
    }
}

/// A `Set-Cookie` value. Always HttpOnly and SameSite=Strict; Secure when the admin
/// face is served over TLS (a Secure cookie would never come back over plain HTTP
/// on 127.0.0.1).
pub fn set_cookie(name: &str, value: &str, secure: bool, max_age: Option<i64>) -> String {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        c.push_str("; Secure");
    }
    c
}

/// The value of one cookie from a `Cookie` request header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2_round_trip_and_rejects_wrong_password() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("correct horse battery", &h).unwrap());
        assert!(!verify_password("correct horse batterY", &h).unwrap());
        assert!(matches!(
            hash_password("short"),
            Err(AuthError::PasswordTooShort)
        ));
        assert!(matches!(
            verify_password("x", "not-a-hash"),
            Err(AuthError::BadStoredHash(_))
        ));
        // Two hashes of one password differ: each has its own salt.
        assert_ne!(h, hash_password("correct horse battery").unwrap());
    }

    #[test]
    fn sessions_expire_when_idle() {
        let s = Sessions::default();
        let t0 = Utc::now();
        let tok = s.create("a1", "org", "a@example.com", t0);
        assert_eq!(s.get(&tok, t0 + Duration::hours(1)).unwrap().admin_id, "a1");
        // Use refreshed the timer, so 8 h after creation it still lives.
        assert!(s.get(&tok, t0 + Duration::hours(8)).is_some());
        assert!(s.get(&tok, t0 + Duration::hours(17)).is_none());
        assert!(s.get("forged", t0).is_none());
        let tok2 = s.create("a1", "org", "a@example.com", t0);
        let flash = Flash {
            ok: true,
            text: "saved".into(),
            new_token: None,
        };
        s.set_flash(&tok2, flash.clone());
        assert_eq!(s.take_flash(&tok2), Some(flash));
        assert_eq!(s.take_flash(&tok2), None);
        s.remove(&tok2);
        assert!(s.get(&tok2, t0).is_none());
    }

    #[test]
    fn guessing_is_throttled_per_email() {
        let t = LoginThrottle::default();
        let t0 = Utc::now();
        for i in 0..MAX_FAILED_SIGN_INS {
            assert_eq!(t.blocked_for("a@x.example", t0), None, "attempt {i}");
            t.failed("a@x.example", t0);
        }
        assert_eq!(t.blocked_for("a@x.example", t0), Some(16));
        assert_eq!(
            t.blocked_for("b@x.example", t0),
            None,
            "other accounts unaffected"
        );
        assert_eq!(
            t.blocked_for("a@x.example", t0 + Duration::minutes(16)),
            None
        );
        t.succeeded("a@x.example");
        assert_eq!(t.blocked_for("a@x.example", t0), None);
    }

    #[test]
    fn cookies() {
        let c = set_cookie(SESSION_COOKIE, "abc", true, None);
        assert_eq!(
            c,
            "toktra_session=abc; Path=/; HttpOnly; SameSite=Strict; Secure"
        );
        assert!(!set_cookie(SESSION_COOKIE, "abc", false, Some(0)).contains("Secure"));
        assert_eq!(
            cookie_value("a=1; toktra_session=xyz; b=2", SESSION_COOKIE),
            Some("xyz")
        );
        assert_eq!(cookie_value("xtoktra_session=1", SESSION_COOKIE), None);
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "abcd"));
        assert_eq!(random_token().len(), 43);
    }
}
