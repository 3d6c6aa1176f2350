//! TLS record layer and ClientHello (RFC 8446 4.1.2, RFC 5246 7.4.1.2): a zero-copy
//! view whose accessors cannot fail, because [`ClientHello::parse`] validates every
//! structure it later hands out.

use crate::error::Error;
use crate::reader::Reader;

/// Record content type of handshake records.
pub const CONTENT_TYPE_HANDSHAKE: u8 = 22;
/// Handshake message type of a ClientHello.
pub const HANDSHAKE_CLIENT_HELLO: u8 = 1;
/// Length of a TLS record header.
pub const RECORD_HEADER_LEN: usize = 5;
/// The longest record payload RFC 8446 5.2 allows (2^14 + 256, for TLSCiphertext).
pub const MAX_RECORD_LEN: usize = 16384 + 256;

/// Extension type numbers this crate looks into.
pub mod ext {
    /// server_name (RFC 6066).
    pub const SERVER_NAME: u16 = 0x0000;
    /// supported_groups (RFC 8422 / RFC 8446).
    pub const SUPPORTED_GROUPS: u16 = 0x000a;
    /// signature_algorithms (RFC 8446).
    pub const SIGNATURE_ALGORITHMS: u16 = 0x000d;
    /// application_layer_protocol_negotiation (RFC 7301).
    pub const ALPN: u16 = 0x0010;
    /// supported_versions (RFC 8446).
    pub const SUPPORTED_VERSIONS: u16 = 0x002b;
    /// encrypted_client_hello (draft-ietf-tls-esni, the codepoint browsers send).
    pub const ENCRYPTED_CLIENT_HELLO: u16 = 0xfe0d;
}

/// Whether a cipher suite, extension type, group, version or signature algorithm is
/// one of the sixteen GREASE values of RFC 8701 (`0x0a0a`, `0x1a1a`, ... `0xfafa`).
pub const fn is_grease(value: u16) -> bool {
    value & 0x0f0f == 0x0a0a && (value >> 8) == (value & 0xff)
}

/// A human name for a TLS protocol version number (`0x0304` → `"TLS 1.3"`).
pub const fn version_name(version: u16) -> &'static str {
    match version {
        0x0304 => "TLS 1.3",
        0x0303 => "TLS 1.2",
        0x0302 => "TLS 1.1",
        0x0301 => "TLS 1.0",
        0x0300 => "SSL 3.0",
        0x0002 => "SSL 2.0",
        0xfeff => "DTLS 1.0",
        0xfefd => "DTLS 1.2",
        0xfefc => "DTLS 1.3",
        _ => "unknown",
    }
}

/// The 5-byte header of a TLS record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// Content type (22 = handshake).
    pub content_type: u8,
    /// Record-layer version (ignored by TLS 1.3 peers, usually 0x0301 or 0x0303).
    pub version: u16,
    /// Payload length.
    pub length: usize,
}

impl RecordHeader {
    /// Reads and checks a record header at the start of `bytes`: the major version
    /// must be 3 and the length within RFC limits. The content type is not checked.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        let content_type = r.u8()?;
        let version = r.u16()?;
        let length = usize::from(r.u16()?);
        if version >> 8 != 3 {
            return Err(Error::NotTls { version });
        }
        if length > MAX_RECORD_LEN {
            return Err(Error::RecordTooLong { length });
        }
        Ok(Self {
            content_type,
            version,
            length,
        })
    }
}

/// A cheap test of whether a TCP stream's first bytes look like the start of a TLS
/// ClientHello (handshake record, version 3.x, handshake type 1). Needs 6 bytes.
/// Lets a flow tracker recognise TLS by content on any port.
pub fn looks_like_client_hello(first_bytes: &[u8]) -> bool {
    matches!(
        first_bytes,
        [
            CONTENT_TYPE_HANDSHAKE,
            3,
            0..=4,
            _,
            _,
            HANDSHAKE_CLIENT_HELLO,
            ..
        ]
    )
}

/// A validated list of big-endian `u16` values (cipher suites, versions, groups,
/// signature algorithms), in wire order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct U16List<'a> {
    raw: &'a [u8],
}

