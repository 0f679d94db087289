// The web client in a real browser against a real `chat`: two users in two browser
// contexts, presence, typing, messages, a lost network with messages sent meanwhile,
// a server restart on the memory engine (history lost: the client says so) and on
// Redis (history kept: both pages carry on).

import { copyFileSync, mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ARTIFACTS, Cable, Chat, Redis, WEB_DIR, checkServedBuild, launchBrowser, signJwt, sleep } from './harness';

const eventually = <T>(fn: () => Promise<T>) => expect.poll(fn, { timeout: 20_000, interval: 100 });

const BACKEND_KEY = 'e2e-backend-key';

const status = (page: Page) => page.locator('.conn').getAttribute('data-status');

/** The texts of the stored messages shown in a room, top to bottom. */
const texts = (page: Page, room = 'general') =>
  page
    .getByRole('list', { name: `Messages in #${room}` })
    .locator('li.msg:not(.pending) .msg-text')
    .allTextContents();

/** Who the people panel says is online. */
const online = async (page: Page) =>
  (await page.locator('aside.people li').allTextContents()).map((t) => t.replace(/\s*\(you\)$/, '').trim());

async function signIn(page: Page, base: string, user: string) {
  await page.goto(`${base}/`);
  await page.getByLabel('Your name').fill(user);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await eventually(() => status(page)).toBe('online');
}

async function say(page: Page, target: string, text: string) {
  const box = page.getByLabel(`Message ${target}`);
  await box.fill(text);
  // Send stays disabled until the room is joined (a page can be online and still
  // joining): Enter before that keeps the draft and sends nothing.
  await eventually(() => page.getByRole('button', { name: 'Send', exact: true }).isEnabled()).toBe(true);
  await box.press('Enter');
}

async function shot(page: Page, name: string) {
  await page.screenshot({ path: resolve(ARTIFACTS, `${name}.png`) });
}

let browser: Browser;
const contexts: BrowserContext[] = [];

async function newPage(): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({ viewport: { width: 1180, height: 720 }, locale: 'en-GB' });
  contexts.push(context);
  const page = await context.newPage();
  page.on('pageerror', (e) => console.error('page error:', e.message));
  return { context, page };
}

beforeAll(async () => {
  browser = await launchBrowser();
});

afterAll(async () => {
  for (const c of contexts) await c.close().catch(() => {});
  await browser?.close();
});

