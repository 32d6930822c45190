// Hugging Face Hub model ids (lib/loaders/hub.ts) against a mock Hub on loopback
// (test/helpers/mock-hub.ts) serving the fixture folders in place: the huggingface_hub cache
// layout file by file, offline second loads, localFilesOnly with the server gone, variants, that
// nothing unneeded is requested, 401 → E_UNAUTHORIZED, 404, retries after 429/5xx, a cut
// connection resumed with Range, bytes that disagree with the listing, abort then a clean retry,
// concurrent loads sharing one download, and pixels equal to loading the fixture folder directly.
import { describe, it, expect, beforeAll, afterAll, afterEach } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MockHub } from './helpers/mock-hub.js';
import { fixture, rejection } from './helpers/fixtures.js';
import { downloadPipeline, listCachedModels, parseHubFile, parseHubId, repoFolderName } from '../lib/loaders/hub.js';
import { StableDiffusionPipeline, AutoPipelineForText2Image, AutoencoderKL, SdError, StableDiffusionXLPipeline } from '../lib/index.js';
import { main } from '../lib/cli.js';
import type { HubDownloadProgress } from '../lib/options.js';

const SD15 = fixture('models', 'tiny-sd15');
const SDXL = fixture('models', 'tiny-sdxl');
const SD15_FILES = [
  'model_index.json', 'scheduler/scheduler_config.json', 'text_encoder/config.json', 'text_encoder/model.safetensors',
  'tokenizer/merges.txt', 'tokenizer/special_tokens_map.json', 'tokenizer/tokenizer_config.json', 'tokenizer/vocab.json',
  'unet/config.json', 'unet/diffusion_pytorch_model.safetensors', 'vae/config.json', 'vae/diffusion_pytorch_model.safetensors',
].sort();
const DECOY = /\.(bin|ckpt|onnx|msgpack|pt)($|\?)|safety_checker|feature_extractor|README|v1-5-pruned/;

const mock = new MockHub({
  'test/tiny-sd15': { dir: SD15, variants: ['fp16'], decoys: true, revisions: { main: 'a'.repeat(40), v1: 'b'.repeat(40) } },
  'test/tiny-sdxl': { dir: SDXL, decoys: true },
  'test/gated': { dir: SD15, gatedToken: 'hf_good' },
  'test/corrupt-size': { dir: SD15, corrupt: { 'unet/diffusion_pytorch_model.safetensors': 'size' } },
  'test/corrupt-bytes': { dir: SD15, corrupt: { 'vae/diffusion_pytorch_model.safetensors': 'bytes' } },
  'test/flaky': { dir: SD15 },
  'test/slow': { dir: SD15 },
  // single files beside folders (the fixtures' models/ root), LoRAs, embeddings
  'test/files': { dir: fixture('models') },
  'test/loras': { dir: fixture('loras') },
  'test/embeddings': { dir: fixture('embeddings') },
});

const saved: Record<string, string | undefined> = {};
const temps: string[] = [];
function tempCache(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'sd-hub-'));
  temps.push(d);
  return d;
}
/** Every file under `dir`, relative, with symlinks shown as `-> target`. */
function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(r);
      else out.push(e.isSymbolicLink() ? `${r} -> ${fs.readlinkSync(path.join(dir, r))}` : r);
    }
  };
  walk('');
  return out.sort();
}
const bodyRequests = () => mock.requests.filter((r) => (r.url.startsWith('/cdn/') || r.url.includes('/resolve/')) && r.range !== 'bytes=0-0' && r.method === 'GET');

beforeAll(async () => {
  for (const k of ['HF_ENDPOINT', 'HF_TOKEN', 'HF_HUB_OFFLINE', 'HF_HUB_CACHE', 'HF_HOME']) { saved[k] = process.env[k]; delete process.env[k]; }
  process.env.HF_ENDPOINT = await mock.start();
  process.env.HF_HUB_CACHE = tempCache(); // nothing may touch the user's cache
});
afterAll(async () => {
  await mock.stop();
  for (const [k, v] of Object.entries(saved)) { if (v === undefined) delete process.env[k]; else process.env[k] = v; }
  for (const d of temps) fs.rmSync(d, { recursive: true, force: true });
});
afterEach(() => mock.reset());

