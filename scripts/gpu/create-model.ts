/**
 * create-model with the weights drawn on a device (issue 13), for scripts/gpu-check.sh:
 *   node --import tsx scripts/gpu/create-model.ts --preset sd15 --scale full --out /tmp/sd15 --device cuda
 * The same as `sd-native create-model` plus --device ('cpu' | 'cuda' | 'cuda:N'; createModel's
 * `device` option): a full SD 1.5 drawn on the GPU instead of the device machine's CPU (~35 s there).
 */
import path from 'node:path';
import { createModel, type ModelPreset, type ModelScale } from '../../lib/create-model.js';

const args = process.argv.slice(2);
const arg = (name: string, dflt?: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : dflt);
const out = arg('--out');
if (!out) throw new Error('--out <dir> is required');
const preset = arg('--preset', 'sd15') as ModelPreset;
const scale = arg('--scale', 'tiny') as ModelScale;
const device = arg('--device', 'cpu')!;
const dtype = arg('--dtype') as 'float32' | 'float16' | undefined;
const seed = Number(arg('--seed', '0'));

const t0 = performance.now();
const r = await createModel({ preset, scale, out: path.resolve(out), device, dtype, seed });
const total = Object.values(r.parameters).reduce((a, b) => a + b, 0);
console.log(r.path);
for (const [name, n] of Object.entries(r.parameters)) console.log(`  ${name.padEnd(16)} ${n} params, ${r.bytes[name]} bytes`);
console.log(`created ${preset} (${scale}, seed ${seed}) on ${device}: ${total} params in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
