// What the end-to-end test runs against: a real `chat` process (and a real Redis) on
// free ports, a TCP proxy that can cut one browser off the network, and Debian's
// Chromium driven by playwright-core.

import { spawn, type ChildProcess } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser } from 'playwright-core';

export const WEB_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const ARTIFACTS = resolve(WEB_DIR, 'test-artifacts');
export const CHAT_BIN = process.env.CHAT_BIN ?? resolve(WEB_DIR, '../target/debug/chat');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

mkdirSync(ARTIFACTS, { recursive: true });

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A port nothing listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = net.createServer();
    srv.on('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => res(port));
    });
  });
}

async function waitFor(what: string, ms: number, ok: () => Promise<boolean>): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await ok().catch(() => false)) return;
    await sleep(100);
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

/** A child process with its output in test-artifacts/<name>.log. */
class Proc {
  private exited: Promise<void>;
  constructor(readonly child: ChildProcess) {
    this.exited = new Promise((r) => child.once('exit', () => r()));
  }
  get running() {
    return this.child.exitCode === null && this.child.signalCode === null;
  }
  async kill(signal: NodeJS.Signals = 'SIGKILL') {
    if (this.running) this.child.kill(signal);
    await this.exited;
  }
}

function start(name: string, cmd: string, args: string[], env: Record<string, string> = {}): Proc {
  const log = createWriteStream(resolve(ARTIFACTS, `${name}.log`), { flags: 'w' });
  const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.pipe(log);
  child.stderr!.pipe(log);
  const proc = new Proc(child);
  running.add(proc);
  child.once('exit', () => running.delete(proc));
  return proc;
}

const running = new Set<Proc>();
process.once('exit', () => {
  for (const p of running) p.child.kill('SIGKILL');
});

export class Redis {
  private constructor(
    readonly port: number,
    private proc: Proc,
  ) {}
  get url() {
    return `redis://127.0.0.1:${this.port}/`;
  }
  static async start(): Promise<Redis> {
    const port = await freePort();
    const proc = start('redis', 'redis-server', [
      '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    ]);
    await waitFor(`redis-server on port ${port}`, 10_000, () => ping(port));
    return new Redis(port, proc);
  }
  stop() {
    return this.proc.kill('SIGKILL');
  }
}

function ping(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = net.connect(port, '127.0.0.1', () => s.write('PING\r\n'));
    s.on('data', (d) => {
      res(d.toString().startsWith('+PONG'));
      s.destroy();
    });
    s.on('error', () => res(false));
  });
}

/** The all-in-one `chat` on a fixed port, so it can be killed and started again there. */
export class Chat {
  private proc: Proc | null = null;
  private starts = 0;
  constructor(
    readonly name: string,
    readonly port: number,
    private env: Record<string, string>,
  ) {}
  get url() {
    return `http://127.0.0.1:${this.port}`;
  }
  /** `env` may depend on the address, e.g. for CHAT_ALLOWED_ORIGINS. */
  static async start(
    name: string,
    env: Record<string, string> | ((url: string) => Record<string, string>) = {},
  ): Promise<Chat> {
    if (!existsSync(CHAT_BIN)) {
      throw new Error(`${CHAT_BIN} is missing: build it with cargo build -p chat`);
    }
    const port = await freePort();
    const chat = new Chat(name, port, typeof env === 'function' ? env(`http://127.0.0.1:${port}`) : env);
    await chat.start();
    return chat;
  }
  async start() {
    this.starts += 1;
    this.proc = start(`${this.name}-${this.starts}`, CHAT_BIN, [], {
      CHAT_ADDR: `127.0.0.1:${this.port}`,
      RUST_LOG: 'info',
      ...this.env,
    });
    await waitFor(`chat on port ${this.port}`, 20_000, async () => {
      if (!this.proc!.running) throw new Error(`chat exited: see test-artifacts/${this.name}-${this.starts}.log`);
      return (await fetch(`${this.url}/readyz`)).ok;
    });
  }
  /** The process dies at once, as a crashed or killed server does. */
  kill() {
    return this.proc?.kill('SIGKILL');
  }
  /** SIGTERM: the server drains (`reconnect`, close 1012) and exits by itself. */
  async stop() {
    const proc = this.proc;
    if (!proc) return;
    const killer = setTimeout(() => proc.child.kill('SIGKILL'), 20_000);
    await proc.kill('SIGTERM');
    clearTimeout(killer);
  }
  async restart() {
    await this.kill();
    await this.start();
  }
}

/**
 * The page must be the build in web/dist: `chat` embeds web/dist when it is compiled,
 * so a binary built before the last `npm run build` serves an old client.
 */
export async function checkServedBuild(chat: Chat): Promise<void> {
  const served = await (await fetch(`${chat.url}/`)).text();
  const built = readFileSync(resolve(WEB_DIR, 'dist/index.html'), 'utf8');
  if (served !== built) {
    throw new Error(
      `${CHAT_BIN} serves a different web client than web/dist: rebuild it after the web build ` +
        '(touch services/chat/src/web.rs && cargo build -p chat; cargo does not see changes under web/dist)',
    );
  }
}

/**
 * A TCP proxy in front of `chat` for one browser: `cut()` drops its connections and
 * refuses new ones, as a lost network does; `restore()` lets it through again.
 */
export class Cable {
  private sockets = new Set<net.Socket>();
  private isCut = false;
  private constructor(
    private server: net.Server,
    readonly port: number,
  ) {}
  get url() {
    return `http://127.0.0.1:${this.port}`;
  }
  static async to(target: () => number): Promise<Cable> {
    const port = await freePort();
    let cable: Cable;
    const server = net.createServer((client) => {
      if (cable.isCut) {
        client.destroy();
        return;
      }
      const upstream = net.connect(target(), '127.0.0.1');
      for (const [a, b] of [
        [client, upstream],
        [upstream, client],
      ]) {
        cable.sockets.add(a);
        a.pipe(b);
        a.on('error', () => b.destroy());
        a.on('close', () => {
          cable.sockets.delete(a);
          b.destroy();
        });
      }
    });
    cable = new Cable(server, port);
    await new Promise<void>((r) => server.listen(port, '127.0.0.1', () => r()));
    return cable;
  }
  cut() {
    this.isCut = true;
    for (const s of this.sockets) s.destroy();
  }
  restore() {
    this.isCut = false;
  }
  close() {
    this.cut();
    return new Promise<void>((r) => this.server.close(() => r()));
  }
}

/** Headless Chromium from Debian; Playwright gives each launch a fresh user-data-dir. */
export function launchBrowser(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium`);
  }
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--disable-quic',
    ],
  });
}

/** A user token as a backend would issue it: HS256, `sub`, `exp` in an hour. */
export function signJwt(sub: string, secret: string): string {
  const part = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const unsigned = `${part({ alg: 'HS256', typ: 'JWT' })}.${part({ sub, exp: Math.floor(Date.now() / 1000) + 3600 })}`;
  return `${unsigned}.${createHmac('sha256', secret).update(unsigned).digest('base64url')}`;
}
