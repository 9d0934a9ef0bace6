// Starts Debian's headless Chromium (/usr/bin/chromium, or $CHROMIUM) through playwright-core.
//
// webgl: false (default) disables the GPU, so that WebGL is unavailable and the page falls back to
// WASM; true lets WebGL run on SwiftShader, Chromium's software renderer (no GPU needed), which
// Chromium only allows with --enable-unsafe-swiftshader.
import fs from 'node:fs';
import { chromium } from 'playwright-core';

const COMMON_FLAGS = ['--no-sandbox', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const NO_GPU_FLAGS = ['--disable-gpu'];
const SWIFTSHADER_FLAGS = ['--use-angle=swiftshader', '--enable-unsafe-swiftshader'];

export function chromiumPath() {
  const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
  if (!fs.existsSync(executablePath)) {
    console.error(`error: no Chromium at ${executablePath} (apt-get install chromium, or set CHROMIUM)`);
    process.exit(3);
  }
  return executablePath;
}

export function chromiumFlags({ webgl = false } = {}) {
  return [...COMMON_FLAGS, ...(webgl ? SWIFTSHADER_FLAGS : NO_GPU_FLAGS)];
}

export function launchChromium({ webgl = false } = {}) {
  return chromium.launch({ executablePath: chromiumPath(), args: chromiumFlags({ webgl }) });
}

// Opens `url`, collecting the console in `messages`, and waits until the page's model is ready;
// throws the page's error if it has one.
export async function openPage(browser, url, messages, timeout = 300000) {
  const page = await browser.newPage({ viewport: { width: 1000, height: 900 } });
  page.on('console', (message) => messages.push(`${message.type()}: ${message.text()}`));
  page.on('pageerror', (error) => messages.push(`pageerror: ${error.message}`));
  await page.goto(url);
  await page.waitForFunction(() => window.cornernet && (window.cornernet.ready || window.cornernet.error), null, { timeout });
  const error = await page.evaluate(() => window.cornernet.error);
  if (error) throw new Error(`the page failed: ${error}\n${messages.join('\n')}`);
  return page;
}
