//! QUIC Initial packets (RFC 9000 17.2, RFC 9001 5, RFC 9369): long headers,
//! Initial key derivation from the Destination Connection ID, header-protection
//! removal, AES-128-GCM decryption into a caller buffer, and the frames an Initial
//! may carry. CRYPTO frames feed a [`HelloAssembler`] in
//! [`StreamKind::QuicCrypto`](crate::assembler::StreamKind) mode, which reassembles
//! a ClientHello split over several Initials (as Chromium sends it).
//!
//! Header and frame parsing are always available; decryption needs the `quic`
//! feature (on by default).

use crate::error::Error;
use crate::reader::Reader;

/// QUIC version 1 (RFC 9000).
pub const VERSION_1: u32 = 0x0000_0001;
/// QUIC version 2 (RFC 9369).
pub const VERSION_2: u32 = 0x6b33_43cf;
/// Longest connection id of QUIC v1/v2.
pub const MAX_CID_LEN: usize = 20;
/// Length of the AEAD tag.
pub const TAG_LEN: usize = 16;

/// Long-header packet types, decoded per version (v2 permutes the type bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketType {
    /// Initial.
    Initial,
    /// 0-RTT.
    ZeroRtt,
    /// Handshake.
    Handshake,
    /// Retry.
    Retry,
}

impl PacketType {
    fn from_bits(version: u32, bits: u8) -> Option<Self> {
        let v1 = match version {
            VERSION_1 => bits,
            // RFC 9369 3.2: Initial 0b01, 0-RTT 0b10, Handshake 0b11, Retry 0b00.
            VERSION_2 => bits.wrapping_add(3) & 3,
            _ => return None,
        };
        Some(match v1 {
            0 => Self::Initial,
            1 => Self::ZeroRtt,
            2 => Self::Handshake,
            _ => Self::Retry,
        })
    }
}

/// A QUIC long header, still header-protected (the packet number is not known yet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LongHeader<'a> {
    /// The first byte as received (its low bits are protected).
    pub first_byte: u8,
    /// The version field.
    pub version: u32,
    /// The packet type, if the version is one this crate knows.
    pub packet_type: Option<PacketType>,
    /// Destination Connection ID.
    pub dcid: &'a [u8],
    /// Source Connection ID.
    pub scid: &'a [u8],
    /// The token (Initial packets only; empty otherwise).
    pub token: &'a [u8],
    /// Offset of the (protected) packet number from the start of the packet.
    pub pn_offset: usize,
    /// Length of the whole packet, so the next coalesced packet starts here.
    pub packet_len: usize,
}

impl<'a> LongHeader<'a> {
    /// Parses the long header at the start of `data` (a datagram or the rest of one
    /// after earlier coalesced packets).
    pub fn parse(data: &'a [u8]) -> Result<Self, Error> {
        let mut r = Reader::new(data);
        let first_byte = r.u8()?;
        if first_byte & 0x80 == 0 {
            return Err(Error::QuicShortHeader);
        }
        let version = r.u32()?;
        let dcid = cid(&mut r)?;
        let scid = cid(&mut r)?;
        if version != VERSION_1 && version != VERSION_2 {
            // Version negotiation and unknown versions: the rest of the layout is
            // not known, so nothing more can be read.
            return Err(Error::QuicUnsupportedVersion { version });
        }
        if first_byte & 0x40 == 0 {
            return Err(Error::QuicFixedBitZero);
        }
        let packet_type = PacketType::from_bits(version, (first_byte >> 4) & 3);
        let mut token: &[u8] = &[];
        match packet_type {
            Some(PacketType::Initial) => {
                let at = r.offset();
                let len = r.varint()?;
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                if len > r.remaining() {
                    return Err(Error::BadLength {
                        field: "token",
                        at,
                        length: len,
                        available: r.remaining(),
                    });
                }
                token = r.take(len)?;
            }
            Some(PacketType::Retry) => {
                // A Retry has no length field and fills the rest of the datagram.
                return Ok(Self {
                    first_byte,
                    version,
                    packet_type,
                    dcid,
                    scid,
                    token: r.rest(),
                    pn_offset: data.len(),
                    packet_len: data.len(),
                });
            }
            _ => {}
        }
        let at = r.offset();
        let length = usize::try_from(r.varint()?).unwrap_or(usize::MAX);
        let pn_offset = r.offset();
        if length > r.remaining() {
            return Err(Error::BadLength {
                field: "packet length",
                at,
                length,
                available: r.remaining(),
            });
        }
        Ok(Self {
            first_byte,
            version,
            packet_type,
            dcid,
            scid,
            token,
            pn_offset,
            packet_len: pn_offset.saturating_add(length),
        })
    }
}

