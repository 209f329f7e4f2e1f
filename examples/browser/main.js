// The lowbit demo page: choose a model, a BitsAndBytesConfig and a device map; the model loads
// and runs in a Web Worker through lowbit/worker, so the page stays responsive.
//
// Query parameters (the CI test uses them): model=<hub id | URL | /path>, quant=none|int8|fp4|nf4|nf4-dq,
// device=cpu|auto|gpu, threads=auto|1, prompt=<text>, maxNewTokens=N, autorun=1 (load, send the
// prompt, then set window.__lowbitResult).
import { LowbitWorker } from 'lowbit/worker';
import { drawMemoryChart } from './chart.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const DEFAULT_LOCAL = '/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf';
const DEFAULT_HUB = 'HuggingFaceTB/SmolLM2-135M-Instruct';

const QUANT = {
  none: undefined,
  int8: { loadIn8bit: true },
  fp4: { loadIn4bit: true, bnb4bitQuantType: 'fp4' },
  nf4: { loadIn4bit: true, bnb4bitQuantType: 'nf4' },
  'nf4-dq': { loadIn4bit: true, bnb4bitQuantType: 'nf4', bnb4bitUseDoubleQuant: true },
};

let dropped; // Map<path, File> from a drop or a file picker
let worker;
let model;
let history = [];
let generating;

// ---- model source -------------------------------------------------------------------------------

/** Files of a dropped folder (recursively), keyed by their path inside it. */
async function entryFiles(entry, prefix, out) {
  if (entry.isFile) {
    out.set(prefix + entry.name, await new Promise((ok, fail) => entry.file(ok, fail)));
  } else if (entry.isDirectory) {
    const reader = entry.createReader();
    for (let batch; (batch = await new Promise((ok, fail) => reader.readEntries(ok, fail))).length > 0; ) {
      for (const e of batch) await entryFiles(e, prefix + entry.name + '/', out);
    }
  }
}

/** Strips the dropped folder's own name so that config.json etc. sit at the top. */
function relativeToFolder(files) {
  const paths = [...files.keys()];
  const first = paths[0]?.split('/')[0];
  if (paths.length > 0 && paths.every((p) => p.includes('/') && p.split('/')[0] === first)) return new Map([...files].map(([p, f]) => [p.slice(first.length + 1), f]));
  return files;
}

function setDropped(files) {
  dropped = files.size > 0 ? relativeToFolder(files) : undefined;
  $('dropped').textContent = dropped ? ` — ${dropped.size} file(s): ${[...dropped.keys()].slice(0, 4).join(', ')}${dropped.size > 4 ? ', …' : ''}` : '';
}

const drop = $('drop');
drop.addEventListener('dragover', (e) => (e.preventDefault(), drop.classList.add('over')));
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', async (e) => {
  e.preventDefault();
  drop.classList.remove('over');
  const files = new Map();
  for (const item of e.dataTransfer.items) {
    const entry = item.webkitGetAsEntry?.();
    if (entry) await entryFiles(entry, '', files);
    else if (item.kind === 'file') files.set(item.getAsFile().name, item.getAsFile());
  }
  setDropped(files);
});
for (const id of ['files', 'folder']) $(id).addEventListener('change', (e) => setDropped(new Map([...e.target.files].map((f) => [f.webkitRelativePath || f.name, f]))));

/** What to load: dropped files win over the text field. A single dropped .gguf goes as the File itself. */
function source() {
  if (dropped) return dropped.size === 1 ? [...dropped.values()][0] : dropped;
  const v = $('model').value.trim();
  if (!v) throw new Error('enter a hub id or URL, or drop a model');
  return v;
}

// ---- progress stages ----------------------------------------------------------------------------

const STAGES = [
  ['worker', 'start the model worker'],
  ['plan', 'read headers, plan memory'],
  ['load', 'tokenizer and metadata'],
  ['weights', 'stream weights, quantize'],
  ['ready', 'ready'],
];
const stageStart = {};

function resetStages() {
  $('stages').replaceChildren(
    ...STAGES.map(([id, label]) => {
      const li = document.createElement('li');
      li.id = `stage-${id}`;
      li.dataset.state = 'pending';
      li.innerHTML = `<span class="label">${label}</span> <span class="detail"></span>`;
      return li;
    }),
  );
}

