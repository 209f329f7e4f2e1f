// The memory-footprint chart: one stacked bar per quantization choice (weights, KV cache), from
// LowbitWorker.planMemory (the loader's own size plan), drawn as SVG.
export const COLORS = { weights: '#2f6fde', kv: '#f0a030' };
const LABELS = { none: 'unquantized', int8: 'int8', nf4: 'nf4', 'nf4-dq': 'nf4 + dq' };
const MiB = (b) => b / 2 ** 20;
const SVG = 'http://www.w3.org/2000/svg';

function el(name, attrs, text) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

/**
 * @param svg the <svg> to draw into (viewBox 0 0 520 220)
 * @param plan LowbitWorker.planMemory's result
 * @param chosen the quantization being loaded ('none' | 'int8' | 'nf4' | 'nf4-dq'; fp4 is sized as nf4)
 * @param loadedBytes getMemoryFootprint().total once loaded (drawn as a marker on the chosen bar)
 */
export function drawMemoryChart(svg, plan, chosen, loadedBytes) {
  svg.replaceChildren();
  const left = 60, top = 14, height = 150, barW = 70, gap = 45;
  const max = Math.max(...plan.rows.map((r) => r.totalBytes));
  const scale = (b) => (b / max) * height;
  svg.append(el('line', { x1: left - 6, y1: top + height, x2: 510, y2: top + height, stroke: '#999' }));
  svg.append(el('text', { x: 4, y: top + 8, 'font-size': 11, fill: '#555' }, `${MiB(max).toFixed(0)} MiB`));
  plan.rows.forEach((r, i) => {
    const x = left + i * (barW + gap);
    const kvH = scale(r.kvCacheBytes);
    const wH = scale(r.weightsBytes);
    const g = el('g', { 'data-quant': r.quant, 'data-bytes': r.totalBytes });
    g.append(el('rect', { class: 'bar-weights', x, y: top + height - wH, width: barW, height: Math.max(wH, 1), fill: COLORS.weights }));
    g.append(el('rect', { class: 'bar-kv', x, y: top + height - wH - kvH, width: barW, height: kvH, fill: COLORS.kv }));
    if (r.quant === chosen) g.append(el('rect', { x: x - 3, y: top + height - wH - kvH - 3, width: barW + 6, height: wH + kvH + 3, fill: 'none', stroke: '#1d2330', 'stroke-width': 2 }));
    g.append(el('text', { x: x + barW / 2, y: top + height - wH - kvH - 6, 'text-anchor': 'middle', 'font-size': 11 }, `${MiB(r.totalBytes).toFixed(1)}`));
    g.append(el('text', { x: x + barW / 2, y: top + height + 16, 'text-anchor': 'middle', 'font-size': 12, 'font-weight': r.quant === chosen ? 700 : 400 }, LABELS[r.quant] ?? r.quant));
    svg.append(g);
  });
  const legendY = top + height + 38;
  svg.append(el('rect', { x: left, y: legendY - 9, width: 10, height: 10, fill: COLORS.weights }));
  svg.append(el('text', { x: left + 14, y: legendY, 'font-size': 11 }, 'weights'));
  svg.append(el('rect', { x: left + 80, y: legendY - 9, width: 10, height: 10, fill: COLORS.kv }));
  svg.append(el('text', { x: left + 94, y: legendY, 'font-size': 11 }, `KV cache (f32, ${plan.maxPositions} positions)`));
  if (loadedBytes !== undefined) svg.append(el('text', { id: 'loaded-bytes', x: 330, y: legendY, 'font-size': 11, fill: '#1c6b35' }, `loaded: ${MiB(loadedBytes).toFixed(1)} MiB`));
}