impl<'a> U16List<'a> {
    fn parse(r: &mut Reader<'a>, prefix: usize, field: &'static str) -> Result<Self, Error> {
        let at = r.offset();
        let inner = r.vec(prefix, field)?;
        let raw = inner.rest();
        if raw.len() % 2 != 0 {
            return Err(Error::BadLength {
                field,
                at,
                length: raw.len(),
                available: raw.len(),
            });
        }
        Ok(Self { raw })
    }

    /// The values in wire order, GREASE included.
    pub fn iter(&self) -> impl Iterator<Item = u16> + Clone + 'a {
        self.raw.chunks_exact(2).map(|c| {
            u16::from_be_bytes([
                c.first().copied().unwrap_or(0),
                c.get(1).copied().unwrap_or(0),
            ])
        })
    }

    /// The values in wire order without GREASE.
    pub fn iter_non_grease(&self) -> impl Iterator<Item = u16> + Clone + 'a {
        self.iter().filter(|v| !is_grease(*v))
    }

    /// Number of values, GREASE included.
    pub fn len(&self) -> usize {
        self.raw.len() / 2
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The undecoded bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }
}

/// A validated ALPN protocol list (RFC 7301): non-empty ids, in the client's order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AlpnList<'a> {
    raw: &'a [u8],
}

impl<'a> AlpnList<'a> {
    fn parse(data: &'a [u8], base: usize) -> Result<Self, Error> {
        let mut r = Reader::with_base(data, base);
        let list = r.vec(2, "alpn protocol_name_list")?;
        if !r.is_empty() {
            return Err(Error::TrailingBytes {
                field: "alpn extension",
                at: r.offset(),
                count: r.remaining(),
            });
        }
        let raw = list.rest();
        let mut check = list;
        while !check.is_empty() {
            let at = check.offset();
            let id = check.vec(1, "alpn protocol_name")?;
            if id.is_empty() {
                return Err(Error::EmptyAlpn { at });
            }
        }
        Ok(Self { raw })
    }

    /// The protocol ids (`b"h2"`, `b"http/1.1"`, ...) in the client's order.
    pub fn iter(&self) -> AlpnIter<'a> {
        AlpnIter { rest: self.raw }
    }

    /// Whether the list has no ids.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }
}

/// Iterator over ALPN protocol ids.
#[derive(Clone, Debug)]
pub struct AlpnIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for AlpnIter<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let (&len, tail) = self.rest.split_first()?;
        let (id, rest) = tail.split_at_checked(usize::from(len))?;
        self.rest = rest;
        Some(id)
    }
}

/// One extension: its type and its undecoded body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extension<'a> {
    /// Extension type number.
    pub extension_type: u16,
    /// Extension body.
    pub data: &'a [u8],
}

/// The validated extension block of a ClientHello, in wire order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Extensions<'a> {
    raw: &'a [u8],
    count: usize,
}

impl<'a> Extensions<'a> {
    /// The extensions in wire order, GREASE included.
    pub fn iter(&self) -> ExtensionIter<'a> {
        ExtensionIter { rest: self.raw }
    }

    /// The extension types in wire order, GREASE included.
    pub fn types(&self) -> impl Iterator<Item = u16> + Clone + 'a {
        self.iter().map(|e| e.extension_type)
    }

    /// Number of extensions, GREASE included.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are no extensions.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }
}

/// Iterator over extensions.
#[derive(Clone, Debug)]
pub struct ExtensionIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for ExtensionIter<'a> {
    type Item = Extension<'a>;

    fn next(&mut self) -> Option<Extension<'a>> {
        let (head, tail) = self.rest.split_at_checked(4)?;
        let [t0, t1, l0, l1] = *head else {
            return None;
        };
        let (data, rest) = tail.split_at_checked(usize::from(u16::from_be_bytes([l0, l1])))?;
        self.rest = rest;
        Some(Extension {
            extension_type: u16::from_be_bytes([t0, t1]),
            data,
        })
    }
}

/// A parsed ClientHello. Borrowed from the handshake message it was parsed from;
/// every accessor is infallible because parsing validated everything they return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientHello<'a> {
    legacy_version: u16,
    random: &'a [u8],
    session_id: &'a [u8],
    cipher_suites: U16List<'a>,
    compression_methods: &'a [u8],
    extensions: Extensions<'a>,
    has_server_name: bool,
    server_name: Option<&'a [u8]>,
    alpn: Option<AlpnList<'a>>,
    supported_versions: Option<U16List<'a>>,
    signature_algorithms: Option<U16List<'a>>,
    supported_groups: Option<U16List<'a>>,
    ech: bool,
}

