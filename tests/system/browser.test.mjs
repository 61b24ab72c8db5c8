// The chat page in a real browser (Debian's chromium driven by Playwright): two tabs chat,
// see typing, and carry on after the server is killed and restarted; two users see each
// other online and talk privately; unread counts, read in one tab and cleared in another, and
// "seen by"; the page works on a phone-sized screen.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { describe, it } from 'node:test';
import { chromium } from 'playwright-core';
import { call, connect, standalone, tempDir } from './harness.mjs';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

/** A standalone server handing out dev tokens, and a browser; both stopped after the test. */
async function setUp(t) {
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
  return { proc, browser };
}

async function openTab(browser, url, name, room, context = {}) {
  const page = await (await browser.newContext(context)).newPage();
  await page.goto(url);
  await page.fill('#name', name);
  await page.fill('#room', room);
  await page.click('#go');
  await untilJoined(page);
  return page;
}

async function untilJoined(page) {
  try {
    await page.waitForSelector('#text:not([disabled])', { timeout: 30000 });
  } catch (err) {
    const state = await page.evaluate(() => [document.querySelector('#status').textContent, document.querySelector('#log').textContent]);
    throw new Error(`page did not join: ${JSON.stringify(state)}`);
  }
}

/** Waits until the page's text at `selector` satisfies `check`; says what it was if not. */
async function until(page, selector, check, what, timeoutMs = 15000) {
  // Every match's text, joined: '' while there is none yet.
  const read = () => page.$$eval(selector, (els) => els.map((e) => e.textContent).join('\n'));
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = await read();
    if (check(text)) return text;
    if (Date.now() > deadline) throw new Error(`${what}: ${selector} is ${JSON.stringify(text)}`);
    await page.waitForTimeout(50);
  }
}
const statusIs = (page, text) => until(page, '#status', (s) => s === text, `status should be ${JSON.stringify(text)}`);
const logHas = (page, text) => until(page, '#log', (s) => s.includes(text), `the log should show ${JSON.stringify(text)}`);

const messages = (page) => page.$$eval('#log .msg', (els) => els.map((e) => e.textContent));
const online = (page) => page.$$eval('#online li', (els) => els.map((e) => e.textContent));
const onlineIs = async (page, expected) => {
  const deadline = Date.now() + 15000;
  for (;;) {
    const list = await online(page);
    if (JSON.stringify(list) === JSON.stringify(expected)) return;
    if (Date.now() > deadline) assert.deepEqual(list, expected, 'online list');
    await page.waitForTimeout(50);
  }
};

/** The room list as [name, badge] pairs, badge '' when there is none. */
const roomList = (page) => page.$$eval('#rooms li', (els) => els.map((li) => [
  li.querySelector('button').textContent, li.querySelector('.badge')?.textContent ?? '']));
const roomsAre = async (page, expected, what, timeoutMs = 15000) => {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const list = await roomList(page);
    if (JSON.stringify(list) === JSON.stringify(expected)) return;
    if (Date.now() > deadline) assert.deepEqual(list, expected, what);
    await page.waitForTimeout(50);
  }
};
// The page asks for the inbox every 10 s anyway: a change awaited for less than that came
// from a live event (notify, read, receipt).
const LIVE_MS = 5000;

