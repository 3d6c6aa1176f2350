// One HTTP/2 request with Node.js: node node-client.mjs HOST PATH BODY
import http2 from 'node:http2';
const [, , host, path, body] = process.argv;
const s = http2.connect(`https://${host}`);
s.on('error', (e) => { console.error(e.message); process.exit(1); });
const r = s.request({ ':method': 'POST', ':path': path, 'content-type': 'application/json' });
let n = 0;
r.on('data', (d) => { n += d.length; });
r.on('end', () => { console.log(`node: ${n} bytes`); s.close(); });
r.on('error', (e) => { console.error(e.message); process.exit(1); });
r.end(body);
