// The demo's vite config (examples/browser). `npm run demo:browser` runs `vite examples/browser`.
//
// - COOP / COEP headers make the page cross-origin isolated, so the model worker gets
//   SharedArrayBuffer and may use CPU threads (without them it runs on one thread).
// - 'lowbit' and 'lowbit/worker' are this repository's build (dist/); an app that installed the
//   package needs no alias (nor any other option: the model worker bundles with vite's defaults).
// - In the repository, /models/ serves .cache/models (the default model that scripts/setup.sh
//   fetched), with Range requests, so the demo runs offline.
import { createReadStream, existsSync, statSync } from 'node:fs';
import { join, normalize, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const MODELS = join(ROOT, '.cache/models');
const ISOLATED = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' };

/** GET/HEAD /models/<path> from .cache/models, honouring a single `Range: bytes=a-b`. */
function serveModels(req, res, next) {
  const path = normalize(decodeURIComponent(new URL(req.url, 'http://x').pathname));
  const file = join(MODELS, path);
  if (!file.startsWith(MODELS + sep) || !existsSync(file) || !statSync(file).isFile()) return next();
  const size = statSync(file).size;
  const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
  const start = m ? Number(m[1]) : 0;
  const end = m && m[2] ? Math.min(Number(m[2]), size - 1) : size - 1;
  if (m && start >= size) return res.writeHead(416, { 'Content-Range': `bytes */${size}` }).end();
  res.writeHead(m ? 206 : 200, { ...ISOLATED, 'Accept-Ranges': 'bytes', 'Content-Length': end - start + 1, 'Content-Type': 'application/octet-stream', ...(m ? { 'Content-Range': `bytes ${start}-${end}/${size}` } : {}) });
  if (req.method === 'HEAD') return res.end();
  createReadStream(file, { start, end }).pipe(res);
}

export default defineConfig({
  resolve: {
    alias: [
      { find: /^lowbit\/worker$/, replacement: join(ROOT, 'dist/worker.js') },
      { find: /^lowbit$/, replacement: join(ROOT, 'dist/index.js') },
    ],
  },
  server: { headers: ISOLATED, fs: { allow: [ROOT] } },
  preview: { headers: ISOLATED },
  build: { rollupOptions: { input: { demo: fileURLToPath(new URL('index.html', import.meta.url)), quantize: fileURLToPath(new URL('quantize.html', import.meta.url)) } } },
  plugins: [
    {
      name: 'lowbit-demo-models',
      configureServer: (server) => void server.middlewares.use('/models', serveModels),
      configurePreviewServer: (server) => void server.middlewares.use('/models', serveModels),
    },
  ],
});
