/**
 * Seeded fuzzing of the safetensors reader (parseSafetensorsHeader + SafetensorsFile::tensor) on
 * in-memory images: every mutated file must either be refused with E_BAD_CHECKPOINT or validate
 * and read back exactly (every data byte through the tensors, a header that a reference check
 * accepts) — never crash, hang or read out of bounds. The same mutations run natively under
 * AddressSanitizer with native/tools/fuzz_safetensors.cc.
 */
import { describe, it, expect } from 'vitest';
import fs from 'node:fs';
import { validateSafetensorsBuffer, SdError } from '../lib/index.js';
import { fixture } from './helpers/fixtures.js';

const CASES = 12_000;
const SEED = 0x5eed_c0de;

// ---- deterministic PRNG (mulberry32) ----------------------------------------------------------
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const DTYPE_SIZE: Record<string, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, F8_E4M3: 1, F8_E5M2: 1, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1,
};
const DTYPES = Object.keys(DTYPE_SIZE);

// ---- building images --------------------------------------------------------------------------
interface Entry { name: string; dtype: string; shape: number[] }

/** A valid image: entries laid out in order; `pad` pads the JSON to 8 bytes (unpadded → misaligned data). */
function build(entries: Entry[], opts: { pad?: boolean; metadata?: Record<string, string>; seed?: number } = {}): Uint8Array {
  const header: Record<string, unknown> = {};
  if (opts.metadata) header.__metadata__ = opts.metadata;
  let offset = 0;
  for (const e of entries) {
    const bytes = e.shape.reduce((a, b) => a * b, 1) * DTYPE_SIZE[e.dtype];
    header[e.name] = { dtype: e.dtype, shape: e.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  if (opts.pad !== false) while (json.length % 8) json += ' ';
  const data = new Uint8Array(offset);
  const r = mulberry32(opts.seed ?? 1);
  for (let i = 0; i < data.length; i++) data[i] = (r() * 256) | 0;
  return assemble(Buffer.from(json, 'utf8'), data);
}

function assemble(json: Uint8Array, data: Uint8Array, claimedLength?: bigint): Uint8Array {
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, claimedLength ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

/** Splits a valid seed image into header text and data section. */
function split(buf: Uint8Array): { text: string; data: Uint8Array } {
  const n = Number(new DataView(buf.buffer, buf.byteOffset).getBigUint64(0, true));
  return { text: Buffer.from(buf.subarray(8, 8 + n)).toString('utf8'), data: buf.subarray(8 + n) };
}

const handMade: Array<[string, Uint8Array]> = [
  ['every dtype', build(DTYPES.map((d, i) => ({ name: `t_${d}`, dtype: d, shape: [1 + (i % 3), 2] })), { metadata: { format: 'pt' } })],
  ['scalars and empty tensors', build([
    { name: 'scalar', dtype: 'F32', shape: [] }, { name: 'empty', dtype: 'F16', shape: [0] },
    { name: 'empty2', dtype: 'I64', shape: [3, 0, 2] }, { name: 'x', dtype: 'I32', shape: [2] }])],
  ['unpadded (misaligned data)', build([
    { name: 'a', dtype: 'F64', shape: [3] }, { name: 'bb', dtype: 'F32', shape: [5] }, { name: 'c', dtype: 'I16', shape: [3] },
    { name: 'd', dtype: 'BF16', shape: [2, 2] }], { pad: false })],
  ['empty header', assemble(Buffer.from('{}'), new Uint8Array(0))],
  ['metadata only', build([], { metadata: { a: 'b', 'ünï': '\u2603' } })],
];

const realFiles = [
  fixture('embeddings', 'my-token.safetensors'),
  fixture('goldens', 'tiny-sd15', 'sched_ddim_10.safetensors'),
  fixture('loras', 'tiny-sd15-kohya.safetensors'),
];

// ---- mutations --------------------------------------------------------------------------------
const HOSTILE_NUMBERS = [
  '-1', '-0', '0', '1', '1.5', '0.0', '1e2', '1e400', '-1e400', '00', '01', '4294967296', '4294967297',
  '9007199254740993', '9223372036854775807', '9223372036854775808', '-9223372036854775808', '18446744073709551615',
  '18446744073709551616', '99999999999999999999999999999', '2.5e-8',
];
const GARBAGE = ['\0', '\u0001', '\uFFFD', '\\', '"', '{', '}', '[', ']', ',', ':', '\\u', '\\ud800', '\\udc00x', '\u00ff', 'null', 'NaN', 'Infinity'];

type Rand = () => number;
const pick = <T>(r: Rand, a: T[]): T => a[(r() * a.length) | 0];
const int = (r: Rand, n: number) => (r() * n) | 0;

function nested(depth: number): unknown {
  let v: unknown = 0;
  for (let i = 0; i < depth; i++) v = [v];
  return v;
}

/** A structural edit of the header JSON (or a textual one when the text no longer parses). */
function editHeader(r: Rand, text: string): string {
  let h: any;
  try { h = JSON.parse(text); } catch { h = undefined; }
  const names = h && typeof h === 'object' && !Array.isArray(h) ? Object.keys(h).filter((k) => k !== '__metadata__') : [];
  const kind = int(r, 15);
  if (h && names.length && kind === 14) {  // swap two tensors' ranges (valid only when sizes agree)
    const [a, b] = [h[pick(r, names)], h[pick(r, names)]];
    if (a && b && typeof a === 'object' && typeof b === 'object') [a.data_offsets, b.data_offsets] = [b.data_offsets, a.data_offsets];
    return JSON.stringify(h);
  }
  if (h && names.length && kind < 9) {
    const name = pick(r, names);
    const e = h[name];
    if (e && typeof e === 'object') {
      switch (kind) {
        case 0: {  // offset lies
          const o = Array.isArray(e.data_offsets) ? e.data_offsets : (e.data_offsets = [0, 0]);
          const i = int(r, 2);
          o[i] = r() < 0.5 ? o[i] + pick(r, [-8, -4, -2, -1, 1, 2, 4, 8]) : pick(r, [0, -1, 2 ** 31, 2 ** 32, 2 ** 53, 1e300, 0.5]);
          break;
        }
        case 1: {  // shape lies
          const s: any[] = Array.isArray(e.shape) ? e.shape : (e.shape = []);
          const op = int(r, 5);
          if (op === 0 && s.length) s[int(r, s.length)] += pick(r, [-1, 1, 2]);
          else if (op === 1) s.push(pick(r, [0, 1, 2, 2 ** 32, 2 ** 62]));
          else if (op === 2) s.pop();
          else if (op === 3 && s.length) s[int(r, s.length)] = pick(r, [-1, 1.5, '2', null, [], 2 ** 63]);
          else e.shape = Array.from({ length: 17 + int(r, 8) }, () => 1);
          break;
        }
        case 2: e.dtype = r() < 0.7 ? pick(r, DTYPES) : pick(r, ['f32', 'F7', '', 'F8_E4M3FNUZ', 32, null, ['F32']]); break;  // dtype swaps
        case 3: {  // duplicate / overlapping ranges: another entry's range, or the whole entry
          const other = h[pick(r, names)];
          if (other && Array.isArray(other.data_offsets)) e.data_offsets = [...other.data_offsets];
          if (other && r() < 0.5) { e.dtype = other.dtype; e.shape = other.shape; }
          break;
        }
        case 4: delete e[pick(r, ['dtype', 'shape', 'data_offsets'])]; break;
        case 5: e[pick(r, ['dtype', 'shape', 'data_offsets'])] = nested(1 + int(r, 120)); break;  // deep nesting
        case 6: e.data_offsets = pick(r, [[0], [0, 0, 0], 'x', {}, [null, null], [-4, 0]]); break;
        case 7: h[name] = pick(r, [null, 1, 'str', [], nested(70)]); break;
        case 8: {  // self-consistent lies: the range shifted, or shape and end grown together (holes, overlaps)
          const o = e.data_offsets;
          if (!Array.isArray(o) || o.length !== 2 || !Array.isArray(e.shape)) break;
          if (r() < 0.5) {
            const k = pick(r, [-8, -4, -2, -1, 1, 2, 4, 8]);
            e.data_offsets = [o[0] + k, o[1] + k];
          } else {
            const row = e.shape.slice(1).reduce((a: number, b: number) => a * b, 1) * (DTYPE_SIZE[e.dtype] ?? 1);
            if (e.shape.length === 0) break;
            const d = pick(r, [-1, 1, 2]);
            e.shape[0] += d;
            e.data_offsets = [o[0], o[1] + d * row];
          }
          break;
        }
      }
    }
    return JSON.stringify(h);
  }
  if (h && kind === 9) {  // metadata edits
    h.__metadata__ = pick(r, [{ a: 1 }, { a: { b: 'c' } }, 'x', [], null, { ok: 'yes' }, nested(int(r, 100))]);
    return JSON.stringify(h);
  }
  if (kind === 10) {  // a number literal replaced by a hostile one
    const nums = [...text.matchAll(/-?\d+(\.\d+)?([eE][+-]?\d+)?/g)];
    if (nums.length) {
      const m = pick(r, nums);
      return text.slice(0, m.index!) + pick(r, HOSTILE_NUMBERS) + text.slice(m.index! + m[0].length);
    }
  }
  if (kind === 11 && names.length) {  // duplicate key (textual: JSON objects cannot hold one)
    const name = pick(r, names);
    const dup = `${JSON.stringify(name)}:${JSON.stringify(h[name])},`;
    return text.replace('{', '{' + dup);
  }
  if (kind === 12) {  // nesting at the top
    const d = 1 + int(r, 200);
    return '['.repeat(d) + text + ']'.repeat(d);
  }
  // garbage inserted or overwritten
  const at = int(r, text.length + 1);
  const g = r() < 0.5 ? pick(r, GARBAGE) : String.fromCharCode(int(r, 256));
  return r() < 0.5 ? text.slice(0, at) + g + text.slice(at) : text.slice(0, at) + g + text.slice(at + g.length);
}

function mutate(r: Rand, seed: Uint8Array): Uint8Array {
  let buf = seed;
  const rounds = 1 + int(r, 3);
  for (let k = 0; k < rounds; k++) {
    const op = int(r, 11);
    if (op === 10) {  // benign rewrite: key order, whitespace, escaped names — still a valid image
      const { text, data } = safeSplit(buf);
      let h: any;
      try { h = text === undefined ? undefined : JSON.parse(text); } catch { h = undefined; }
      if (!h || typeof h !== 'object' || Array.isArray(h)) continue;
      const keys = Object.keys(h);
      for (let i = keys.length - 1; i > 0; i--) { const j = int(r, i + 1); [keys[i], keys[j]] = [keys[j], keys[i]]; }
      const ws = () => pick(r, ['', ' ', '\n', '\t', '\r\n  ']);
      const esc = (k: string) => JSON.stringify(k).replace(/[a-z]/g, (c) => (r() < 0.1 ? `\\u00${c.charCodeAt(0).toString(16)}` : c));
      const body = keys.map((k) => `${ws()}${esc(k)}${ws()}:${ws()}${JSON.stringify(h[k])}${ws()}`).join(',');
      buf = assemble(Buffer.from(`${ws()}{${body}}${ws()}`, 'utf8'), data);
    } else if (op === 0) {  // truncation
      buf = buf.slice(0, int(r, buf.length + 1));
    } else if (op === 1) {  // bit flips in the length
      buf = buf.slice();
      if (buf.length >= 8) buf[int(r, 8)] ^= 1 << int(r, 8);
    } else if (op === 2) {  // hostile lengths
      buf = buf.slice();
      if (buf.length >= 8) {
        const n = new DataView(buf.buffer).getBigUint64(0, true);
        const v = pick(r, [0n, 1n, 2n, n - 1n, n + 1n, n + 8n, BigInt(buf.length - 8), BigInt(buf.length), 1n << 32n,
          100n * 1024n * 1024n, (1n << 63n), (1n << 64n) - 1n, (1n << 64n) - 8n]);
        new DataView(buf.buffer).setBigUint64(0, BigInt.asUintN(64, v), true);
      }
    } else if (op === 3 || op === 4) {  // bit flips / bytes in the header
      buf = buf.slice();
      const n = buf.length >= 8 ? Number(new DataView(buf.buffer).getBigUint64(0, true)) : 0;
      const end = Math.min(buf.length, 8 + (Number.isSafeInteger(n) ? n : buf.length));
      const flips = 1 + int(r, 4);
      for (let f = 0; f < flips && end > 8; f++) {
        const i = 8 + int(r, end - 8);
        if (op === 3) buf[i] ^= 1 << int(r, 8);
        else buf[i] = r() < 0.5 ? int(r, 256) : '{}[]",:-0123456789eE.'.charCodeAt(int(r, 21));
      }
    } else if (op === 5) {  // data bytes (the image stays valid)
      buf = buf.slice();
      const { text } = safeSplit(buf);
      const start = 8 + Buffer.byteLength(text ?? '', 'utf8');
      if (text !== undefined && buf.length > start) buf[start + int(r, buf.length - start)] ^= 1 << int(r, 8);
    } else if (op === 6) {  // trailing bytes
      const extra = new Uint8Array(1 + int(r, 16));
      buf = Buffer.concat([buf, extra]);
    } else {  // header JSON edits, re-encoded with a (usually) consistent length
      const { text, data } = safeSplit(buf);
      if (text === undefined) continue;
      const edited = Buffer.from(editHeader(r, text), 'utf8');
      const claimed = r() < 0.9 ? undefined : BigInt(edited.length + pick(r, [-1, 1, 7]));
      buf = assemble(edited, data, claimed === undefined || claimed < 0n ? undefined : claimed);
    }
  }
  return buf;
}

function safeSplit(buf: Uint8Array): { text?: string; data: Uint8Array } {
  if (buf.length < 8) return { data: new Uint8Array(0) };
  const n = new DataView(buf.buffer, buf.byteOffset).getBigUint64(0, true);
  if (n > BigInt(buf.length - 8)) return { data: new Uint8Array(0) };
  return split(buf);
}

// ---- the reference check for accepted images --------------------------------------------------
/** Why an image the native reader accepted is not valid safetensors, or '' when it is. */
function referenceProblem(buf: Uint8Array, res: { tensors: number; bytes: number; byteSum: number }): string {
  if (buf.length < 8) return 'shorter than 8 bytes';
  const n = new DataView(buf.buffer, buf.byteOffset).getBigUint64(0, true);
  if (n > BigInt(buf.length - 8)) return 'header length past the end';
  const { text, data } = split(buf);
  let h: any;
  try { h = JSON.parse(text); } catch (e) { return `header is not JSON: ${(e as Error).message}`; }
  if (!h || typeof h !== 'object' || Array.isArray(h)) return 'header is not an object';
  const ranges: Array<[number, number]> = [];
  for (const [name, e] of Object.entries<any>(h)) {
    if (name === '__metadata__') {
      if (!e || typeof e !== 'object' || Array.isArray(e) || Object.values(e).some((v) => typeof v !== 'string')) return 'bad metadata';
      continue;
    }
    if (!e || typeof e !== 'object' || !(e.dtype in DTYPE_SIZE)) return `${name}: bad entry or dtype`;
    if (!Array.isArray(e.shape) || !e.shape.every((d: unknown) => Number.isSafeInteger(d) && (d as number) >= 0)) return `${name}: bad shape`;
    const o = e.data_offsets;
    if (!Array.isArray(o) || o.length !== 2 || !o.every((d: unknown) => Number.isSafeInteger(d) && (d as number) >= 0) || o[0] > o[1]) return `${name}: bad offsets`;
    const bytes = e.shape.reduce((a: number, b: number) => a * b, 1) * DTYPE_SIZE[e.dtype];
    if (bytes !== o[1] - o[0]) return `${name}: shape needs ${bytes} bytes, range holds ${o[1] - o[0]}`;
    ranges.push([o[0], o[1]]);
  }
  ranges.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let cursor = 0;
  for (const [b, e] of ranges) {
    if (b !== cursor) return `ranges do not tile the data (at ${b}, expected ${cursor})`;
    cursor = e;
  }
  if (cursor !== data.length) return 'bytes no tensor describes';
  if (ranges.length !== res.tensors) return `tensor count ${res.tensors} vs ${ranges.length}`;
  if (res.bytes !== data.length) return `read ${res.bytes} bytes of ${data.length}`;
  let sum = 0;
  for (let i = 0; i < data.length; i++) sum += data[i];
  if (sum !== res.byteSum) return `byte sum ${res.byteSum} vs ${sum}`;
  return '';
}

// ---- the tests --------------------------------------------------------------------------------
describe('safetensors fuzz', () => {
  const seeds: Array<[string, Uint8Array]> = [
    ...realFiles.map((p): [string, Uint8Array] => [p, new Uint8Array(fs.readFileSync(p))]),
    ...handMade,
  ];

  it('every seed image validates and reads back its whole data section', () => {
    for (const [name, buf] of seeds) {
      const res = validateSafetensorsBuffer(buf);
      expect(res.ok, name).toBe(true);
      expect(referenceProblem(buf, res), name).toBe('');
    }
  });

  it(`${CASES} seeded mutations: refused with E_BAD_CHECKPOINT or read correctly, never anything else`, () => {
    const r = mulberry32(SEED);
    const failures: string[] = [];
    let accepted = 0, refused = 0, slowest = 0;
    const t0 = performance.now();
    for (let i = 0; i < CASES; i++) {
      const [name, seed] = seeds[i % seeds.length];
      const buf = mutate(r, seed);
      const c0 = performance.now();
      let res: ReturnType<typeof validateSafetensorsBuffer> | undefined;
      try {
        res = validateSafetensorsBuffer(buf);
      } catch (e) {
        if (!(e instanceof SdError) || e.code !== 'E_BAD_CHECKPOINT' || !e.message.includes('<buffer>'))
          failures.push(`case ${i} (${name}): threw ${e instanceof SdError ? e.code : typeof e} ${(e as Error)?.message}`);
        refused++;
      }
      slowest = Math.max(slowest, performance.now() - c0);
      if (res) {
        accepted++;
        const problem = referenceProblem(buf, res);
        if (problem) failures.push(`case ${i} (${name}): accepted but ${problem}`);
      }
    }
    const elapsed = performance.now() - t0;
    // eslint-disable-next-line no-console
    console.log(`safetensors fuzz: ${CASES} cases, ${accepted} accepted, ${refused} refused, ` +
      `${(elapsed / 1000).toFixed(1)} s, slowest case ${slowest.toFixed(1)} ms`);
    expect(failures.slice(0, 20)).toEqual([]);
    expect(accepted).toBeGreaterThan(CASES / 20);  // the mutations also produce valid images
    expect(refused).toBeGreaterThan(CASES / 2);
    expect(elapsed).toBeLessThan(30_000);
  });

  it('refuses a header with millions of JSON values quickly, without exhausting memory', () => {
    const zeros = '0,'.repeat(1_100_000) + '0';
    const text = `{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"__metadata__":{"x":"y"},"z":[${zeros}]}`;
    const buf = assemble(Buffer.from(text), new Uint8Array(4));
    const t0 = performance.now();
    let err: unknown;
    try { validateSafetensorsBuffer(buf); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(SdError);
    expect((err as SdError).code).toBe('E_BAD_CHECKPOINT');
    expect((err as SdError).message).toMatch(/more than \d+ values/);
    expect(performance.now() - t0).toBeLessThan(5_000);
  });

  it('refuses a non-Uint8Array argument with E_INVALID_ARGUMENT', () => {
    expect(() => validateSafetensorsBuffer(new Float32Array(4) as unknown as Uint8Array)).toThrowError(
      expect.objectContaining({ code: 'E_INVALID_ARGUMENT' }));
  });
});
