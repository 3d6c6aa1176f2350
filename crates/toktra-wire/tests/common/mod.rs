//! Helpers shared by the integration tests: a ClientHello builder (std is fine in
//! tests) and the captured hellos under tests/data/.
#![allow(dead_code)]

pub fn data(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

pub fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

pub fn hex_file(name: &str) -> Vec<u8> {
    hex(&String::from_utf8(data(name)).unwrap())
}

/// The handshake message inside a stream of TLS records (record headers stripped).
pub fn handshake_from_records(mut stream: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while stream.len() >= 5 {
        let len = u16::from_be_bytes([stream[3], stream[4]]) as usize;
        out.extend_from_slice(&stream[5..5 + len]);
        stream = &stream[5 + len..];
    }
    out
}

/// Wraps a handshake message into TLS records of at most `max` payload bytes.
pub fn records(message: &[u8], max: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in message.chunks(max.max(1)) {
        out.extend_from_slice(&[22, 3, 1]);
        out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

fn u16s(values: &[u16]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

fn vec16(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

/// Builds ClientHello handshake messages field by field.
#[derive(Clone, Debug, Default)]
pub struct HelloBuilder {
    pub legacy_version: u16,
    pub ciphers: Vec<u16>,
    /// (type, body) in wire order.
    pub extensions: Vec<(u16, Vec<u8>)>,
    pub no_extension_block: bool,
}

impl HelloBuilder {
    pub fn new() -> Self {
        Self {
            legacy_version: 0x0303,
            ..Self::default()
        }
    }

    pub fn ciphers(mut self, c: &[u16]) -> Self {
        self.ciphers = c.to_vec();
        self
    }

    pub fn ext(mut self, t: u16, body: Vec<u8>) -> Self {
        self.extensions.push((t, body));
        self
    }

    pub fn sni(self, host: &str) -> Self {
        let mut entry = vec![0u8];
        entry.extend(vec16(host.as_bytes()));
        self.ext(0x0000, vec16(&entry))
    }

    pub fn alpn(self, ids: &[&[u8]]) -> Self {
        let mut list = Vec::new();
        for id in ids {
            list.push(id.len() as u8);
            list.extend_from_slice(id);
        }
        self.ext(0x0010, vec16(&list))
    }

    pub fn versions(self, v: &[u16]) -> Self {
        let body = u16s(v);
        let mut e = vec![body.len() as u8];
        e.extend(body);
        self.ext(0x002b, e)
    }

    pub fn sigalgs(self, v: &[u16]) -> Self {
        self.ext(0x000d, vec16(&u16s(v)))
    }

    pub fn groups(self, v: &[u16]) -> Self {
        self.ext(0x000a, vec16(&u16s(v)))
    }

    /// Any extension with a dummy body, for types whose content does not matter.
    pub fn opaque(self, t: u16) -> Self {
        self.ext(t, vec![0])
    }

    pub fn body(&self) -> Vec<u8> {
        let mut b = self.legacy_version.to_be_bytes().to_vec();
        b.extend([7u8; 32]);
        b.push(32);
        b.extend([9u8; 32]);
        b.extend(vec16(&u16s(&self.ciphers)));
        b.extend([1, 0]);
        if !self.no_extension_block {
            let mut exts = Vec::new();
            for (t, body) in &self.extensions {
                exts.extend(t.to_be_bytes());
                exts.extend(vec16(body));
            }
            b.extend(vec16(&exts));
        }
        b
    }

    pub fn message(&self) -> Vec<u8> {
        let body = self.body();
        let mut m = vec![1u8];
        m.extend(&(body.len() as u32).to_be_bytes()[1..]);
        m.extend(body);
        m
    }
}

/// The example client of FoxIO's JA4 specification (technical_details/JA4.md), built
/// from its JA4_ro line: ciphers and extensions in original order, ALPN h2.
pub fn foxio_example() -> HelloBuilder {
    let ciphers = [
        0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014,
        0x009c, 0x009d, 0x002f, 0x0035,
    ];
    let sigalgs = [
        0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
    ];
    let mut b = HelloBuilder::new().ciphers(&ciphers);
    for t in [
        0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023, 0x0012,
        0x002b, 0xff01, 0x000b, 0x000a, 0x0015,
    ] {
        b = match t {
            0x0000 => b.sni("example.com"),
            0x0010 => b.alpn(&[b"h2", b"http/1.1"]),
            0x000d => b.sigalgs(&sigalgs),
            0x002b => b.versions(&[0x0304, 0x0303]),
            0x000a => b.groups(&[0x001d, 0x0017]),
            other => b.opaque(other),
        };
    }
    b
}
