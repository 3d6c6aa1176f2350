// Starts a real `toktra server` in a fresh data directory and seeds it the way a
// fleet would: devices enroll over EST with CSRs made by `openssl req`, then upload
// 90 days of Event v1 batches over mTLS to the ingest endpoint. Organization, API key,
// enrollment token, dashboard administrator, users and budgets come from `toktra admin`.
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import https from "node:https";
import http from "node:http";
import { randomBytes } from "node:crypto";

export const ROOT = new URL("../../", import.meta.url).pathname;
export const TOKTRA = process.env.TOKTRA_BIN || join(ROOT, "target/debug/toktra");
export const ADMIN_EMAIL = "finance.lead@acme.example";
export const ADMIN_PASSWORD = "correct horse battery staple";

/// PostgreSQL instead of SQLite for the seeded server (the suite runs both ways).
export const DATABASE_URL = process.env.DASHBOARD_DATABASE_URL || "";

function admin(data, args, input, databaseUrl) {
  const db = databaseUrl ? ["--database-url", databaseUrl] : [];
  return execFileSync(TOKTRA, ["admin", "--data", data, ...db, ...args], {
    input: input ?? "",
    encoding: "utf8",
    stdio: ["pipe", "pipe", "pipe"],
  }).trim();
}

// A small deterministic PRNG, so every run seeds the same fleet.
function mulberry32(seed) {
  return () => {
    seed |= 0;
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// UUIDv7 (time-ordered), as agents make event ids.
function uuidv7(ms) {
  const b = randomBytes(16);
  const t = BigInt(Math.floor(ms));
  for (let i = 0; i < 6; i++) b[i] = Number((t >> BigInt(8 * (5 - i))) & 0xffn);
  b[6] = (b[6] & 0x0f) | 0x70;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = b.toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

const PRODUCTS = {
  "anthropic-api": { provider: "anthropic", product: "Anthropic API", category: "api", sni: "api.anthropic.com", inp: [1500, 9000], out: [300, 2200] },
  "openai-api": { provider: "openai", product: "OpenAI API", category: "api", sni: "api.openai.com", inp: [800, 6000], out: [200, 1500] },
  chatgpt: { provider: "openai", product: "ChatGPT", category: "chat", sni: "chatgpt.com", inp: [300, 2500], out: [300, 1400] },
  claude: { provider: "anthropic", product: "Claude", category: "chat", sni: "claude.ai", inp: [400, 3000], out: [300, 1500] },
  copilot: { provider: "github", product: "GitHub Copilot", category: "coding", sni: "api.individual.githubcopilot.com", inp: [1500, 8000], out: [50, 400] },
  "azure-openai": { provider: "microsoft", product: "Azure OpenAI", category: "platform", sni: "acme-fin.openai.azure.com", inp: [1000, 4000], out: [300, 1000] },
  perplexity: { provider: "perplexity", product: "Perplexity", category: "chat", sni: "www.perplexity.ai", inp: [200, 1200], out: [400, 1600] },
  "gemini-api": { provider: "google", product: "Gemini API", category: "api", sni: "generativelanguage.googleapis.com", inp: [600, 3000], out: [200, 900] },
};

export const USERS = [
  ["ACME\\asmith", "alice.smith@acme.example", "Engineering", ["anthropic-api", "copilot", "claude"], 9],
  ["ACME\\bkumar", "bharat.kumar@acme.example", "Engineering", ["openai-api", "copilot", "chatgpt"], 7],
  ["cnguyen", "chi.nguyen@acme.example", "Engineering", ["anthropic-api", "gemini-api"], 5],
  ["dlee", "dana.lee@acme.example", "Engineering", ["openai-api", "copilot"], 4],
  ["ACME\\emiller", "erin.miller@acme.example", "Finance", ["chatgpt", "azure-openai"], 4],
  ["ACME\\fgarcia", "felipe.garcia@acme.example", "Finance", ["claude", "chatgpt"], 2],
  ["ACME\\gwilson", "grace.wilson@acme.example", "Sales", ["chatgpt", "perplexity"], 6],
  ["ACME\\hmartin", "hugo.martin@acme.example", "Sales", ["chatgpt"], 3],
  ["ACME\\ijones", "ivy.jones@acme.example", "Sales", ["perplexity", "claude"], 3],
  ["ACME\\jbrown", "jamal.brown@acme.example", "Support", ["chatgpt"], 3],
  ["ACME\\kdavis", "kim.davis@acme.example", "Support", ["claude", "chatgpt"], 2],
  ["ACME\\ltaylor", "", "", ["chatgpt", "perplexity"], 2],
];

// hostname, platform, agent version, users (by index into USERS); no users: silent.
export const DEVICES = [
  ["ENG-LT-0141", "Windows 11 23H2", "0.1.0", [0]],
  ["ENG-LT-0152", "Windows 11 23H2", "0.1.0", [1]],
  ["eng-build-07", "Debian 12", "0.1.0", [2, 3]],
  ["FIN-LT-0203", "Windows 11 23H2", "0.1.0", [4]],
  ["FIN-LT-0207", "Windows 10 22H2", "0.0.9", [5]],
  ["SLS-LT-0311", "Windows 11 23H2", "0.1.0", [6, 7]],
  ["SLS-LT-0318", "Windows 11 23H2", "0.1.0", [8]],
  ["SUP-LT-0402", "Windows 11 23H2", "0.1.0", [9, 10, 11]],
  ["SUP-LT-0409", "Windows 11 23H2", "0.1.0", []],
  ["lab-linux-02", "Ubuntu 24.04", "0.0.9", []],
];

function request(url, { method = "GET", headers = {}, body, tls } = {}) {
  const u = new URL(url);
  const mod = u.protocol === "https:" ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request(
      {
        hostname: u.hostname,
        port: u.port,
        path: u.pathname + u.search,
        method,
        headers,
        ...(tls || {}),
      },
      (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString("utf8") }));
      },
    );
    req.on("error", reject);
    if (body) req.write(body);
    req.end();
  });
}

