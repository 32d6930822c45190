/**
 * The package as a Node user meets it: `require` and `import` of the packed tarball (typed both
 * ways), the LICENSE, `--version`, `--scheduler` with AUTOMATIC1111 sampler names checked before
 * any model loads, and the advice printed when libtorch is missing.
 */
import { describe, it, expect, afterAll } from 'vitest';
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { A1111_SAMPLERS, SCHEDULER_NAMES, resolveSchedulerName, samplerName } from '../lib/index.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as {
  version: string; license: string; files: string[]; engines: { node: string };
};
// inside the repository, so that the unpacked package resolves its dependencies from its node_modules
const consumer = fs.mkdtempSync(path.join(root, '.install-test-'));
afterAll(() => fs.rmSync(consumer, { recursive: true, force: true }));

function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('npx', ['tsx', 'lib/cli.ts', ...args], { cwd: root, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

describe('the published package', () => {
  it('ships an Apache-2.0 LICENSE matching package.json', () => {
    expect(pkg.license).toBe('Apache-2.0');
    expect(pkg.files).toContain('LICENSE');
    const text = fs.readFileSync(path.join(root, 'LICENSE'), 'utf8');
    expect(text).toMatch(/^Apache License\s+Version 2\.0, January 2004/);
    expect(text).toMatch(/END OF TERMS AND CONDITIONS/);
  });

  it('the packed tarball works with require() and import, and type-checks both ways', () => {
    const out = execFileSync('npm', ['pack', '--json', '--pack-destination', consumer], { cwd: root, encoding: 'utf8' });
    const [info] = JSON.parse(out) as Array<{ filename: string; files: Array<{ path: string }> }>;
    const files = info.files.map((f) => f.path);
    for (const f of ['LICENSE', 'package.json', 'dist/lib/index.js', 'dist/lib/index.d.ts', 'dist/types/native.d.ts', 'binding.gyp']) {
      expect(files, f).toContain(f);
    }
    expect(files.some((f) => f.startsWith('test/') || f.startsWith('build/'))).toBe(false);
    const dest = path.join(consumer, 'node_modules', 'sd-native');
    fs.mkdirSync(dest, { recursive: true });
    execFileSync('tar', ['-xzf', path.join(consumer, info.filename), '-C', dest, '--strip-components=1']);

    const run = (file: string, src: string) => {
      fs.writeFileSync(path.join(consumer, file), src);
      const r = spawnSync(process.execPath, [file], { cwd: consumer, encoding: 'utf8' });
      expect(r.stderr.replace(/^.*ExperimentalWarning.*\n?|^\(Use `node --trace-warnings.*\n?/gm, '')).toBe('');
      expect(r.status).toBe(0);
      return JSON.parse(r.stdout) as { keys: string[]; pipeline: string };
    };
    const cjs = run('use.cjs', `const sd = require('sd-native');
console.log(JSON.stringify({ keys: Object.keys(sd).sort(), pipeline: typeof sd.StableDiffusionPipeline.fromPretrained }));`);
    const esm = run('use.mjs', `import * as sd from 'sd-native';
console.log(JSON.stringify({ keys: Object.keys(sd).sort(), pipeline: typeof sd.StableDiffusionPipeline.fromPretrained }));`);
    expect(cjs.pipeline).toBe('function');
    expect(cjs.keys).toEqual(esm.keys);
    expect(esm.keys).toContain('AutoPipelineForText2Image');

    // typed: a CommonJS and an ES module consumer, as TypeScript (nodenext) resolves the exports map
    fs.writeFileSync(path.join(consumer, 'use-cjs.cts'), `import sd = require('sd-native');
export const load: (dir: string) => Promise<sd.StableDiffusionPipeline> = (dir) => sd.StableDiffusionPipeline.fromPretrained(dir);`);
    fs.writeFileSync(path.join(consumer, 'use-esm.mts'), `import { StableDiffusionPipeline, type GenerateOptions } from 'sd-native';
export const options: GenerateOptions = { prompt: 'a cat' };
export const load = (dir: string): Promise<StableDiffusionPipeline> => StableDiffusionPipeline.fromPretrained(dir);`);
    fs.writeFileSync(path.join(consumer, 'tsconfig.json'), JSON.stringify({
      compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, skipLibCheck: true,
        types: ['node'], typeRoots: [path.join(root, 'node_modules', '@types')] },
      files: ['use-cjs.cts', 'use-esm.mts'],
    }));
    const tsc = spawnSync(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', consumer], { encoding: 'utf8' });
    expect(`${tsc.stdout}${tsc.stderr}`).toBe('');
    expect(tsc.status).toBe(0);
  }, 120_000);

  it('engines says which Node runs require() of the ES module build', () => {
    expect(pkg.engines.node).toBe('>=20.19');
  });
});

describe('the CLI', () => {
  it('--version prints the package version', async () => {
    const r = await cli('--version');
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(pkg.version);
  });

  it('--scheduler takes AUTOMATIC1111 sampler names and refuses unknown ones before loading the model', async () => {
    const r = await cli('generate', '-m', path.join(os.tmpdir(), 'no-such-model-dir'), '-p', 'x', '--scheduler', 'DPM2 a');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error \[E_UNSUPPORTED_MODEL\]: scheduler "DPM2 a" is not supported;.*"?DPM\+\+ 2M Karras/);
    expect(r.stderr).not.toMatch(/E_MODEL_NOT_FOUND/);
    const ok = await cli('generate', '-m', path.join(os.tmpdir(), 'no-such-model-dir'), '-p', 'x', '--scheduler', 'euler a');
    expect(ok.stderr).toMatch(/E_MODEL_NOT_FOUND/); // the name was accepted; the model is what is missing
  });

  it('every A1111 sampler name maps to a supported scheduler whose samplerName is that name', () => {
    expect(Object.keys(A1111_SAMPLERS).length).toBeGreaterThanOrEqual(14);
    for (const [name, { scheduler, config }] of Object.entries(A1111_SAMPLERS)) {
      expect(SCHEDULER_NAMES).toContain(scheduler);
      expect(samplerName(scheduler, config), name).toBe(name);
      expect(resolveSchedulerName(name.toUpperCase())).toEqual({ scheduler, config });
    }
    expect(resolveSchedulerName('EulerDiscreteScheduler')).toEqual({ scheduler: 'EulerDiscreteScheduler', config: {} });
    expect(() => resolveSchedulerName('KDPM2DiscreteScheduler')).toThrow(expect.objectContaining({ code: 'E_UNSUPPORTED_MODEL' }));
  });
});

describe('no libtorch: the advice fits the case', () => {
  const require = createRequire(import.meta.url);
  const { howTo } = require(path.join(root, 'scripts', 'libtorch.cjs')) as { howTo: () => string };
  const withEnv = (env: Record<string, string | undefined>, f: () => string) => {
    const saved = { LIBTORCH: process.env.LIBTORCH, Torch_DIR: process.env.Torch_DIR };
    delete process.env.LIBTORCH; delete process.env.Torch_DIR;
    Object.assign(process.env, env);
    try { return f(); } finally {
      delete process.env.LIBTORCH; delete process.env.Torch_DIR;
      for (const [k, v] of Object.entries(saved)) if (v !== undefined) process.env[k] = v;
    }
  };

  it('a LIBTORCH that is not a libtorch is named, with the file it lacks', () => {
    const msg = withEnv({ LIBTORCH: '/opt/not-libtorch' }, howTo);
    expect(msg).toContain('LIBTORCH=/opt/not-libtorch does not point at a libtorch');
    expect(msg).toContain(path.join('/opt/not-libtorch', 'include', 'ATen', 'ATen.h'));
    expect(msg).toMatch(/npm install sd-native/);
    expect(withEnv({ Torch_DIR: '/opt/x/share/cmake/Torch' }, howTo)).toMatch(/Torch_DIR=\/opt\/x\/share\/cmake\/Torch does not point at a libtorch/);
  });

  it('none found: the three ways to get one, then install again (npm rebuild only where it is installed)', () => {
    const msg = withEnv({}, howTo);
    expect(msg).toMatch(/apt-get install libtorch-dev/);
    expect(msg).toMatch(/export LIBTORCH=/);
    expect(msg).toMatch(/pip install torch/);
    expect(msg).toMatch(/then install again: npm install sd-native/);
  });

  it('check-libtorch (the install step) exits 1 with that advice when LIBTORCH is wrong and no binary exists yet', () => {
    // a copy of the two scripts in a folder with no build/ or prebuilds/: "no binary yet"
    const scripts = path.join(consumer, 'no-binary', 'scripts');
    fs.mkdirSync(scripts, { recursive: true });
    for (const f of ['check-libtorch.cjs', 'libtorch.cjs']) fs.copyFileSync(path.join(root, 'scripts', f), path.join(scripts, f));
    const r = spawnSync(process.execPath, [path.join(scripts, 'check-libtorch.cjs')], {
      env: { ...process.env, LIBTORCH: '/opt/not-libtorch' }, encoding: 'utf8',
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('LIBTORCH=/opt/not-libtorch does not point at a libtorch');
  });
});