impl<'a> ClientHello<'a> {
    /// Parses a complete handshake message (4-byte header of type 1 and length, then
    /// the body). Bytes after the message are ignored, so a caller may pass a buffer
    /// that holds more.
    pub fn parse(message: &'a [u8]) -> Result<Self, Error> {
        let mut r = Reader::new(message);
        let handshake_type = r.u8()?;
        if handshake_type != HANDSHAKE_CLIENT_HELLO {
            return Err(Error::NotClientHello { handshake_type });
        }
        let body = r.vec(3, "handshake message")?;
        Self::parse_body_at(body)
    }

    /// Parses a ClientHello body (the handshake message without its 4-byte header).
    pub fn parse_body(body: &'a [u8]) -> Result<Self, Error> {
        Self::parse_body_at(Reader::new(body))
    }

    fn parse_body_at(mut r: Reader<'a>) -> Result<Self, Error> {
        let legacy_version = r.u16()?;
        let random = r.take(32)?;
        let session_id = r.vec(1, "legacy_session_id")?.rest();
        let cipher_suites = U16List::parse(&mut r, 2, "cipher_suites")?;
        let compression_methods = r.vec(1, "legacy_compression_methods")?.rest();
        let mut hello = Self {
            legacy_version,
            random,
            session_id,
            cipher_suites,
            compression_methods,
            extensions: Extensions::default(),
            has_server_name: false,
            server_name: None,
            alpn: None,
            supported_versions: None,
            signature_algorithms: None,
            supported_groups: None,
            ech: false,
        };
        // Before TLS 1.2 a ClientHello could end here, with no extension block.
        if r.is_empty() {
            return Ok(hello);
        }
        let exts = r.vec(2, "extensions")?;
        if !r.is_empty() {
            return Err(Error::TrailingBytes {
                field: "ClientHello",
                at: r.offset(),
                count: r.remaining(),
            });
        }
        let raw = exts.rest();
        let raw_at = exts.offset();
        // Offsets are worked out only for the few extensions that are looked into
        // (and for errors): this loop runs for every extension of every hello.
        let offset_of = |tail: &[u8]| raw_at.saturating_add(raw.len().saturating_sub(tail.len()));
        let mut rest = raw;
        let mut count = 0usize;
        while !rest.is_empty() {
            count = count.saturating_add(1);
            let Some((&[t0, t1, l0, l1], tail)) = rest.split_first_chunk::<4>() else {
                return Err(Error::Truncated {
                    needed: 4usize.saturating_sub(rest.len()),
                    at: offset_of(rest),
                });
            };
            let extension_type = u16::from_be_bytes([t0, t1]);
            let len = usize::from(u16::from_be_bytes([l0, l1]));
            let Some((data, after)) = tail.split_at_checked(len) else {
                return Err(Error::BadLength {
                    field: "extension_data",
                    at: offset_of(rest).saturating_add(2),
                    length: len,
                    available: tail.len(),
                });
            };
            let at = offset_of(rest);
            rest = after;
            let base = at.saturating_add(4);
            let dup = || Error::DuplicateExtension { extension_type, at };
            match extension_type {
                ext::SERVER_NAME => {
                    if hello.has_server_name {
                        return Err(dup());
                    }
                    hello.has_server_name = true;
                    hello.server_name = parse_server_name(data, base)?;
                }
                ext::ALPN => {
                    if hello.alpn.is_some() {
                        return Err(dup());
                    }
                    hello.alpn = Some(AlpnList::parse(data, base)?);
                }
                ext::SUPPORTED_VERSIONS => {
                    if hello.supported_versions.is_some() {
                        return Err(dup());
                    }
                    hello.supported_versions =
                        Some(whole_list(data, base, 1, "supported_versions")?);
                }
                ext::SIGNATURE_ALGORITHMS => {
                    if hello.signature_algorithms.is_some() {
                        return Err(dup());
                    }
                    hello.signature_algorithms =
                        Some(whole_list(data, base, 2, "signature_algorithms")?);
                }
                ext::SUPPORTED_GROUPS => {
                    if hello.supported_groups.is_some() {
                        return Err(dup());
                    }
                    hello.supported_groups = Some(whole_list(data, base, 2, "supported_groups")?);
                }
                ext::ENCRYPTED_CLIENT_HELLO => {
                    if hello.ech {
                        return Err(dup());
                    }
                    hello.ech = true;
                }
                _ => {}
            }
        }
        hello.extensions = Extensions { raw, count };
        Ok(hello)
    }