describe('on the memory engine', () => {
  let chat: Chat;
  let cable: Cable;
  let alice: Page;
  let bob: Page;
  let bobContext: BrowserContext;
  const shown: string[] = [];

  beforeAll(async () => {
    // A backend's key: the history test publishes 60 messages at once, past a user's
    // HTTP budget (40 in a burst).
    chat = await Chat.start('chat-memory', { CHAT_API_KEYS: BACKEND_KEY });
    await checkServedBuild(chat);
    // bob reaches the server through a cable that the test can cut.
    cable = await Cable.to(() => chat.port);
    alice = (await newPage()).page;
    ({ context: bobContext, page: bob } = await newPage());
  });

  afterAll(async () => {
    await cable?.close();
    await chat?.kill();
  });

  it('two users sign in, are in #general and see each other online', async () => {
    await signIn(alice, chat.url, 'alice');
    await signIn(bob, cable.url, 'bob');
    await eventually(() => online(alice)).toEqual(['alice', 'bob']);
    await eventually(() => online(bob)).toEqual(['alice', 'bob']);
    await expect(bob.getByRole('heading', { name: '#general' }).isVisible()).resolves.toBe(true);
  });

  it('they see each other typing and exchange messages', async () => {
    await alice.getByLabel('Message #general').pressSequentially('Morning', { delay: 30 });
    await eventually(() => bob.locator('.typing').textContent()).toBe('alice is typing…');
    await alice.getByLabel('Message #general').fill('Morning Bob! Did the deploy go out?');
    await alice.getByLabel('Message #general').press('Enter');
    shown.push('Morning Bob! Did the deploy go out?');
    await eventually(() => texts(bob)).toEqual(shown);
    // The message ends alice's typing notice at once.
    await eventually(() => bob.locator('.typing').textContent()).toBe('');

    await bob.getByLabel('Message #general').pressSequentially('Yes', { delay: 30 });
    await eventually(() => alice.locator('.typing').textContent()).toBe('bob is typing…');
    await say(bob, '#general', 'Yes, rolled out at 9:40. All green so far.');
    shown.push('Yes, rolled out at 9:40. All green so far.');
    await eventually(() => texts(alice)).toEqual(shown);
    await eventually(() => texts(bob)).toEqual(shown);
  });

  it('a direct message reaches the other user, with an unread mark', async () => {
    await alice.getByRole('button', { name: 'bob: send a direct message' }).click();
    await say(alice, '@bob', 'Lunch at 12?');
    const dmFromAlice = bob.getByRole('button', { name: /^@alice/ });
    await eventually(() => dmFromAlice.textContent()).toBe('@alice1 unread');
    await dmFromAlice.click();
    const dm = bob.getByRole('list', { name: 'Messages in @alice' }).locator('.msg-text');
    await eventually(() => dm.allTextContents()).toEqual(['Lunch at 12?']);
    await say(bob, '@alice', 'Sure');
    const dmAlice = alice.getByRole('list', { name: 'Messages in @bob' }).locator('.msg-text');
    await eventually(() => dmAlice.allTextContents()).toEqual(['Lunch at 12?', 'Sure']);
    // The composer has the focus after switching conversations by keyboard or mouse.
    await bob.getByRole('button', { name: '#general', exact: true }).click();
    await expect(bob.evaluate(() => document.activeElement?.id)).resolves.toBe('composer');
    await alice.getByRole('button', { name: '#general', exact: true }).click();
  });

  it('joining and leaving a room updates presence', async () => {
    await bob.getByLabel('Join a room').fill('ops');
    await bob.getByLabel('Join a room').press('Enter');
    await eventually(() => online(bob)).toEqual(['bob']);
    await alice.getByLabel('Join a room').fill('ops');
    await alice.getByRole('button', { name: 'Join', exact: true }).click();
    await eventually(() => online(bob)).toEqual(['alice', 'bob']);
    await alice.getByRole('button', { name: 'Leave #ops' }).click();
    await eventually(() => online(bob)).toEqual(['bob']);
    await bob.getByRole('button', { name: 'Leave #ops' }).click();
    await eventually(() => bob.getByRole('heading', { level: 2, name: '#general' }).count()).toBe(1);
  });

  it('history pages back with "Load older messages", each message once, in order', async () => {
    const all = Array.from({ length: 60 }, (_, i) => `Log line ${i + 1}`);
    for (const text of all) {
      const res = await fetch(`${chat.url}/v1/rooms/history/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${BACKEND_KEY}` },
        body: JSON.stringify({ text, from: 'carol' }),
      });
      expect(res.status).toBe(201);
    }
    await alice.getByLabel('Join a room').fill('history');
    await alice.getByLabel('Join a room').press('Enter');
    // The newest page (50) first …
    await eventually(() => texts(alice, 'history')).toEqual(all.slice(10));
    await alice.getByRole('button', { name: 'Load older messages' }).click();
    // … then the rest, above it.
    await eventually(() => texts(alice, 'history')).toEqual(all);
    await eventually(() => alice.getByText('Beginning of the history').count()).toBe(1);
    await alice.getByRole('button', { name: 'Leave #history' }).click();
  });

  it('a page that lost its network shows the messages sent meanwhile once, in order', async () => {
    cable.cut();
    await bobContext.setOffline(true);
    await eventually(() => status(bob)).not.toBe('online');
    await eventually(() => online(alice)).toEqual(['alice']);

    const away = [
      "Great, I'll update the release notes.",
      'Can you check the dashboard for latency?',
      'p99 looked a bit high on the gateway earlier.',
      "Let me know when you're back online.",
      'Thanks!',
    ];
    for (const t of away) await say(alice, '#general', t);
    shown.push(...away);
    await eventually(() => texts(alice)).toEqual(shown);
    await sleep(1500);
    expect(await texts(bob)).toEqual(shown.slice(0, 2));

    cable.restore();
    await bobContext.setOffline(false);
    await eventually(() => status(bob)).toBe('online');
    await eventually(() => texts(bob)).toEqual(shown);
    await eventually(() => online(alice)).toEqual(['alice', 'bob']);
    // … and nothing arrives twice later on; nothing was lost, so no notice either.
    await sleep(1000);
    expect(await texts(bob)).toEqual(shown);
    expect(await bob.locator('.notice').count()).toBe(0);

    await alice.getByLabel('Message #general').pressSequentially('Sounds', { delay: 30 });
    await eventually(() => bob.locator('.typing').textContent()).toBe('alice is typing…');
    await shot(bob, 'desktop-after-reconnect');
    if (process.env.DOCS_SCREENSHOT) {
      mkdirSync(resolve(WEB_DIR, '../docs'), { recursive: true });
      copyFileSync(resolve(ARTIFACTS, 'desktop-after-reconnect.png'), resolve(WEB_DIR, '../docs/web-client.png'));
    }
    await bob.setViewportSize({ width: 390, height: 844 });
    await shot(bob, 'phone-after-reconnect');
    await bob.getByRole('button', { name: 'Conversations' }).click();
    await shot(bob, 'phone-conversations');
    await bob.keyboard.press('Escape');
    await bob.setViewportSize({ width: 1180, height: 720 });
    await alice.getByLabel('Message #general').fill('');
  });

  it('a restarted server that lost its history: both pages reconnect and say so', async () => {
    await chat.restart();
    // Dev tokens die with the process: the pages renew them by themselves.
    await eventually(() => status(alice)).toBe('online');
    await eventually(() => status(bob)).toBe('online');
    for (const page of [alice, bob]) {
      await eventually(() => page.locator('.notice').first().textContent()).toContain('lost this channel');
      await eventually(() => texts(page)).toEqual([]);
    }
    await say(bob, '#general', 'Back after the restart.');
    await eventually(() => texts(alice)).toEqual(['Back after the restart.']);
    await shot(alice, 'desktop-history-lost');
  });
});