function stage(id, state, detail) {
  const li = $(`stage-${id}`);
  if (state === 'running' && li.dataset.state !== 'running') stageStart[id] = performance.now();
  // earlier stages are done once a later one runs or is done
  if (state === 'running' || state === 'done') for (const [s] of STAGES) { if (s === id) break; if ($(`stage-${s}`).dataset.state !== 'done') stage(s, 'done'); }
  li.dataset.state = state;
  const took = state === 'done' && stageStart[id] !== undefined ? ` (${((performance.now() - stageStart[id]) / 1000).toFixed(2)} s)` : '';
  if (detail !== undefined || took) li.querySelector('.detail').innerHTML = (detail ?? li.querySelector('.detail').innerHTML.replace(/ \(\d+\.\d+ s\)$/, '')) + took;
}

const MiB = (b) => `${(b / 2 ** 20).toFixed(1)} MiB`;

function onProgress(e) {
  if (e.phase === 'done') {
    stage('weights', 'done');
  } else if (e.phase === 'weights') {
    stage('weights', 'running', `<progress max="${e.bytesTotal}" value="${e.bytesDone}"></progress> ${MiB(e.bytesDone)} / ${MiB(e.bytesTotal)}, ${e.tensorsDone} / ${e.tensorsTotal} tensors`);
  } else {
    stage('load', 'running', `${e.phase}${e.file ? ` ${e.file}` : ''}`);
  }
}

// ---- load ---------------------------------------------------------------------------------------

function showError(e) {
  $('error').hidden = false;
  $('error').textContent = `${e?.code ? `${e.code}: ` : ''}${e?.message ?? e}`;
}

function unload() {
  generating?.abort();
  model?.dispose();
  worker?.terminate();
  model = worker = undefined;
  history = [];
  $('messages').replaceChildren();
  for (const id of ['prompt', 'send', 'unload']) $(id).disabled = true;
}

/** 'model.layers.0', …, 'model.layers.29' with the same device -> one row 'model.layers.0-29'. */
function moduleRows(deviceMap, byModule) {
  const rows = [];
  // footprint entries are per weight or per module ('model.layers.3.mlp.up_proj', 'model.layers.3')
  const bytesOf = (name) => Object.entries(byModule).reduce((a, [k, b]) => (k === name || k.startsWith(`${name}.`) ? a + b : a), 0);
  for (const [name, device] of Object.entries(deviceMap)) {
    const m = /^(.*\.)(\d+)$/.exec(name);
    const prev = rows.at(-1);
    if (m && prev?.prefix === m[1] && prev.device === device && prev.last === Number(m[2]) - 1) {
      prev.last++;
      prev.bytes += bytesOf(name);
    } else {
      rows.push({ prefix: m?.[1], first: m ? Number(m[2]) : undefined, last: m ? Number(m[2]) : undefined, name, device, bytes: bytesOf(name) });
    }
  }
  return rows.map((r) => ({ name: r.first !== undefined && r.last > r.first ? `${r.prefix}${r.first}-${r.last}` : r.name, device: r.device, bytes: r.bytes }));
}

function showPlacement(info) {
  const body = $('modules').querySelector('tbody');
  body.replaceChildren(
    ...moduleRows(info.deviceMap, info.memory.byModule).map((r) => {
      const tr = document.createElement('tr');
      tr.innerHTML = `<td>${r.name}</td><td class="dev-${r.device}">${r.device}</td><td>${(r.bytes / 2 ** 20).toFixed(1)}</td>`;
      return tr;
    }),
  );
  const devices = Object.entries(info.memory.byDevice).map(([d, b]) => `${d} ${MiB(b)}`).join(', ');
  $('placement-summary').textContent = `${info.family}, ${info.numLayers} layers: ${devices}; CPU threads: ${info.threads}${info.threadsNote ? ` (${info.threadsNote})` : ''}${info.formatConversions.length ? `; converted: ${info.formatConversions.join(', ')}` : ''}`;
}