describe('Hub ids', () => {
  it('parses org/name[@revision]; paths and malformed names are not ids', () => {
    expect(parseHubId('stable-diffusion-v1-5/stable-diffusion-v1-5')).toEqual({ repo: 'stable-diffusion-v1-5/stable-diffusion-v1-5' });
    expect(parseHubId('org/name@v1.0')).toEqual({ repo: 'org/name', revision: 'v1.0' });
    for (const s of ['./a/b', '/a/b', 'a/b/c', 'name', 'a--b/c', 'a/..', '', 'a/b@', '../x/y']) expect(parseHubId(s)).toBeUndefined();
    expect(repoFolderName('org/name')).toBe('models--org--name');
  });
});

describe('download into the huggingface_hub cache', () => {
  it('writes blobs named by ETag, refs/main = the commit, snapshot symlinks; only what the pipeline needs', async () => {
    const cacheDir = tempCache();
    const t0 = performance.now();
    const events: HubDownloadProgress[] = [];
    const r = await downloadPipeline('test/tiny-sd15', { cacheDir, onProgress: (p) => events.push({ ...p }) });
    const ms = performance.now() - t0;
    const commit = mock.commit('test/tiny-sd15');
    const storage = path.join(cacheDir, 'models--test--tiny-sd15');
    expect(r).toMatchObject({ commit, revision: 'main', path: path.join(storage, 'snapshots', commit), offline: false, downloadedFiles: 12 });
    expect([...r.files].sort()).toEqual(SD15_FILES);
    expect(fs.readFileSync(path.join(storage, 'refs', 'main'), 'utf8')).toBe(commit);
    // file by file: snapshots/<commit>/<path> -> ../(../)blobs/<etag>, same bytes as the fixture
    const expected = new Set<string>(['refs/main']);
    for (const f of SD15_FILES) {
      const etag = mock.etag('test/tiny-sd15', f);
      const depth = f.split('/').length + 1;
      expected.add(`snapshots/${commit}/${f} -> ${'../'.repeat(depth)}blobs/${etag}`);
      expected.add(`blobs/${etag}`);
      expect(fs.readFileSync(path.join(r.path, f)).equals(fs.readFileSync(path.join(SD15, f)))).toBe(true);
    }
    expect(tree(storage)).toEqual([...expected].sort()); // no .incomplete, nothing else
    // LFS files by sha256, git files by their blob sha1 (as huggingface_hub names them)
    expect(mock.etag('test/tiny-sd15', 'unet/diffusion_pytorch_model.safetensors')).toMatch(/^[0-9a-f]{64}$/);
    expect(mock.etag('test/tiny-sd15', 'unet/config.json')).toMatch(/^[0-9a-f]{40}$/);
    // requests: nothing unneeded, each file's bytes once
    expect(mock.requests.filter((q) => DECOY.test(q.url))).toEqual([]);
    const bodies = bodyRequests();
    expect(bodies).toHaveLength(SD15_FILES.length);
    const bytes = SD15_FILES.reduce((a, f) => a + fs.statSync(path.join(SD15, f)).size, 0);
    expect(r.downloadedBytes).toBe(bytes);
    const last = events.at(-1)!;
    expect(last).toMatchObject({ bytesDone: bytes, bytesTotal: bytes, filesDone: 12, filesTotal: 12 });
    expect(last.bytesPerSecond).toBeGreaterThan(0);
    console.log(`[hub] tiny-sd15: ${mock.count()} requests (${bodies.length} file bodies), ${bytes} bytes, ${ms.toFixed(0)} ms`);

    // a second load makes no request
    mock.reset();
    const again = await downloadPipeline('test/tiny-sd15', { cacheDir });
    expect(again).toMatchObject({ path: r.path, offline: true, downloadedFiles: 0 });
    expect(mock.count()).toBe(0);
    console.log(`[hub] tiny-sd15 second load: ${mock.count()} requests`);
  });

  it('tiny-sdxl: both text encoders and tokenizers, nothing else', async () => {
    const cacheDir = tempCache();
    const t0 = performance.now();
    const r = await downloadPipeline('test/tiny-sdxl', { cacheDir });
    const ms = performance.now() - t0;
    expect(r.files).toHaveLength(18);
    expect(r.files).toContain('text_encoder_2/model.safetensors');
    expect(r.files).toContain('tokenizer_2/merges.txt');
    expect(mock.requests.filter((q) => DECOY.test(q.url))).toEqual([]);
    console.log(`[hub] tiny-sdxl: ${mock.count()} requests (${bodyRequests().length} file bodies), ${r.downloadedBytes} bytes, ${ms.toFixed(0)} ms`);
    mock.reset();
    await downloadPipeline('test/tiny-sdxl', { cacheDir });
    expect(mock.count()).toBe(0);
  });

  it('variant fp16 fetches the .fp16.safetensors weights, not the default ones', async () => {
    const cacheDir = tempCache();
    const r = await downloadPipeline('test/tiny-sd15', { cacheDir, variant: 'fp16' });
    expect(r.files.filter((f) => f.endsWith('.safetensors')).sort()).toEqual([
      'text_encoder/model.fp16.safetensors', 'unet/diffusion_pytorch_model.fp16.safetensors', 'vae/diffusion_pytorch_model.fp16.safetensors']);
    expect(mock.requests.filter((q) => /resolve\/[^/]+\/[a-z_]+\/(model|diffusion_pytorch_model)\.safetensors/.test(q.url))).toEqual([]);
    // the default weights are not in the snapshot, so a load without the variant needs the Hub again
    const snap = fs.readdirSync(path.join(r.path, 'unet')).sort();
    expect(snap).toEqual(['config.json', 'diffusion_pytorch_model.fp16.safetensors']);
    mock.reset();
    await downloadPipeline('test/tiny-sd15', { cacheDir, variant: 'fp16' });
    expect(mock.count()).toBe(0);
    // a missing variant names it
    const e = await rejection(downloadPipeline('test/tiny-sdxl', { cacheDir, variant: 'fp16' }));
    expect(e.code).toBe('E_MODEL_NOT_FOUND');
    expect(e.message).toMatch(/test\/tiny-sdxl: variant "fp16" not found/);
  });

  it('revision: the id\'s @revision or the option; refs/<revision> holds its commit', async () => {
    const cacheDir = tempCache();
    const r = await downloadPipeline('test/tiny-sd15@v1', { cacheDir });
    expect(r.commit).toBe('b'.repeat(40));
    expect(fs.readFileSync(path.join(cacheDir, 'models--test--tiny-sd15', 'refs', 'v1'), 'utf8')).toBe('b'.repeat(40));
    const byCommit = await downloadPipeline('test/tiny-sd15', { cacheDir, revision: 'b'.repeat(40), localFilesOnly: true });
    expect(byCommit.path).toBe(r.path);
    expect((await rejection(downloadPipeline('test/tiny-sd15@v1', { cacheDir, revision: 'main' }))).code).toBe('E_INVALID_ARGUMENT');
    const e = await rejection(downloadPipeline('test/tiny-sd15@nope', { cacheDir }));
    expect(e.code).toBe('E_MODEL_NOT_FOUND');
    expect(e.message).toMatch(/revision "nope" not found in test\/tiny-sd15/);
  });

  it('localFilesOnly / HF_HUB_OFFLINE use the cache with the server stopped; not cached is E_MODEL_NOT_FOUND naming the id', async () => {
    const cacheDir = tempCache();
    const own = new MockHub({ 'test/offline': { dir: SD15 } });
    const endpoint = process.env.HF_ENDPOINT;
    process.env.HF_ENDPOINT = await own.start();
    try {
      const r = await downloadPipeline('test/offline', { cacheDir });
      await own.stop();
      expect((await downloadPipeline('test/offline', { cacheDir, localFilesOnly: true })).path).toBe(r.path);
      process.env.HF_HUB_OFFLINE = '1';
      expect((await downloadPipeline('test/offline', { cacheDir })).path).toBe(r.path);
      const e = await rejection(downloadPipeline('test/never-downloaded', { cacheDir }));
      expect(e.code).toBe('E_MODEL_NOT_FOUND');
      expect(e.message).toMatch(/^test\/never-downloaded is not in the cache .* downloads are off/);
      // a pipeline load by id, offline
      const pipe = await StableDiffusionPipeline.fromPretrained('test/offline', { cacheDir });
      expect(pipe.info.modelPath).toBe(r.path);
      await pipe[Symbol.asyncDispose]();
    } finally {
      delete process.env.HF_HUB_OFFLINE;
      process.env.HF_ENDPOINT = endpoint;
    }
  });
});

