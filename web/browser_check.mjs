// Opens the page in headless Chromium (Debian's /usr/bin/chromium through playwright-core), runs
// the model on an image through the page's file input, and writes what the page found.
//
//   node web/browser_check.mjs URL IMAGE OUT.json SCREENSHOT.png [REPEATS] [--switch-to NAME]
//
// OUT.json: window.cornernet after the run (backend, model, result.raw outputs,
// result.detections, the inference ms), the page's time line, the table's row count at the
// default threshold and at 0, and, with REPEATS, the ms of that many more runs. With
// --switch-to NAME, the model is then switched to NAME through the page's picker (which runs it
// on the same image): `first` holds the first model's result, the rest NAME's. The screenshot is
// taken at the default threshold.
import fs from 'node:fs';
import { launchChromium, openPage } from './chromium.mjs';

const args = process.argv.slice(2);
let switchTo = null;
const at = args.indexOf('--switch-to');
if (at >= 0) [, switchTo] = args.splice(at, 2);
const [url, image, outPath, screenshot, repeats = '0'] = args;
if (!screenshot || (at >= 0 && !switchTo)) {
  console.error('usage: node browser_check.mjs URL IMAGE OUT.json SCREENSHOT.png [REPEATS] [--switch-to NAME]');
  process.exit(2);
}
const browser = await launchChromium();
try {
  const messages = [];
  const page = await openPage(browser, url, messages, 120000);
  await page.setInputFiles('#file', image);
  await page.waitForFunction(() => window.cornernet.result !== null && window.cornernet.runs > 0, null, { timeout: 120000 });
  let first = null;
  if (switchTo) {
    first = await page.evaluate(() => window.cornernet.result);
    const names = await page.evaluate(() => window.cornernet.models.map((m) => m.name));
    if (!names.includes(switchTo)) throw new Error(`no model ${switchTo} in the page's picker (${names.join(', ')})`);
    await page.selectOption('#model', switchTo);
    await page.waitForFunction((name) => window.cornernet.error
      || (window.cornernet.result !== null && window.cornernet.result.model === name), switchTo, { timeout: 300000 });
    const error = await page.evaluate(() => window.cornernet.error);
    if (error) throw new Error(`switching to ${switchTo} failed: ${error}\n${messages.join('\n')}`);
  }
  const state = await page.evaluate(() => ({
    backend: window.cornernet.backend,
    model: window.cornernet.model,
    models: window.cornernet.models,
    result: window.cornernet.result,
    runs: window.cornernet.runs,
    status: document.getElementById('status').textContent,
    time: document.getElementById('time').textContent,
    rows: document.querySelectorAll('#detections tbody tr').length,
  }));
  state.first = first;
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
