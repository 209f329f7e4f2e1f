/**
 * Stop strings (transformers' `stop_strings`): generation ends once the decoded new text
 * contains one of them. The text is decoded incrementally; only a tail as long as the longest
 * stop string (plus the new piece) is searched, so the check stays O(new text) per token.
 */
import { LowbitError } from '../errors.js';
import type { Tokenizer } from '../tokenizer/index.js';

/** Stops generation once the decoded text completes one of the given strings (`generate({ stop })`). */
export class StopStrings {
  private readonly stops: string[];
  private readonly longest: number;
  private readonly stream;
  private tail = '';

  constructor(stop: string | readonly string[], tokenizer: Tokenizer | undefined) {
    const list = typeof stop === 'string' ? [stop] : [...stop];
    if (!list.every((s) => typeof s === 'string' && s.length > 0)) throw new LowbitError('INVALID_ARGUMENT', 'stop must be a non-empty string or an array of non-empty strings');
    if (list.length > 0 && tokenizer === undefined) throw new LowbitError('INVALID_ARGUMENT', 'stop strings need a tokenizer: load the model from a source with one, or pass generate({ tokenizer })');
    this.stops = list;
    this.longest = Math.max(0, ...list.map((s) => s.length));
    this.stream = tokenizer?.decodeStream();
  }

  get active(): boolean {
    return this.stops.length > 0;
  }

  /** Adds a generated id; true when the text generated so far now contains a stop string. */
  push(id: number): boolean {
    if (!this.active) return false;
    const piece = this.stream!.push(id);
    if (!piece) return false;
    const text = this.tail + piece;
    const hit = this.stops.some((s) => text.includes(s));
    this.tail = text.slice(Math.max(0, text.length - this.longest + 1));
    return hit;
  }
}