describe('browser chat page', () => {
  it('two tabs chat, see typing, and survive a server restart', async (t) => {
    const { proc, browser } = await setUp(t);
    const ada = await openTab(browser, proc.url, 'ada', 'lobby');
    const bob = await openTab(browser, proc.url, 'bob', 'lobby');

    await ada.type('#text', 'hello from a browser');
    await bob.waitForFunction(() => document.querySelector('#typing').textContent.includes('ada'), null, { timeout: 10000 });
    await ada.press('#text', 'Enter');
    await bob.waitForFunction(() => document.querySelector('#log').textContent.includes('hello from a browser'), null, { timeout: 10000 });
    assert.match((await messages(bob))[0], /ada\s*hello from a browser\s*#1/);

    // Kill the server; the page notices, says so, reconnects by itself and rejoins with since.
    await proc.kill();
    for (const page of [ada, bob]) {
      await page.waitForSelector('#text[disabled]', { timeout: 10000 });
      await statusIs(page, 'Reconnecting…');
    }
    await proc.start();
    for (const page of [ada, bob]) await untilJoined(page);
    await statusIs(ada, 'Connected as ada in #lobby');
    await bob.fill('#text', 'back after the crash');
    await bob.press('#text', 'Enter');
    await ada.waitForFunction(() => document.querySelector('#log').textContent.includes('back after the crash'), null, { timeout: 20000 });
    const seen = await messages(ada);
    assert.equal(seen.length, 2, `each message once: ${JSON.stringify(seen)}`);
    assert.match(seen[1], /bob\s*back after the crash\s*#2/);
    await ada.screenshot({ path: process.env.TIDINGS_SCREENSHOT ?? `${tempDir()}/chat.png` });
  });

  it('two users see each other online, talk privately from the list, see times, keep a rejected text', async (t) => {
    const { proc, browser } = await setUp(t);
    const ada = await openTab(browser, proc.url, 'ada', 'lobby');
    await statusIs(ada, 'Connected as ada in #lobby');
    await onlineIs(ada, ['ada (you)']);
    const bob = await openTab(browser, proc.url, 'bob', 'lobby');
    // Bob's list comes from asking on join; ada's gains bob from a live presence event.
    await onlineIs(bob, ['ada', 'bob (you)']);
    await onlineIs(ada, ['ada (you)', 'bob']);
    await until(ada, '#online-title', (s) => s === '2 online', 'the count');

    // Bob clicks ada: a direct chat opens, and he writes before ada has opened it.
    await bob.click('#online button:text-is("ada")');
    await statusIs(bob, 'Connected as bob, talking with ada');
    await untilJoined(bob);
    const sentAt = Date.now();
    await bob.fill('#text', 'psst, ada');
    await bob.press('#text', 'Enter');
    await logHas(bob, 'psst, ada');
    assert.ok(!(await ada.textContent('#log')).includes('psst'), 'the lobby does not get the private message');

    // Ada clicks bob: the same private room, with bob's message as history, with its time.
    await ada.click('#online button:text-is("bob")');
    await statusIs(ada, 'Connected as ada, talking with bob');
    await logHas(ada, 'psst, ada');
    assert.match((await messages(ada))[0], /bob\s*psst, ada\s*#1/);
    const [shown, iso] = await ada.$eval('#log .msg time', (e) => [e.textContent, e.dateTime]);
    assert.match(shown, /\d{1,2}:\d{2}/, 'a history line shows its time');
    assert.ok(Math.abs(Date.parse(iso) - sentAt) < 60000, `the time is the message's: ${iso}`);
    await untilJoined(ada);
    await ada.fill('#text', 'hi bob');
    await ada.press('#text', 'Enter');
    await logHas(bob, 'hi bob');
    assert.deepEqual(await ada.$$eval('#rooms button', (els) => els.map((e) => e.textContent)), ['#lobby', 'bob']);

    // Back in the lobby: no private message there; a rejected text stays in the input.
    await ada.click('#rooms button:text-is("#lobby")');
    await statusIs(ada, 'Connected as ada in #lobby');
    assert.ok(!(await ada.textContent('#log')).includes('psst'), 'the lobby does not show the private message');
    await ada.fill('#text', 'buy Spam now');
    await ada.press('#text', 'Enter');
    await until(ada, '#status', (s) => /^Could not send: \S/.test(s), 'the refusal is shown');
    assert.equal(await ada.inputValue('#text'), 'buy Spam now', 'the rejected text is still there to fix');

    // Bob leaves: ada's list drops him.
    await bob.context().close();
    await onlineIs(ada, ['ada (you)']);
    await until(ada, '#online-title', (s) => s === '1 online', 'the count');
  });

  it('a busy room shows a count instead of the list, and the list again once it is small', async (t) => {
    const { proc, browser } = await setUp(t);
    const ada = await openTab(browser, proc.url, 'ada', 'lobby');
    await onlineIs(ada, ['ada (you)']);
    // Stock clients join too; the harness sets TIDINGS_PRESENCE_EVENTS_MAX to 5.
    const join = async (name) => {
      const res = await fetch(`${proc.url}/dev/token`, { method: 'POST', body: JSON.stringify({ name }),
        headers: { 'Content-Type': 'application/json' } });
      const socket = await connect(proc.url, { token: (await res.json()).token });
      t.after(() => socket.close());
      assert.equal((await call(socket, 'join', { room: 'lobby' })).ok, true);
      return socket;
    };
    const others = [];
    for (const name of ['u1', 'u2', 'u3', 'u4', 'u5']) others.push(await join(name));
    await until(ada, '#online-title', (s) => s === '6 online', 'the count from occupancy');
    assert.deepEqual(await online(ada), [], 'no list that could not be kept current');

    // Small again: the next presence event brings the whole list back, current.
    for (const socket of others.splice(0, 3)) socket.close();
    await until(ada, '#online-title', (s) => s === '3 online', 'the count going down');
    await join('u6');
    await onlineIs(ada, ['ada (you)', 'u4', 'u5', 'u6']);
    await until(ada, '#online-title', (s) => s === '4 online', 'the count');
  });

  it('on a 380 px wide screen Join is in view, and Enter in the name or room field joins', async (t) => {
    const { proc, browser } = await setUp(t);
    const width = 380;
    const page = await (await browser.newContext({ viewport: { width, height: 700 } })).newPage();
    await page.goto(proc.url);
    const inView = async (selector) => {
      const box = await page.locator(selector).boundingBox();
      assert.ok(box && box.x >= 0 && box.x + box.width <= width && box.y + box.height <= 700,
        `${selector} is within the ${width} px viewport: ${JSON.stringify(box)}`);
    };
    await inView('#go');
    assert.ok(await page.evaluate(() => document.documentElement.scrollWidth) <= width, 'no sideways scrolling');

    await page.fill('#name', 'cy');
    await page.press('#name', 'Enter');
    await untilJoined(page);
    await statusIs(page, 'Connected as cy in #lobby');
    await inView('#send');

    await page.fill('#room', 'kitchen');
    await page.press('#room', 'Enter');
    await statusIs(page, 'Connected as cy in #kitchen');
    assert.deepEqual(await page.$$eval('#rooms button', (els) => els.map((e) => e.textContent)), ['#lobby', '#kitchen']);
  });

  it('unread badges from the inbox, cleared by reading in another tab, and "seen by" for the sender', async (t) => {
    const { proc, browser } = await setUp(t);
    const say = async (page, text) => {
      await page.fill('#text', text);
      await page.press('#text', 'Enter');
      await logHas(page, text);
    };
    const ada = await openTab(browser, proc.url, 'ada', 'lobby');
    // Bob's first tab is on a phone-sized screen, in the lobby while ada writes elsewhere.
    const bob = await openTab(browser, proc.url, 'bob', 'lobby', { viewport: { width: 380, height: 700 } });
    await onlineIs(ada, ['ada (you)', 'bob']);

    // Ada writes to bob privately twice, then twice in a room he is not in, once to him.
    await ada.click('#online button:text-is("bob")');
    await untilJoined(ada);
    await statusIs(ada, 'Connected as ada, talking with bob');
    await say(ada, 'are you there?');
    await say(ada, 'lunch at noon');
    await ada.fill('#room', 'kitchen');
    await ada.press('#room', 'Enter');
    await statusIs(ada, 'Connected as ada in #kitchen');
    await say(ada, 'the kettle is broken');
    await say(ada, '@bob can you fix it?');
    await ada.click('#rooms button:text-is("bob")');
    await statusIs(ada, 'Connected as ada, talking with bob');

    // Bob's open tab learns of it live (notify); the newest room comes first after his own.
    await roomsAre(bob, [['#lobby', ''], ['#kitchen', '2 · @1'], ['ada', '2']], 'badges from notify', LIVE_MS);
    assert.equal(await bob.getAttribute('#rooms button:text-is("#kitchen")', 'aria-label'),
      '#kitchen, 2 unread, 1 mention', 'the counts in words');
    assert.ok(await bob.evaluate(() => document.documentElement.scrollWidth) <= 380, 'no sideways scrolling');
    const badge = await bob.locator('#rooms .badge').first().boundingBox();
    assert.ok(badge && badge.x + badge.width <= 380, `a badge is within 380 px: ${JSON.stringify(badge)}`);
    // A tab opened afterwards (bob was offline there) gets the same from the inbox.
    const bob2 = await openTab(browser, proc.url, 'bob', 'lobby');
    await roomsAre(bob2, [['#lobby', ''], ['#kitchen', '2 · @1'], ['ada', '2']], 'badges from the inbox');
    assert.equal(await ada.locator('#log .seen').count(), 0, 'nobody has read the direct messages yet');

    // Bob opens the direct chat: the unread messages, under a line saying they are new.
    await bob.click('#rooms button:text-is("ada")');
    await statusIs(bob, 'Connected as bob, talking with ada');
    await logHas(bob, 'lunch at noon');
    const lines = await messages(bob);
    assert.equal(lines.length, 2, `each message once: ${JSON.stringify(lines)}`);
    assert.match(lines[0], /ada\s*are you there\?\s*#1/);
    assert.match(lines[1], /ada\s*lunch at noon\s*#2/);
    assert.equal(await bob.textContent('#log > div > :first-child'), 'New messages');
    // Its badge goes, in this tab and (from the read event) in the other; the kitchen's stays.
    await roomsAre(bob, [['#lobby', ''], ['ada', ''], ['#kitchen', '2 · @1']], 'read here');
    await roomsAre(bob2, [['#lobby', ''], ['#kitchen', '2 · @1'], ['ada', '']], 'read in the other tab', LIVE_MS);

    // Ada, in the direct chat, sees that bob has read it, under her last message.
    await until(ada, '#log .seen', (s) => s === 'Seen by bob', 'the receipt is shown', LIVE_MS);
    assert.match(await ada.$eval('#log .seen', (e) => e.previousElementSibling.textContent), /lunch at noon\s*#2/);

    // Bob opens the kitchen from the list: the mention is there, and no badge is left.
    await bob.click('#rooms button:text-is("#kitchen")');
    await statusIs(bob, 'Connected as bob in #kitchen');
    await logHas(bob, '@bob can you fix it?');
    await roomsAre(bob, [['#lobby', ''], ['ada', ''], ['#kitchen', '']], 'all read');
    await roomsAre(bob2, [['#lobby', ''], ['#kitchen', ''], ['ada', '']], 'all read in the other tab', LIVE_MS);
  });

  it('a moderator deletes a message for everyone and mutes its sender from the page; members delete their own', async (t) => {
    const { proc, browser } = await setUp(t);
    const ada = await openTab(browser, proc.url, 'ada', 'lobby');
    const modPage = await (await browser.newContext()).newPage();
    await modPage.goto(proc.url);
    await modPage.fill('#name', 'mia');
    await modPage.fill('#room', 'lobby');
    await modPage.check('#moderator');
    await modPage.click('#go');
    await untilJoined(modPage);
    for (const text of ['first words', 'regrettable words']) {
      await ada.fill('#text', text);
      await ada.press('#text', 'Enter');
      await logHas(modPage, text);
    }
    // Ada sees delete on her own lines only; the moderator sees delete and mute on them.
    assert.equal(await ada.locator('#log .msg .mute').count(), 0);
    assert.equal(await modPage.locator('#log .msg[data-seq="2"] .mute').count(), 1);
    await modPage.click('#log .msg[data-seq="2"] .delete');
    for (const page of [ada, modPage]) {
      await until(page, '#log .msg[data-seq="2"] .text', (s) => s === 'message deleted', 'the line shows the deletion');
      assert.equal(await page.locator('#log .msg.deleted').count(), 1);
    }
    assert.ok(!(await ada.textContent('#log')).includes('regrettable'), 'the text is gone from the page');

    // Reloaded, the page shows it deleted from history too.
    await ada.reload();
    await ada.fill('#name', 'ada');
    await ada.fill('#room', 'lobby');
    await ada.click('#go');
    await untilJoined(ada);
    await until(ada, '#log .msg[data-seq="2"] .text', (s) => s === 'message deleted', 'history shows the deletion');

    // Muted from the page: her next send is refused and says why.
    await modPage.click('#log .msg[data-seq="1"] .mute');
    await statusIs(modPage, 'ada is muted here for 10 minutes');
    await ada.fill('#text', 'can I still talk?');
    await ada.press('#text', 'Enter');
    await until(ada, '#status', (s) => s.includes('muted'), 'the refusal is shown');

    // A member deletes her own message.
    const bob = await openTab(browser, proc.url, 'bob', 'lobby');
    await bob.fill('#text', 'oops, wrong room');
    await bob.press('#text', 'Enter');
    await logHas(bob, 'oops, wrong room');
    await bob.click('#log .msg[data-seq="3"] .delete');
    await until(modPage, '#log .msg[data-seq="3"] .text', (s) => s === 'message deleted', 'everyone sees it deleted');
  });
});
