// The admin dashboard in Debian's Chromium, driven by playwright-core, against a real
// `toktra server` seeded through EST enrollment and mTLS ingest (see harness.mjs).
// Every number checked on a page is compared with the usage or admin API's answer.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, existsSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { Server, ROOT, ADMIN_EMAIL, ADMIN_PASSWORD, DATABASE_URL, request } from "./harness.mjs";

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SHOTS = join(ROOT, "artifacts/dashboard", DATABASE_URL ? "postgres" : "");
const VIEWPORTS = {
  laptop: { viewport: { width: 1440, height: 900 } },
  phone: { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true },
};

let server;
let fleet;
let browser;
const consoleProblems = [];

const day = (back) => new Date(Date.now() - back * 86_400_000).toISOString().slice(0, 10);
const sum = (items, f) => items.reduce((a, i) => a + f(i), 0);
const tokens = (i) => i.total_input_tokens + i.total_output_tokens;

before(async () => {
  console.log(`store: ${DATABASE_URL ? "PostgreSQL" : "SQLite"}`);
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: run scripts/setup (apt package chromium)`);
  mkdirSync(SHOTS, { recursive: true });
  server = await Server.start();
  fleet = await server.seedFleet();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/// A signed-in page; console errors and failed requests are collected for the final check.
async function signedIn(kind = "laptop", opts = {}) {
  const context = await browser.newContext({ ...VIEWPORTS[kind], ...opts });
  const page = await context.newPage();
  page.on("console", (m) => {
    if (m.type() === "error") consoleProblems.push(`${page.url()}: ${m.text()}`);
  });
  page.on("pageerror", (e) => consoleProblems.push(`${page.url()}: ${e.message}`));
  await page.goto(`${server.adminUrl}/dashboard/login`);
  await page.fill("#email", ADMIN_EMAIL);
  await page.fill("#password", ADMIN_PASSWORD);
  await Promise.all([page.waitForURL(/\/dashboard\/overview$/), page.click("button[type=submit]")]);
  return { context, page };
}

async function shot(page, name, kind) {
  await page.screenshot({ path: join(SHOTS, `${name}-${kind}.png`), fullPage: true });
}

const tileValue = async (page, id) => Number(await page.getAttribute(`[data-tile=${id}] .value`, "data-value"));

test("sign-in: argon2 account, HttpOnly SameSite cookie, refused password, CSRF enforced", async () => {
  const context = await browser.newContext(VIEWPORTS.laptop);
  const page = await context.newPage();
  // Not signed in: every page sends you to the sign-in form.
  await page.goto(`${server.adminUrl}/dashboard/usage`);
  assert.match(page.url(), /\/dashboard\/login$/);
  await shot(page, "login", "laptop");
  await page.fill("#email", ADMIN_EMAIL);
  await page.fill("#password", "not the password at all");
  await page.click("button[type=submit]");
  await page.waitForSelector(".flash.err");
  assert.match(await page.textContent(".flash.err"), /Wrong e-mail or password/);
  assert.equal((await context.cookies()).some((c) => c.name === "toktra_session"), false);
  await context.close();

  const { context: c2, page: p2 } = await signedIn();
  const session = (await c2.cookies()).find((c) => c.name === "toktra_session");
  assert.ok(session, "session cookie set");
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, "Strict");
  assert.equal(session.secure, false, "plain-HTTP admin face on loopback: no Secure flag, or the cookie never returns");
  assert.equal(await p2.evaluate(() => document.cookie.includes("toktra_session")), false, "scripts cannot read the session");

  // A form post with a wrong CSRF token is refused and changes nothing.
  const target = fleet[0];
  const r = await p2.request.post(`${server.adminUrl}/dashboard/devices/${target.id}/lock`, { form: { csrf: "forged" }, maxRedirects: 0 });
  assert.equal(r.status(), 403);
  const devices = await server.api(`/v1/orgs/${server.org}/devices`);
  assert.equal(devices.find((d) => d.id === target.id).status, "enrolled");

  // Signing out ends the session server-side.
  await p2.click(".signout button");
  await p2.waitForURL(/\/dashboard\/login$/);
  const again = await request(`${server.adminUrl}/dashboard/overview`, { headers: { cookie: `toktra_session=${session.value}` } });
  assert.equal(again.status, 303);
  await c2.close();
});

test("overview: tiles equal the usage and device APIs", async () => {
  const { context, page } = await signedIn();
  const items = await server.usage({ start_date: day(29), end_date: day(0) });
  assert.ok(items.length > 100, "seeded usage is visible in the API");
  assert.equal(await tileValue(page, "tokens"), sum(items, tokens));
  assert.equal(await tileValue(page, "users"), new Set(items.map((i) => i.user_id)).size);
  const cost = sum(items, (i) => i.estimated_cost_usd);
  const costText = cost === 0 ? "not priced" : `$${cost.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
  assert.equal(await page.textContent("[data-tile=cost] .value"), costText, "cost as the API gives it (no list price: not priced)");

  const devices = await server.api(`/v1/orgs/${server.org}/devices`);
  const enrolled = devices.filter((d) => d.status === "enrolled");
  assert.equal(await tileValue(page, "devices"), enrolled.length);
  const seen = enrolled.filter((d) => d.last_seen && Date.now() - Date.parse(d.last_seen) < 86_400_000).length;
  assert.equal(Number(await page.getAttribute("[data-tile=health] .value", "data-seen")), seen);
  assert.equal(Number(await page.getAttribute("[data-tile=health] .value", "data-silent")), enrolled.length - seen);
  assert.equal(enrolled.length - seen, 2, "the two devices that never uploaded are silent");
  assert.ok((await page.locator("#activity tbody tr").count()) >= 5, "recent activity lists the last hours");
  await shot(page, "overview", "laptop");
  await context.close();
});

test("usage: 7/30/90-day switch, filters and CSV export equal GET /v1/usage", async () => {
  const { context, page } = await signedIn();
  for (const days of [7, 30, 90]) {
    await page.goto(`${server.adminUrl}/dashboard/usage?days=${days}`);
    const items = await server.usage({ start_date: day(days - 1), end_date: day(0) });
    assert.equal(await tileValue(page, "tokens"), sum(items, tokens), `${days} days: total`);
    assert.equal(await tileValue(page, "input"), sum(items, (i) => i.total_input_tokens), `${days} days: input`);
    assert.equal(await tileValue(page, "output"), sum(items, (i) => i.total_output_tokens), `${days} days: output`);
    // Top users: each row's tokens equal the API's per-user sum, heaviest first.
    const perUser = new Map();
    for (const i of items) perUser.set(i.user_id, (perUser.get(i.user_id) || 0) + tokens(i));
    const rows = await page.$$eval("#top-users tbody tr[data-user]", (trs) =>
      trs.map((tr) => [tr.dataset.user, Number(tr.querySelector("[data-tokens]").dataset.tokens)]),
    );
    assert.ok(rows.length >= 5);
    for (const [user, t] of rows) assert.equal(t, perUser.get(user), `${days} days: ${user}`);
    const sorted = [...perUser.values()].sort((a, b) => b - a);
    assert.equal(rows[0][1], sorted[0], "the heaviest user leads");
    // Charts are server-side SVG, one segment per provider and day.
    assert.ok((await page.locator("svg.chart rect").count()) > days, "bars drawn");
    assert.equal(await page.locator("script[src*='http']").count(), 0, "no script from a CDN");
    if (days === 30) {
      await shot(page, "usage", "laptop");
    }
  }

  // Filters: provider, then department, each equal to the API with the same filter.
  await page.goto(`${server.adminUrl}/dashboard/usage?days=30`);
  await Promise.all([page.waitForURL(/provider=openai/), page.selectOption("select[name=provider]", "openai")]);
  const openai = await server.usage({ start_date: day(29), end_date: day(0), provider: "openai" });
  assert.equal(await tileValue(page, "tokens"), sum(openai, tokens));
  await page.goto(`${server.adminUrl}/dashboard/usage?days=90&department=Engineering`);
  const eng = await server.usage({ start_date: day(89), end_date: day(0), department: "Engineering" });
  assert.equal(await tileValue(page, "tokens"), sum(eng, tokens));
  assert.ok(sum(eng, tokens) > 0);
  const user = "ACME\\asmith";
  await page.goto(`${server.adminUrl}/dashboard/usage?days=7&user=${encodeURIComponent(user)}`);
  const one = await server.usage({ start_date: day(6), end_date: day(0), user_id: user });
  assert.equal(await tileValue(page, "tokens"), sum(one, tokens));

  // CSV export of what is shown (90 days, Engineering).
  await page.goto(`${server.adminUrl}/dashboard/usage?days=90&department=Engineering`);
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#csv")]);
  const csv = (await (await download.createReadStream()).toArray()).join("");
  const lines = csv.trim().split("\n");
  assert.equal(lines[0], "date,user_id,user_email,department,provider,category,requests,input_tokens,output_tokens,estimated_cost_usd");
  const csvTokens = lines.slice(1).reduce((a, l) => {
    const f = l.split(",");
    return a + Number(f[f.length - 3]) + Number(f[f.length - 2]);
  }, 0);
  assert.equal(csvTokens, sum(eng, tokens));
  assert.ok(lines.slice(1).every((l) => l.includes(",Engineering,")));
  // Categories add up to the total and cover the catalog's four.
  const cats = await page.$$eval("#categories tbody tr", (trs) => trs.map((tr) => [tr.dataset.category, Number(tr.querySelector("[data-tokens]").dataset.tokens)]));
  assert.deepEqual(cats.slice(0, 4).map((c) => c[0]), ["api", "chat", "coding", "platform"]);
  assert.equal(sum(cats, (c) => c[1]), sum(eng, tokens));
  await context.close();
});

test("devices: lock and unlock take effect in the API and at ingest", async () => {
  const { context, page } = await signedIn();
  await page.goto(`${server.adminUrl}/dashboard/devices`);
  const api = await server.api(`/v1/orgs/${server.org}/devices`);
  assert.equal(await page.locator("#devices tbody tr[data-device]").count(), api.length);
  const target = fleet.find((d) => d.hostname === "SLS-LT-0318");
  const row = page.locator(`tr[data-device="${target.id}"]`);
  assert.match(await row.textContent(), /SLS-LT-0318/);
  assert.match(await row.textContent(), /Windows 11 23H2/);
  page.once("dialog", (d) => d.accept());
  await Promise.all([page.waitForURL(/\/dashboard\/devices$/), row.locator("button").click()]);
  await page.waitForSelector(`tr[data-device="${target.id}"][data-status=locked]`);
  let dev = (await server.api(`/v1/orgs/${server.org}/devices`)).find((d) => d.id === target.id);
  assert.equal(dev.status, "locked");
  const refused = await server.upload(target, []);
  assert.ok(refused.status === 403 || refused.status === 401, `a locked device's upload is refused (got ${refused.status})`);
  await shot(page, "devices", "laptop");

  await Promise.all([page.waitForURL(/\/dashboard\/devices$/), page.locator(`tr[data-device="${target.id}"] button`).click()]);
  dev = (await server.api(`/v1/orgs/${server.org}/devices`)).find((d) => d.id === target.id);
  assert.equal(dev.status, "enrolled");
  assert.equal((await server.upload(target, [])).status, 200, "unlocked: uploads accepted again");
  await context.close();
});

test("budgets: create, edit and CSV import take effect in the API; colours follow usage", async () => {
  // Limits around this month's real usage, so all three colours show.
  const monthStart = new Date().toISOString().slice(0, 8) + "01";
  const used = async (dept) => sum(await server.usage({ start_date: monthStart, end_date: day(0), department: dept }), tokens);
  const eng = await used("Engineering");
  const sales = await used("Sales");
  const fin = await used("Finance");
  await server.api(`/v1/orgs/${server.org}/budgets`, { method: "PUT", json: { department: "Engineering", monthly_tokens: Math.max(1, Math.round(eng / 0.95)), hard_cap: true, rollover: false } });
  await server.api(`/v1/orgs/${server.org}/budgets`, { method: "PUT", json: { department: "Finance", monthly_tokens: Math.max(1, Math.round(fin / 0.4)), hard_cap: false, rollover: false } });
  await server.api(`/v1/orgs/${server.org}/budgets`, { method: "PUT", json: { monthly_tokens: 40_000_000, hard_cap: false, rollover: false } });

  const { context, page } = await signedIn();
  await page.goto(`${server.adminUrl}/dashboard/budgets`);
  // Create the Sales budget in the form: 82 % used → orange.
  await page.click("details.create > summary");
  const form = page.locator("details.create form");
  await form.locator("input[name=department]").fill("Sales");
  await form.locator("input[name=limit_tokens]").fill(String(Math.max(1, Math.round(sales / 0.82))));
  await form.locator("input[value=hard]").check();
  await Promise.all([page.waitForURL(/\/dashboard\/budgets$/), form.locator("button[type=submit]").click()]);
  assert.match(await page.textContent(".flash.ok"), /Budget for Sales saved/);
  let budgets = await server.api(`/v1/orgs/${server.org}/budgets`);
  let s = budgets.find((b) => b.department === "Sales");
  assert.equal(s.monthly_tokens, Math.max(1, Math.round(sales / 0.82)));
  assert.equal(s.hard_cap, true);

  // Every row's used and limit equal the API's status; the colour follows the thresholds.
  const status = await server.api(`/v1/orgs/${server.org}/budgets/status`);
  const rows = await page.$$eval("#budgets tbody tr[data-level]", (trs) =>
    trs.map((tr) => ({ dept: tr.dataset.department, level: tr.dataset.level, used: Number(tr.querySelector("[data-used]").dataset.used), limit: Number(tr.querySelector("[data-limit]").dataset.limit) })),
  );
  assert.equal(rows.length, 4);
  for (const r of rows) {
    const st = status.find((x) => (x.department ?? "") === r.dept);
    assert.ok(st, `API status for ${r.dept}`);
    assert.equal(r.used, st.used);
    assert.equal(r.limit, st.limit);
    const pct = (100 * r.used) / r.limit;
    assert.equal(r.level, pct < 75 ? "ok" : pct <= 90 ? "warn" : "over", `${r.dept} at ${pct.toFixed(1)} %`);
  }
  if (eng > 0 && sales > 0 && fin > 0) {
    assert.deepEqual(new Set(rows.map((r) => r.level)), new Set(["ok", "warn", "over"]), "green, orange and red all shown");
  }
  await shot(page, "budgets", "laptop");

  // Edit the Finance budget: new limit, hard cap.
  const finRow = page.locator('tr[data-department="Finance"]');
  await finRow.locator("summary").click();
  await finRow.locator("input[name=limit_tokens]").fill("1234567");
  await finRow.locator("input[value=hard]").check();
  await Promise.all([page.waitForURL(/\/dashboard\/budgets$/), finRow.locator("button[type=submit]").click()]);
  budgets = await server.api(`/v1/orgs/${server.org}/budgets`);
  const f = budgets.find((b) => b.department === "Finance");
  assert.equal(f.monthly_tokens, 1234567);
  assert.equal(f.hard_cap, true);

  // A bad limit is refused with a message, nothing changes.
  await page.click("details.create > summary");
  await page.locator("details.create input[name=department]").fill("Legal");
  await page.locator("details.create input[name=limit_tokens]").evaluate((el) => { el.type = "text"; el.value = "lots"; });
  await Promise.all([page.waitForURL(/\/dashboard\/budgets$/), page.locator("details.create button[type=submit]").click()]);
  assert.match(await page.textContent(".flash.err"), /whole number/);
  assert.equal((await server.api(`/v1/orgs/${server.org}/budgets`)).some((b) => b.department === "Legal"), false);

  // User → department mapping: CSV import through the page.
  await page.fill("#csv", "user_id,email,department\nACME\\ltaylor,lee.taylor@acme.example,Support\nACME\\newhire,new.hire@acme.example,Engineering\n");
  await Promise.all([page.waitForURL(/\/dashboard\/budgets$/), page.click("#csv-import button[type=submit]")]);
  assert.match(await page.textContent(".flash.ok"), /Imported 2 users/);
  const users = await server.api(`/v1/orgs/${server.org}/users`);
  assert.equal(users.find((u) => u.user_id === "ACME\\ltaylor").department, "Support");
  assert.equal(users.find((u) => u.user_id === "ACME\\newhire").email, "new.hire@acme.example");
  // A broken file imports nothing and says which line.
  await page.fill("#csv", "ACME\\x,a@b.example,Sales\nACME\\y,a,b,c,d\n");
  await Promise.all([page.waitForURL(/\/dashboard\/budgets$/), page.click("#csv-import button[type=submit]")]);
  assert.match(await page.textContent(".flash.err"), /line 2/);
  assert.equal((await server.api(`/v1/orgs/${server.org}/users`)).some((u) => u.user_id === "ACME\\x"), false);
  await context.close();
});

test("enrollment: a token made on the page enrolls a real device; revoked, it is refused", async () => {
  const { context, page } = await signedIn();
  await page.goto(`${server.adminUrl}/dashboard/enrollment`);
  await page.fill("input[name=max_uses]", "5");
  await Promise.all([page.waitForURL(/\/dashboard\/enrollment$/), page.click("#create-token button[type=submit]")]);
  const secret = (await page.textContent("#token-secret")).trim();
  assert.match(secret, /^tkn_/);
  const ingest = `https://localhost:${server.agentAddr.split(":")[1]}`;
  assert.equal((await page.textContent("#cmd-windows")).trim(), `msiexec /i ToktraAgent.msi /qn INGEST_URL=${ingest} ORG_ID=${server.org} ENROLL_TOKEN=${secret}`);
  const linux = await page.textContent("#cmd-linux");
  for (const part of [ingest, server.org, secret]) assert.ok(linux.includes(part), `Linux command carries ${part}`);
  await shot(page, "enrollment", "laptop");
  const ca = await page.request.get(`${server.adminUrl}/dashboard/toktra-server-ca.pem`);
  assert.equal(await ca.text(), server.ca.toString(), "the CA offered for download is the server's root");

  // The secret is shown once: a reload no longer has it.
  await page.reload();
  assert.equal(await page.locator("#token-secret").count(), 0);

  const d = await server.enroll("NEW-LT-0999", "Windows 11 24H2", "0.1.0", secret);
  assert.equal(d.status, 200, "the page's token enrolls a device over EST");
  const id = await page.getAttribute("#tokens tbody tr[data-state=active] >> nth=0", "data-token");
  const tokens = await server.api(`/v1/orgs/${server.org}/enrollment-tokens`);
  assert.equal(tokens.find((t) => t.id === id).uses, 1);

  page.once("dialog", (dlg) => dlg.accept());
  await Promise.all([page.waitForURL(/\/dashboard\/enrollment$/), page.click(`tr[data-token="${id}"] button`)]);
  assert.equal(await page.getAttribute(`tr[data-token="${id}"]`, "data-state"), "revoked");
  assert.equal((await server.api(`/v1/orgs/${server.org}/enrollment-tokens`)).find((t) => t.id === id).revoked, true);
  const refused = await server.enroll("NEW-LT-1000", "Windows 11 24H2", "0.1.0", secret);
  assert.equal(refused.status, 401, "a revoked token no longer enrolls");
  await context.close();
});

test("phone layout and pages without JavaScript", async () => {
  const { context, page } = await signedIn("phone");
  for (const name of ["overview", "usage", "devices", "budgets", "enrollment"]) {
    await page.goto(`${server.adminUrl}/dashboard/${name}`);
    // Nothing wider than the screen except inside the scrollable table wrappers.
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, `${name}: page is ${overflow}px wider than the phone`);
    await shot(page, name, "phone");
  }
  await context.close();

  const { context: nojs, page: p } = await signedIn("laptop", { javaScriptEnabled: false });
  await p.goto(`${server.adminUrl}/dashboard/usage?days=90`);
  assert.ok((await p.locator("#top-users tbody tr[data-user]").count()) >= 5, "tables render without scripts");
  assert.ok((await p.locator("svg.chart rect").count()) > 90, "charts render without scripts");
  await nojs.close();
});

