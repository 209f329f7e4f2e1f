#!/usr/bin/env node
// README "Chat sessions and pipeline()", as written there (the model: argv[2], else the default
// model that scripts/models/fetch-default-model.sh installs; the README names the hub id).
//
//   node examples/node/chat.mjs [model dir | org/name]
import { fileURLToPath } from 'node:url';
import { init, AutoModelForCausalLM, BitsAndBytesConfig, TextStreamer, pipeline } from '../../dist/index.js';

const MODEL = process.argv[2] ?? fileURLToPath(new URL('../../.cache/models/smollm2-135m-instruct/', import.meta.url));
await init();

const model = await AutoModelForCausalLM.fromPretrained(MODEL, {
  quantizationConfig: new BitsAndBytesConfig({ loadIn4bit: true, bnb4bitQuantType: 'nf4' }),
  maxPositions: 1024,
});
const chat = model.chat({ system: 'You are a concise assistant.', maxNewTokens: 64 });
console.log(await chat.send('What is the capital of France?'));
await chat.send('And of Italy?', {
  streamer: new TextStreamer(model.tokenizer, (text, final) => process.stdout.write(final ? `${text}\n` : text)),
  signal: AbortSignal.timeout(60_000),
});
console.log(chat.lastTurn);
console.log(chat.stats);
console.log(chat.messages);
chat.setMessages(chat.messages.slice(0, 3));
chat.reset();
model.dispose();

const generator = await pipeline('text-generation', MODEL, { maxPositions: 512 });
const [{ generated_text }] = await generator('The capital of France is', { maxNewTokens: 8 });
const [out] = await generator([{ role: 'user', content: 'What is the capital of France?' }], { maxNewTokens: 32 });
console.log(generated_text, out.generated_text.at(-1).content);
generator.dispose();
