// Load for scripts/bench-agent: RATE new TLS connections per second (each one small
// HTTP/1.1 request to a provider host name), plus BULK_MBIT of paced bulk transfer
// over 4 connections, for SECONDS. Prints JSON with handshake latencies (ms from
// TCP connect start to TLS secureConnect); with LATENCIES_FILE, also writes every
// latency there (one per line) so that several phases can be pooled.
//   node bench-load.mjs ADDR RATE SECONDS BULK_MBIT [LATENCIES_FILE]
//   node bench-load.mjs --pool FILE...     (percentiles over all the files' latencies)
//   node bench-load.mjs --compare DIR N    (DIR/lat-with-I against DIR/lat-without-I,
//                                           I = 1..N: see `compare` below)
import tls from 'node:tls';
import https from 'node:https';
import fs from 'node:fs';

function summary(lat) {
  lat.sort((a, b) => a - b);
  const q = (p) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))];
  return { p50: q(0.5), p90: q(0.9), mean: lat.reduce((a, b) => a + b, 0) / lat.length };
}

if (process.argv[2] === '--pool') {
  const lat = process.argv.slice(3).flatMap((f) => fs.readFileSync(f, 'utf8').split('\n').filter(Boolean).map(Number));
  console.log(JSON.stringify({ connections: lat.length, handshake_ms: summary(lat) }));
  process.exit(0);
}

// The p50 and p90 ratios of "with" over "without", all phases pooled, with a 95 %
// confidence interval from a bootstrap over the pairs of phases: resampling whole
// pairs (with replacement) keeps both the sampling noise of each phase and the
// drift between phases in the interval. Also each pair's own ratios (min, median,
// max), the raw spread. The resampling is seeded: the same files give the same
// interval.
function compare(dir, n) {
  const read = (f) => fs.readFileSync(f, 'utf8').split('\n').filter(Boolean).map(Number);
  const pairs = Array.from({ length: n }, (_, i) => ({ w: read(`${dir}/lat-with-${i + 1}`), o: read(`${dir}/lat-without-${i + 1}`) }));
  const quantiles = (xs) => {
    const s = Float64Array.from(xs).sort();
    const q = (p) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
    return [q(0.5), q(0.9)];
  };
  const ratios = (sample) => {
    const [w50, w90] = quantiles(sample.flatMap((p) => p.w));
    const [o50, o90] = quantiles(sample.flatMap((p) => p.o));
    return [w50 / o50, w90 / o90];
  };
  let seed = 0x2545f491;
  const rand = () => {
    seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5;
    return (seed >>> 0) / 4294967296;
  };
  const boot = Array.from({ length: 1000 }, () => ratios(Array.from({ length: n }, () => pairs[Math.floor(rand() * n)])));
  const r3 = (x) => Math.round(x * 1000) / 1000;
  const ci = (k) => {
    const s = boot.map((b) => b[k]).sort((a, b) => a - b);
    return [r3(s[Math.floor(0.025 * s.length)]), r3(s[Math.floor(0.975 * s.length)])];
  };
  const spread = (k) => {
    const s = pairs.map((p) => ratios([p])[k]).sort((a, b) => a - b);
    return { min: r3(s[0]), median: r3(s[Math.floor(s.length / 2)]), max: r3(s[s.length - 1]) };
  };
  const [p50, p90] = ratios(pairs);
  return {
    p50: { ratio: r3(p50), ci95: ci(0), pairs: spread(0) },
    p90: { ratio: r3(p90), ci95: ci(1), pairs: spread(1) },
  };
}

if (process.argv[2] === '--compare') {
  console.log(JSON.stringify(compare(process.argv[3], Number(process.argv[4]))));
  process.exit(0);
}

const [, , addr, rate, seconds, bulkMbit] = process.argv.map((v, i) => (i > 2 && i < 6 ? Number(v) : v));
const latFile = process.argv[6];
const ca = fs.readFileSync(process.env.NODE_EXTRA_CA_CERTS);
const hosts = ['api.openai.com', 'api.anthropic.com', 'generativelanguage.googleapis.com'];
const lat = [];
let failed = 0;
let bulkBytes = 0;

// Each request lasts about a quarter of a second, as the quickest real LLM requests
// do (the time to a first token alone is hundreds of milliseconds): every other one
// streamed (8 SSE chunks 30 ms apart), the others plain JSON after 250 ms. The agent
// looks up a connection's process while it is open; connections of a few
// milliseconds, which no LLM request is, would measure something else.
const REQUESTS = [
  { path: '/v1/chat/completions?chunks=8&delay=30', body: '{"stream": true}' },
  { path: '/v1/chat/completions?chunks=8&delay=50', body: '{"stream": false}' },
];

function one(i) {
  const host = hosts[i % hosts.length];
  const { path, body } = REQUESTS[i % REQUESTS.length];
  const t0 = process.hrtime.bigint();
  const s = tls.connect({ host: addr, port: 443, servername: host, ca, ALPNProtocols: ['http/1.1'] }, () => {
    lat.push(Number(process.hrtime.bigint() - t0) / 1e6);
    s.write(`POST ${path} HTTP/1.1\r\nhost: ${host}\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`);
  });
  s.on('data', () => {});
  s.on('error', () => { failed++; });
  s.on('end', () => s.end());
}

function bulk(k, until) {
  const perConn = (bulkMbit * 1e6) / 8 / 4;
  const remaining = Math.max(1, (until - Date.now()) / 1000);
  const bytes = Math.floor(perConn * remaining);
  const req = https.request({
    host: addr, port: 443, servername: 'api.openai.com', ca, method: 'POST', agent: false,
    path: `/v1/files?bytes=${bytes}&rate=${Math.floor(perConn)}`, headers: { host: 'api.openai.com', 'content-length': 2 },
  }, (res) => { res.on('data', (d) => { bulkBytes += d.length; }); });
  req.on('error', () => { failed++; });
  req.end('{}');
}

const start = Date.now();
const until = start + seconds * 1000;
if (bulkMbit > 0) for (let k = 0; k < 4; k++) bulk(k, until);
let i = 0;
const every = 1000 / rate;
const timer = setInterval(() => {
  // Catch up if the timer fell behind, so the rate holds on a busy machine.
  const due = Math.floor((Date.now() - start) / every);
  while (i < due) one(i++);
  if (Date.now() >= until) {
    clearInterval(timer);
    setTimeout(() => {
      if (latFile) fs.writeFileSync(latFile, lat.join('\n') + '\n');
      console.log(JSON.stringify({
        connections: lat.length, failed, seconds,
        rate: lat.length / seconds,
        bulk_mbit: (bulkBytes * 8) / 1e6 / seconds,
        handshake_ms: summary(lat),
      }));
      process.exit(0);
    }, 1500);
  }
}, 2);
