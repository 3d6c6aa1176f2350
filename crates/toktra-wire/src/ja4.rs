//! JA4 TLS client fingerprints, following FoxIO's specification
//! (github.com/FoxIO-LLC/ja4, technical_details/JA4.md):
//! `t13d1516h2_8daaf6152771_e5627efa2ab1`.
//!
//! Computed without allocation: the sorted lists are hashed as they are produced,
//! from a small stack array, or for pathological hellos by repeated selection.

use core::fmt;

use sha2::{Digest, Sha256};

use crate::tls::{ClientHello, ext, is_grease};

/// Length of a JA4 fingerprint: 10 + 1 + 12 + 1 + 12.
pub const JA4_LEN: usize = 36;

/// How the ClientHello travelled: the first character of JA4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// TLS over TCP: `t`.
    Tcp,
    /// QUIC: `q`.
    Quic,
    /// DTLS: `d`.
    Dtls,
}

/// A JA4 fingerprint, 36 ASCII bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ja4(pub [u8; JA4_LEN]);

impl Ja4 {
    /// The fingerprint as text.
    pub fn as_str(&self) -> &str {
        // Always ASCII by construction; the fallback is never taken.
        core::str::from_utf8(&self.0).unwrap_or("")
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; JA4_LEN] {
        &self.0
    }
}

impl fmt::Display for Ja4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Ja4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ja4({})", self.as_str())
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_nibble(n: u8) -> u8 {
    HEX.get(usize::from(n & 0x0f)).copied().unwrap_or(b'0')
}

fn version_code(v: u16) -> [u8; 2] {
    match v {
        0x0304 => *b"13",
        0x0303 => *b"12",
        0x0302 => *b"11",
        0x0301 => *b"10",
        0x0300 => *b"s3",
        0x0002 => *b"s2",
        0xfeff => *b"d1",
        0xfefd => *b"d2",
        0xfefc => *b"d3",
        _ => *b"00",
    }
}

fn two_digits(n: usize) -> [u8; 2] {
    let n = n.min(99);
    // n <= 99, so both digits fit; the arithmetic cannot overflow.
    let tens = u8::try_from(n / 10).unwrap_or(9);
    let ones = u8::try_from(n % 10).unwrap_or(9);
    [b'0'.saturating_add(tens), b'0'.saturating_add(ones)]
}

/// First and last characters of the first ALPN id, with the spec's hex fallback for
/// non-alphanumeric bytes.
fn alpn_code(hello: &ClientHello<'_>) -> [u8; 2] {
    let Some(first) = hello.alpn().and_then(|l| l.iter().next()) else {
        return *b"00";
    };
    let (Some(&a), Some(&z)) = (first.first(), first.last()) else {
        return *b"00";
    };
    if a.is_ascii_alphanumeric() && z.is_ascii_alphanumeric() {
        [a, z]
    } else {
        [hex_nibble(a >> 4), hex_nibble(z)]
    }
}

/// Insertion sort for the at most 128 values of one list. Not `sort_unstable`: core's
/// sort keeps a panic path (its Ord-violation check) that survives LTO, and the kernel
/// driver links with a check that fails on any surviving panic path.
fn sort_small(values: &mut [u16]) {
    for i in 1..values.len() {
        let mut j = i;
        while let Some(prev) = j.checked_sub(1) {
            let Some([a, b]) = values
                .get_mut(prev..=j)
                .and_then(|w| <&mut [u16; 2]>::try_from(w).ok())
            else {
                break;
            };
            if *a <= *b {
                break;
            }
            core::mem::swap(a, b);
            j = prev;
        }
    }
}

/// Feeds `values` (GREASE already removed, and any other exclusions applied by the
/// caller) to `sink` in ascending order, duplicates kept.
fn for_each_sorted<I, F>(values: I, mut sink: F)
where
    I: Iterator<Item = u16> + Clone,
    F: FnMut(u16),
{
    const SMALL: usize = 128;
    let mut small = [0u16; SMALL];
    let mut n = 0usize;
    let mut fits = true;
    for v in values.clone() {
        match small.get_mut(n) {
            Some(slot) => {
                *slot = v;
                n = n.saturating_add(1);
            }
            None => {
                fits = false;
                break;
            }
        }
    }
    if fits {
        let sorted = small.get_mut(..n).unwrap_or_default();
        sort_small(sorted);
        sorted.iter().for_each(|&v| sink(v));
        return;
    }
    // More values than any real client sends: select each next-larger value in turn.
    // Quadratic, but bounded by the 16 KiB hello limit.
    let mut floor: Option<u16> = None;
    loop {
        let next = values
            .clone()
            .filter(|&v| floor.is_none_or(|f| v > f))
            .min();
        let Some(m) = next else { return };
        values.clone().filter(|&v| v == m).for_each(&mut sink);
        floor = Some(m);
    }
}

