"""HTTP/3 over QUIC (aioquic) for the agent's end-to-end suite.

`h3.py server HOST PORT CERT KEY` answers every request with an SSE-shaped stream
of `?chunks=N` events (default 30), one DATA frame each, like a streamed LLM reply.
`h3.py client HOST PORT SNI CAFILE PATH BODY` sends one POST over HTTP/3 to SNI
(verified against CAFILE), reads the whole response and prints
`status=<code> bytes=<n>`; exit status 0 only for a 200 with a body.
"""

import asyncio
import sys
from urllib.parse import parse_qs, urlsplit

from aioquic.asyncio import QuicConnectionProtocol, connect, serve
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import QuicEvent


class ProviderServer(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._h3 = None
        self._paths = {}

    def quic_event_received(self, event: QuicEvent) -> None:
        if self._h3 is None:
            self._h3 = H3Connection(self._quic)
        for ev in self._h3.handle_event(event):
            if isinstance(ev, HeadersReceived):
                self._paths[ev.stream_id] = dict(ev.headers).get(b":path", b"/").decode()
                if ev.stream_ended:
                    asyncio.ensure_future(self._answer(ev.stream_id))
            elif isinstance(ev, DataReceived) and ev.stream_ended:
                asyncio.ensure_future(self._answer(ev.stream_id))

    async def _answer(self, stream_id: int) -> None:
        query = parse_qs(urlsplit(self._paths.pop(stream_id, "/")).query)
        chunks = int(query.get("chunks", ["30"])[0])
        self._h3.send_headers(
            stream_id,
            [(b":status", b"200"), (b"content-type", b"text/event-stream")],
        )
        for i in range(chunks):
            delta = f'data: {{"choices":[{{"delta":{{"content":"token {i} of the reply "}}}}]}}\n\n'
            self._h3.send_data(stream_id, delta.encode(), end_stream=False)
            self.transmit()
            await asyncio.sleep(0.005)
        self._h3.send_data(stream_id, b"data: [DONE]\n\n", end_stream=True)
        self.transmit()


class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.done = asyncio.get_event_loop().create_future()
        self.status = None
        self.body = bytearray()

    def quic_event_received(self, event: QuicEvent) -> None:
        for ev in self.h3.handle_event(event):
            if isinstance(ev, HeadersReceived):
                self.status = dict(ev.headers).get(b":status", b"").decode()
            elif isinstance(ev, DataReceived):
                self.body.extend(ev.data)
            if getattr(ev, "stream_ended", False) and not self.done.done():
                self.done.set_result(None)


async def server(host, port, cert, key):
    config = QuicConfiguration(is_client=False, alpn_protocols=H3_ALPN)
    config.load_cert_chain(cert, key)
    await serve(host, int(port), configuration=config, create_protocol=ProviderServer)
    await asyncio.Future()


async def client(host, port, sni, cafile, path, body):
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name=sni)
    config.load_verify_locations(cafile)
    async with connect(host, int(port), configuration=config, create_protocol=Client) as c:
        stream_id = c._quic.get_next_available_stream_id()
        c.h3.send_headers(
            stream_id,
            [
                (b":method", b"POST"),
                (b":scheme", b"https"),
                (b":authority", sni.encode()),
                (b":path", path.encode()),
                (b"content-type", b"application/json"),
                (b"user-agent", b"toktra-test-h3"),
            ],
        )
        c.h3.send_data(stream_id, body.encode(), end_stream=True)
        c.transmit()
        await c.done
        print(f"status={c.status} bytes={len(c.body)}")
        return c.status == "200" and len(c.body) > 0


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "server":
        asyncio.run(server(*args))
    else:
        ok = asyncio.run(asyncio.wait_for(client(*args), 20))
        sys.exit(0 if ok else 1)
