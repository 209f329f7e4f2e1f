/**
 * Streamers receive generated token ids as they come (transformers' BaseStreamer protocol:
 * `put(ids)` then `end()`). TextStreamer turns them into text pieces without splitting a UTF-8
 * character, the way transformers' TextStreamer prints as it goes.
 */
import type { DecodeOptions, Tokenizer } from '../tokenizer/index.js';

/** Receives the generated token ids as they arrive (`put`) and once at the end (`end`): `generate({ streamer })`. */
export interface Streamer {
  put(ids: readonly number[]): void;
  end(): void;
}

/** A Streamer that decodes the tokens as they arrive and hands each new piece of text to a callback, as transformers' TextStreamer prints it. */
export class TextStreamer implements Streamer {
  private readonly stream;
  private readonly skip: Set<number>;

  /**
   * @param onText receives each new piece of text, and `final = true` once at the end.
   * @param options.skipSpecialTokens leaves EOS and other special tokens out of the text (default true).
   */
  constructor(
    tokenizer: Tokenizer,
    private readonly onText: (text: string, final: boolean) => void,
    options: DecodeOptions = {},
  ) {
    const skipSpecial = options.skipSpecialTokens ?? true;
    this.stream = tokenizer.decodeStream({ ...options, skipSpecialTokens: skipSpecial });
    this.skip = new Set(skipSpecial ? tokenizer.allSpecialIds : []);
  }

  put(ids: readonly number[]): void {
    for (const id of ids) {
      if (this.skip.has(id)) continue;
      const piece = this.stream.push(id);
      if (piece) this.onText(piece, false);
    }
  }

  end(): void {
    this.onText(this.stream.flush(), true);
  }
}
