import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

/** Debian's Chromium (playwright-core never downloads a browser); `RINGVAKT_CHROMIUM` names another. */
export const CHROMIUM = process.env.RINGVAKT_CHROMIUM ?? '/usr/bin/chromium';

/** Chromium headless, without the sandbox (root in CI), the GPU, QUIC or any background traffic. */
export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`Chromium is not installed at ${CHROMIUM} (.ci/run installs Debian's chromium)`);
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}
