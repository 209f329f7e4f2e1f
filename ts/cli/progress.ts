/**
 * Progress bars on stderr (cli-progress), only when stderr is a terminal: a pipe or a file gets
 * no control characters, just the summary lines the commands print. One bar per stage; load
 * progress events (fromPretrained / loadWeights `onProgress`) get one bar per `phase` they name
 * — whatever phases the loader reports (download, metadata, weights, …) — so a new phase shows
 * up without a change here.
 */
import cliProgress from 'cli-progress';
import type { ProgressEvent } from '../loading/sources/progress.js';

const MB = (bytes: number) => (bytes / 1e6).toFixed(bytes < 10e6 ? 1 : 0);

/** What a stage's bar shows next to the bar. */
interface Payload {
  stage: string;
  detail: string;
}

export interface Progress {
  /** Feeds a load progress event (a bar per phase). */
  onLoad(e: ProgressEvent): void;
  /** A bar of its own (e.g. 'write'), counted in `unit`s; returns its updater. */
  stage(name: string, total: number, unit?: 'bytes' | 'items'): (done: number, total?: number) => void;
  /** Ends the bars (they stay on screen; `complete`: filled, as after a success) and shows the cursor again. */
  stop(complete?: boolean): void;
}

const NONE: Progress = { onLoad: () => {}, stage: () => () => {}, stop: () => {} };

/** Progress bars when `enabled` (stderr is a terminal and no --json); otherwise nothing at all. */
export function progressBars(enabled: boolean, stream: NodeJS.WriteStream = process.stderr): Progress {
  if (!enabled) return NONE;
  const multi = new cliProgress.MultiBar(
    {
      stream,
      format: '{stage} {bar} {percentage}% | {detail}',
      barsize: 24,
      hideCursor: true,
      clearOnComplete: false,
      stopOnComplete: false,
      autopadding: true,
      // redraw on updates at most every 100 ms; no timer keeps the process alive
      fps: 10,
    },
    cliProgress.Presets.shades_classic,
  );
  const bars = new Map<string, { bar: cliProgress.SingleBar; total: number }>();
  let stopped = false;
  const pad = (s: string) => s.padEnd(9);

  const detailOf = (done: number, total: number, unit: 'bytes' | 'items') => (unit === 'bytes' ? `${MB(done)}/${MB(total)} MB` : `${done}/${total}`);
  const ensure = (name: string, total: number): cliProgress.SingleBar => {
    let b = bars.get(name);
    if (b === undefined) {
      // An earlier stage is complete once a later one starts.
      for (const other of bars.values()) other.bar.update(other.total);
      b = { bar: multi.create(Math.max(total, 1), 0, { stage: pad(name), detail: '' } satisfies Payload), total: Math.max(total, 1) };
      bars.set(name, b);
    }
    return b.bar;
  };
  return {
    onLoad(e) {
      if (stopped || e.phase === 'done') return;
      const bar = ensure(e.phase, e.bytesTotal);
      const total = Math.max(e.bytesTotal, 1);
      bars.get(e.phase)!.total = total;
      bar.setTotal(total);
      const tensors = e.tensorsTotal > 0 ? `, ${e.tensorsDone}/${e.tensorsTotal} tensors` : '';
      // download events name the file under way and count the files of this load
      const d = e.download;
      const file = d !== undefined ? `, file ${Math.min(d.filesDone + 1, d.filesTotal)}/${d.filesTotal}: ${d.file}` : '';
      bar.update(e.bytesDone, { detail: `${detailOf(e.bytesDone, e.bytesTotal, 'bytes')}${tensors}${file}` } satisfies Partial<Payload>);
    },
    stage(name, total, unit = 'bytes') {
      const bar = ensure(name, total);
      bar.update(0, { detail: detailOf(0, total, unit) } satisfies Partial<Payload>);
      let t = total;
      return (done, newTotal) => {
        if (stopped) return;
        if (newTotal !== undefined) {
          t = newTotal;
          bars.get(name)!.total = Math.max(t, 1);
          bar.setTotal(Math.max(t, 1));
        }
        bar.update(done, { detail: detailOf(done, t, unit) } satisfies Partial<Payload>);
      };
    },
    stop(complete = true) {
      if (stopped) return;
      stopped = true;
      if (complete) for (const b of bars.values()) b.bar.update(b.total);
      multi.stop();
    },
  };
}
