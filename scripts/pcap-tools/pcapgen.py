"""Writes pcap files of synthetic but protocol-correct TLS and QUIC traffic.

Used by scripts/bench-pcap (100k+ flows) and by scripts/test.d/10-capture.sh for the
crafted cases real clients never produce on demand: ClientHellos split at every byte
position, segments out of order or retransmitted, malformed hellos, QUIC v1/v2 Initials
split over several packets. QUIC Initials are really encrypted (RFC 9001 / RFC 9369
keys from the DCID), so any correct decoder - tshark, toktra - can read them; that
needs the `cryptography` package (it comes with aioquic).
"""

import os
import random
import struct

# ---------------------------------------------------------------- pcap writing


class PcapWriter:
    """Classic pcap, Ethernet link type, microsecond timestamps."""

    def __init__(self, path, linktype=1):
        self.f = open(path, "wb", buffering=1 << 20)
        self.f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype))
        self.linktype = linktype

    def write(self, ts, frame):
        sec = int(ts)
        usec = int(round((ts - sec) * 1e6))
        if usec >= 1000000:
            sec, usec = sec + 1, usec - 1000000
        self.f.write(struct.pack("<IIII", sec, usec, len(frame), len(frame)))
        self.f.write(frame)

    def close(self):
        self.f.close()


def _csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def ip_bytes(addr):
    if ":" in addr:
        import ipaddress

        return ipaddress.IPv6Address(addr).packed
    return bytes(int(x) for x in addr.split("."))


def frame(src, dst, proto, l4, checksums=True, vlan=None):
    """Ethernet + IPv4/IPv6 around a transport header+payload."""
    s, d = ip_bytes(src), ip_bytes(dst)
    if len(s) == 4:
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 0, 0x4000, 64, proto, 0, s, d)
        if checksums:
            ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
        ethertype = 0x0800
        pseudo = s + d + struct.pack("!BBH", 0, proto, len(l4))
    else:
        ip = struct.pack("!IHBB16s16s", 0x60000000, len(l4), proto, 64, s, d)
        ethertype = 0x86DD
        pseudo = s + d + struct.pack("!IxxxB", len(l4), proto)
    if checksums:
        off = 16 if proto == 6 else 6
        c = _csum(pseudo + l4) or 0xFFFF
        l4 = l4[:off] + struct.pack("!H", c) + l4[off + 2 :]
    eth = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01"
    if vlan is not None:
        eth += struct.pack("!HH", 0x8100, vlan)
    return eth + struct.pack("!H", ethertype) + ip + l4