fn cid<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], Error> {
    let at = r.offset();
    let len = usize::from(r.u8()?);
    if len > MAX_CID_LEN {
        return Err(Error::QuicConnectionIdTooLong { length: len, at });
    }
    r.take(len)
}

/// A cheap test of whether a UDP payload starts with a QUIC v1 or v2 Initial packet
/// header. Lets a flow tracker recognise QUIC by content on any port.
pub fn looks_like_initial(datagram: &[u8]) -> bool {
    matches!(
        LongHeader::parse(datagram),
        Ok(LongHeader {
            packet_type: Some(PacketType::Initial),
            ..
        })
    )
}

/// A frame of an Initial packet's payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// One or more PADDING bytes.
    Padding {
        /// How many.
        len: usize,
    },
    /// PING.
    Ping,
    /// ACK or ACK_ECN (contents skipped).
    Ack,
    /// CRYPTO: a piece of the handshake stream.
    Crypto {
        /// Stream offset of `data`.
        offset: u64,
        /// The bytes.
        data: &'a [u8],
    },
    /// CONNECTION_CLOSE (transport or application; contents skipped).
    ConnectionClose,
}

/// Walks the frames of a decrypted Initial payload. Yields an error and stops at a
/// frame type not allowed in Initials (RFC 9000 12.4) or at a malformed frame.
#[derive(Clone, Debug)]
pub struct Frames<'a> {
    r: Reader<'a>,
    done: bool,
}

impl<'a> Frames<'a> {
    /// Frames of `payload`.
    pub fn new(payload: &'a [u8]) -> Self {
        Self {
            r: Reader::new(payload),
            done: false,
        }
    }

    fn frame(&mut self) -> Result<Frame<'a>, Error> {
        let at = self.r.offset();
        let frame_type = self.r.varint()?;
        match frame_type {
            0x00 => {
                let zeros = self.r.rest().iter().take_while(|&&b| b == 0).count();
                self.r.take(zeros)?;
                Ok(Frame::Padding {
                    len: zeros.saturating_add(1),
                })
            }
            0x01 => Ok(Frame::Ping),
            0x02 | 0x03 => {
                self.r.varint()?; // largest acknowledged
                self.r.varint()?; // ack delay
                let ranges = self.r.varint()?;
                self.r.varint()?; // first range
                let mut left = ranges;
                // Each range takes at least two bytes, so a bogus count ends at the
                // payload's end with Truncated instead of looping long.
                while left > 0 {
                    self.r.varint()?;
                    self.r.varint()?;
                    left = left.saturating_sub(1);
                }
                if frame_type == 0x03 {
                    self.r.varint()?;
                    self.r.varint()?;
                    self.r.varint()?;
                }
                Ok(Frame::Ack)
            }
            0x06 => {
                let offset = self.r.varint()?;
                let len_at = self.r.offset();
                let len = usize::try_from(self.r.varint()?).unwrap_or(usize::MAX);
                if len > self.r.remaining() {
                    return Err(Error::BadLength {
                        field: "CRYPTO frame",
                        at: len_at,
                        length: len,
                        available: self.r.remaining(),
                    });
                }
                let data = self.r.take(len)?;
                Ok(Frame::Crypto { offset, data })
            }
            0x1c | 0x1d => {
                self.r.varint()?; // error code
                if frame_type == 0x1c {
                    self.r.varint()?; // frame type
                }
                let len = usize::try_from(self.r.varint()?).unwrap_or(usize::MAX);
                self.r.take(len)?;
                Ok(Frame::ConnectionClose)
            }
            other => Err(Error::QuicUnexpectedFrame {
                frame_type: other,
                at,
            }),
        }
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<Frame<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.r.is_empty() {
            return None;
        }
        let item = self.frame();
        if item.is_err() {
            self.done = true;
        }
        Some(item)
    }
}