describe('failures', () => {
  it('a gated repo: 401 → E_UNAUTHORIZED naming the repo; with the token it downloads', async () => {
    const cacheDir = tempCache();
    const e = await rejection(StableDiffusionPipeline.fromPretrained('test/gated', { cacheDir }));
    expect(e).toBeInstanceOf(SdError);
    expect(e.code).toBe('E_UNAUTHORIZED');
    expect(e.name).toBe('UnauthorizedError');
    expect(e.message).toMatch(/^test\/gated: the Hub refused access \(HTTP 401, GatedRepo\)/);
    process.env.HF_TOKEN = 'hf_good';
    mock.reset();
    try {
      const r = await downloadPipeline('test/gated', { cacheDir });
      expect(r.files).toHaveLength(12);
      const api = mock.requests.filter((q) => q.url.startsWith('/api/'));
      expect(api.length).toBeGreaterThan(0);
      expect(api.every((q) => q.authorization === 'Bearer hf_good')).toBe(true);
    } finally { delete process.env.HF_TOKEN; }
    expect((await rejection(downloadPipeline('test/gated', { cacheDir: tempCache(), token: 'hf_wrong' }))).code).toBe('E_UNAUTHORIZED');
  });

  it('404: an unknown repo is E_MODEL_NOT_FOUND naming it; a missing local path keeps its message', async () => {
    const e = await rejection(StableDiffusionPipeline.fromPretrained('test/no-such-model', { cacheDir: tempCache() }));
    expect(e.code).toBe('E_MODEL_NOT_FOUND');
    expect(e.message).toMatch(/^test\/no-such-model: no such model on the Hub/);
    const local = await rejection(StableDiffusionPipeline.fromPretrained('./test/no-such-model'));
    expect(local.message).toBe('model folder not found: ./test/no-such-model (a Hugging Face Hub model is loaded by its id, ' +
      'org/name[@revision], e.g. stable-diffusion-v1-5/stable-diffusion-v1-5)');
    expect(mock.count()).toBe(1);
  });

  it('429 and 5xx are retried; the download then completes', async () => {
    const cacheDir = tempCache();
    mock.fault({ match: '/api/models/test/flaky/revision/', status: 429, retryAfter: '0' });
    mock.fault({ match: '/api/models/test/flaky/tree/', status: 503, retryAfter: '0' });
    mock.fault({ match: `/cdn/test/flaky/${mock.etag('test/flaky', 'unet/diffusion_pytorch_model.safetensors')}`, status: 500, retryAfter: '0' });
    const r = await downloadPipeline('test/flaky', { cacheDir });
    expect(r.files).toHaveLength(12);
    expect(mock.count('/api/models/test/flaky/revision/')).toBe(2);
    expect(fs.readFileSync(path.join(r.path, 'unet/diffusion_pytorch_model.safetensors')).equals(
      fs.readFileSync(path.join(SD15, 'unet/diffusion_pytorch_model.safetensors')))).toBe(true);
  });

  it('a connection cut mid-file is resumed with a Range request', async () => {
    const cacheDir = tempCache();
    const etag = mock.etag('test/flaky', 'text_encoder/model.safetensors');
    mock.fault({ match: `/cdn/test/flaky/${etag}`, cutAfter: 1_000_000 });
    const r = await downloadPipeline('test/flaky', { cacheDir });
    const ranges = mock.requests.filter((q) => q.url.endsWith(`/${etag}`) && q.range && q.range !== 'bytes=0-0').map((q) => q.range);
    expect(ranges).toHaveLength(1);
    const size = fs.statSync(path.join(SD15, 'text_encoder/model.safetensors')).size;
    expect(ranges[0]).toMatch(new RegExp(`^bytes=\\d+-${size - 1}$`));
    expect(Number(/=(\d+)-/.exec(ranges[0]!)![1])).toBeGreaterThan(0);
    expect(fs.readFileSync(path.join(r.path, 'text_encoder/model.safetensors')).equals(
      fs.readFileSync(path.join(SD15, 'text_encoder/model.safetensors')))).toBe(true);
  });

  it('bytes that disagree with the listed size or sha256 are E_BAD_CHECKPOINT, and no blob is kept', async () => {
    const cacheDir = tempCache();
    const size = await rejection(downloadPipeline('test/corrupt-size', { cacheDir }));
    expect(size.code).toBe('E_BAD_CHECKPOINT');
    expect(size.message).toMatch(/unet\/diffusion_pytorch_model\.safetensors: the Hub lists \d+ bytes but serves \d+/);
    const bytes = await rejection(downloadPipeline('test/corrupt-bytes', { cacheDir }));
    expect(bytes.code).toBe('E_BAD_CHECKPOINT');
    expect(bytes.message).toMatch(/vae\/diffusion_pytorch_model\.safetensors: the bytes received do not match the sha256/);
    const etag = mock.etag('test/corrupt-bytes', 'vae/diffusion_pytorch_model.safetensors');
    const blobs = path.join(cacheDir, 'models--test--corrupt-bytes', 'blobs');
    expect(fs.readdirSync(blobs).filter((b) => b.startsWith(etag))).toEqual([]);
  });

  it('abort mid-download: E_ABORTED, nothing half-written counted complete; a retry resumes and completes', async () => {
    const cacheDir = tempCache();
    const file = 'unet/diffusion_pytorch_model.safetensors';
    const etag = mock.etag('test/slow', file);
    mock.fault({ match: `/cdn/test/slow/${etag}`, slow: { chunk: 65536, delayMs: 20 } });
    const ac = new AbortController();
    const p = downloadPipeline('test/slow', {
      cacheDir, signal: ac.signal,
      onProgress: (x) => { if (x.file === file && x.bytesDone > 0 && !ac.signal.aborted && fs.existsSync(path.join(cacheDir, 'models--test--slow', 'blobs', `${etag}.incomplete`))) ac.abort(); },
    });
    const e = await rejection(p);
    expect(e.code).toBe('E_ABORTED');
    const storage = path.join(cacheDir, 'models--test--slow');
    await new Promise((r) => setTimeout(r, 100)); // let the cancelled stream settle
    expect(fs.existsSync(path.join(storage, 'blobs', etag))).toBe(false);
    expect(fs.existsSync(path.join(storage, 'snapshots', mock.commit('test/slow'), file))).toBe(false);
    mock.reset();
    const r = await downloadPipeline('test/slow', { cacheDir });
    expect(fs.readFileSync(path.join(r.path, file)).equals(fs.readFileSync(path.join(SD15, file)))).toBe(true);
    expect(tree(storage).filter((f) => f.endsWith('.incomplete'))).toEqual([]);
    const body = mock.requests.filter((q) => q.url.endsWith(`/${etag}`) && q.range !== 'bytes=0-0');
    expect(body).toHaveLength(1);
    console.log(`[hub] retry after abort: ${body[0].range ? `resumed with Range ${body[0].range}` : 'restarted'}`);
    expect(body[0].range).toMatch(/^bytes=[1-9]\d*-\d+$/); // resumed from the bytes kept in .incomplete
  });

  it('an immediate retry after abort, and one of two concurrent callers aborting, still complete', async () => {
    const cacheDir = tempCache();
    const file = 'unet/diffusion_pytorch_model.safetensors';
    const etag = mock.etag('test/slow', file);
    mock.fault({ match: `/cdn/test/slow/${etag}`, slow: { chunk: 65536, delayMs: 20 } });
    const ac = new AbortController();
    const first = downloadPipeline('test/slow', { cacheDir, signal: ac.signal, onProgress: (x) => { if (x.file === file && x.bytesDone > 0) ac.abort(); } });
    expect((await rejection(first)).code).toBe('E_ABORTED');
    const again = await downloadPipeline('test/slow', { cacheDir }); // no pause: the aborted writer may still be settling
    expect(fs.readFileSync(path.join(again.path, file)).equals(fs.readFileSync(path.join(SD15, file)))).toBe(true);

    const cache2 = tempCache();
    mock.fault({ match: `/cdn/test/slow/${etag}`, slow: { chunk: 65536, delayMs: 20 } });
    const ac2 = new AbortController();
    const a = downloadPipeline('test/slow', { cacheDir: cache2, signal: ac2.signal, onProgress: (x) => { if (x.file === file && x.bytesDone > 0) ac2.abort(); } });
    const b = downloadPipeline('test/slow', { cacheDir: cache2 });
    expect((await rejection(a)).code).toBe('E_ABORTED');
    const rb = await b;
    expect(fs.readFileSync(path.join(rb.path, file)).equals(fs.readFileSync(path.join(SD15, file)))).toBe(true);
  });

  it('invalid Hub options are E_INVALID_ARGUMENT naming the field', async () => {
    for (const [o, re] of [
      [{ token: 'abc' }, /^token must be a Hub access token \("hf_\.\.\."\); received "abc"$/],
      [{ onProgress: 3 }, /^onProgress must be a function; received 3$/],
      [{ localFilesOnly: 'yes' }, /^localFilesOnly must be true or false; received "yes"$/],
      [{ signal: {} }, /^signal must be an AbortSignal; received \{\}$/],
    ] as const) {
      const e = await rejection(StableDiffusionPipeline.fromPretrained('test/tiny-sd15', o as never));
      expect(e.code).toBe('E_INVALID_ARGUMENT');
      expect(e.message).toMatch(re);
    }
    expect(mock.count()).toBe(0);
  });
});

