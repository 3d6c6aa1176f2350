//! LocalMachine\My and DPAPI, for real (under Wine in CI).

use toktra_service::certstore::MachineStore;
use toktra_service::dpapi;

fn self_signed(cn: &str) -> Vec<u8> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.self_signed(&key).unwrap().der().to_vec()
}

#[test]
fn certificate_added_found_by_subject_and_deleted() {
    let cn = format!("Toktra Test {}", uuid::Uuid::new_v4());
    let der = self_signed(&cn);
    {
        let store = MachineStore::open("My").unwrap();
        assert!(store.find_by_subject(&cn).is_empty());
        store.add(&der).unwrap();
    }
    // A second handle sees it: it is in the machine store, not in our handle's cache.
    let store = MachineStore::open("My").unwrap();
    assert_eq!(store.find_by_subject(&cn), vec![der.clone()]);
    let other = self_signed(&format!("{cn} other"));
    store.add(&other).unwrap();
    // Substring match finds both; deleting by predicate removes only the chosen one.
    assert_eq!(store.find_by_subject(&cn).len(), 2);
    assert_eq!(
        store.delete_where(&cn, |d| d == other.as_slice()).unwrap(),
        1
    );
    drop(store);
    let store = MachineStore::open("My").unwrap();
    assert_eq!(store.find_by_subject(&cn), vec![der.clone()]);
    assert_eq!(store.delete_where(&cn, |_| true).unwrap(), 1);
    drop(store);
    assert!(
        MachineStore::open("My")
            .unwrap()
            .find_by_subject(&cn)
            .is_empty()
    );
}

#[test]
fn dpapi_round_trip_and_tamper_detection() {
    let secret = b"-----BEGIN PRIVATE KEY-----\nnot really\n-----END PRIVATE KEY-----\n";
    let sealed = dpapi::protect(secret).unwrap();
    assert!(
        !sealed.windows(10).any(|w| w == &secret[..10]),
        "plaintext visible in blob"
    );
    assert_eq!(dpapi::unprotect(&sealed).unwrap(), secret);
    let mut bad = sealed.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x55;
    assert!(dpapi::unprotect(&bad).is_err());
}

#[test]
fn key_file_is_sealed_and_acl_restricted() {
    let dir = std::env::temp_dir().join(format!("toktra-key-{}", uuid::Uuid::new_v4()));
    let path = dir.join("device-key.dpapi");
    assert_eq!(dpapi::read_key_file(&path).unwrap(), None);
    dpapi::write_key_file(&path, b"key material").unwrap();
    assert_ne!(std::fs::read(&path).unwrap(), b"key material");
    assert_eq!(
        dpapi::read_key_file(&path).unwrap().unwrap(),
        b"key material"
    );
    assert_restricted(&dpapi::file_dacl_sddl(&path).unwrap());
    // Replacing keeps the protection.
    dpapi::write_key_file(&path, b"renewed key").unwrap();
    assert_eq!(
        dpapi::read_key_file(&path).unwrap().unwrap(),
        b"renewed key"
    );
    assert_restricted(&dpapi::file_dacl_sddl(&path).unwrap());
    std::fs::remove_dir_all(dir).unwrap();
}

/// On Windows the DACL is exactly the one we set. Wine keeps no file DACLs of its own
/// here (it derives one from the Unix mode: SYSTEM + the prefix's user, who is its
/// administrator), so there we check what matters: no ACE for anyone else.
fn assert_restricted(sddl: &str) {
    if toktra_service::win::running_under_wine() {
        for everyone_else in [";WD)", ";BU)", ";AU)", ";IU)", ";BG)", ";AN)"] {
            assert!(
                !sddl.contains(everyone_else),
                "key file readable by {everyone_else}: {sddl}"
            );
        }
        assert!(sddl.contains("(A;;FA;;;SY)"), "{sddl}");
    } else {
        assert_eq!(sddl, dpapi::KEY_FILE_SDDL, "key file DACL");
    }
}
