#!/usr/bin/env node
// Checks the #include graph of the native code (plain Node, no dependencies):
//   (a) native/core includes nothing outside native/core (no N-API, no addon/): the core must build
//       and run embedded in any C++ program;
//   (b) a directory of native/core includes only its own directory and those below it in LAYERS;
//   (c) no cycle among the files of native/core and native/addon.
// Usage: node scripts/check-includes.mjs [rootDir]   (rootDir defaults to this repository)
// Exit 0 with a one-line summary, or 1 listing each offence as `file:line: #include "…": why`.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// The layer order of native/core, lowest first. A directory may include itself and any directory
// to its left, never one to its right (docs/ARCHITECTURE-core.md says what each one holds).
const LAYERS = [
  'util', // errors, JSON, string helpers: the standard library and ATen only
  'config', // config.json readers
  'runtime', // dtype support, kernel quirks (what the libtorch build can do)
  'io', // safetensors, diffusers folders, StateDict
  'nn', // weights store, layers, attention, LoRA layer mechanics, fp8 storage
  'models', // CLIPTextModel, UNet2DConditionModel, AutoencoderKL
  'loaders', // single-file (LDM) checkpoints, LoRA files: file formats that need the models' configs
  'schedulers', // diffusers schedulers (use util and config only, by habit not by rule)
  'pipelines', // StableDiffusion(XL)Pipeline and their shared steps
];
// Headers of Node / N-API that must never reach the core, however they are spelled.
const NODE_HEADERS = new Set(['napi.h', 'node_api.h', 'node.h', 'uv.h', 'js_native_api.h']);
const SOURCE = /\.(h|hh|hpp|hxx|c|cc|cpp|cxx)$/;

const root = path.resolve(process.argv[2] ?? path.join(path.dirname(fileURLToPath(import.meta.url)), '..'));
const native = path.join(root, 'native');
const core = path.join(native, 'core');
const addon = path.join(native, 'addon');

function walk(dir) {
  if (!fs.existsSync(dir)) return [];
  const out = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...walk(p));
    else if (e.isFile() && SOURCE.test(e.name)) out.push(p);
  }
  return out.sort();
}

const rel = (p) => path.relative(root, p).split(path.sep).join('/');
const inside = (dir, p) => p === dir || p.startsWith(dir + path.sep);
const layerOf = (file) => path.relative(core, file).split(path.sep)[0];

// The include search path of CMakeLists.txt / binding.gyp: native/core, then native; then the
// including file's own folder (how the compiler reads "x.h" first).
function resolve(from, name) {
  for (const base of [path.dirname(from), core, native]) {
    const p = path.resolve(base, name);
    if (fs.existsSync(p) && fs.statSync(p).isFile()) return p;
  }
  return null;
}

const files = [...walk(core), ...walk(addon)];
if (files.length === 0) {
  console.error(`check-includes: no sources under ${rel(core)} or ${rel(addon)}`);
  process.exit(1);
}

const errors = [];
const edges = new Map(); // file → [{ to, line, text }]
let includes = 0;
for (const file of files) {
  const isCore = inside(core, file);
  const layer = isCore ? layerOf(file) : null;
  if (isCore && !LAYERS.includes(layer))
    errors.push(`${rel(file)}: directory "${layer}" of native/core is not in the declared layer order (LAYERS in scripts/check-includes.mjs)`);
  const out = [];
  fs.readFileSync(file, 'utf8').split('\n').forEach((text, i) => {
    const m = /^\s*#\s*include\s*([<"])([^>"]+)[>"]/.exec(text);
    if (!m) return;
    const [, delim, name] = m;
    const where = `${rel(file)}:${i + 1}: #include ${delim}${name}${delim === '<' ? '>' : '"'}`;
    if (delim === '<') {
      if (isCore && NODE_HEADERS.has(path.basename(name))) errors.push(`${where}: the core must not use N-API or Node headers`);
      return;
    }
    includes++;
    const target = resolve(file, name);
    if (isCore && NODE_HEADERS.has(path.basename(name))) {
      errors.push(`${where}: the core must not use N-API or Node headers`);
      return;
    }
    if (!target) {
      errors.push(`${where}: not found under native/core or native/`);
      return;
    }
    if (isCore && !inside(core, target)) {
      errors.push(`${where}: the core includes ${rel(target)}, outside native/core`);
      return;
    }
    if (isCore && inside(core, target)) {
      const to = layerOf(target);
      if (LAYERS.includes(layer) && LAYERS.includes(to) && LAYERS.indexOf(to) > LAYERS.indexOf(layer))
        errors.push(`${where}: ${layer}/ may not include ${to}/ (above it in ${LAYERS.join(' < ')})`);
    }
    out.push({ to: target, line: i + 1, text: name });
  });
  edges.set(file, out);
}

// (c) cycles: depth-first search; a grey node met again closes a cycle, reported once per cycle.
const state = new Map(); // undefined = white, 1 = grey (on the stack), 2 = black
const stack = [];
const seen = new Set();
function visit(file) {
  state.set(file, 1);
  stack.push(file);
  for (const e of edges.get(file) ?? []) {
    if (!edges.has(e.to)) continue; // a header outside the checked trees
    if (state.get(e.to) === 1) {
      const cycle = stack.slice(stack.indexOf(e.to));
      const key = [...cycle].sort().join('|');
      if (!seen.has(key)) {
        seen.add(key);
        const steps = cycle.map((f, k) => {
          const next = cycle[(k + 1) % cycle.length];
          const edge = edges.get(f).find((x) => x.to === next);
          return `${rel(f)}:${edge.line} #include "${edge.text}"`;
        });
        errors.push(`include cycle: ${steps.join(' → ')} → ${rel(cycle[0])}`);
      }
    } else if (state.get(e.to) === undefined) {
      visit(e.to);
    }
  }
  stack.pop();
  state.set(file, 2);
}
for (const f of files) if (state.get(f) === undefined) visit(f);

if (errors.length) {
  for (const e of errors) console.error(e);
  console.error(`check-includes: ${errors.length} problem(s) in ${files.length} files (layers: ${LAYERS.join(' < ')})`);
  process.exit(1);
}
console.log(
  `check-includes: ${files.length} files, ${includes} includes: core has no N-API, no upward include (${LAYERS.join(' < ')}), no cycle`,
);
