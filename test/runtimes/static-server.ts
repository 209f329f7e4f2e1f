// A tiny static file server for the browser test: serves `root` on 127.0.0.1 at a random port,
// cross-origin isolated (COOP + COEP headers), so that pages get SharedArrayBuffer and threads.
// Single byte ranges (`Range: bytes=a-b` / `a-`) are answered with 206, as lowbit's URL source
// needs to read a model file (test/worker-browser.test.ts serves the default GGUF this way).
import { createServer, type Server } from 'node:http';
import { open, readFile, stat } from 'node:fs/promises';
import { extname, resolve, sep } from 'node:path';
import type { AddressInfo } from 'node:net';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.wasm': 'application/wasm',
  '.bin': 'application/octet-stream',
  '.css': 'text/css; charset=utf-8',
  '.ico': 'image/x-icon',
};

export interface StaticServer {
  /** e.g. http://127.0.0.1:43121 */
  origin: string;
  /** Request paths served with status 200, in order. */
  served: string[];
  close(): Promise<void>;
}

async function readRange(file: string, start: number, length: number): Promise<Buffer> {
  const fh = await open(file);
  try {
    const buf = Buffer.alloc(length);
    const { bytesRead } = await fh.read(buf, 0, length, start);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

export async function serveStatic(root: string): Promise<StaticServer> {
  const base = resolve(root);
  const served: string[] = [];
  const server: Server = createServer(async (req, res) => {
    try {
      const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
      let file = resolve(base, '.' + path);
      if (file !== base && !file.startsWith(base + sep)) {
        res.writeHead(403).end();
        return;
      }
      if ((await stat(file)).isDirectory()) {
        if (!path.endsWith('/')) {
          // so that the page's relative URLs resolve inside the folder
          res.writeHead(301, { Location: path + '/' }).end();
          return;
        }
        file = resolve(file, 'index.html');
      }
      const size = (await stat(file)).size;
      const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
      const start = range ? Number(range[1]) : 0;
      const end = range ? Math.min(range[2] ? Number(range[2]) : size - 1, size - 1) : size - 1;
      if (range && start >= size) {
        res.writeHead(416, { 'Content-Range': `bytes */${size}` }).end();
        return;
      }
      const body = range ? await readRange(file, start, end + 1 - start) : await readFile(file);
      res.writeHead(range ? 206 : 200, {
        'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream',
        'Content-Length': body.length,
        'Accept-Ranges': 'bytes',
        ...(range ? { 'Content-Range': `bytes ${start}-${end}/${size}` } : {}),
        'Cache-Control': 'no-store',
        'Cross-Origin-Opener-Policy': 'same-origin',
        'Cross-Origin-Embedder-Policy': 'require-corp',
      });
      res.end(req.method === 'HEAD' ? undefined : body);
      served.push(path);
    } catch {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found');
    }
  });
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(0, '127.0.0.1', ok);
  });
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    served,
    close: () =>
      new Promise<void>((ok) => {
        server.closeAllConnections();
        server.close(() => ok());
      }),
  };
}
