// HTTP listen-in in a real browser: Debian's Chromium (playwright-core) plays Estuary's
// stream in an <audio> element. Run by crates/estuary/tests/icecast.rs:
//
//   node listen.mjs URL
//
// Passes when the element plays without an error and its currentTime passes 2 s of audio;
// prints the figures it saw. Exits non-zero with a message otherwise.

import { chromium } from 'playwright-core';

const url = process.argv[2];
const browser = await chromium.launch({
  executablePath: process.env.E2E_CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu',
         '--autoplay-policy=no-user-gesture-required'],
});
try {
  const page = await browser.newPage();
  await page.setContent(`<audio id="a" src="${url}" autoplay></audio>`);
  const result = await page.evaluate(async () => {
    const a = document.getElementById('a');
    const start = performance.now();
    while (performance.now() - start < 20000) {
      if (a.error) return { error: `media error ${a.error.code}: ${a.error.message}` };
      if (a.currentTime > 2.0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    return { currentTime: a.currentTime, paused: a.paused, readyState: a.readyState, error: null };
  });
  console.log(`listen: ${JSON.stringify(result)}`);
  if (result.error) throw new Error(result.error);
  if (!(result.currentTime > 2.0)) throw new Error(`currentTime stayed at ${result.currentTime}`);
} finally {
  await browser.close();
}
