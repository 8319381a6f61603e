// Drives Debian's chromium (through playwright-core) against a running pheromone daemon's
// dashboard. Run by crates/pheromone-cli/tests/dashboard_browser.rs, which starts three
// daemons and passes, in the environment:
//   DASH_URL   the dashboard URL with its token
//   PHEROMONE  the pheromone binary;  HUB_DIR  the watched daemon's data dir
//   PEERS      the names of its two peers, comma-separated
//   SHOTS      where to write the screenshots;  PROFILE  a fresh browser profile dir
//   EDGE_URL, EDGE_DIR  the dashboard and data dir of an edge node, which cuts its direct
//              link to EDGE_FAR so that the graph shows it reached through EDGE_VIA
// Every wait is bounded; the first failed check exits non-zero with a message.
import { chromium } from "playwright-core";
import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const url = env("DASH_URL");
const bin = env("PHEROMONE");
const hub = env("HUB_DIR");
const peers = env("PEERS").split(",");
const shots = env("SHOTS");
mkdirSync(shots, { recursive: true });
const base = url.split("?")[0];
const WAIT = 15000;

function cli(...args) {
  return execFileSync(bin, ["--data-dir", hub, ...args], { encoding: "utf8", timeout: 30000, env: { ...process.env, NO_COLOR: "1" } });
}
function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`);
  console.log(`ok: ${what}`);
}

const context = await chromium.launchPersistentContext(env("PROFILE"), {
  executablePath: "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1400, height: 900 },
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  timeout: 60000,
});
try {
  const page = context.pages()[0] || (await context.newPage());
  // Without the token: refused, and so is the data.
  let res = await page.goto(base, { timeout: WAIT });
  check(res.status() === 401, "the page without a token is refused (401)");
  check((await page.textContent("h1")).includes("needs its token"), "the refusal says how to get the token");
  res = await page.request.get(`${base}api/snapshot?token=wrong`);
  check(res.status() === 401, "the data without the token is refused (401)");
  await page.screenshot({ path: `${shots}/dashboard-refused.png` });

  // With the token. From here on, any script error fails the run (the 401s above were
  // logged by the browser as failed loads, as they should be).
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  res = await page.goto(url + "#peers", { timeout: WAIT });
  check(res.status() === 200, "the page loads with the token");
  await page.waitForSelector("#live:not(.off)", { timeout: WAIT });
  check(true, "the live stream is connected");
  await page.waitForFunction((n) => document.querySelectorAll("#peers-table tbody tr").length === n, peers.length, { timeout: WAIT });
  const rows = await page.$$eval("#peers-table tbody tr", (trs) => trs.map((tr) => tr.textContent));
  for (const name of peers) check(rows.some((r) => r.includes(name)), `the peers table lists ${name}`);
  // A page marker: a reload would lose it.
  await page.evaluate(() => { window.__noReload = 42; });

  // The mesh: three nodes and their links.
  await page.goto(url + "#mesh");
  await page.waitForFunction(() => document.querySelectorAll("#mesh-graph g.node").length === 3, null, { timeout: WAIT });
  const links = await page.$$eval("#mesh-graph line.link", (ls) => ls.map((l) => [l.dataset.from, l.dataset.to]));
  const ids = await page.$$eval("#mesh-graph g.node", (gs) => gs.map((g) => g.dataset.peer));
  check(ids.length === 3, "the graph shows three nodes");
  check(links.length >= 2 && links.every(([a, b]) => ids.includes(a) && ids.includes(b)), `the graph shows their links (${links.length})`);
  const labels = await page.$$eval("#mesh-graph g.node text:first-of-type", (ts) => ts.map((t) => t.textContent));
  for (const name of peers) check(labels.includes(name), `the graph names ${name}`);

  // Live updates, without a reload: a ping, then a broadcast.
  await page.goto(url + "#peers");
  await page.waitForFunction(() => window.__noReload === 42, null, { timeout: 2000 }).catch(() => {});
  check(await page.evaluate(() => window.__noReload === 42), "moving between pages does not reload");
  cli("ping", peers[0], "-c", "3", "-i", "200ms");
  await page.waitForSelector('#feed-peers li[data-kind="ping"]', { timeout: WAIT });
  const pingText = await page.textContent('#feed-peers li[data-kind="ping"]');
  check(pingText.includes(peers[0]), `the ping to ${peers[0]} shows up live: ${pingText.trim()}`);
  await page.waitForFunction((n) => {
    const tr = [...document.querySelectorAll("#peers-table tbody tr")].find((r) => r.textContent.includes(n));
    return tr && !tr.querySelector(".rtt").textContent.includes("–");
  }, peers[0], { timeout: WAIT });
  check(true, `${peers[0]}'s RTT is in the peers table`);
  await page.screenshot({ path: `${shots}/dashboard-peers.png` });

  await page.goto(url + "#broadcast");
  cli("broadcast", "news", "fresh milk from the browser test");
  await page.waitForSelector('#feed-broadcast li[data-kind="broadcast_published"]', { timeout: WAIT });
  await page.waitForSelector('#topics-table tbody tr[data-topic="news"]', { timeout: WAIT });
  check(true, "the broadcast shows up live, in the feed and the topics table");
  await page.waitForFunction(() => document.getElementById("bc-published").textContent === "1", null, { timeout: WAIT });
  check(true, "the published counter moved to 1");
  check(await page.evaluate(() => window.__noReload === 42), "all of it without a reload");

  // Exposed services and exec runs.
  await page.goto(url + "#services");
  await page.waitForFunction(() => document.querySelectorAll("#exposed-table tbody tr").length === 1, null, { timeout: WAIT });
  check((await page.textContent("#exposed-table tbody")).includes("/x/web"), "the exposed service is listed");
  await page.waitForSelector('#feed-services li[data-kind="exec"]', { timeout: WAIT });
  check(true, "the exec run is in the sessions feed");

  // A screenshot of every page (the traffic charts need a few samples first).
  for (const p of ["node", "peers", "mesh", "traffic", "broadcast", "dht", "services"]) {
    await page.goto(url + "#" + p);
    await page.waitForTimeout(p === "traffic" ? 2500 : 400);
    await page.screenshot({ path: `${shots}/dashboard-${p}.png`, fullPage: true });
  }
  check(true, `screenshots written to ${shots}`);
  // The edge node: its direct link to the far node cut, the far node is reached through
  // the hub, two hops away, and the change shows as it happens.
  const edgeUrl = env("EDGE_URL"), edgeDir = env("EDGE_DIR"), via = env("EDGE_VIA"), far = env("EDGE_FAR");
  await page.goto(edgeUrl + "#mesh");
  await page.waitForFunction(() => document.querySelectorAll("#mesh-graph g.node").length === 3, null, { timeout: WAIT });
  let relayed = false;
  for (let attempt = 0; attempt < 3 && !relayed; attempt++) {
    try {
      execFileSync(bin, ["--data-dir", edgeDir, "disconnect", far], { timeout: 30000, stdio: "ignore" });
    } catch { /* not linked right now: the route may already go through the hub */ }
    relayed = await page.waitForSelector("#mesh-graph g.node.relayed", { timeout: WAIT }).then(() => true, () => false);
  }
  check(relayed, `${far} is drawn as reached through relays`);
  const hopLabels = await page.$$eval("#mesh-graph text.hops", (ts) => ts.map((t) => t.textContent));
  check(hopLabels.includes("2 hops"), `its link is labelled with the hop count (${hopLabels})`);
  await page.waitForFunction((v) => [...document.querySelectorAll("#feed-routes li")].some((li) => li.textContent.includes(`via ${v}`)), via, { timeout: WAIT });
  check(true, `the route change (via ${via}) is in the feed`);
  await page.waitForTimeout(300);
  await page.screenshot({ path: `${shots}/dashboard-mesh-relayed.png`, fullPage: true });

  check(errors.length === 0, `no script errors${errors.length ? ": " + errors.join("; ") : ""}`);
} finally {
  await context.close();
}
