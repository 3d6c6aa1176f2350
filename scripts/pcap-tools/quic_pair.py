"""A minimal aioquic server and client, so real QUIC Initials (v1 and v2) can be
captured: `quic_pair.py server CERT KEY HOST PORT` runs until killed;
`quic_pair.py client HOST PORT SNI ALPN VERSION(1|2) CAFILE` connects once and exits.
The client's ClientHello carries SNI and ALPN exactly as given.
"""

import asyncio
import sys

from aioquic.asyncio import connect, serve
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.packet import QuicProtocolVersion

VERSIONS = {"1": QuicProtocolVersion.VERSION_1, "2": QuicProtocolVersion.VERSION_2}


async def server(cert, key, host, port):
    config = QuicConfiguration(is_client=False, alpn_protocols=["h3", "hq-interop", "toktra"])
    config.supported_versions = [QuicProtocolVersion.VERSION_2, QuicProtocolVersion.VERSION_1]
    config.load_cert_chain(cert, key)
    await serve(host, int(port), configuration=config)
    await asyncio.Future()


async def client(host, port, sni, alpn, version, cafile):
    config = QuicConfiguration(is_client=True, alpn_protocols=alpn.split(","), server_name=sni)
    config.supported_versions = [VERSIONS[version]]
    config.original_version = VERSIONS[version]
    config.load_verify_locations(cafile)
    async with connect(host, int(port), configuration=config, wait_connected=True) as conn:
        await conn.ping()


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "server":
        asyncio.run(server(*args))
    else:
        asyncio.run(asyncio.wait_for(client(*args), 10))
