/**
 * The WGSL preprocessor of shaders/README.md: `#include "file"`, `#ifdef` / `#ifndef` /
 * `#else` / `#endif`. Nothing else is rewritten, so the shaders stay plain WGSL for other hosts.
 * Imports nothing: scripts/gen-shaders.mjs runs this file itself (Node's type stripping) to
 * reflect each define set's module, so build time and run time expand the shaders alike.
 */

/** A malformed directive or a missing include (the WebGPU context reports it as INTERNAL). */
export class WgslPreprocessError extends Error {}

/** The preprocessor-relevant defines of `name` and what it includes: every #ifdef / #ifndef name. */
export function definesUsed(name: string, sources: Readonly<Record<string, string>>): string[] {
  const seen = new Set<string>();
  const names = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    for (const line of (sources[file] ?? '').split('\n')) {
      const t = line.trim();
      let m: RegExpMatchArray | null;
      if ((m = t.match(/^#(?:ifdef|ifndef)\s+(\w+)\s*$/))) names.add(m[1]!);
      else if ((m = t.match(/^#include\s+"([\w.-]+)"\s*$/))) visit(m[1]!);
    }
  };
  visit(name);
  return [...names].sort();
}

export function preprocess(name: string, sources: Readonly<Record<string, string>>, defines: ReadonlySet<string>): string {
  const included = new Set<string>();
  const out: string[] = [];
  const expand = (file: string, from: string) => {
    const text = sources[file];
    if (text === undefined) throw new WgslPreprocessError(`shader ${file} (included from ${from}) is not in the build`);
    if (included.has(file)) return;
    included.add(file);
    // one entry per open #ifdef: whether its current branch is kept
    const stack: { on: boolean }[] = [];
    const active = () => stack.every((s) => s.on);
    for (const [i, line] of text.split('\n').entries()) {
      const t = line.trim();
      const where = `${file}:${i + 1}`;
      let m: RegExpMatchArray | null;
      if ((m = t.match(/^#(ifdef|ifndef)\s+(\w+)\s*$/))) {
        const has = defines.has(m[2]!);
        stack.push({ on: m[1] === 'ifdef' ? has : !has });
      } else if (t === '#else') {
        const top = stack.at(-1) ?? badDirective(where, '#else without #ifdef');
        top.on = !top.on;
      } else if (t === '#endif') {
        if (stack.pop() === undefined) badDirective(where, '#endif without #ifdef');
      } else if ((m = t.match(/^#include\s+"([\w.-]+)"\s*$/))) {
        if (active()) expand(m[1]!, where);
      } else if (t.startsWith('#')) {
        badDirective(where, `unknown directive ${t}`);
      } else if (active()) {
        out.push(line);
      }
    }
    if (stack.length !== 0) badDirective(file, 'unterminated #ifdef');
  };
  expand(name, 'the host');
  return out.join('\n');
}

function badDirective(where: string, what: string): never {
  throw new WgslPreprocessError(`WGSL preprocessor: ${what} at ${where}`);
}
