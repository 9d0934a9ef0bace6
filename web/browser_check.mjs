// Opens the page in headless Chromium (Debian's /usr/bin/chromium through playwright-core), runs
// the model on an image through the page's file input, and writes what the page found.
//
//   node web/browser_check.mjs URL IMAGE OUT.json SCREENSHOT.png [REPEATS]
//
// OUT.json: window.cornernet after the run (backend, result.raw outputs, result.detections,
// the inference ms), the table's row count at the default threshold and at 0, and, with
// REPEATS, the ms of that many more runs. The screenshot is taken at the default threshold.
import fs from 'node:fs';
import { chromium } from 'playwright-core';

const [url, image, outPath, screenshot, repeats = '0'] = process.argv.slice(2);
if (!screenshot) {
  console.error('usage: node browser_check.mjs URL IMAGE OUT.json SCREENSHOT.png [REPEATS]');
  process.exit(2);
}
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
if (!fs.existsSync(executablePath)) {
  console.error(`error: no Chromium at ${executablePath} (apt-get install chromium, or set CHROMIUM)`);
  process.exit(3);
}
const browser = await chromium.launch({
  executablePath,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1000, height: 900 } });
  const messages = [];
  page.on('console', (message) => messages.push(`${message.type()}: ${message.text()}`));
  page.on('pageerror', (error) => messages.push(`pageerror: ${error.message}`));
  await page.goto(url);
  await page.waitForFunction(() => window.cornernet && (window.cornernet.ready || window.cornernet.error), null, { timeout: 120000 });
  const error = await page.evaluate(() => window.cornernet.error);
  if (error) throw new Error(`the page failed: ${error}\n${messages.join('\n')}`);
  await page.setInputFiles('#file', image);
  await page.waitForFunction(() => window.cornernet.result !== null && window.cornernet.runs > 0, null, { timeout: 120000 });
  const state = await page.evaluate(() => ({
    backend: window.cornernet.backend,
    result: window.cornernet.result,
    status: document.getElementById('status').textContent,
    rows: document.querySelectorAll('#detections tbody tr').length,
  }));
  await page.screenshot({ path: screenshot, fullPage: true });
  state.rows_at_zero = await page.evaluate(() => { // the slider at 0 lists every detection
    const slider = document.getElementById('threshold');
    slider.value = '0';
    slider.dispatchEvent(new Event('input'));
    return document.querySelectorAll('#detections tbody tr').length;
  });
  if (Number(repeats) > 0) state.times_ms = await page.evaluate((n) => window.cornernet.time(n), Number(repeats));
  state.console = messages;
  fs.writeFileSync(outPath, JSON.stringify(state));
} finally {
  await browser.close();
}