describe('loads', () => {
  it('concurrent loads of one model + revision + variant download once', async () => {
    const cacheDir = tempCache();
    const rs = await Promise.all([0, 1, 2].map(() => downloadPipeline('test/tiny-sd15', { cacheDir })));
    expect(new Set(rs.map((r) => r.path)).size).toBe(1);
    expect(mock.count('/api/models/test/tiny-sd15/revision/')).toBe(1);
    expect(bodyRequests()).toHaveLength(12);
  });

  it('a local folder named like org/name is a path, never the Hub', async () => {
    const cwd = process.cwd();
    const dir = tempCache();
    fs.mkdirSync(path.join(dir, 'test'));
    fs.symlinkSync(SD15, path.join(dir, 'test', 'tiny-sd15'));
    process.chdir(dir);
    try {
      const pipe = await StableDiffusionPipeline.fromPretrained('test/tiny-sd15', { cacheDir: tempCache() });
      expect(mock.count()).toBe(0);
      expect(pipe.info.modelPath).toBe(path.join(dir, 'test', 'tiny-sd15'));
      await pipe[Symbol.asyncDispose]();
    } finally { process.chdir(cwd); }
  });

  it('AutoencoderKL.fromPretrained(id, { subfolder: "vae" }) fetches only the VAE', async () => {
    const cacheDir = tempCache();
    const vae = await AutoencoderKL.fromPretrained('test/tiny-sd15', { subfolder: 'vae', cacheDir });
    expect(vae.vaeScaleFactor).toBe(2);
    vae.dispose();
    expect(bodyRequests().map((q) => q.url).filter((u) => u.includes('/resolve/'))).toEqual(['/test/tiny-sd15/resolve/' + 'a'.repeat(40) + '/vae/config.json']);
    expect(bodyRequests()).toHaveLength(2);
  });

  it('a pipeline downloaded from the Hub generates the same pixels as the fixture folder (SD 1.5, SDXL)', async () => {
    const cacheDir = tempCache();
    for (const [id, dir] of [['test/tiny-sd15', SD15], ['test/tiny-sdxl', SDXL]] as const) {
      const fromHub = await AutoPipelineForText2Image.fromPretrained(id, { cacheDir });
      const fromDir = await AutoPipelineForText2Image.fromPretrained(dir);
      expect(fromHub.constructor).toBe(fromDir.constructor);
      if (id.endsWith('sdxl')) expect(fromHub).toBeInstanceOf(StableDiffusionXLPipeline);
      const opts = { prompt: 'a red cube', numInferenceSteps: 2, seed: 7 };
      const a = await fromHub.generate(opts);
      const b = await fromDir.generate(opts);
      expect(a.images[0].width).toBe(fromDir.info.defaultWidth);
      expect(Buffer.from(a.images[0].data).equals(Buffer.from(b.images[0].data))).toBe(true);
      await fromHub[Symbol.asyncDispose]();
      await fromDir[Symbol.asyncDispose]();
    }
  });
});

