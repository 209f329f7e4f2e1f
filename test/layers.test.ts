/** scripts/check-layers.mjs: the repository follows the layer table, and a wrong-way import is caught. */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
// @ts-expect-error -- a plain .mjs script without types
import { checkLayers } from '../scripts/check-layers.mjs';

describe('layer check', () => {
  it('ts/ has no import against the layer table', () => {
    expect(checkLayers()).toEqual([]);
  });

  it('reports models importing a concrete backend, one backend importing the other, and files of no layer', () => {
    const src = mkdtempSync(join(tmpdir(), 'lowbit-layers-'));
    const put = (file: string, text: string) => {
      mkdirSync(dirname(join(src, file)), { recursive: true });
      writeFileSync(join(src, file), text);
    };
    try {
      put('backends/backend.ts', 'export interface Backend {}\n');
      put('backends/cpu/index.ts', "import type { Backend } from '../backend.js';\nexport class CpuBackend {}\n");
      put('backends/webgpu/index.ts', "/* import { no } from '../cpu/index.js'; */\nimport { CpuBackend } from '../cpu/index.js';\n");
      put('models/llama.ts', "import type { Backend } from '../backends/backend.js';\nexport { CpuBackend } from '../backends/cpu/index.js';\nconst m = () => import('../backends/webgpu/index.js');\n");
      put('models/auto.ts', "import { CpuBackend } from '../backends/cpu/index.js';\n");
      put('stray/thing.ts', 'export const x = 1;\n');
      expect(checkLayers(src).sort()).toEqual(
        [
          'backends/webgpu/index.ts -> ../cpu/index.js (webgpu-backend may not import cpu-backend)',
          'models/llama.ts -> ../backends/cpu/index.js (models may not import cpu-backend)',
          'models/llama.ts -> ../backends/webgpu/index.js (models may not import webgpu-backend)',
          'stray/thing.ts: belongs to no layer — add its folder to LAYERS in scripts/check-layers.mjs (and ARCHITECTURE.md)',
        ].sort(),
      );
    } finally {
      rmSync(src, { recursive: true, force: true });
    }
  });
});
