/**
 * Chat templates come from model files (tokenizer_config.json, chat_template.jinja, a GGUF's
 * tokenizer.chat_template), so they are run with limits: a template that loops for ever
 * (`range(200000000)`, nested loops, recursion) or renders hundreds of MB stops with
 * LowbitError('LIMIT_EXCEEDED') instead of hanging or exhausting memory.
 *
 * @huggingface/jinja renders through its public Interpreter class; a subclass counts every
 * evaluated node (a step budget, and a wall-time budget checked every 1024 steps), refuses any
 * string or list value larger than the output cap as soon as it is made, and `range` is replaced
 * by one that refuses long ranges before building them and charges their length to the budget.
 */
import { LowbitError } from '../errors.js';

/** Limits on running a chat template that came with a model file; past one, LIMIT_EXCEEDED. */
export interface TemplateLimits {
  /** Largest rendered text, and largest string or list made on the way, in characters / items (default 1 MiB). */
  maxOutputChars: number;
  /** Evaluated template nodes plus range() items, at most (default 2,000,000). */
  maxSteps: number;
  /** Wall time, at most (default 2000 ms). */
  maxMs: number;
  /** Longest range() (default 100,000). */
  maxRange: number;
  /** Longest template source (default 1 MiB). */
  maxSourceChars: number;
}

/** The template limits used when none are given. */
export const DEFAULT_TEMPLATE_LIMITS: TemplateLimits = { maxOutputChars: 1 << 20, maxSteps: 2_000_000, maxMs: 2000, maxRange: 100_000, maxSourceChars: 1 << 20 };

/** The parts of @huggingface/jinja used here. */
export interface JinjaLibrary {
  Template: new (source: string) => { parsed: unknown; render(items?: Record<string, unknown>): string };
  Environment: new (parent?: unknown) => { set(name: string, value: unknown): unknown };
  Interpreter: new (env: unknown) => { run(program: unknown): { value: unknown }; evaluate(node: unknown, env: unknown): unknown };
}

/** Characters of strings evaluated in total, as a multiple of maxOutputChars (a value counts once per node it passes through). */
const PRODUCED_FACTOR = 64;

const limit = (m: string) => new LowbitError('LIMIT_EXCEEDED', `the chat template ${m}`);

/** Python's strftime for the codes chat templates use (%Y %m %d %b %B %H %M %S %y %a %A %%). */
function strftimeNow(format: unknown): string {
  if (typeof format !== 'string') throw new Error('strftime_now() takes a format string');
  const d = new Date();
  const pad = (n: number) => String(n).padStart(2, '0');
  const name = (o: Intl.DateTimeFormatOptions) => new Intl.DateTimeFormat('en-US', o).format(d);
  const codes: Record<string, () => string> = {
    Y: () => String(d.getFullYear()), y: () => pad(d.getFullYear() % 100), m: () => pad(d.getMonth() + 1), d: () => pad(d.getDate()),
    b: () => name({ month: 'short' }), B: () => name({ month: 'long' }), a: () => name({ weekday: 'short' }), A: () => name({ weekday: 'long' }),
    H: () => pad(d.getHours()), M: () => pad(d.getMinutes()), S: () => pad(d.getSeconds()), '%': () => '%',
  };
  return format.replace(/%(.)/g, (all, c: string) => codes[c]?.() ?? all);
}

type Interp = InstanceType<JinjaLibrary['Interpreter']>;
const limitedClasses = new WeakMap<object, new (env: unknown, limits: TemplateLimits) => Interp & { exceeded: LowbitError | undefined; charge(n: number): void; fail(e: LowbitError): never }>();