    /// `legacy_version` (0x0303 for TLS 1.2 and 1.3 clients).
    pub fn legacy_version(&self) -> u16 {
        self.legacy_version
    }

    /// The highest version the client offers: the largest non-GREASE entry of
    /// supported_versions if present, else `legacy_version`.
    pub fn max_version(&self) -> u16 {
        self.supported_versions
            .and_then(|l| l.iter_non_grease().max())
            .unwrap_or(self.legacy_version)
    }

    /// The 32-byte client random.
    pub fn random(&self) -> &'a [u8] {
        self.random
    }

    /// legacy_session_id.
    pub fn session_id(&self) -> &'a [u8] {
        self.session_id
    }

    /// Offered cipher suites in wire order, GREASE included.
    pub fn cipher_suites(&self) -> U16List<'a> {
        self.cipher_suites
    }

    /// legacy_compression_methods.
    pub fn compression_methods(&self) -> &'a [u8] {
        self.compression_methods
    }

    /// All extensions in wire order, GREASE included.
    pub fn extensions(&self) -> Extensions<'a> {
        self.extensions
    }

    /// Whether a server_name extension is present (even one without a host_name).
    pub fn has_server_name_extension(&self) -> bool {
        self.has_server_name
    }

    /// The first host_name of the server_name extension, as sent (not lower-cased,
    /// not checked to be a valid DNS name).
    pub fn server_name(&self) -> Option<&'a [u8]> {
        self.server_name
    }

    /// The offered ALPN protocol ids, if the extension is present.
    pub fn alpn(&self) -> Option<AlpnList<'a>> {
        self.alpn
    }

    /// supported_versions, if present.
    pub fn supported_versions(&self) -> Option<U16List<'a>> {
        self.supported_versions
    }

    /// signature_algorithms in wire order, if present.
    pub fn signature_algorithms(&self) -> Option<U16List<'a>> {
        self.signature_algorithms
    }

    /// supported_groups in wire order, if present.
    pub fn supported_groups(&self) -> Option<U16List<'a>> {
        self.supported_groups
    }

    /// Whether the encrypted_client_hello extension (0xfe0d) is present: the
    /// server_name is then the public (outer) name, not the real destination.
    pub fn has_ech(&self) -> bool {
        self.ech
    }
}

/// A `u16` list filling a whole extension body behind a length prefix.
fn whole_list<'a>(
    data: &'a [u8],
    base: usize,
    prefix: usize,
    field: &'static str,
) -> Result<U16List<'a>, Error> {
    let mut r = Reader::with_base(data, base);
    let list = U16List::parse(&mut r, prefix, field)?;
    if !r.is_empty() {
        return Err(Error::TrailingBytes {
            field,
            at: r.offset(),
            count: r.remaining(),
        });
    }
    Ok(list)
}

/// RFC 6066 3: a list of (name_type, name); the first host_name (type 0) wins. An
/// empty extension body is allowed (servers send it; some clients echo it).
fn parse_server_name(data: &[u8], base: usize) -> Result<Option<&[u8]>, Error> {
    if data.is_empty() {
        return Ok(None);
    }
    let mut r = Reader::with_base(data, base);
    let mut list = r.vec(2, "server_name_list")?;
    if !r.is_empty() {
        return Err(Error::TrailingBytes {
            field: "server_name extension",
            at: r.offset(),
            count: r.remaining(),
        });
    }
    let mut host = None;
    while !list.is_empty() {
        let at = list.offset();
        let name_type = list.u8()?;
        let name = list.vec(2, "server_name")?.rest();
        if name_type == 0 {
            if name.is_empty() {
                return Err(Error::BadServerName { at });
            }
            if host.is_none() {
                host = Some(name);
            }
        }
    }
    Ok(host)
}