describe('on Redis', () => {
  let redis: Redis;
  let chat: Chat;
  let alice: Page;
  let bob: Page;
  const shown: string[] = [];

  beforeAll(async () => {
    redis = await Redis.start();
    chat = await Chat.start('chat-redis', {
      CHAT_REDIS_URL: redis.url,
      // Tokens stay valid across the restart, as in a real deployment.
      CHAT_JWT_SECRET: 'e2e-secret-long-enough-for-hs256',
      CHAT_DRAIN_SECS: '1',
    });
    await checkServedBuild(chat);
    alice = (await newPage()).page;
    bob = (await newPage()).page;
  });

  afterAll(async () => {
    await chat?.kill();
    await redis?.stop();
  });

  it('a killed (then a drained) and restarted chat: both pages reconnect with their history intact', async () => {
    await signIn(alice, chat.url, 'alice');
    await signIn(bob, chat.url, 'bob');
    await eventually(() => online(alice)).toEqual(['alice', 'bob']);
    for (const [page, text] of [
      [alice, 'Is the Redis failover drill today?'],
      [bob, 'Yes, at three.'],
      [alice, "I'll restart chat first."],
    ] as const) {
      await say(page, '#general', text);
      shown.push(text);
      await eventually(() => texts(alice)).toEqual(shown);
      await eventually(() => texts(bob)).toEqual(shown);
    }

    await chat.kill();
    await eventually(() => status(alice)).not.toBe('online');
    await eventually(() => status(bob)).not.toBe('online');
    await chat.start();
    await eventually(() => status(alice)).toBe('online');
    await eventually(() => status(bob)).toBe('online');
    expect(await texts(alice)).toEqual(shown);
    expect(await texts(bob)).toEqual(shown);

    await say(bob, '#general', 'Restarted, still here.');
    await say(alice, '#general', 'History survived too.');
    shown.push('Restarted, still here.', 'History survived too.');
    await eventually(() => texts(alice)).toEqual(shown);
    await eventually(() => texts(bob)).toEqual(shown);
    expect(await alice.locator('.notice').count()).toBe(0);
    expect(await bob.locator('.notice').count()).toBe(0);

    // A graceful restart too: SIGTERM drains the connections, then a new process.
    await chat.stop();
    await chat.start();
    await eventually(() => status(alice)).toBe('online');
    await eventually(() => status(bob)).toBe('online');
    await say(alice, '#general', 'And after a graceful restart.');
    shown.push('And after a graceful restart.');
    await eventually(() => texts(alice)).toEqual(shown);
    await eventually(() => texts(bob)).toEqual(shown);

    // The history is the server's, not just the page's: a fresh load shows it all.
    await bob.reload();
    await eventually(() => status(bob)).toBe('online');
    await eventually(() => texts(bob)).toEqual(shown);
    await shot(bob, 'desktop-redis-after-restart');
  });
});

describe('without dev mode', () => {
  const secret = 'e2e-secret-long-enough-for-hs256';
  let chat: Chat;

  beforeAll(async () => {
    chat = await Chat.start('chat-jwt', (url) => ({
      CHAT_DEV_MODE: 'false',
      CHAT_JWT_SECRET: secret,
      // Browsers send Origin: the page's own origin must be allowed outside dev mode.
      CHAT_ALLOWED_ORIGINS: url,
    }));
    await checkServedBuild(chat);
  });

  afterAll(async () => {
    await chat?.kill();
  });

  it('signs in with a pasted token, and back to sign-in when the server refuses one', async () => {
    const { page } = await newPage();
    await page.goto(`${chat.url}/`);
    await page.getByLabel('Your name').fill('carol');
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await eventually(() => page.getByRole('alert').textContent()).toContain('sign in with a token');

    await page.getByLabel('Token (JWT)').fill(signJwt('carol', 'not-the-secret-of-this-server'));
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await eventually(() => page.getByRole('alert').textContent()).toContain('The server refused the sign-in');

    await page.getByRole('button', { name: 'Sign in with a token instead' }).click();
    await page.getByLabel('Token (JWT)').fill(signJwt('carol', secret));
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await eventually(() => status(page)).toBe('online');
    await eventually(() => page.locator('.me-name').textContent()).toBe('carol');
    await say(page, '#general', 'Signed in with a token.');
    await eventually(() => texts(page)).toEqual(['Signed in with a token.']);
  });
});