describe('CLI pull / ls', () => {
  it('pull downloads into $HF_HUB_CACHE and prints the snapshot; ls lists models, revisions and sizes', async () => {
    const cacheDir = tempCache();
    const prev = process.env.HF_HUB_CACHE;
    process.env.HF_HUB_CACHE = cacheDir;
    const out: string[] = [];
    const write = process.stdout.write.bind(process.stdout);
    const errWrite = process.stderr.write.bind(process.stderr);
    process.stdout.write = ((s: string) => { out.push(String(s)); return true; }) as typeof process.stdout.write;
    process.stderr.write = (() => true) as typeof process.stderr.write;
    try {
      expect(await main(['node', 'sd-native', 'pull', 'test/tiny-sd15', '--variant', 'fp16', '--no-progress'])).toBe(0);
      expect(await main(['node', 'sd-native', 'pull', 'test/tiny-sd15@v1'])).toBe(0);
      expect(await main(['node', 'sd-native', 'pull', './not/an-id'])).toBe(1);
      out.length = 0;
      expect(await main(['node', 'sd-native', 'ls', '--json'])).toBe(0);
    } finally {
      process.stdout.write = write;
      process.stderr.write = errWrite;
      process.env.HF_HUB_CACHE = prev;
    }
    const ls = JSON.parse(out.join(''));
    expect(ls.cacheDir).toBe(cacheDir);
    expect(ls.models).toHaveLength(1);
    expect(ls.models[0].repo).toBe('test/tiny-sd15');
    expect(ls.models[0].revisions.map((r: { refs: string[] }) => r.refs).sort()).toEqual([['main'], ['v1']]);
    expect(ls.models[0].size).toBeGreaterThan(14_000_000);
    const models = await listCachedModels(cacheDir);
    expect(models[0].revisions.every((r) => r.files > 0)).toBe(true);
  });
});