test("admin face over TLS: the session cookie is Secure", async () => {
  // Its own SQLite store: the cookie does not depend on the store.
  const tls = await Server.start({ adminTls: true, databaseUrl: "" });
  try {
    assert.match(tls.adminUrl, /^https:/);
    const context = await browser.newContext({ ...VIEWPORTS.laptop, ignoreHTTPSErrors: true });
    const page = await context.newPage();
    await page.goto(`${tls.adminUrl}/dashboard/login`);
    await page.fill("#email", ADMIN_EMAIL);
    await page.fill("#password", ADMIN_PASSWORD);
    await Promise.all([page.waitForURL(/\/dashboard\/overview$/), page.click("button[type=submit]")]);
    const session = (await context.cookies()).find((c) => c.name === "toktra_session");
    assert.equal(session.secure, true);
    assert.equal(session.httpOnly, true);
    assert.equal(session.sameSite, "Strict");
    await context.close();
  } finally {
    await tls.stop();
  }
});

test("every page: 200, strict CSP, no console errors; final screenshots", async () => {
  const { context, page } = await signedIn();
  for (const name of ["overview", "usage?days=7", "usage?days=90", "usage", "devices", "budgets", "enrollment"]) {
    const r = await page.goto(`${server.adminUrl}/dashboard/${name}`);
    assert.equal(r.status(), 200, name);
    assert.match(r.headers()["content-security-policy"], /script-src 'self'/);
    if (!name.includes("?")) await shot(page, name, "laptop");
  }
  await context.close();
  assert.deepEqual(consoleProblems, []);
});
