/**
 * `sd-native serve`: loads the models, picks the backend (in-process, or Redis with
 * `--redis <url> --role api|worker|both`), listens, and drains on SIGTERM / SIGINT: new jobs get
 * 503, queued and running jobs finish and are answered, then the process exits 0.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { InvalidArgumentError } from '../errors.js';
import type { LoadOptions } from '../options.js';
import type { JobBackend, JobExecutor } from './backend.js';
import { PipelineExecutor, modelNameOf, type ModelDescriptor } from './executor.js';
import { LocalBackend } from './local_backend.js';
import { createServer } from './app.js';

/** The options of `sd-native serve` (commander's camelCase). */
export interface ServeOptions {
  model: string[];
  host: string;
  port: number;
  device?: string;
  dtype?: string;
  threads?: number;
  maxBatch: number;
  batchWaitMs: number;
  maxBodyMb: number;
  maxPixels?: number;
  maxQueue?: number;
  redis?: string;
  role?: 'api' | 'worker' | 'both';
  queueName?: string;
  log?: boolean;
  previewDecoder?: string;
  previewEvery?: number;
}

/** The Redis scale-out module (lib/server/redis_backend.ts), loaded only with `--redis`. */
interface RedisModule {
  createRedisBackend(o: { url: string; queueName?: string }): Promise<JobBackend>;
  startRedisWorker(o: { url: string; queueName?: string; executor: JobExecutor; maxBatch?: number; batchWaitMs?: number }):
    Promise<{ close(o: { drain: boolean }): Promise<void> }>;
}

async function loadRedisModule(): Promise<RedisModule> {
  const specifier = './redis_backend.js';
  return (await import(specifier)) as RedisModule;
}

/** What an API-only process knows of a model without loading it: its name and family (model_index.json), its default size (configs). */
async function describeUnloaded(location: string): Promise<ModelDescriptor> {
  const json = async (...p: string[]) => JSON.parse(await readFile(path.join(location, ...p), 'utf8')) as Record<string, unknown>;
  const d: ModelDescriptor = {
    name: modelNameOf(location), location, family: 'sd1', className: 'StableDiffusionPipeline', defaultWidth: 512, defaultHeight: 512,
    schedulerName: 'PNDMScheduler',
  };
  try {
    const index = await json('model_index.json');
    d.className = String(index._class_name);
    if (d.className.startsWith('StableDiffusionXL')) { d.family = 'sdxl'; d.defaultWidth = d.defaultHeight = 1024; }
    const sched = (index.scheduler as string[] | undefined)?.[1];
    if (sched) d.schedulerName = sched;
    const unet = await json('unet', 'config.json');
    const vae = await json('vae', 'config.json');
    const f = 2 ** ((vae.block_out_channels as unknown[]).length - 1);
    d.defaultWidth = d.defaultHeight = (unet.sample_size as number) * f;
  } catch { /* a single file or Hub id: the defaults above */ }
  return d;
}

function log(line: string): void {
  process.stderr.write(line + '\n');
}

/** Resolves when a signal asks the process to stop. */
function untilSignal(): Promise<string> {
  return new Promise((resolve) => {
    const on = (sig: string) => () => { process.off('SIGTERM', term); process.off('SIGINT', int); resolve(sig); };
    const term = on('SIGTERM');
    const int = on('SIGINT');
    process.once('SIGTERM', term);
    process.once('SIGINT', int);
  });
}

/**
 * Runs the server until SIGTERM / SIGINT, then drains and resolves (the CLI exits 0).
 * @throws InvalidArgumentError for inconsistent flags; the loaders' errors when a model does not load.
 */
export async function runServe(o: ServeOptions): Promise<void> {
  const role = o.role ?? (o.redis ? 'both' : undefined);
  if (o.role && !o.redis) throw new InvalidArgumentError('--role needs --redis <url>');
  if (!Number.isInteger(o.maxBatch) || o.maxBatch < 1 || o.maxBatch > 64) throw new InvalidArgumentError(`--max-batch must be an integer in [1, 64]; received ${o.maxBatch}`);
  if (!(o.batchWaitMs >= 0)) throw new InvalidArgumentError(`--batch-wait-ms must be ≥ 0; received ${o.batchWaitMs}`);
  if (!(o.maxBodyMb > 0)) throw new InvalidArgumentError(`--max-body-mb must be > 0; received ${o.maxBodyMb}`);
  if (o.maxPixels !== undefined && !(Number.isInteger(o.maxPixels) && o.maxPixels >= 0)) throw new InvalidArgumentError(`--max-pixels must be an integer >= 0; received ${o.maxPixels}`);
  if (!Number.isInteger(o.port) || o.port < 0 || o.port > 65535) throw new InvalidArgumentError(`--port must be an integer in [0, 65535]; received ${o.port}`);
  const load: LoadOptions = {};
  if (o.device) load.device = o.device;
  if (o.dtype) load.dtype = o.dtype as LoadOptions['dtype'];
  if (o.threads !== undefined) load.threads = o.threads;
  // the preview decoder load option of the library's live previews (TAESD)
  if (o.previewDecoder !== undefined) (load as LoadOptions & { previewDecoder?: string }).previewDecoder = o.previewDecoder;

  const stopped = untilSignal();
  const needsModels = role !== 'api';
  let executor: PipelineExecutor | undefined;
  if (needsModels) {
    log(`loading ${o.model.join(', ')} …`);
    executor = await PipelineExecutor.load(o.model, load, { previewEvery: o.previewEvery });
    log(`loaded: ${executor.descriptors().map((d) => `${d.name} (${d.family})`).join(', ')}`);
  }
  try {
    let backend: JobBackend | undefined;
    let worker: { close(o: { drain: boolean }): Promise<void> } | undefined;
    if (o.redis) {
      const redis = await loadRedisModule();
      if (role === 'worker' || role === 'both') {
        worker = await redis.startRedisWorker({ url: o.redis, queueName: o.queueName, executor: executor!, maxBatch: o.maxBatch, batchWaitMs: o.batchWaitMs });
        log(`worker on ${o.redis} (max batch ${o.maxBatch})`);
      }
      if (role === 'api' || role === 'both') backend = await redis.createRedisBackend({ url: o.redis, queueName: o.queueName });
    } else {
      backend = new LocalBackend(executor!, { maxBatch: o.maxBatch, batchWaitMs: o.batchWaitMs, maxQueue: o.maxQueue });
    }
    let app: Awaited<ReturnType<typeof createServer>> | undefined;
    if (backend) {
      const models = executor ? undefined : await Promise.all(o.model.map(describeUnloaded));
      app = await createServer({ backend, executor, models, maxBodyMb: o.maxBodyMb, maxPixels: o.maxPixels, logger: o.log ?? false });
      const address = await app.listen({ host: o.host, port: o.port });
      log(`sd-native serve: listening on ${address} (web page at /, OpenAI /v1/images/*, A1111 /sdapi/v1/*, jobs /v1/jobs, /health, /metrics)`);
    }
    const sig = await stopped;
    log(`${sig}: draining (new jobs get 503; running jobs finish)`);
    await app?.drain();
    await worker?.close({ drain: true });
    log('drained; exiting');
  } finally {
    executor?.dispose();
  }
}