def tcp(sport, dport, seq, ack, flags, payload=b""):
    opts = b""
    if "S" in flags:
        opts = b"\x02\x04\x05\xb4\x01\x03\x03\x07"  # MSS 1460, NOP, wscale 7
    bits = sum(v for k, v in {"F": 1, "S": 2, "R": 4, "P": 8, "A": 16}.items() if k in flags)
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                      (5 + len(opts) // 4) << 4, bits, 64240, 0, 0)
    return hdr + opts + payload


def udp(sport, dport, payload):
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


# ---------------------------------------------------------------- TLS ClientHello

GREASE = [0x0A0A + 0x1010 * i for i in range(16)]


def _ext(t, body):
    return struct.pack("!HH", t, len(body)) + body


def _v8(b):
    return struct.pack("!B", len(b)) + b


def _v16(b):
    return struct.pack("!H", len(b)) + b


def client_hello(sni=None, alpn=("h2", "http/1.1"), style="chrome", ech=False, rng=random):
    """A ClientHello handshake message (4-byte header included).

    style "chrome": GREASE, X25519MLKEM768 key share (about 1.8 KB, so it spans two
    TCP segments), compress_certificate, ALPS; "curl": an OpenSSL-like 500-byte hello.
    """
    g = rng.choice(GREASE)
    g2 = rng.choice(GREASE)
    if style == "chrome":
        suites = [g, 0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8,
                  0xC013, 0xC014, 0x009C, 0x009D, 0x002F, 0x0035]
    else:
        suites = [0x1302, 0x1303, 0x1301, 0xC02C, 0xC030, 0x009F, 0xCCA9, 0xCCA8, 0xCCAA,
                  0xC02B, 0xC02F, 0x009E, 0xC024, 0xC028, 0x006B, 0xC023, 0xC027, 0x0067,
                  0xC00A, 0xC014, 0x0039, 0xC009, 0xC013, 0x0033, 0x009D, 0x009C, 0x003D,
                  0x003C, 0x0035, 0x002F, 0x00FF]
    exts = []
    if style == "chrome":
        exts.append(_ext(g, b""))
    if sni is not None:
        name = sni.encode() if isinstance(sni, str) else sni
        exts.append(_ext(0, _v16(b"\x00" + _v16(name))))
    exts.append(_ext(0x0017, b""))  # extended_master_secret
    if style == "chrome":
        exts.append(_ext(0xFF01, b"\x00"))
    groups = [0x001D, 0x0017, 0x0018] if style != "chrome" else [g2, 0x11EC, 0x001D, 0x0017, 0x0018]
    exts.append(_ext(0x000A, _v16(b"".join(struct.pack("!H", x) for x in groups))))
    exts.append(_ext(0x000B, b"\x01\x00"))
    exts.append(_ext(0x0023, b""))
    if alpn:
        exts.append(_ext(0x0010, _v16(b"".join(_v8(a.encode()) for a in alpn))))
    exts.append(_ext(0x0005, b"\x01\x00\x00\x00\x00"))
    sigs = [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601]
    exts.append(_ext(0x000D, _v16(b"".join(struct.pack("!H", x) for x in sigs))))
    if style == "chrome":
        exts.append(_ext(0x0012, b""))
        shares = struct.pack("!HH", g2, 1) + b"\x00"
        shares += struct.pack("!HH", 0x11EC, 1216) + rng.randbytes(1216)
        shares += struct.pack("!HH", 0x001D, 32) + rng.randbytes(32)
    else:
        shares = struct.pack("!HH", 0x001D, 32) + rng.randbytes(32)
    exts.append(_ext(0x0033, _v16(shares)))
    exts.append(_ext(0x002D, b"\x01\x01"))
    versions = ([g] if style == "chrome" else []) + [0x0304, 0x0303]
    exts.append(_ext(0x002B, _v8(b"".join(struct.pack("!H", v) for v in versions))))
    if style == "chrome":
        exts.append(_ext(0x001B, b"\x02\x00\x02"))
        exts.append(_ext(0x44CD, b"\x00\x03\x02h2"))
    if ech:
        exts.append(_ext(0xFE0D, b"\x00\x00\x01\x00\x01\x20\x00\x20" + rng.randbytes(32) + _v16(rng.randbytes(144))))
    if style == "chrome":
        # Chromium (since 110) sends its extensions in a fresh random order on every
        # connection, GREASE first and last aside; generated traffic must do the same so
        # that nothing downstream (JA4 caches in particular) can lean on a fixed order.
        middle = exts[1:]
        rng.shuffle(middle)
        exts = exts[:1] + middle
        exts.append(_ext(rng.choice(GREASE), b"\x00"))
    body = struct.pack("!H", 0x0303) + rng.randbytes(32) + _v8(rng.randbytes(32))
    body += _v16(b"".join(struct.pack("!H", s) for s in suites)) + b"\x01\x00"
    body += _v16(b"".join(exts))
    return struct.pack("!B", 1) + struct.pack("!I", len(body))[1:] + body


def tls_records(message, max_record=16384, content_type=22):
    out = b""
    for i in range(0, len(message), max_record):
        chunk = message[i : i + max_record]
        out += struct.pack("!BHH", content_type, 0x0301, len(chunk)) + chunk
    return out


# ---------------------------------------------------------------- QUIC Initials

SALT = {
    1: bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a"),
    0x6B3343CF: bytes.fromhex("0dede3def700a6db819381be6e269dcbf9bd2ed9"),
}


def _hkdf_expand_label(secret, label, length):
    import hashlib
    import hmac

    full = b"tls13 " + label
    info = struct.pack("!H", length) + _v8(full) + b"\x00"
    out, block, i = b"", b"", 1
    while len(out) < length:
        block = hmac.new(secret, block + info + bytes([i]), hashlib.sha256).digest()
        out += block
        i += 1
    return out[:length]


def initial_keys(version, dcid):
    import hashlib
    import hmac

    initial = hmac.new(SALT[version], dcid, hashlib.sha256).digest()
    client = _hkdf_expand_label(initial, b"client in", 32)
    p = b"quicv2 " if version != 1 else b"quic "
    return (_hkdf_expand_label(client, p + b"key", 16), _hkdf_expand_label(client, p + b"iv", 12),
            _hkdf_expand_label(client, p + b"hp", 16))


def _varint(v):
    if v < 64:
        return bytes([v])
    if v < 16384:
        return struct.pack("!H", 0x4000 | v)
    return struct.pack("!I", 0x80000000 | v)


def quic_initial(version, dcid, scid, pn, frames, pad_to=1200):
    """One client Initial packet, padded so the datagram is at least `pad_to` bytes."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key, iv, hp = initial_keys(version, dcid)
    ptype = 1 if version == 0x6B3343CF else 0
    pn_len = 2
    head = bytes([0xC0 | (ptype << 4) | (pn_len - 1)]) + struct.pack("!I", version)
    head += _v8(dcid) + _v8(scid) + _varint(0)
    fixed = len(head) + 2 + pn_len + 16
    payload = frames + b"\x00" * max(0, pad_to - fixed - len(frames))
    length = pn_len + len(payload) + 16
    header = head + struct.pack("!H", 0x4000 | length) + struct.pack("!H", pn)
    nonce = bytes(a ^ b for a, b in zip(iv, pn.to_bytes(12, "big")))
    ct = AESGCM(key).encrypt(nonce, payload, header)
    pn_off = len(header) - pn_len
    sample = ct[4 - pn_len : 4 - pn_len + 16]
    enc = Cipher(algorithms.AES(hp), modes.ECB()).encryptor()
    mask = enc.update(sample) + enc.finalize()
    first = bytes([header[0] ^ (mask[0] & 0x0F)])
    pnb = bytes(a ^ b for a, b in zip(header[pn_off:], mask[1 : 1 + pn_len]))
    return first + header[1:pn_off] + pnb + ct


def crypto_frame(offset, data):
    return b"\x06" + _varint(offset) + _varint(len(data)) + data


def quic_client_datagrams(hello, version=1, pieces=1, rng=random, reverse=False):
    """The ClientHello in CRYPTO frames spread over `pieces` Initial datagrams."""
    dcid, scid = rng.randbytes(8), rng.randbytes(8)
    step = -(-len(hello) // pieces)
    dgrams = []
    for i in range(pieces):
        off = i * step
        dgrams.append(quic_initial(version, dcid, scid, i, crypto_frame(off, hello[off : off + step])))
    if reverse:
        dgrams.reverse()
    return dgrams


# ---------------------------------------------------------------- whole flows


class Capture:
    """Flows written into one pcap with increasing timestamps."""

    def __init__(self, path, checksums=True, t0=1_767_225_600.0):
        self.w = PcapWriter(path)
        self.t = t0
        self.checksums = checksums

    def emit(self, src, dst, proto, l4, dt=0.0001):
        self.t += dt
        self.w.write(self.t, frame(src, dst, proto, l4, self.checksums))

    def tcp_flow(self, client, cport, server, sport, client_segments, server_payload=b"",
                 handshake=True, fin=True, rng=random):
        """client_segments: list of (stream offset, bytes) in the order to send them."""
        cisn, sisn = rng.getrandbits(32), rng.getrandbits(32)
        if handshake:
            self.emit(client, server, 6, tcp(cport, sport, cisn, 0, "S"))
            self.emit(server, client, 6, tcp(sport, cport, sisn, cisn + 1, "SA"))
            self.emit(client, server, 6, tcp(cport, sport, cisn + 1, sisn + 1, "A"))
        sent = 0
        for off, data in client_segments:
            self.emit(client, server, 6, tcp(cport, sport, cisn + 1 + off, sisn + 1, "PA", data))
            sent = max(sent, off + len(data))
        for i in range(0, len(server_payload), 1448):
            self.emit(server, client, 6, tcp(sport, cport, sisn + 1 + i, cisn + 1 + sent, "PA",
                                              server_payload[i : i + 1448]))
        if fin:
            self.emit(client, server, 6, tcp(cport, sport, cisn + 1 + sent, sisn + 1 + len(server_payload), "FA"))
            self.emit(server, client, 6, tcp(sport, cport, sisn + 1 + len(server_payload), cisn + 2 + sent, "FA"))
            self.emit(client, server, 6, tcp(cport, sport, cisn + 2 + sent, sisn + 2 + len(server_payload), "A"))

    def udp_flow(self, client, cport, server, sport, client_dgrams, server_dgrams=()):
        for d in client_dgrams:
            self.emit(client, server, 17, udp(cport, sport, d))
        for d in server_dgrams:
            self.emit(server, client, 17, udp(sport, cport, d))

    def close(self):
        self.w.close()


def segments(stream, mss=1448):
    return [(i, stream[i : i + mss]) for i in range(0, len(stream), mss)]


def server_stream(app_records, rng=random, record_len=300):
    """ServerHello-sized handshake record, then application-data records."""
    out = struct.pack("!BHH", 22, 0x0303, 90) + rng.randbytes(90)
    out += struct.pack("!BHH", 20, 0x0303, 1) + b"\x01"
    for _ in range(app_records):
        out += struct.pack("!BHH", 23, 0x0303, record_len) + rng.randbytes(record_len)
    return out
