//! Checks the Wine scenarios (windows/tests/run.sh) run against a live ToktraAgent
//! service: ignored in a plain run, invoked one by one with `--ignored --exact NAME`
//! once the service has enrolled. They read what the service left on the machine.

use toktra_agent::identity::{IdentityStore, cert_info_der};
use toktra_service::identity::WindowsIdentityStore;
use toktra_service::{dpapi, paths};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} must be set by the scenario"))
}

/// The device certificate is in LocalMachine\My, found by subject, issued for this
/// org and device, with the lifetime the server issues (TOKTRA_EXPECT_LIFETIME_SECS,
/// default 90 days) and, after a renewal, the expiry the server recorded
/// (TOKTRA_EXPECT_NOT_AFTER); the DPAPI-sealed key file decrypts and belongs to it,
/// and only SYSTEM and Administrators may read it.
#[test]
#[ignore = "needs an enrolled ToktraAgent service (windows/tests/run.sh)"]
fn enrolled_identity_is_in_the_store_and_key_file() {
    let subject = env("TOKTRA_EXPECT_SUBJECT");
    let store = WindowsIdentityStore {
        key_file: paths::key_file(),
        cert_subject: subject.clone(),
    };
    let certs = store.certificates_in_store().unwrap();
    assert_eq!(
        certs.len(),
        1,
        "exactly one device certificate with CN={subject}"
    );
    let info = cert_info_der(&certs[0]).unwrap();
    assert_eq!(info.subject_cn.as_deref(), Some(subject.as_str()));
    let id = info.identity.expect("SAN URI with the device identity");
    assert_eq!(id.org_id, env("TOKTRA_EXPECT_ORG"));
    assert_eq!(id.device_id, env("TOKTRA_EXPECT_DEVICE"));
    // The CA back-dates not_before by a tenth of the lifetime, at most 5 minutes.
    let lifetime: i64 = std::env::var("TOKTRA_EXPECT_LIFETIME_SECS")
        .map(|v| v.parse().expect("TOKTRA_EXPECT_LIFETIME_SECS: seconds"))
        .unwrap_or(90 * 86_400);
    let valid = (info.not_after - info.not_before).num_seconds();
    assert!(
        (lifetime..=lifetime + (lifetime / 10).min(300) + 2).contains(&valid),
        "certificate valid {valid} s, expected a lifetime of {lifetime} s"
    );
    // After a renewal: the one certificate left is the one the server issued last.
    if let Some(not_after) = std::env::var("TOKTRA_EXPECT_NOT_AFTER")
        .ok()
        .filter(|v| !v.is_empty())
    {
        let want: i64 = not_after
            .parse()
            .expect("TOKTRA_EXPECT_NOT_AFTER: Unix seconds");
        assert_eq!(
            info.not_after.timestamp(),
            want,
            "the certificate in the store is not the newest one"
        );
    }

    let sealed = std::fs::read(paths::key_file()).unwrap();
    assert!(
        !String::from_utf8_lossy(&sealed).contains("PRIVATE KEY"),
        "key file is not sealed"
    );
    let plain = dpapi::read_key_file(&paths::key_file()).unwrap().unwrap();
    assert!(
        String::from_utf8(plain)
            .unwrap()
            .contains("-----BEGIN PRIVATE KEY-----")
    );
    // The pair loads: the key in the file matches the certificate in the store.
    let loaded = store
        .load()
        .unwrap()
        .expect("identity loads from store + key file");
    assert!(loaded.cert_pem.contains("BEGIN CERTIFICATE"));
    let sddl = dpapi::file_dacl_sddl(&paths::key_file()).unwrap();
    assert!(
        !sddl.contains(";WD)") && !sddl.contains(";BU)") && !sddl.contains(";IU)"),
        "{sddl}"
    );
}
