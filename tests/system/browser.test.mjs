// The chat page in a real browser (Debian's chromium driven by Playwright): two tabs chat,
// see typing, and carry on after the server is killed and restarted.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { describe, it } from 'node:test';
import { chromium } from 'playwright-core';
import { standalone, tempDir } from './harness.mjs';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

async function openTab(browser, url, name, room) {
  const page = await (await browser.newContext()).newPage();
  await page.goto(url);
  await page.fill('#name', name);
  await page.fill('#room', room);
  await page.click('#go');
  await untilJoined(page);
  return page;
}

async function untilJoined(page, proc) {
  try {
    await page.waitForSelector('#text:not([disabled])', { timeout: 30000 });
  } catch (err) {
    const state = await page.evaluate(() => [document.querySelector('#status').textContent, document.querySelector('#log').textContent]);
    throw new Error(`page did not join: ${JSON.stringify(state)}`);
  }
}

const messages = (page) => page.$$eval('#log .msg', (els) => els.map((e) => e.textContent));

describe('browser chat page', () => {
  it('two tabs chat, see typing, and survive a server restart', async (t) => {
    assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install chromium`);
    // The page gets tokens from /dev/token, which standalone serves when it has no secret.
    const proc = await standalone(tempDir(), { TIDINGS_JWT_SECRET: '', TIDINGS_DEV_TOKENS: '1' });
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic',
        '--no-first-run', '--disable-component-update', '--disable-sync'],
    });
    t.after(async () => {
      await browser.close();
      await proc.kill('SIGTERM');
    });

    const ada = await openTab(browser, proc.url, 'ada', 'lobby');
    const bob = await openTab(browser, proc.url, 'bob', 'lobby');

    await ada.type('#text', 'hello from a browser');
    await bob.waitForFunction(() => document.querySelector('#typing').textContent.includes('ada'), null, { timeout: 10000 });
    await ada.press('#text', 'Enter');
    await bob.waitForFunction(() => document.querySelector('#log').textContent.includes('hello from a browser'), null, { timeout: 10000 });
    assert.match((await messages(bob))[0], /ada\s*hello from a browser\s*#1/);

    // Kill the server; the page notices, reconnects by itself and rejoins with since.
    await proc.kill();
    for (const page of [ada, bob]) {
      await page.waitForSelector('#text[disabled]', { timeout: 10000 });
    }
    await proc.start();
    for (const page of [ada, bob]) await untilJoined(page);
    await bob.fill('#text', 'back after the crash');
    await bob.press('#text', 'Enter');
    await ada.waitForFunction(() => document.querySelector('#log').textContent.includes('back after the crash'), null, { timeout: 20000 });
    const seen = await messages(ada);
    assert.equal(seen.length, 2, `each message once: ${JSON.stringify(seen)}`);
    assert.match(seen[1], /bob\s*back after the crash\s*#2/);
    await ada.screenshot({ path: process.env.TIDINGS_SCREENSHOT ?? `${tempDir()}/chat.png` });
  });
});
