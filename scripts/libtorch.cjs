#!/usr/bin/env node
// Finds libtorch in the order DESIGN.md gives and prints what binding.gyp needs.
//   node scripts/libtorch.cjs include|libdir|cflags|sources|describe
// Order: explicit LIBTORCH (a libtorch folder) or Torch_DIR (its share/cmake/Torch folder);
// the torch package of the python3 on PATH; the system's (Debian's libtorch-dev).
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

function fromPrefix(prefix, source) {
  const inc = path.join(prefix, 'include');
  const lib = path.join(prefix, 'lib');
  if (!fs.existsSync(path.join(inc, 'ATen', 'ATen.h'))) return null;
  return { source, includes: [inc, path.join(inc, 'torch', 'csrc', 'api', 'include')], libdir: lib, abi: null };
}

function pythonTorch() {
  try {
    const out = execFileSync('python3', ['-c',
      'import os, torch; print(os.path.dirname(torch.__file__)); print(int(torch._C._GLIBCXX_USE_CXX11_ABI)); print(torch.__version__)'],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 60000 });
    const [dir, abi, version] = out.trim().split('\n');
    const found = fromPrefix(dir, `python3 torch ${version} (${dir})`);
    if (found) found.abi = Number(abi);
    return found;
  } catch {
    return null;
  }
}

function system() {
  const inc = '/usr/include';
  const candidates = ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/usr/lib', '/usr/local/lib'];
  if (!fs.existsSync(path.join(inc, 'ATen', 'ATen.h'))) return null;
  const libdir = candidates.find((d) => fs.existsSync(path.join(d, 'libtorch.so')) || fs.existsSync(path.join(d, 'libtorch_cpu.so')));
  if (!libdir) return null;
  return { source: 'system (libtorch-dev)', includes: [inc, path.join(inc, 'torch', 'csrc', 'api', 'include')], libdir, abi: null };
}

function find() {
  if (process.env.LIBTORCH) return fromPrefix(process.env.LIBTORCH, `LIBTORCH=${process.env.LIBTORCH}`);
  if (process.env.Torch_DIR) return fromPrefix(path.resolve(process.env.Torch_DIR, '..', '..', '..'), `Torch_DIR=${process.env.Torch_DIR}`);
  return pythonTorch() ?? system();
}

/**
 * What to do when find() found nothing, for the case at hand: a LIBTORCH / Torch_DIR that does
 * not point at a libtorch (named, with what is missing), else the three ways to get one. The
 * last step is re-running the install: after a failed `npm install` the package is not there,
 * so `npm rebuild` would do nothing.
 */
function howTo() {
  const lines = [];
  const bad = (name, value, prefix) => {
    const header = path.join(prefix, 'include', 'ATen', 'ATen.h');
    lines.push(`sd-native: ${name}=${value} does not point at a libtorch: ${header} does not exist.`,
      `  ${name === 'LIBTORCH' ? 'LIBTORCH must be the unzipped libtorch folder from pytorch.org (holding include/ and lib/)'
        : 'Torch_DIR must be <libtorch>/share/cmake/Torch'}; fix or unset it.`);
  };
  if (process.env.LIBTORCH) bad('LIBTORCH', process.env.LIBTORCH, process.env.LIBTORCH);
  else if (process.env.Torch_DIR) bad('Torch_DIR', process.env.Torch_DIR, path.resolve(process.env.Torch_DIR, '..', '..', '..'));
  else {
    lines.push(
      'sd-native needs libtorch (the C++ distribution of PyTorch) and found none: not LIBTORCH, not Torch_DIR,',
      'not the torch package of python3, not a system libtorch-dev. Install one of:',
      '  Debian/Ubuntu (CPU):  sudo apt-get install libtorch-dev libopenblas0-pthread',
      '  any libtorch folder:  export LIBTORCH=/path/to/libtorch   (unzipped from pytorch.org; CUDA builds there)',
      '  a PyTorch install:    pip install torch   (python3 must import it; its bundled libtorch is used)');
  }
  lines.push('then install again: npm install sd-native   (in a project where it is already installed: npm rebuild sd-native)');
  return lines.join('\n');
}

module.exports = { find, howTo };

if (require.main === module) {
  const what = process.argv[2] ?? 'describe';
  const t = find();
  if (what === 'sources') {
    const root = path.resolve(__dirname, '..');
    const walk = (d) => fs.readdirSync(d, { withFileTypes: true }).flatMap((e) =>
      e.isDirectory() ? walk(path.join(d, e.name)) : e.name.endsWith('.cc') ? [path.join(d, e.name)] : []);
    const files = [...walk(path.join(root, 'native', 'core')), ...walk(path.join(root, 'native', 'addon'))];
    console.log(files.map((f) => path.relative(root, f)).sort().join('\n'));
    process.exit(0);
  }
  if (!t) {
    console.error(howTo());
    process.exit(1);
  }
  if (what === 'include') console.log(t.includes.join('\n'));
  else if (what === 'libdir') console.log(t.libdir);
  else if (what === 'libs') {
    const has = (n) => fs.existsSync(path.join(t.libdir, `lib${n}.so`));
    const libs = ['torch', 'torch_cpu', 'c10', 'torch_cuda', 'c10_cuda'].filter(has);
    console.log(libs.map((l) => `-l${l}`).join('\n'));
  } else if (what === 'cflags') console.log(t.abi === null ? '' : `-D_GLIBCXX_USE_CXX11_ABI=${t.abi}`);
  else console.error(`sd-native: using libtorch from ${t.source}: ${t.includes[0]}, ${t.libdir}`), console.log(t.source);
}