/// Hashes a comma-separated list of 4-hex-digit values.
struct ListHasher {
    hasher: Sha256,
    count: usize,
}

impl ListHasher {
    fn new() -> Self {
        Self {
            hasher: Sha256::new(),
            count: 0,
        }
    }

    fn push(&mut self, v: u16) {
        if self.count > 0 {
            self.hasher.update(b",");
        }
        let [hi, lo] = v.to_be_bytes();
        self.hasher.update([
            hex_nibble(hi >> 4),
            hex_nibble(hi),
            hex_nibble(lo >> 4),
            hex_nibble(lo),
        ]);
        self.count = self.count.saturating_add(1);
    }

    fn finish_into(self, out: &mut [u8]) {
        let digest = self.hasher.finalize();
        for (pair, byte) in out.chunks_exact_mut(2).zip(digest.iter()) {
            if let [a, b] = pair {
                *a = hex_nibble(byte >> 4);
                *b = hex_nibble(*byte);
            }
        }
    }
}

fn write_hash(out: &mut [u8], hasher: ListHasher, any: bool) {
    if any {
        hasher.finish_into(out);
    } else {
        out.fill(b'0');
    }
}

/// Computes the JA4 fingerprint of a ClientHello.
pub fn ja4(hello: &ClientHello<'_>, transport: Transport) -> Ja4 {
    let mut out = [b'0'; JA4_LEN];
    let ciphers = hello.cipher_suites();
    let exts = hello.extensions();
    let version = hello
        .supported_versions()
        .and_then(|l| l.iter_non_grease().max())
        .unwrap_or(hello.legacy_version());
    let proto = match transport {
        Transport::Tcp => b't',
        Transport::Quic => b'q',
        Transport::Dtls => b'd',
    };
    let sni = if hello.has_server_name_extension() {
        b'd'
    } else {
        b'i'
    };
    let [v0, v1] = version_code(version);
    let [c0, c1] = two_digits(ciphers.iter_non_grease().count());
    let [e0, e1] = two_digits(exts.types().filter(|t| !is_grease(*t)).count());
    let [a0, a1] = alpn_code(hello);
    if let Some(head) = out.first_chunk_mut::<11>() {
        *head = [proto, v0, v1, sni, c0, c1, e0, e1, a0, a1, b'_'];
    }

    let mut cipher_hash = ListHasher::new();
    for_each_sorted(ciphers.iter_non_grease(), |v| cipher_hash.push(v));
    let any_cipher = cipher_hash.count > 0;
    if let Some(slot) = out.get_mut(11..23) {
        write_hash(slot, cipher_hash, any_cipher);
    }
    if let Some(sep) = out.get_mut(23) {
        *sep = b'_';
    }

    let mut ext_hash = ListHasher::new();
    let kept = exts
        .types()
        .filter(|&t| !is_grease(t) && t != ext::SERVER_NAME && t != ext::ALPN);
    for_each_sorted(kept, |v| ext_hash.push(v));
    let any_ext = ext_hash.count > 0;
    let sigs = hello.signature_algorithms().unwrap_or_default();
    if any_ext && sigs.iter_non_grease().next().is_some() {
        ext_hash.hasher.update(b"_");
        // Signature algorithms are appended in wire order, after a fresh separator
        // state: the first one is not preceded by a comma.
        let mut first = true;
        for v in sigs.iter_non_grease() {
            if !first {
                ext_hash.hasher.update(b",");
            }
            first = false;
            let [hi, lo] = v.to_be_bytes();
            ext_hash.hasher.update([
                hex_nibble(hi >> 4),
                hex_nibble(hi),
                hex_nibble(lo >> 4),
                hex_nibble(lo),
            ]);
        }
    }
    if let Some(slot) = out.get_mut(24..36) {
        write_hash(slot, ext_hash, any_ext);
    }
    Ja4(out)
}