async function load() {
  unload();
  $('error').hidden = true;
  resetStages();
  $('chart').replaceChildren();
  $('load').disabled = true;
  const quant = $('quant').value;
  const q = QUANT[quant] && { ...QUANT[quant], ...(quant === 'int8' ? {} : { bnb4bitBlocksize: Number($('blocksize').value) }) };
  const threads = $('threads').value === 'auto' ? 'auto' : Number($('threads').value);
  try {
    const input = source();
    stage('worker', 'running');
    worker = new LowbitWorker();
    stage('plan', 'running');
    const plan = await worker.planMemory(input);
    const chosen = quant === 'fp4' ? 'nf4' : quant;
    drawMemoryChart($('chart'), plan, chosen);
    stage('plan', 'done', `${plan.family}, ${plan.numLayers} layers: ${MiB(plan.rows.find((r) => r.quant === chosen).totalBytes)} planned`);
    stage('load', 'running');
    model = await worker.fromPretrained(input, { ...(q ? { quantizationConfig: q } : {}), deviceMap: $('device').value, threads, onProgress });
    const info = model.info;
    stage('ready', 'done', `in ${info.loadSeconds.toFixed(1)} s — ${MiB(info.memory.total)}, ${info.threads} CPU thread(s)`);
    drawMemoryChart($('chart'), plan, chosen, info.memory.total);
    showPlacement(info);
    $('unload').disabled = false;
    if (info.hasTokenizer) for (const id of ['prompt', 'send']) $(id).disabled = false;
    else showError(`this model has no usable tokenizer (${info.tokenizerUnavailable}): chat needs one`);
    return info;
  } catch (e) {
    for (const li of $('stages').children) if (li.dataset.state === 'running') li.dataset.state = 'failed';
    showError(e);
    unload();
    throw e;
  } finally {
    $('load').disabled = false;
  }
}

// ---- chat ---------------------------------------------------------------------------------------

function addMessage(role, text) {
  const div = document.createElement('div');
  div.className = `msg ${role}`;
  div.textContent = text;
  $('messages').append(div);
  return div;
}

async function send() {
  const content = $('prompt').value.trim();
  if (!model || !content || generating) return;
  history.push({ role: 'user', content });
  addMessage('user', content);
  const out = addMessage('assistant', '');
  generating = new AbortController();
  $('send').disabled = true;
  $('stop').disabled = false;
  const t0 = performance.now();
  let text = '';
  let pieces = 0;
  try {
    for await (const piece of model.stream({ messages: history, maxNewTokens: Number($('max-new').value), signal: generating.signal })) {
      text += piece;
      pieces++;
      out.textContent = text;
      const s = (performance.now() - t0) / 1000;
      $('speed').textContent = `${pieces} pieces in ${s.toFixed(1)} s…`;
    }
  } catch (e) {
    if (e?.code !== 'ABORTED') showError(e);
  } finally {
    generating = undefined;
    $('send').disabled = false;
    $('stop').disabled = true;
  }
  history.push({ role: 'assistant', content: text });
  const st = model?.lastStats;
  if (st) {
    const meta = document.createElement('span');
    meta.className = 'meta';
    meta.textContent = `${st.newTokens} tokens, ${st.decodeTokensPerSecond.toFixed(1)} tokens/s (first token after ${st.firstTokenSeconds.toFixed(2)} s, ${st.promptTokens} prompt tokens)`;
    out.append(meta);
    $('speed').textContent = `last answer: ${st.decodeTokensPerSecond.toFixed(1)} tokens/s decode`;
  }
  return { text, stats: st };
}

$('load-form').addEventListener('submit', (e) => (e.preventDefault(), load().catch(() => {})));
$('unload').addEventListener('click', unload);
$('chat-form').addEventListener('submit', (e) => (e.preventDefault(), send()));
$('stop').addEventListener('click', () => generating?.abort('stopped'));

// ---- start --------------------------------------------------------------------------------------

for (const [param, id] of [['quant', 'quant'], ['device', 'device'], ['threads', 'threads'], ['prompt', 'prompt'], ['maxNewTokens', 'max-new']]) {
  if (params.has(param)) $(id).value = params.get(param);
}
resetStages();
if (params.has('model')) {
  $('model').value = params.get('model');
} else {
  // In the repository, the dev server serves the default model under /models/ (vite.config.js).
  $('model').value = await fetch(DEFAULT_LOCAL, { method: 'HEAD' }).then((r) => (r.ok ? DEFAULT_LOCAL : DEFAULT_HUB), () => DEFAULT_HUB);
}

if (params.get('autorun') === '1') {
  try {
    const info = await load();
    const answer = await send();
    window.__lowbitResult = { ok: true, info: { threads: info.threads, deviceMap: info.deviceMap, memory: info.memory.total, loadSeconds: info.loadSeconds }, answer };
  } catch (e) {
    window.__lowbitResult = { ok: false, error: `${e?.code ?? e?.name}: ${e?.message}\n${e?.stack ?? ''}` };
  }
}