describe('Hub files: fromSingleFile, LoRA and textual inversion take org/name[@revision]/file or a Hub URL', () => {
  it('parses file references; paths and ids without a file are not files', () => {
    expect(parseHubFile('org/name/v1-5-pruned-emaonly.safetensors')).toEqual({ repo: 'org/name', revision: undefined, file: 'v1-5-pruned-emaonly.safetensors' });
    expect(parseHubFile('org/name@v2/loras/x.safetensors')).toEqual({ repo: 'org/name', revision: 'v2', file: 'loras/x.safetensors' });
    expect(parseHubFile('https://huggingface.co/org/name/blob/main/sub/x.safetensors')).toEqual({ repo: 'org/name', revision: 'main', file: 'sub/x.safetensors' });
    expect(parseHubFile('https://huggingface.co/org/name/resolve/abc/x.safetensors?download=true')).toEqual({ repo: 'org/name', revision: 'abc', file: 'x.safetensors' });
    for (const s of ['./a/b/c.safetensors', '/a/b/c.safetensors', 'org/name', 'org/name/', 'org/name/dir/', 'org/name/../x.safetensors', 'x.safetensors']) {
      expect(parseHubFile(s), s).toBeUndefined();
    }
  });

  it('fromSingleFile downloads that one file (nothing else) and generates the pixels of the local file', async () => {
    const opts = { numInferenceSteps: 1, seed: 3, prompt: 'a cat' };
    const hub = await StableDiffusionPipeline.fromSingleFile('test/files/tiny-sd15.safetensors', { configDir: SD15, cacheDir: tempCache() });
    const bodies = bodyRequests().map((r) => r.url);
    const local = await StableDiffusionPipeline.fromSingleFile(fixture('models', 'tiny-sd15.safetensors'), { configDir: SD15 });
    try {
      expect(bodies).toHaveLength(1);
      expect(mock.requests.some((r) => DECOY.test(r.url) || /tiny-sd15\/|tiny-sdxl|\.txt/.test(r.url.replace('/test/files/resolve/', '')))).toBe(false);
      const [a, b] = [await hub.generate(opts), await local.generate(opts)];
      expect(Buffer.compare(a.images[0].data, b.images[0].data)).toBe(0);
    } finally {
      hub.dispose();
      local.dispose();
    }
  });

  it('a Hub configDir brings configs and tokenizers only (no weights); AutoPipeline reads its model_index.json', async () => {
    const cacheDir = tempCache();
    const pipe = await AutoPipelineForText2Image.fromPretrained('test/files/tiny-sd15.safetensors', { configDir: 'test/tiny-sd15', cacheDir });
    try {
      expect(pipe).toBeInstanceOf(StableDiffusionPipeline);
      const bodies = bodyRequests().map((r) => r.url);
      expect(bodies.filter((u) => u.includes('/cdn/'))).toHaveLength(1); // the single file is the only LFS body
      const snap = tree(path.join(cacheDir, repoFolderName('test/tiny-sd15'))).filter((f) => f.startsWith('snapshots/'));
      expect(snap.some((f) => f.includes('.safetensors'))).toBe(false);
      expect(snap.some((f) => f.includes('tokenizer/vocab.json')) && snap.some((f) => f.includes('unet/config.json'))).toBe(true);
      const { images } = await pipe.generate({ prompt: 'a cat', numInferenceSteps: 1, seed: 1 });
      expect(images).toHaveLength(1);
    } finally {
      pipe.dispose();
    }
  });

  it('loadLoraWeights and loadTextualInversion load Hub files as they load the local ones; a second load is offline', async () => {
    const cacheDir = tempCache();
    const prev = process.env.HF_HUB_CACHE;
    process.env.HF_HUB_CACHE = cacheDir;
    const [viaHub, viaPath] = [await StableDiffusionPipeline.fromPretrained(SD15), await StableDiffusionPipeline.fromPretrained(SD15)];
    try {
      const r1 = await viaHub.loadLoraWeights('test/loras/tiny-sd15-kohya.safetensors', { adapterName: 'hub' });
      const r2 = await viaPath.loadLoraWeights(fixture('loras', 'tiny-sd15-kohya.safetensors'), { adapterName: 'hub' });
      expect(r1).toEqual(r2);
      expect(r1.unetModules).toBeGreaterThan(0);
      const t1 = await viaHub.loadTextualInversion('https://huggingface.co/test/embeddings/blob/main/my-token.safetensors');
      const t2 = await viaPath.loadTextualInversion(fixture('embeddings', 'my-token.safetensors'));
      expect(t1).toEqual(t2);
      const opts = { prompt: `a photo of ${t1[0]}`, numInferenceSteps: 1, seed: 5 };
      const [a, b] = [await viaHub.generate(opts), await viaPath.generate(opts)];
      expect(Buffer.compare(a.images[0].data, b.images[0].data)).toBe(0);
      expect(fs.existsSync(path.join(cacheDir, repoFolderName('test/loras'), 'refs', 'main'))).toBe(true);
      mock.reset();
      await viaHub.loadLoraWeights('test/loras/tiny-sd15-kohya.safetensors', { adapterName: 'again' });
      expect(mock.count()).toBe(0);
    } finally {
      process.env.HF_HUB_CACHE = prev;
      viaHub.dispose();
      viaPath.dispose();
    }
  });
});
