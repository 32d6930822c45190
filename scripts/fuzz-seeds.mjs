#!/usr/bin/env node
// The seed corpus of scripts/fuzz.sh, made from ../shared/fixtures at run time (nothing is
// committed): node scripts/fuzz-seeds.mjs OUT_DIR  →  OUT_DIR/{safetensors,json,lora,single_file}/
//
// - json: every fixture .json under 64 KB (configs, model_index, tokenizer and scheduler files)
// - safetensors: every fixture .safetensors, shrunk (below) so seeds stay small, plus the small
//   ones as they are
// - lora: the LoRA fixtures shrunk (each tensor [1, …, 1] of its rank: pairing and rank checks pass)
// - single_file: tiny-sd15.safetensors' keys in groups of 24 (each with one CLIP key so the family is
//   detected), tensors [1, …, 1]
// Shrinking keeps names, dtypes and ranks: a tensor becomes [1, …, 1] holding its first element.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const out = process.argv[2];
if (!out) { console.error('usage: node scripts/fuzz-seeds.mjs OUT_DIR'); process.exit(2); }
const fixtures = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'shared', 'fixtures');
const SIZES = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1, F8_E4M3: 1, F8_E5M2: 1 };

function walk(dir, ext) {
  const found = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) found.push(...walk(p, ext));
    else if (e.isFile() && e.name.endsWith(ext)) found.push(p);
  }
  return found.sort();
}

/** The header of a safetensors file and the offset of its data section. */
function readHeader(file) {
  const fd = fs.openSync(file, 'r');
  try {
    const len = Buffer.alloc(8);
    fs.readSync(fd, len, 0, 8, 0);
    const n = Number(len.readBigUInt64LE());
    const text = Buffer.alloc(n);
    fs.readSync(fd, text, 0, n, 8);
    return { fd, header: JSON.parse(text.toString('utf8')), base: 8 + n };
  } catch (e) {
    fs.closeSync(fd);
    throw e;
  }
}

/** A safetensors image of `entries` ([name, dtype, shape, bytes]) with optional metadata. */
function image(entries, metadata) {
  const header = {};
  if (metadata) header.__metadata__ = metadata;
  let off = 0;
  for (const [name, dtype, shape, bytes] of entries) {
    header[name] = { dtype, shape, data_offsets: [off, off + bytes.length] };
    off += bytes.length;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  return Buffer.concat([len, Buffer.from(json), ...entries.map((e) => e[3])]);
}

/** The tensors of `file` shrunk to [1, …, 1] (first element), optionally only `names`. */
function shrunk(file, names) {
  const { fd, header, base } = readHeader(file);
  try {
    const entries = [];
    for (const [name, t] of Object.entries(header)) {
      if (name === '__metadata__' || (names && !names.has(name))) continue;
      const size = SIZES[t.dtype] ?? 1;
      const numel = t.shape.reduce((a, b) => a * b, 1);
      const bytes = Buffer.alloc(numel === 0 ? 0 : size);
      if (numel) fs.readSync(fd, bytes, 0, size, base + t.data_offsets[0]);
      entries.push([name, t.dtype, numel === 0 ? t.shape : t.shape.map(() => 1), bytes]);
    }
    return { entries, metadata: header.__metadata__ };
  } finally {
    fs.closeSync(fd);
  }
}

let count = 0;
function put(kind, name, bytes) {
  const dir = path.join(out, kind);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, name.replace(/[^\w.-]+/g, '_')), bytes);
  count++;
}

for (const f of walk(fixtures, '.json')) {
  if (fs.statSync(f).size <= 65536) put('json', path.relative(fixtures, f), fs.readFileSync(f));
}
for (const f of walk(fixtures, '.safetensors')) {
  const rel = path.relative(fixtures, f);
  if (fs.statSync(f).size <= 4096) put('safetensors', rel, fs.readFileSync(f));
  const { entries, metadata } = shrunk(f);
  if (entries.length <= 64) put('safetensors', `shrunk-${rel}`, image(entries, metadata));
}
for (const f of walk(path.join(fixtures, 'loras'), '.safetensors')) {
  const { entries, metadata } = shrunk(f);
  put('lora', path.basename(f), image(entries, metadata));
  put('lora', `half-${path.basename(f)}`, image(entries.slice(0, 16), metadata));
}
{
  const f = path.join(fixtures, 'models', 'tiny-sd15.safetensors');
  const { fd, header } = readHeader(f);
  fs.closeSync(fd);
  const names = Object.keys(header).filter((k) => k !== '__metadata__');
  const clip = names.find((k) => k.startsWith('cond_stage_model.transformer.'));
  for (let i = 0; i < names.length; i += 24) {
    const group = new Set(names.slice(i, i + 24));
    if (clip) group.add(clip);
    put('single_file', `keys-${i}`, image(shrunk(f, group).entries));
  }
}
console.error(`fuzz-seeds: ${count} seeds in ${out}`);
