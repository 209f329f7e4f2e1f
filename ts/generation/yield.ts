/**
 * A way back to the event loop between generation steps. A CPU step resolves its promises at
 * once, so a whole generate() runs in microtasks: timers, I/O and signal handlers (Ctrl-C, an
 * AbortController.abort() from a setTimeout) would wait until it ends. Awaiting this lets them
 * run. setImmediate (Node) and a MessageChannel message (Deno, browsers) cost microseconds,
 * unlike setTimeout(0), which browsers clamp to 4 ms.
 */
export function nextMacrotask(): Promise<void> {
  const g = globalThis as { setImmediate?: (f: () => void) => void };
  if (typeof g.setImmediate === 'function') return new Promise((r) => g.setImmediate!(r));
  return new Promise((r) => {
    const c = new MessageChannel();
    c.port1.onmessage = () => {
      c.port1.close();
      r();
    };
    c.port2.postMessage(null);
  });
}