export class Server {
  /// `databaseUrl`: an empty PostgreSQL database, or "" for SQLite under the data dir.
  static async start({ adminTls = false, databaseUrl = DATABASE_URL } = {}) {
    const s = new Server();
    s.adminTls = adminTls;
    s.databaseUrl = databaseUrl;
    s.dir = mkdtempSync(join(tmpdir(), "toktra-dash-"));
    s.data = join(s.dir, "data");
    const adm = (args, input) => admin(s.data, args, input, databaseUrl);
    s.org = adm(["org", "create", "Acme Corp"]);
    s.apiKey = adm(["api-key", "create", "--name", "dashboard-tests"]);
    s.enrollToken = adm(["token", "create", "--org", s.org]);
    s.adminId = adm(["dashboard-user", "create", "--org", s.org, "--email", ADMIN_EMAIL, "--password-stdin"], ADMIN_PASSWORD + "\n");
    const csv = ["user_id,email,department", ...USERS.map((u) => `"${u[0]}",${u[1]},${u[2]}`)].join("\n");
    writeFileSync(join(s.dir, "users.csv"), csv + "\n");
    adm(["user", "import", "--org", s.org, join(s.dir, "users.csv")]);
    await s.spawn();
    return s;
  }

  async spawn() {
    const args = ["server", "--data", this.data, "--agent-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--log", "warn"];
    if (this.adminTls) args.push("--admin-tls");
    if (this.databaseUrl) args.push("--database-url", this.databaseUrl);
    this.proc = spawn(TOKTRA, args, {
      stdio: ["ignore", "ignore", "pipe"],
    });
    this.log = "";
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`toktra server did not start:\n${this.log}`)), 60_000);
      this.proc.stderr.on("data", (d) => {
        this.log += d.toString();
        const m = this.log.match(/agent face https:\/\/([\d.]+:\d+), admin face (https?:\/\/[\d.]+:\d+)/);
        if (m && !this.adminUrl) {
          clearTimeout(timer);
          this.agentAddr = m[1];
          this.adminUrl = m[2];
          resolve();
        }
      });
      this.proc.on("exit", (code) => reject(new Error(`toktra server exited with ${code}:\n${this.log}`)));
    });
    this.ca = readFileSync(join(this.data, "ca/root.pem"));
  }

  agentUrl(path) {
    return `https://${this.agentAddr}${path}`;
  }

  /// TLS options for the agent face: trust the server's root, name it localhost.
  agentTls(extra = {}) {
    return { ca: this.ca, servername: "localhost", ...extra };
  }

  async api(path, { method = "GET", json } = {}) {
    const headers = { authorization: `Bearer ${this.apiKey}` };
    if (json !== undefined) headers["content-type"] = "application/json";
    const r = await request(this.adminUrl + path, { method, headers, body: json === undefined ? undefined : JSON.stringify(json) });
    if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${r.body}`);
    return r.body ? JSON.parse(r.body) : null;
  }

  /// Every item of GET /v1/usage for the query, following next_cursor.
  async usage(params) {
    const items = [];
    let cursor = null;
    do {
      const q = new URLSearchParams({ org_id: this.org, limit: "100", ...params });
      if (cursor) q.set("cursor", cursor);
      const page = await this.api(`/v1/usage?${q}`);
      items.push(...page.items);
      cursor = page.has_more ? page.next_cursor : null;
    } while (cursor);
    return items;
  }

  /// Enrolls one device over EST with an Ed25519 key and a CSR from openssl.
  async enroll(hostname, platform, version, token = this.enrollToken) {
    const dir = mkdtempSync(join(this.dir, "dev-"));
    const key = join(dir, "key.pem");
    execFileSync("openssl", ["genpkey", "-algorithm", "ed25519", "-out", key]);
    const csr = execFileSync("openssl", ["req", "-new", "-key", key, "-subj", "/CN=Toktra Device", "-outform", "DER"]);
    const r = await request(this.agentUrl("/.well-known/est/simpleenroll"), {
      method: "POST",
      headers: {
        authorization: "Basic " + Buffer.from(`${this.org}:${token}`).toString("base64"),
        "content-type": "application/pkcs10",
        "content-transfer-encoding": "base64",
        "x-toktra-hostname": hostname,
        "x-toktra-platform": platform,
        "x-toktra-agent-version": version,
      },
      body: csr.toString("base64"),
      tls: this.agentTls(),
    });
    if (r.status !== 200) return { status: r.status, body: r.body };
    const p7 = join(dir, "cert.p7");
    writeFileSync(p7, Buffer.from(r.body.replace(/\s+/g, ""), "base64"));
    const certPem = execFileSync("openssl", ["pkcs7", "-inform", "DER", "-in", p7, "-print_certs"], { encoding: "utf8" });
    return { status: 200, id: r.headers["x-toktra-device-id"], hostname, cert: certPem, key: readFileSync(key) };
  }

  async upload(device, events, agentVersion = "0.1.0") {
    const body = JSON.stringify({ batch_id: uuidv7(Date.now()), agent_version: agentVersion, events });
    return request(this.agentUrl("/v1/ingest/batches"), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
      tls: this.agentTls({ cert: device.cert, key: device.key }),
    });
  }

  /// Enrolls the fleet and uploads 90 days of usage; returns the enrolled devices.
  async seedFleet() {
    const rand = mulberry32(20261126);
    const now = Date.now();
    const devices = [];
    for (const [hostname, platform, version, users] of DEVICES) {
      const d = await this.enroll(hostname, platform, version);
      if (d.status !== 200) throw new Error(`enrolling ${hostname}: ${d.status} ${d.body}`);
      devices.push({ ...d, users, version, linux: !platform.startsWith("Windows") });
    }
    const day = 86_400_000;
    const today0 = Math.floor(now / day) * day;
    for (const dev of devices) {
      if (dev.users.length === 0) continue;
      const events = [];
      for (let back = 89; back >= 0; back--) {
        const date = new Date(today0 - back * day);
        const weekend = date.getUTCDay() === 0 || date.getUTCDay() === 6;
        for (const ui of dev.users) {
          const [user, , , products, intensity] = USERS[ui];
          // Adoption grows over the quarter, as it does.
          const ramp = 0.55 + 0.45 * ((89 - back) / 89);
          const n = Math.round((weekend ? 0.15 : 1) * intensity * ramp * (0.5 + rand()));
          for (let k = 0; k < n; k++) {
            const p = PRODUCTS[products[Math.floor(rand() * products.length)]];
            // Office hours, and never in the future.
            let t = today0 - back * day + (7 + rand() * 11) * 3_600_000;
            if (t > now - 60_000) t = now - 60_000 - rand() * 3_600_000;
            const inp = Math.round(p.inp[0] + rand() * (p.inp[1] - p.inp[0]));
            const out = Math.round(p.out[0] + rand() * (p.out[1] - p.out[0]));
            events.push({
              event_id: uuidv7(t),
              source: dev.linux ? "linux" : "wfp",
              started_at: new Date(Math.floor(t)).toISOString(),
              duration_ms: Math.round(800 + rand() * 40_000),
              transport: "tcp",
              sni: p.sni,
              alpn: ["h2", "http/1.1"],
              provider: p.provider,
              product: p.product,
              category: p.category,
              bytes_out: inp * 4 + 900,
              bytes_in: out * 5 + 1400,
              est_input_tokens: inp,
              est_output_tokens: out,
              user,
              process: { pid: 4000 + Math.floor(rand() * 20000), name: dev.linux ? "python3" : "msedge.exe" },
              dst_port: 443,
            });
          }
        }
      }
      for (let i = 0; i < events.length; i += 500) {
        const r = await this.upload(dev, events.slice(i, i + 500), dev.version);
        if (r.status !== 200) throw new Error(`upload from ${dev.hostname}: ${r.status} ${r.body}`);
      }
      dev.eventCount = events.length;
    }
    return devices;
  }

  async stop() {
    if (this.proc && this.proc.exitCode === null) {
      const exited = new Promise((r) => this.proc.once("exit", r));
      this.proc.kill("SIGTERM");
      await exited;
    }
    if (!process.env.TOKTRA_KEEP) rmSync(this.dir, { recursive: true, force: true });
  }
}

export { request };