function limitedInterpreter(lib: JinjaLibrary) {
  let cls = limitedClasses.get(lib.Interpreter);
  if (cls) return cls;
  const Base = lib.Interpreter as unknown as new (env: unknown) => Interp;
  cls = class LimitedInterpreter extends Base {
    steps = 0;
    produced = 0;
    readonly deadline: number;
    /** The first limit hit (kept in case the library wraps the thrown error). */
    exceeded: LowbitError | undefined;
    constructor(env: unknown, readonly limits: TemplateLimits) {
      super(env);
      this.deadline = Date.now() + limits.maxMs;
    }
    fail(e: LowbitError): never {
      this.exceeded ??= e;
      throw e;
    }
    charge(n: number): void {
      this.steps += n;
      if (this.steps > this.limits.maxSteps) this.fail(limit(`ran more than ${this.limits.maxSteps} steps`));
      if ((this.steps & 1023) < n || n > 1023) if (Date.now() > this.deadline) this.fail(limit(`ran longer than ${this.limits.maxMs} ms`));
    }
    override evaluate(node: unknown, env: unknown): unknown {
      if (this.exceeded) throw this.exceeded;
      this.charge(1);
      const v = super.evaluate(node, env) as { value?: unknown } | undefined;
      const x = v?.value;
      const size = typeof x === 'string' || Array.isArray(x) ? x.length : x instanceof Map ? x.size : 0;
      if (size > this.limits.maxOutputChars) this.fail(limit(`made a value of ${size} characters / items, over the limit of ${this.limits.maxOutputChars}`));
      // Strings made along the way, in total: a loop body that renders a large value many times
      // is stopped before its concatenation (not an evaluated node) grows without bound.
      if (typeof x === 'string') {
        this.produced += x.length;
        if (this.produced > PRODUCED_FACTOR * this.limits.maxOutputChars) this.fail(limit(`made more than ${PRODUCED_FACTOR * this.limits.maxOutputChars} characters of strings in total`));
      }
      return v;
    }
  };
  limitedClasses.set(lib.Interpreter, cls);
  return cls;
}

/** Parses a template source, refusing sources over maxSourceChars. */
export function parseTemplate(lib: JinjaLibrary, source: string, limits: TemplateLimits = DEFAULT_TEMPLATE_LIMITS): { parsed: unknown } {
  if (source.length > limits.maxSourceChars) throw limit(`is ${source.length} characters long, over the limit of ${limits.maxSourceChars}`);
  return new lib.Template(source);
}

/**
 * Renders a parsed template with `vars` within `limits`; LIMIT_EXCEEDED when one is hit, and the
 * library's own errors (undefined names, raise_exception) propagate as they are.
 */
export function renderWithLimits(lib: JinjaLibrary, template: { parsed: unknown }, vars: Record<string, unknown>, limits: TemplateLimits = DEFAULT_TEMPLATE_LIMITS): string {
  const env = new lib.Environment();
  const Limited = limitedInterpreter(lib);
  const interp = new Limited(env, limits);
  // The globals Template.render sets (setupGlobals), with a bounded range.
  const globals: Record<string, unknown> = {
    false: false, true: true, none: null, False: false, True: true, None: null,
    raise_exception: (message: unknown) => {
      throw new Error(String(message));
    },
    range: (start: unknown, stop?: unknown, step: unknown = 1) => {
      const [a, b] = stop === undefined ? [0, start] : [start, stop];
      if (![a, b, step].every((n) => typeof n === 'number' && Number.isInteger(n))) throw new Error('range() takes integers');
      const s = step as number;
      if (s === 0) throw new Error('range() step must not be zero');
      const n = Math.max(0, Math.ceil(((b as number) - (a as number)) / s));
      if (n > limits.maxRange) interp.fail(limit(`asked for range() of ${n} items, over the limit of ${limits.maxRange}`));
      interp.charge(n);
      return Array.from({ length: n }, (_, i) => (a as number) + i * s);
    },
    strftime_now: strftimeNow,
  };
  for (const [k, v] of Object.entries({ ...globals, ...vars })) env.set(k, v);
  try {
    const out = interp.run(template.parsed).value;
    if (typeof out !== 'string') throw new LowbitError('INTERNAL', 'the chat template rendered no string');
    return out;
  } catch (e) {
    if (interp.exceeded) throw interp.exceeded;
    // Deep recursion (a macro calling itself) exhausts the JS stack.
    if (e instanceof RangeError) throw new LowbitError('LIMIT_EXCEEDED', `the chat template failed: ${e.message}`, { cause: e });
    throw e;
  }
}
