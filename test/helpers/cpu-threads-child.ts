/**
 * Child process of test/cpu-threads.test.ts: loads the tiny SD 1.5 pipeline with `threads` = argv[2],
 * generates once, and prints one JSON line: the thread-pool variables libgomp/OpenBLAS read when
 * the addon loaded, buildInfo's thread counts before and after the call, and the image's bytes (base64) and their SHA-256.
 */
import { createHash } from 'node:crypto';
import { StableDiffusionPipeline, buildInfo } from '../../lib/index.js';
import { fixture } from './fixtures.js';

const threads = Number(process.argv[2] ?? '0');
const pipe = await StableDiffusionPipeline.fromPretrained(fixture('models', 'tiny-sd15'), threads > 0 ? { threads } : {});
const before = buildInfo();
const out = await pipe.generate({ prompt: 'a red cube', numInferenceSteps: 2, guidanceScale: 7, seed: 3, height: 64, width: 64 });
const after = buildInfo();
pipe.dispose();
console.log(JSON.stringify({
  env: { GOMP_SPINCOUNT: process.env.GOMP_SPINCOUNT ?? null, OPENBLAS_THREAD_TIMEOUT: process.env.OPENBLAS_THREAD_TIMEOUT ?? null },
  blasThreadsBefore: before.blasThreads, blasThreadsAfter: after.blasThreads,
  cpuCachingAllocator: after.cpuCachingAllocator,
  imageSha256: createHash('sha256').update(out.images[0].data).digest('hex'),
  image: Buffer.from(out.images[0].data).toString('base64'),
}));
