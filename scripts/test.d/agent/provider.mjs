// A stand-in LLM provider for the agent tests: real TLS (a throw-away CA's certificate
// for the provider host names), HTTP/2 and HTTP/1.1 on one port, answers in the
// OpenAI / Anthropic / Gemini shapes, streamed (SSE, chunks spread over time as a
// model produces them) when the request body says "stream": true, else plain JSON.
//   node provider.mjs ADDR PORT KEY CERT
// Query parameters: chunks (default 40), delay ms between chunks (default 10).
import http2 from 'node:http2';
import fs from 'node:fs';

const [, , addr, port, keyFile, certFile] = process.argv;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const WORDS = ['Toktra', 'measures', 'connections', 'not', 'content', 'at', 'all', 'ok'];

function chunk(host, word) {
  if (host.includes('anthropic') || host.includes('claude')) {
    return `event: content_block_delta\ndata: ${JSON.stringify({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: word + ' ' } })}\n\n`;
  }
  if (host.includes('googleapis') || host.includes('gemini')) {
    return `data: ${JSON.stringify({ candidates: [{ content: { parts: [{ text: word + ' ' }], role: 'model' }, index: 0 }] })}\n\n`;
  }
  return `data: ${JSON.stringify({ id: 'chatcmpl-t', object: 'chat.completion.chunk', model: 'gpt-4o', choices: [{ index: 0, delta: { content: word + ' ' } }] })}\n\n`;
}

async function handle(req, res) {
  let body = '';
  for await (const c of req) body += c;
  const url = new URL(req.url, 'https://x');
  const chunks = Number(url.searchParams.get('chunks') ?? 40);
  const delay = Number(url.searchParams.get('delay') ?? 10);
  const host = String(req.headers[':authority'] ?? req.headers.host ?? '');
  const stream = /"stream"\s*:\s*true/.test(body) || url.searchParams.get('stream') === '1';
  const bulk = Number(url.searchParams.get('bytes') ?? 0);
  try {
    if (bulk > 0) {
      // Bulk transfer for the benchmark, paced to `rate` bytes per second.
      const rate = Number(url.searchParams.get('rate') ?? 1e9);
      const piece = Buffer.alloc(16384, 120);
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': bulk });
      const start = Date.now();
      for (let sent = 0; sent < bulk; ) {
        const n = Math.min(piece.length, bulk - sent);
        if (!res.write(n === piece.length ? piece : piece.subarray(0, n))) {
          await new Promise((r) => res.once('drain', r));
        }
        sent += n;
        const ahead = sent / rate * 1000 - (Date.now() - start);
        if (ahead > 5) await sleep(ahead);
      }
      res.end();
    } else if (stream) {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      for (let i = 0; i < chunks; i++) {
        res.write(chunk(host, WORDS[i % WORDS.length]));
        if (delay > 0) await sleep(delay);
      }
      res.end('data: [DONE]\n\n');
    } else {
      await sleep(delay * 5);
      const text = Array.from({ length: chunks * 2 }, (_, i) => WORDS[i % WORDS.length]).join(' ');
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ id: 'r', object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content: text } }], usage: { prompt_tokens: 20, completion_tokens: chunks * 2 } }));
    }
  } catch (e) {
    // a client that went away
  }
}

const server = http2.createSecureServer(
  { key: fs.readFileSync(keyFile), cert: fs.readFileSync(certFile), allowHTTP1: true },
  (req, res) => { handle(req, res); },
);
server.on('sessionError', () => {});
server.listen(Number(port), addr, () => console.log(`provider listening on ${addr}:${port}`));
