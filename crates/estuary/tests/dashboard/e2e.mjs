// End-to-end test of the dashboard in a real browser (Debian's Chromium, driven by
// playwright-core). Run by crates/estuary/tests/dashboard.rs, which starts the daemon and an
// `estuary send` tone announced over SAP, in a private network namespace:
//
//   node e2e.mjs URL
//
// Environment (set by the Rust test):
//   E2E_STREAM        name the tone is announced under
//   E2E_TONE_PEAK     its peak level, dBFS
//   E2E_SRT_PORT      free loopback port for the SRT output this test adds
//   E2E_SENDER_PID    pid of the tone sender, killed to trip the no-signal alarm
//   E2E_OUT           directory for screenshots and the received transport stream
//   E2E_CHROMIUM      browser binary (default /usr/bin/chromium)
//
// Exits non-zero with a message naming the failed step; any console error fails the run.

import { spawn } from 'node:child_process';
import { createWriteStream, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const url = process.argv[2];
const env = (k, d) => process.env[k] ?? d ?? fail(`${k} is not set`);
const STREAM = env('E2E_STREAM');
const PEAK = Number(env('E2E_TONE_PEAK', '-18'));
const SRT_PORT = env('E2E_SRT_PORT');
const SENDER_PID = Number(env('E2E_SENDER_PID'));
const OUT = env('E2E_OUT');
const PAGES = ['overview', 'streams', 'inputs', 'outputs', 'routing', 'alarms', 'clock', 'logs', 'settings'];
const WIDTHS = { desktop: { width: 1280, height: 900 }, phone: { width: 375, height: 812 } };

function fail(msg) {
  throw new Error(msg);
}

let stepName = 'start';
const step = (name) => {
  stepName = name;
  console.log(`e2e: ${name}`);
};

const consoleErrors = [];
const a11y = [];
let receiver;
let expectRejection = false;

// Basic accessibility rules, checked on every page (a small subset of axe's): every form
// control has a label, every button and link a name, images have alt, one h1, canvases a
// label, no duplicate ids.
function auditPage() {
  const problems = [];
  const name = (el) =>
    (el.getAttribute('aria-label') || el.getAttribute('aria-labelledby') && document.getElementById(el.getAttribute('aria-labelledby'))?.textContent || el.textContent || el.title || '').trim();
  for (const el of document.querySelectorAll('input, select, textarea')) {
    if (el.type === 'hidden') continue;
    if (!el.labels?.length && !el.getAttribute('aria-label') && !el.getAttribute('aria-labelledby')) problems.push(`unlabelled ${el.tagName.toLowerCase()}#${el.id || el.name}`);
  }
  for (const el of document.querySelectorAll('button, a[href]')) if (!name(el)) problems.push(`${el.tagName.toLowerCase()} without a name: ${el.outerHTML.slice(0, 80)}`);
  for (const el of document.querySelectorAll('img')) if (!el.hasAttribute('alt')) problems.push(`img without alt: ${el.src}`);
  for (const el of document.querySelectorAll('canvas')) if (!el.getAttribute('aria-label') && el.getAttribute('aria-hidden') !== 'true') problems.push('canvas without aria-label');
  const h1 = document.querySelectorAll('h1').length;
  if (h1 !== 1) problems.push(`${h1} h1 elements`);
  const ids = [...document.querySelectorAll('[id]')].map((e) => e.id);
  for (const id of new Set(ids.filter((id, i) => ids.indexOf(id) !== i))) problems.push(`duplicate id ${id}`);
  if (!document.documentElement.lang) problems.push('no lang attribute');
  return problems;
}

async function main() {
  mkdirSync(OUT, { recursive: true });
  const browser = await chromium.launch({
    executablePath: env('E2E_CHROMIUM', '/usr/bin/chromium'),
    headless: true,
    // Root in a container has no user namespace sandbox to drop into.
    args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'],
  });
  try {
    const context = await browser.newContext({ viewport: WIDTHS.desktop });
    const page = await context.newPage();
    page.on('console', (m) => {
      if (m.type() !== 'error') return;
      // The browser logs every 4xx; the one the field-error step provokes is expected.
      if (expectRejection && /status of 4\d\d/.test(m.text())) return;
      consoleErrors.push(`[${stepName}] ${m.text()} (${m.location().url || ''})`);
    });
    page.on('pageerror', (e) => consoleErrors.push(`[${stepName}] uncaught: ${e.message}`));
    page.on('dialog', (d) => d.accept());
    page.setDefaultTimeout(20_000);

    const go = async (name) => {
      await page.evaluate((n) => (location.hash = n === 'overview' ? '#/' : `#/${n}`), name);
      await page.waitForFunction((n) => document.querySelector(`#nav a[data-page="${n}"]`)?.getAttribute('aria-current') === 'page', name);
    };

    step('open the dashboard');
    const res = await page.goto(url);
    if (!res.ok()) fail(`GET ${url}: HTTP ${res.status()}`);
    const csp = res.headers()['content-security-policy'] || '';
    if (!csp.includes("script-src 'self'")) fail(`no strict CSP on the page: ${csp}`);
    await page.waitForSelector('#conn[data-state="live"]');

    step(`add the discovered stream "${STREAM}" with one click`);
    await go('streams');
    const add = page.locator(`button.add-stream[data-name="${STREAM}"]`);
    await add.waitFor({ timeout: 30_000 });
    await add.click();
    await page.waitForFunction(() => /Added input/.test(document.querySelector('#notice').textContent));
    const input = await page.evaluate(() => document.querySelector('#notice').textContent.match(/“(.+)”/)[1]);
    console.log(`e2e: input "${input}" added`);

    step('the meters move, at the tone level');
    await go('overview');
    const levels = await page.waitForFunction(
      ({ input, peak }) => {
        const rows = document.querySelectorAll(`.input-card[data-input="${input}"] tr.channel-level`);
        if (!rows.length) return false;
        const ok = [...rows].every((r) => Math.abs(Number(r.dataset.peak) - peak) <= 1);
        return ok && [...rows].map((r) => ({ peak: Number(r.dataset.peak), rms: Number(r.dataset.rms), truePeak: Number(r.dataset.truePeak) }));
      },
      { input, peak: PEAK },
      { timeout: 30_000 },
    );
    const measured = await levels.jsonValue();
    console.log(`e2e: levels ${JSON.stringify(measured)}`);
    for (const l of measured) {
      // A sine's RMS is its peak − 3.01 dB.
      if (Math.abs(l.rms - (PEAK - 3.01)) > 1) fail(`RMS ${l.rms} dBFS, expected about ${PEAK - 3.01}`);
    }
    // OK, or a warning for loss while the loaded test machine starts Chromium; never worse.
    const card = `.input-card[data-input="${input}"]`;
    const badge = await page.locator(`${card} .slot-badge .badge`).getAttribute('data-level');
    console.log(`e2e: input badge ${badge} ${await page.textContent(`${card} .conditions`)}`);
    if (!['ok', 'warning'].includes(badge)) fail(`input health badge is ${badge} while receiving the tone`);
    if ((await page.locator(`${card} .slot-state [data-state]`).getAttribute('data-state')) !== 'receiving') fail('input not receiving');

    step('a field error from the server is shown next to the field');
    await go('outputs');
    await page.click('#new-outputs');
    await page.fill('#output-name', 'e2e-srt');
    await page.selectOption('#output-input', input);
    await page.selectOption('#output-mode', 'listener');
    // No port: the browser cannot tell, the daemon's config validation can.
    await page.fill('#output-address', '127.0.0.1');
    await page.selectOption('#output-codec', 'opus');
    expectRejection = true;
    await page.click('#output-form button[type="submit"]');
    await page.waitForFunction(() => document.querySelector('#output-address-error')?.textContent.trim());
    expectRejection = false;
    console.log(`e2e: server said: ${await page.textContent('#output-address-error')}`);
    if ((await page.getAttribute('#output-address', 'aria-invalid')) !== 'true') fail('the field is not marked invalid');

    step('add an SRT output with the form');
    await page.fill('#output-address', `127.0.0.1:${SRT_PORT}`);
    await page.click('#output-form button[type="submit"]');
    await page.waitForFunction(() => /Added output/.test(document.querySelector('#notice').textContent));
    await page.waitForSelector('#outputs tr[data-key="e2e-srt"], tbody tr[data-key="e2e-srt"]');

    step('an SRT receiver connects and the output shows "connected"');
    const ts = join(OUT, 'received.ts');
    receiver = spawn('srt-live-transmit', ['-q', `srt://127.0.0.1:${SRT_PORT}`, 'file://con'], { stdio: ['ignore', 'pipe', 'inherit'] });
    receiver.stdout.pipe(createWriteStream(ts));
    await go('overview');
    await page.waitForSelector('tr[data-output="e2e-srt"] [data-state="connected"]', { timeout: 30_000 });

    step('the routing matrix shows the route');
    await go('routing');
    const cell = page.locator(`button.cell[data-input="${input}"][data-output="e2e-srt"]`);
    if ((await cell.getAttribute('aria-pressed')) !== 'true') fail('routing cell not pressed');

    step('screenshots of every page, desktop and 375 px');
    for (const [label, size] of Object.entries(WIDTHS)) {
      await page.setViewportSize(size);
      for (const name of PAGES) {
        await go(name);
        await page.waitForTimeout(name === 'overview' ? 600 : 250);
        const problems = await page.evaluate(auditPage);
        for (const p of problems) a11y.push(`${name} (${label}): ${p}`);
        // Nothing may stick out sideways on a phone (tables scroll inside their box).
        if (label === 'phone') {
          const wide = await page.evaluate(() => document.documentElement.scrollWidth);
          if (wide > size.width + 1) a11y.push(`${name} (phone): page is ${wide} px wide`);
        }
        await page.screenshot({ path: join(OUT, `${name}-${label}.png`), fullPage: true });
      }
    }
    await page.setViewportSize(WIDTHS.desktop);

    step('keyboard: digits switch pages');
    await go('overview');
    await page.keyboard.press('6');
    await page.waitForFunction(() => location.hash === '#/alarms');

    step('stopping the tone raises an alarm, listed live on the Alarms page');
    process.kill(SENDER_PID, 'SIGKILL');
    await go('alarms');
    // An alarm when the daemon has alarm rules; the raised health condition (no packets) in
    // any case.
    await page.waitForFunction(
      (input) => /no_packets/.test(document.querySelector(`#main tr.condition[data-subject="${input}"]`)?.textContent),
      input,
      { timeout: 30_000 },
    );
    console.log(`e2e: condition listed: ${await page.textContent(`#main tr.condition[data-subject="${input}"]`)}`);
    // The daemon's rules: no packets (critical) at once, programme silence after 2 s.
    for (const condition of ['no_packets', 'silence']) {
      await page
        .waitForSelector(`#main tr.alarm[data-subject="${input}"][data-condition="${condition}"]`, { timeout: 20_000 })
        .catch(() => fail(`no ${condition} alarm listed on the Alarms page`));
    }
    await page.waitForSelector('#main tr[data-kind="alarm_raised"]');
    console.log(`e2e: alarms listed; announced: ${await page.textContent('#alarm-live')}`);
    await page.screenshot({ path: join(OUT, 'alarms-raised-desktop.png'), fullPage: true });
    await go('overview');
    const after = await page.locator(`.input-card[data-input="${input}"] .slot-badge .badge`).getAttribute('data-level');
    if (after === 'ok') fail('input badge still ok after the tone stopped');
    if (!/no_packets/.test(await page.textContent(`.input-card[data-input="${input}"] .conditions`))) fail('no_packets not shown on the input card');
    await page.screenshot({ path: join(OUT, 'overview-alarm-desktop.png'), fullPage: true });

    if (consoleErrors.length) fail(`console errors:\n  ${consoleErrors.join('\n  ')}`);
    if (a11y.length) fail(`accessibility problems:\n  ${a11y.join('\n  ')}`);
    const size = statSync(ts).size;
    if (size < 10_000) fail(`the SRT receiver got only ${size} bytes`);
    console.log(`e2e: ok (${size} bytes received over SRT; screenshots in ${OUT})`);
  } finally {
    receiver?.kill('SIGINT');
    await browser.close();
  }
}

main().catch((e) => {
  console.error(`e2e FAILED at "${stepName}": ${e.message}`);
  if (consoleErrors.length) console.error(`console errors:\n  ${consoleErrors.join('\n  ')}`);
  process.exit(1);
});