#[cfg(feature = "quic")]
pub use crypto::*;

#[cfg(feature = "quic")]
mod crypto {
    use aes::Aes128;
    use aes::cipher::{BlockEncrypt, KeyInit};
    use aes_gcm::Aes128Gcm;
    use aes_gcm::aead::AeadInPlace;
    use hkdf::Hkdf;
    use sha2::Sha256;

    use super::{Frame, Frames, LongHeader, PacketType, TAG_LEN, VERSION_1, VERSION_2};
    use crate::assembler::{HelloAssembler, Progress};
    use crate::error::Error;

    const SALT_V1: [u8; 20] = [
        0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c,
        0xad, 0xcc, 0xbb, 0x7f, 0x0a,
    ];
    const SALT_V2: [u8; 20] = [
        0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d,
        0xcb, 0xf9, 0xbd, 0x2e, 0xd9,
    ];

    /// Which side's Initial keys.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Side {
        /// Packets the client sends.
        Client,
        /// Packets the server sends.
        Server,
    }

    /// AEAD and header-protection keys of one direction of Initial packets.
    #[derive(Clone, Copy, PartialEq, Eq)]
    pub struct InitialKeys {
        /// AEAD key.
        pub key: [u8; 16],
        /// AEAD IV.
        pub iv: [u8; 12],
        /// Header-protection key.
        pub hp: [u8; 16],
    }

    impl core::fmt::Debug for InitialKeys {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            // Public values derivable from the DCID, but no reason to print them.
            f.write_str("InitialKeys { .. }")
        }
    }

    /// HKDF-Expand-Label (RFC 8446 7.1) with an empty context.
    fn expand_label(prk: &Hkdf<Sha256>, label: &[u8], out: &mut [u8]) -> Result<(), Error> {
        let mut info = [0u8; 32];
        let full = 6usize.saturating_add(label.len());
        let (Ok(out_len), Ok(full_len)) = (u16::try_from(out.len()), u8::try_from(full)) else {
            return Err(Error::QuicDecryptFailed);
        };
        let mut w = 0usize;
        let parts: [&[u8]; 4] = [&out_len.to_be_bytes(), &[full_len], b"tls13 ", label];
        for part in parts.into_iter().chain([&[0u8][..]]) {
            let end = w.saturating_add(part.len());
            let dst = info.get_mut(w..end).ok_or(Error::QuicDecryptFailed)?;
            dst.copy_from_slice(part);
            w = end;
        }
        let info = info.get(..w).ok_or(Error::QuicDecryptFailed)?;
        prk.expand(info, out).map_err(|_| Error::QuicDecryptFailed)
    }

    impl InitialKeys {
        /// Derives the Initial keys of `side` from the client's first Destination
        /// Connection ID (RFC 9001 5.2, RFC 9369 3.3).
        pub fn derive(version: u32, dcid: &[u8], side: Side) -> Result<Self, Error> {
            let (salt, key_label, iv_label, hp_label): (&[u8], &[u8], &[u8], &[u8]) = match version
            {
                VERSION_1 => (&SALT_V1, b"quic key", b"quic iv", b"quic hp"),
                VERSION_2 => (&SALT_V2, b"quicv2 key", b"quicv2 iv", b"quicv2 hp"),
                _ => return Err(Error::QuicUnsupportedVersion { version }),
            };
            let initial = Hkdf::<Sha256>::new(Some(salt), dcid);
            let mut secret = [0u8; 32];
            let side_label: &[u8] = match side {
                Side::Client => b"client in",
                Side::Server => b"server in",
            };
            expand_label(&initial, side_label, &mut secret)?;
            let prk = Hkdf::<Sha256>::from_prk(&secret).map_err(|_| Error::QuicDecryptFailed)?;
            let mut keys = Self {
                key: [0; 16],
                iv: [0; 12],
                hp: [0; 16],
            };
            expand_label(&prk, key_label, &mut keys.key)?;
            expand_label(&prk, iv_label, &mut keys.iv)?;
            expand_label(&prk, hp_label, &mut keys.hp)?;
            Ok(keys)
        }
    }

    /// A decrypted Initial packet.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Initial<'p, 'b> {
        /// The header as parsed (borrowing the datagram).
        pub header: LongHeader<'p>,
        /// The packet number (Initials start at 0, so the truncated value is the
        /// full one for any packet a tap sees first; RFC 9000 A.3 with no
        /// acknowledged packet).
        pub packet_number: u64,
        /// The decrypted frames (borrowing the caller's buffer).
        pub payload: &'b [u8],
    }

    /// Keys of one direction ready for use: the AES key schedules and the GHASH key
    /// are computed once, with the keys.
    struct ReadyKeys {
        iv: [u8; 12],
        aead: Aes128Gcm,
        hp: Aes128,
    }

    impl ReadyKeys {
        fn derive(version: u32, dcid: &[u8], side: Side) -> Result<Self, Error> {
            let keys = InitialKeys::derive(version, dcid, side)?;
            Ok(Self {
                iv: keys.iv,
                aead: Aes128Gcm::new(&keys.key.into()),
                hp: Aes128::new(&keys.hp.into()),
            })
        }
    }

    struct CachedKeys {
        version: u32,
        side: Side,
        dcid_len: usize,
        dcid: [u8; super::MAX_CID_LEN],
        keys: ReadyKeys,
    }

    /// Slots of an [`InitialKeyCache`].
    const KEY_CACHE_SLOTS: usize = 16;

    /// Initial keys of recently seen Destination Connection IDs. A client sends all
    /// its Initials with the DCID of its first one (until a Retry), and Chromium
    /// splits its ClientHello over two or more, so an observer decrypting them would
    /// otherwise run the same HKDF derivation and AES key schedules once per packet;
    /// that derivation costs more than decrypting the packet. Pure memoisation: an
    /// entry is used only for the same version, side and DCID bytes. Fixed size, no
    /// allocation.
    pub struct InitialKeyCache {
        slots: [Option<CachedKeys>; KEY_CACHE_SLOTS],
    }

    impl Default for InitialKeyCache {
        fn default() -> Self {
            Self::new()
        }
    }

    impl core::fmt::Debug for InitialKeyCache {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            let used = self.slots.iter().filter(|s| s.is_some()).count();
            write!(
                f,
                "InitialKeyCache {{ {used} of {KEY_CACHE_SLOTS} slots used }}"
            )
        }
    }

    impl InitialKeyCache {
        /// An empty cache.
        pub fn new() -> Self {
            Self {
                slots: core::array::from_fn(|_| None),
            }
        }

        fn get(&mut self, version: u32, dcid: &[u8], side: Side) -> Result<&ReadyKeys, Error> {
            // Connection IDs are random (RFC 9000 5.1): any few bytes index well, and
            // a chosen collision only evicts.
            let mix = dcid.iter().take(4).fold(dcid.len(), |h, &b| {
                (h << 5) ^ h.rotate_right(3) ^ usize::from(b)
            });
            let index = mix % KEY_CACHE_SLOTS;
            let slot = self.slots.get_mut(index).ok_or(Error::QuicDecryptFailed)?;
            let hit = slot.as_ref().is_some_and(|c| {
                c.version == version && c.side == side && c.dcid.get(..c.dcid_len) == Some(dcid)
            });
            if !hit {
                let mut id = [0u8; super::MAX_CID_LEN];
                let dst = id
                    .get_mut(..dcid.len())
                    .ok_or(Error::QuicConnectionIdTooLong {
                        length: dcid.len(),
                        at: 5,
                    })?;
                for (d, s) in dst.iter_mut().zip(dcid) {
                    *d = *s;
                }
                *slot = Some(CachedKeys {
                    version,
                    side,
                    dcid_len: dcid.len(),
                    dcid: id,
                    keys: ReadyKeys::derive(version, dcid, side)?,
                });
            }
            slot.as_ref()
                .map(|c| &c.keys)
                .ok_or(Error::QuicDecryptFailed)
        }
    }

    /// Removes header protection from and decrypts the Initial packet at the start
    /// of `data`, with keys of `side` derived from the packet's own DCID (client
    /// Initials keep the original DCID until a Retry). The packet is copied into
    /// `out` (which must hold the whole packet) and decrypted there; `data` is not
    /// changed. Use `header.packet_len` to find the next coalesced packet.
    pub fn decrypt_initial<'p, 'b>(
        data: &'p [u8],
        side: Side,
        out: &'b mut [u8],
    ) -> Result<Initial<'p, 'b>, Error> {
        decrypt(data, side, out, None)
    }

    /// [`decrypt_initial`] with keys kept in `cache` for the next packet with the
    /// same DCID.
    pub fn decrypt_initial_cached<'p, 'b>(
        data: &'p [u8],
        side: Side,
        out: &'b mut [u8],
        cache: &mut InitialKeyCache,
    ) -> Result<Initial<'p, 'b>, Error> {
        decrypt(data, side, out, Some(cache))
    }

    fn decrypt<'p, 'b>(
        data: &'p [u8],
        side: Side,
        out: &'b mut [u8],
        cache: Option<&mut InitialKeyCache>,
    ) -> Result<Initial<'p, 'b>, Error> {
        let header = LongHeader::parse(data)?;
        if header.packet_type != Some(PacketType::Initial) {
            return Err(Error::QuicNotInitial {
                packet_type: (header.first_byte >> 4) & 3,
            });
        }
        let packet = data.get(..header.packet_len).ok_or(Error::Truncated {
            needed: header.packet_len.saturating_sub(data.len()),
            at: data.len(),
        })?;
        let fresh;
        let keys = match cache {
            Some(cache) => cache.get(header.version, header.dcid, side)?,
            None => {
                fresh = ReadyKeys::derive(header.version, header.dcid, side)?;
                &fresh
            }
        };
        let available = out.len();
        let buf = out.get_mut(..packet.len()).ok_or(Error::BufferTooSmall {
            needed: packet.len(),
            available,
        })?;
        buf.copy_from_slice(packet);

        // RFC 9001 5.4.2: the sample starts 4 bytes after the packet number's start,
        // whatever the packet number's length.
        let sample_at = header.pn_offset.saturating_add(4);
        let sample_end = sample_at.saturating_add(16);
        let sample: [u8; 16] = buf
            .get(sample_at..sample_end)
            .and_then(|s| s.try_into().ok())
            .ok_or(Error::Truncated {
                needed: sample_end.saturating_sub(buf.len()),
                at: sample_at,
            })?;
        let mut mask = aes::Block::from(sample);
        keys.hp.encrypt_block(&mut mask);
        let first = buf.first_mut().ok_or(Error::QuicDecryptFailed)?;
        *first ^= mask.first().copied().unwrap_or(0) & 0x0f;
        let pn_len = usize::from(*first & 0x03).saturating_add(1);
        let pn_end = header.pn_offset.saturating_add(pn_len);
        let pn_bytes = buf
            .get_mut(header.pn_offset..pn_end)
            .ok_or(Error::QuicDecryptFailed)?;
        let mut packet_number = 0u64;
        for (b, m) in pn_bytes.iter_mut().zip(mask.iter().skip(1)) {
            *b ^= *m;
            packet_number = (packet_number << 8) | u64::from(*b);
        }

        let mut nonce = keys.iv;
        for (n, p) in nonce.iter_mut().skip(4).zip(packet_number.to_be_bytes()) {
            *n ^= p;
        }
        let (aad, rest) = buf
            .split_at_mut_checked(pn_end)
            .ok_or(Error::QuicDecryptFailed)?;
        let ct_len = rest.len().checked_sub(TAG_LEN).ok_or(Error::Truncated {
            needed: TAG_LEN.saturating_sub(rest.len()),
            at: pn_end,
        })?;
        let (ciphertext, tag) = rest
            .split_at_mut_checked(ct_len)
            .ok_or(Error::QuicDecryptFailed)?;
        let tag: [u8; TAG_LEN] = (&*tag).try_into().map_err(|_| Error::QuicDecryptFailed)?;
        keys.aead
            .decrypt_in_place_detached(&nonce.into(), aad, ciphertext, &tag.into())
            .map_err(|_| Error::QuicDecryptFailed)?;
        Ok(Initial {
            header,
            packet_number,
            payload: ciphertext,
        })
    }

    /// Builds and protects a client Initial packet carrying `frames` (already
    /// encoded, padding included) into `out`, returning its length: the inverse of
    /// [`decrypt_initial`]. For test fixtures, fuzzing and capture generators; a
    /// passive observer never sends packets. Uses a 4-byte packet number and an
    /// empty token.
    pub fn seal_client_initial(
        version: u32,
        dcid: &[u8],
        scid: &[u8],
        packet_number: u32,
        frames: &[u8],
        out: &mut [u8],
    ) -> Result<usize, Error> {
        let type_bits: u8 = match version {
            VERSION_1 => 0,
            VERSION_2 => 1,
            _ => return Err(Error::QuicUnsupportedVersion { version }),
        };
        let (Ok(dcid_len), Ok(scid_len)) = (u8::try_from(dcid.len()), u8::try_from(scid.len()))
        else {
            return Err(Error::QuicConnectionIdTooLong {
                length: dcid.len().max(scid.len()),
                at: 5,
            });
        };
        if dcid.len() > super::MAX_CID_LEN || scid.len() > super::MAX_CID_LEN {
            return Err(Error::QuicConnectionIdTooLong {
                length: dcid.len().max(scid.len()),
                at: 5,
            });
        }
        let length = frames.len().saturating_add(4).saturating_add(TAG_LEN);
        let length16 =
            u16::try_from(length)
                .ok()
                .filter(|l| *l < 0x4000)
                .ok_or(Error::BufferTooSmall {
                    needed: length,
                    available: 0x3fff,
                })?;
        let keys = InitialKeys::derive(version, dcid, Side::Client)?;
        let first = 0xc3 | (type_bits << 4);
        let version_bytes = version.to_be_bytes();
        let length_bytes = (length16 | 0x4000).to_be_bytes();
        let pn_bytes = packet_number.to_be_bytes();
        let parts: [&[u8]; 10] = [
            &[first],
            &version_bytes,
            &[dcid_len],
            dcid,
            &[scid_len],
            scid,
            &[0],
            &length_bytes,
            &pn_bytes,
            frames,
        ];
        let total = parts
            .iter()
            .fold(0usize, |n, p| n.saturating_add(p.len()))
            .saturating_add(TAG_LEN);
        let available = out.len();
        let buf = out.get_mut(..total).ok_or(Error::BufferTooSmall {
            needed: total,
            available,
        })?;
        let mut w = 0usize;
        for part in parts {
            let end = w.saturating_add(part.len());
            buf.get_mut(w..end)
                .ok_or(Error::QuicDecryptFailed)?
                .copy_from_slice(part);
            w = end;
        }
        let pn_offset = w
            .saturating_sub(frames.len())
            .saturating_sub(pn_bytes.len());
        let header_len = w.saturating_sub(frames.len());
        let mut nonce = keys.iv;
        for (n, p) in nonce.iter_mut().skip(8).zip(pn_bytes) {
            *n ^= p;
        }
        let (aad, rest) = buf
            .split_at_mut_checked(header_len)
            .ok_or(Error::QuicDecryptFailed)?;
        let (plain, tag_out) = rest
            .split_at_mut_checked(frames.len())
            .ok_or(Error::QuicDecryptFailed)?;
        let tag = Aes128Gcm::new(&keys.key.into())
            .encrypt_in_place_detached(&nonce.into(), aad, plain)
            .map_err(|_| Error::QuicDecryptFailed)?;
        tag_out.copy_from_slice(&tag);

        let sample_at = pn_offset.saturating_add(4);
        let sample: [u8; 16] = buf
            .get(sample_at..sample_at.saturating_add(16))
            .and_then(|s| s.try_into().ok())
            .ok_or(Error::QuicDecryptFailed)?;
        let mut mask = aes::Block::from(sample);
        Aes128::new(&keys.hp.into()).encrypt_block(&mut mask);
        if let Some(b) = buf.first_mut() {
            *b ^= mask.first().copied().unwrap_or(0) & 0x0f;
        }
        if let Some(pn) = buf.get_mut(pn_offset..pn_offset.saturating_add(4)) {
            for (b, m) in pn.iter_mut().zip(mask.iter().skip(1)) {
                *b ^= *m;
            }
        }
        Ok(total)
    }

    /// What one datagram contributed.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct DatagramSummary {
        /// Initial packets decrypted.
        pub initials: usize,
        /// CRYPTO frames fed to the assembler.
        pub crypto_frames: usize,
        /// Coalesced packets skipped (0-RTT, Handshake, undecryptable).
        pub skipped: usize,
        /// The first Initial's packet number, if any.
        pub first_packet_number: Option<u64>,
    }

    /// Decrypts every client Initial in a UDP datagram (coalesced packets included)
    /// and feeds their CRYPTO frames to `assembler`, which must be in
    /// [`StreamKind::QuicCrypto`](crate::assembler::StreamKind) mode. `scratch` must
    /// hold the largest packet (1500 bytes for common paths, 65527 for any).
    ///
    /// Fails when the first packet is not a decryptable client Initial (so a
    /// datagram that is not QUIC is an error, not silence) or when the CRYPTO data
    /// breaks the assembler;
    /// problems in later coalesced packets are counted in
    /// [`DatagramSummary::skipped`]. A frame not allowed in Initials ends that
    /// packet's walk, keeping the CRYPTO data before it.
    pub fn feed_client_datagram<'a>(
        datagram: &[u8],
        scratch: &mut [u8],
        assembler: &'a mut HelloAssembler,
    ) -> Result<(DatagramSummary, Progress<'a>), Error> {
        feed(datagram, scratch, assembler, None)
    }

    /// [`feed_client_datagram`] with Initial keys kept in `cache` across datagrams
    /// (and flows): the same results, without re-deriving keys for every Initial of
    /// a connection.
    pub fn feed_client_datagram_cached<'a>(
        datagram: &[u8],
        scratch: &mut [u8],
        assembler: &'a mut HelloAssembler,
        cache: &mut InitialKeyCache,
    ) -> Result<(DatagramSummary, Progress<'a>), Error> {
        feed(datagram, scratch, assembler, Some(cache))
    }

    fn feed<'a>(
        datagram: &[u8],
        scratch: &mut [u8],
        assembler: &'a mut HelloAssembler,
        mut cache: Option<&mut InitialKeyCache>,
    ) -> Result<(DatagramSummary, Progress<'a>), Error> {
        let mut summary = DatagramSummary::default();
        let mut rest = datagram;
        let mut first = true;
        let mut failure = None;
        while let Some(&b) = rest.first() {
            // Anything not a long header (a short-header packet, or zero padding
            // after the last packet) ends the coalesced sequence.
            if b & 0xc0 != 0xc0 {
                if first {
                    return Err(if b & 0x80 == 0 {
                        Error::QuicShortHeader
                    } else {
                        Error::QuicFixedBitZero
                    });
                }
                break;
            }
            let next = match decrypt(rest, Side::Client, scratch, cache.as_deref_mut()) {
                Ok(initial) => {
                    summary.initials = summary.initials.saturating_add(1);
                    if summary.first_packet_number.is_none() {
                        summary.first_packet_number = Some(initial.packet_number);
                    }
                    for frame in Frames::new(initial.payload) {
                        match frame {
                            Ok(Frame::Crypto { offset, data }) => {
                                summary.crypto_frames = summary.crypto_frames.saturating_add(1);
                                if let Err(e) = assembler.push(offset, data) {
                                    failure = Some(e);
                                }
                            }
                            Ok(_) => {}
                            Err(_) => break,
                        }
                    }
                    initial.header.packet_len
                }
                Err(e) if first => return Err(e),
                Err(_) => {
                    summary.skipped = summary.skipped.saturating_add(1);
                    match LongHeader::parse(rest) {
                        Ok(h) => h.packet_len,
                        Err(_) => break,
                    }
                }
            };
            first = false;
            if next == 0 {
                break;
            }
            rest = rest.get(next..).unwrap_or_default();
        }
        if let Some(e) = failure {
            return Err(e);
        }
        // An empty push reports the assembler's state without changing it.
        let progress = assembler.push(0, &[])?;
        Ok((summary, progress))
    }
}
