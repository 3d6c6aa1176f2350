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

/// Sorts the at most 128 values of one list by rank: each value's place is the number
/// of values smaller than it (ties by position), counted without branches, which the
/// compiler vectorises. Insertion sort mispredicted a branch per comparison on the
/// shuffled extension lists browsers send and was a tenth of `toktra pcap`'s time.
/// Not `sort_unstable`: core's sort keeps a panic path (its Ord-violation check) that
/// survives LTO, and the kernel driver links with a check that fails on any surviving
/// panic path.
fn sort_small(values: &[u16], sorted: &mut [u16]) {
    for (i, &v) in values.iter().enumerate() {
        // split_at's bounds panic survives LTO here; the checked form has none.
        let Some((before, after)) = values.split_at_checked(i) else {
            continue;
        };
        // At most 128 values: the counts cannot wrap, and 16-bit counters put
        // twice as many comparisons in a vector register as 32-bit ones.
        let below = before
            .iter()
            .fold(0u16, |n, &x| n.wrapping_add(u16::from(x <= v)));
        let rank = after
            .iter()
            .fold(below, |n, &x| n.wrapping_add(u16::from(x < v)));
        if let Some(slot) = sorted.get_mut(usize::from(rank)) {
            *slot = v;
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
        let mut sorted = [0u16; SMALL];
        let sorted = sorted.get_mut(..n).unwrap_or_default();
        sort_small(small.get(..n).unwrap_or_default(), sorted);
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

/// Longest list text ("1301,1302,...") built whole before hashing; a longer one (more
/// values than real clients send) streams into the hash as it grows.
const TEXT_LEN: usize = 256;

fn hex4(v: u16) -> [u8; 4] {
    let [hi, lo] = v.to_be_bytes();
    [
        hex_nibble(hi >> 4),
        hex_nibble(hi),
        hex_nibble(lo >> 4),
        hex_nibble(lo),
    ]
}

/// The text of one hashed JA4 part, collected in a fixed buffer so that SHA-256 sees
/// it in one call (a call per value was a fifth of `toktra pcap`'s time on a large
/// capture) and so that it can be memoised.
struct ListText {
    buf: [u8; TEXT_LEN],
    len: usize,
    /// Values pushed with [`ListText::push`] (the comma-separated ones).
    count: usize,
    /// Set once the text outgrew `buf`: what did not fit went into this hash.
    spilled: Option<Sha256>,
}

impl ListText {
    fn new() -> Self {
        Self {
            buf: [0; TEXT_LEN],
            len: 0,
            count: 0,
            spilled: None,
        }
    }

    fn append(&mut self, bytes: &[u8]) {
        let end = self.len.saturating_add(bytes.len());
        if end > TEXT_LEN {
            let hasher = self.spilled.get_or_insert_with(Sha256::new);
            hasher.update(self.buf.get(..self.len).unwrap_or_default());
            self.len = 0;
        }
        let end = self.len.saturating_add(bytes.len());
        match self.buf.get_mut(self.len..end) {
            Some(dst) => {
                // Element-wise: copy_from_slice keeps a length-mismatch panic path the
                // driver's link check refuses.
                for (d, s) in dst.iter_mut().zip(bytes) {
                    *d = *s;
                }
                self.len = end;
            }
            // Only a piece longer than the whole buffer (never: pieces are <= 5 bytes).
            None => self.spilled.get_or_insert_with(Sha256::new).update(bytes),
        }
    }

    fn push(&mut self, v: u16) {
        if self.count > 0 {
            self.append(b",");
        }
        self.append(&hex4(v));
        self.count = self.count.saturating_add(1);
    }

    /// Writes the first 12 hex digits of the text's SHA-256 into `out`.
    fn finish_into(&mut self, out: &mut [u8], memo: Option<&mut Ja4Memo>) {
        let text = self.buf.get(..self.len).unwrap_or_default();
        let hash = match (self.spilled.take(), memo) {
            (Some(mut hasher), _) => {
                hasher.update(text);
                truncated_hex(&hasher.finalize())
            }
            (None, Some(memo)) => memo.hash(text),
            (None, None) => truncated_hex(&Sha256::digest(text)),
        };
        for (o, h) in out.iter_mut().zip(hash) {
            *o = h;
        }
    }
}

/// Hex digits of a JA4 hash part.
const HASH_HEX_LEN: usize = 12;

fn truncated_hex(digest: &[u8]) -> [u8; HASH_HEX_LEN] {
    let mut out = [0u8; HASH_HEX_LEN];
    for (pair, byte) in out.chunks_exact_mut(2).zip(digest) {
        if let [a, b] = pair {
            *a = hex_nibble(byte >> 4);
            *b = hex_nibble(*byte);
        }
    }
    out
}

/// Slots of a [`Ja4Memo`].
const MEMO_SLOTS: usize = 64;

#[derive(Clone, Copy)]
struct MemoSlot {
    /// Length of `text`; `u16::MAX` for an empty slot (no text is that long).
    len: u16,
    text: [u8; TEXT_LEN],
    hash: [u8; HASH_HEX_LEN],
}

/// Remembers the hashes of recently seen JA4 list texts, so that a capture of many
/// connections from a few client stacks hashes each distinct cipher and extension
/// list once. Pure memoisation: an entry is used only when its whole text equals the
/// new one, so results are identical to [`ja4`]'s whatever the input (an attacker
/// can only make it miss). Fixed size (about 17 KiB), no allocation; box it.
#[derive(Clone)]
pub struct Ja4Memo {
    slots: [MemoSlot; MEMO_SLOTS],
    lists: [ListsSlot; MEMO_SLOTS],
}

/// Values of a [`ListsSlot`] key: three lists of a real hello (about 16 ciphers, 16
/// extensions, 10 signature algorithms) and their lengths fit with room to spare.
const LISTS_KEY_LEN: usize = 96;

/// Both JA4 hashes of a hello, keyed by exactly what they hash: its cipher suites
/// and extension types sorted, and its signature algorithms in wire order (GREASE
/// left out), so a hit is exact. It saves the text and the hashing, also for clients
/// that permute their extensions on every connection, as Chromium does.
#[derive(Clone, Copy)]
struct ListsSlot {
    /// Values used in `key`; `u16::MAX` for an empty slot.
    len: u16,
    key: [u16; LISTS_KEY_LEN],
    hashes: [u8; 2 * HASH_HEX_LEN],
}

impl Default for Ja4Memo {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Ja4Memo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let used = self.slots.iter().filter(|s| s.len != u16::MAX).count();
        let lists = self.lists.iter().filter(|s| s.len != u16::MAX).count();
        write!(
            f,
            "Ja4Memo {{ {used} of {MEMO_SLOTS} text slots, {lists} of {MEMO_SLOTS} list slots used }}"
        )
    }
}

impl Ja4Memo {
    /// An empty memo.
    pub const fn new() -> Self {
        Self {
            slots: [MemoSlot {
                len: u16::MAX,
                text: [0; TEXT_LEN],
                hash: [0; HASH_HEX_LEN],
            }; MEMO_SLOTS],
            lists: [ListsSlot {
                len: u16::MAX,
                key: [0; LISTS_KEY_LEN],
                hashes: [0; 2 * HASH_HEX_LEN],
            }; MEMO_SLOTS],
        }
    }

    /// The slot for `key`, and whether it holds `key`.
    fn lists_slot(&mut self, key: &[u16]) -> Option<(&mut ListsSlot, bool)> {
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for &v in key {
            h = (h ^ u64::from(v)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= h >> 29;
        let index = usize::try_from(h >> 58).unwrap_or(0) % MEMO_SLOTS;
        let slot = self.lists.get_mut(index)?;
        let hit = usize::from(slot.len) == key.len() && slot.key.get(..key.len()) == Some(key);
        Some((slot, hit))
    }

    fn hash(&mut self, text: &[u8]) -> [u8; HASH_HEX_LEN] {
        // Direct-mapped by a cheap mix of the text: a collision only evicts.
        let mut h = 0xcbf2_9ce4_8422_2325u64 ^ text.len() as u64;
        for chunk in text.chunks(8) {
            let mut word = [0u8; 8];
            for (w, c) in word.iter_mut().zip(chunk) {
                *w = *c;
            }
            h = (h ^ u64::from_le_bytes(word)).wrapping_mul(0x0000_0100_0000_01b3);
            h ^= h >> 29;
        }
        let index = usize::try_from(h >> 58).unwrap_or(0) % MEMO_SLOTS;
        let Some(slot) = self.slots.get_mut(index) else {
            return truncated_hex(&Sha256::digest(text));
        };
        let len = u16::try_from(text.len()).unwrap_or(u16::MAX);
        if slot.len == len && slot.text.get(..text.len()) == Some(text) {
            return slot.hash;
        }
        let hash = truncated_hex(&Sha256::digest(text));
        if let Some(dst) = slot.text.get_mut(..text.len()) {
            for (d, s) in dst.iter_mut().zip(text) {
                *d = *s;
            }
            slot.len = len;
            slot.hash = hash;
        }
        hash
    }
}

/// Computes the JA4 fingerprint of a ClientHello.
pub fn ja4(hello: &ClientHello<'_>, transport: Transport) -> Ja4 {
    compute(hello, transport, None)
}

/// [`ja4`] with a memo of list hashes: the same result, cheaper when many hellos
/// share their cipher and extension lists (as connections of one client stack do).
pub fn ja4_memo(hello: &ClientHello<'_>, transport: Transport, memo: &mut Ja4Memo) -> Ja4 {
    compute(hello, transport, Some(memo))
}

fn compute(hello: &ClientHello<'_>, transport: Transport, mut memo: Option<&mut Ja4Memo>) -> Ja4 {
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

    let sigs = hello.signature_algorithms().unwrap_or_default();
    let kept = exts
        .types()
        .filter(|&t| !is_grease(t) && t != ext::SERVER_NAME && t != ext::ALPN);
    // The three lists the hashes depend on, each after its length.
    let mut key = [0u16; LISTS_KEY_LEN];
    let mut key_len = 0usize;
    if memo.is_some() {
        let mut fits = true;
        let lists: [&mut dyn Iterator<Item = u16>; 3] = [
            &mut ciphers.iter_non_grease(),
            &mut kept.clone(),
            &mut sigs.iter_non_grease(),
        ];
        for (index, list) in lists.into_iter().enumerate() {
            let len_at = key_len;
            key_len = key_len.saturating_add(1);
            let mut n = 0u16;
            for v in list {
                match key.get_mut(key_len) {
                    Some(slot) => *slot = v,
                    None => fits = false,
                }
                key_len = key_len.saturating_add(1);
                n = n.saturating_add(1);
            }
            if let Some(slot) = key.get_mut(len_at) {
                *slot = n;
            }
            // JA4 hashes ciphers and extensions sorted, so the key holds them sorted
            // too: a client that permutes its extensions (Chromium, every
            // connection) then hits as well. Signature algorithms stay in wire order.
            if index < 2
                && fits
                && let Some(segment) = key.get(len_at.saturating_add(1)..key_len)
            {
                let mut wire = [0u16; LISTS_KEY_LEN];
                let count = segment.len();
                for (w, v) in wire.iter_mut().zip(segment) {
                    *w = *v;
                }
                if let (Some(src), Some(dst)) = (
                    wire.get(..count),
                    key.get_mut(len_at.saturating_add(1)..key_len),
                ) {
                    sort_small(src, dst);
                }
            }
        }
        if !fits {
            key_len = usize::MAX;
        }
    }
    let lists_key = key.get(..key_len);
    if let (Some(m), Some(k)) = (memo.as_deref_mut(), lists_key)
        && let Some((slot, true)) = m.lists_slot(k)
    {
        for (o, h) in out
            .iter_mut()
            .skip(11)
            .zip(slot.hashes.iter().take(HASH_HEX_LEN))
        {
            *o = *h;
        }
        for (o, h) in out
            .iter_mut()
            .skip(24)
            .zip(slot.hashes.iter().skip(HASH_HEX_LEN))
        {
            *o = *h;
        }
        if let Some(sep) = out.get_mut(23) {
            *sep = b'_';
        }
        return Ja4(out);
    }

    let mut cipher_text = ListText::new();
    for_each_sorted(ciphers.iter_non_grease(), |v| cipher_text.push(v));
    if let Some(slot) = out.get_mut(11..23) {
        if cipher_text.count > 0 {
            cipher_text.finish_into(slot, memo.as_deref_mut());
        } else {
            slot.fill(b'0');
        }
    }
    if let Some(sep) = out.get_mut(23) {
        *sep = b'_';
    }

    let mut ext_text = ListText::new();
    for_each_sorted(kept, |v| ext_text.push(v));
    let any_ext = ext_text.count > 0;
    if any_ext && sigs.iter_non_grease().next().is_some() {
        ext_text.append(b"_");
        // Signature algorithms follow in wire order, comma-separated among themselves.
        for (i, v) in sigs.iter_non_grease().enumerate() {
            if i > 0 {
                ext_text.append(b",");
            }
            ext_text.append(&hex4(v));
        }
    }
    if let Some(slot) = out.get_mut(24..36) {
        if any_ext {
            ext_text.finish_into(slot, memo.as_deref_mut());
        } else {
            slot.fill(b'0');
        }
    }
    if let (Some(m), Some(k)) = (memo, lists_key)
        && let Some((slot, _)) = m.lists_slot(k)
        && let Some(dst) = slot.key.get_mut(..k.len())
        && let Ok(len) = u16::try_from(k.len())
    {
        for (d, v) in dst.iter_mut().zip(k) {
            *d = *v;
        }
        slot.len = len;
        for (h, o) in slot.hashes.iter_mut().zip(
            out.iter()
                .skip(11)
                .take(HASH_HEX_LEN)
                .chain(out.iter().skip(24)),
        ) {
            *h = *o;
        }
    }
    Ja4(out)
}
