//! Device identity as it appears in certificates: the server assigns it and writes it
//! as a SAN URI; it is never taken from the CSR or the request body.

use std::fmt;

const PREFIX: &str = "urn:toktra:org:";
const DEVICE: &str = ":device:";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceIdentity {
    pub org_id: String,
    pub device_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Toktra device URI (expected urn:toktra:org:<org>:device:<device>): {0}")]
pub struct BadDeviceUri(pub String);

/// Ids are restricted so that the URI splits unambiguously.
fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

impl DeviceIdentity {
    pub fn new(org_id: &str, device_id: &str) -> Result<Self, BadDeviceUri> {
        if valid_id(org_id) && valid_id(device_id) {
            Ok(Self {
                org_id: org_id.to_owned(),
                device_id: device_id.to_owned(),
            })
        } else {
            Err(BadDeviceUri(format!("{PREFIX}{org_id}{DEVICE}{device_id}")))
        }
    }

    pub fn to_uri(&self) -> String {
        self.to_string()
    }

    pub fn parse_uri(uri: &str) -> Result<Self, BadDeviceUri> {
        let bad = || BadDeviceUri(uri.to_owned());
        let rest = uri.strip_prefix(PREFIX).ok_or_else(bad)?;
        let (org, device) = rest.split_once(DEVICE).ok_or_else(bad)?;
        Self::new(org, device).map_err(|_| bad())
    }
}

impl fmt::Display for DeviceIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}{DEVICE}{}", self.org_id, self.device_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_round_trip_and_rejects() {
        let id = DeviceIdentity::new("acme", "0193-abc").unwrap();
        assert_eq!(id.to_uri(), "urn:toktra:org:acme:device:0193-abc");
        assert_eq!(DeviceIdentity::parse_uri(&id.to_uri()).unwrap(), id);
        for bad in [
            "urn:toktra:org:acme",
            "urn:toktra:org::device:x",
            "urn:other:org:a:device:b",
            "urn:toktra:org:a:b:device:c",
        ] {
            assert!(DeviceIdentity::parse_uri(bad).is_err(), "{bad}");
        }
    }
}
