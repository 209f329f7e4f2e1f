/**
 * Opens a page of headless Chromium (Debian's /usr/bin/chromium, or LOWBIT_CHROMIUM, driven by
 * playwright-core) on the repo served from 127.0.0.1 and returns what the page puts on
 * `window.__lowbitResult`. HOME and the profile live in a temp dir so nothing lands in the real
 * home. A missing browser is an error, not a skip.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serveStatic } from '../runtimes/static-server.js';

export const CHROMIUM = process.env.LOWBIT_CHROMIUM ?? '/usr/bin/chromium';

export interface PageRun<T> {
  result: T;
  /** Paths the static server served, in order. */
  served: string[];
  /** Console lines, page errors and failed requests, for failure messages. */
  logs: string[];
  /** What `o.inspect` returned. */
  inspected?: unknown;
}

/** Runs the page at `path` (under `root`) until it sets window.__lowbitResult, or `timeoutMs`. */
export async function runPage<T>(
  root: string,
  path: string,
  o: { args?: string[]; timeoutMs?: number; inspect?: (page: import('playwright-core').Page) => Promise<unknown> } = {},
): Promise<PageRun<T>> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`chromium is not installed (${CHROMIUM} is missing): run \`bash scripts/setup.sh --with-browser\` (apt-get install chromium) or set LOWBIT_CHROMIUM`);
  }
  const { chromium } = await import('playwright-core');
  const tmp = await mkdtemp(join(tmpdir(), 'lowbit-chromium-'));
  const server = await serveStatic(root);
  const home = join(tmp, 'home');
  const logs: string[] = [];
  try {
    const context = await chromium.launchPersistentContext(join(tmp, 'profile'), {
      executablePath: CHROMIUM,
      headless: true,
      env: { ...process.env, HOME: home, XDG_CONFIG_HOME: join(home, '.config'), XDG_CACHE_HOME: join(home, '.cache') },
      args: [...(o.args ?? []), '--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
      timeout: 60_000,
    });
    try {
      const page = context.pages()[0] ?? (await context.newPage());
      page.on('console', (m) => logs.push(`console.${m.type()}: ${m.text()}`));
      page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
      page.on('requestfailed', (r) => logs.push(`requestfailed: ${r.url()} ${r.failure()?.errorText}`));
      await page.goto(`${server.origin}${path}`, { waitUntil: 'load' });
      await page.waitForFunction(() => (window as any).__lowbitResult !== undefined, undefined, { timeout: o.timeoutMs ?? 60_000, polling: 500 }).catch((e) => {
        throw new Error(`the page set no result: ${e.message}\n${logs.join('\n')}`);
      });
      const result = (await page.evaluate(() => (window as any).__lowbitResult)) as T;
      // e.g. a screenshot or DOM checks of the finished page
      const inspected = o.inspect ? await o.inspect(page) : undefined;
      return { result, served: [...server.served], logs, ...(o.inspect ? { inspected } : {}) };
    } finally {
      await context.close();
    }
  } finally {
    await server.close();
    await rm(tmp, { recursive: true, force: true });
  }
}
