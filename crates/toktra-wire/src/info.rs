//! [`HelloInfo`]: an owned, fixed-size summary of a ClientHello that outlives the
//! packet buffer, for the kernel driver's event records and for user mode.

use crate::ja4::{Ja4, Transport, ja4};
use crate::tls::ClientHello;

/// Longest server name kept (a DNS name is at most 253 characters).
pub const MAX_SNI_LEN: usize = 255;
/// ALPN ids kept, in the client's order.
pub const MAX_ALPN: usize = 4;
/// Longest ALPN id kept; longer ids are dropped, not cut, and counted in
/// [`HelloInfo::alpn_dropped`].
pub const MAX_ALPN_ID_LEN: usize = 32;

/// One ALPN protocol id, stored inline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AlpnId {
    len: u8,
    bytes: [u8; MAX_ALPN_ID_LEN],
}

impl AlpnId {
    /// The id's bytes (`b"h2"`).
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or_default()
    }
}

/// What the rest of Toktra needs from a ClientHello, in a plain copyable struct (no
/// references, no allocation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HelloInfo {
    sni_len: u8,
    sni: [u8; MAX_SNI_LEN],
    /// Whether a server_name longer than [`MAX_SNI_LEN`] was dropped.
    pub sni_too_long: bool,
    alpn_count: u8,
    alpn: [AlpnId; MAX_ALPN],
    /// ALPN ids offered but not kept (beyond [`MAX_ALPN`] or too long).
    pub alpn_dropped: u16,
    /// The highest offered TLS version (supported_versions, else legacy_version).
    pub tls_version: u16,
    /// The ClientHello's legacy_version.
    pub legacy_version: u16,
    /// Whether the encrypted_client_hello extension was offered; the SNI is then the
    /// outer (public) name.
    pub ech: bool,
    /// The JA4 fingerprint.
    pub ja4: Ja4,
}

impl HelloInfo {
    /// Summarises a parsed ClientHello.
    pub fn new(hello: &ClientHello<'_>, transport: Transport) -> Self {
        let mut info = Self {
            sni_len: 0,
            sni: [0; MAX_SNI_LEN],
            sni_too_long: false,
            alpn_count: 0,
            alpn: [AlpnId {
                len: 0,
                bytes: [0; MAX_ALPN_ID_LEN],
            }; MAX_ALPN],
            alpn_dropped: 0,
            tls_version: hello.max_version(),
            legacy_version: hello.legacy_version(),
            ech: hello.has_ech(),
            ja4: ja4(hello, transport),
        };
        if let Some(name) = hello.server_name() {
            match (info.sni.get_mut(..name.len()), u8::try_from(name.len())) {
                (Some(dst), Ok(len)) => {
                    dst.copy_from_slice(name);
                    info.sni_len = len;
                }
                _ => info.sni_too_long = true,
            }
        }
        for id in hello.alpn().iter().flat_map(|l| l.iter()) {
            let slot = info.alpn.get_mut(usize::from(info.alpn_count));
            match (slot, u8::try_from(id.len())) {
                (Some(slot), Ok(len)) if id.len() <= MAX_ALPN_ID_LEN => {
                    if let Some(dst) = slot.bytes.get_mut(..id.len()) {
                        dst.copy_from_slice(id);
                    }
                    slot.len = len;
                    info.alpn_count = info.alpn_count.saturating_add(1);
                }
                _ => info.alpn_dropped = info.alpn_dropped.saturating_add(1),
            }
        }
        info
    }

    /// The server name as sent, if any.
    pub fn sni(&self) -> Option<&[u8]> {
        match self.sni_len {
            0 => None,
            n => self.sni.get(..usize::from(n)),
        }
    }

    /// The server name if it is valid UTF-8 (host names are ASCII).
    pub fn sni_str(&self) -> Option<&str> {
        self.sni().and_then(|s| core::str::from_utf8(s).ok())
    }

    /// The kept ALPN ids in the client's order.
    pub fn alpn(&self) -> impl Iterator<Item = &[u8]> {
        self.alpn
            .iter()
            .take(usize::from(self.alpn_count))
            .map(AlpnId::as_bytes)
    }
}
