/**
 * Hugging Face Hub model ids (`org/name`, `org/name@revision`) wherever a model folder is
 * accepted: the files a pipeline (or one component) needs are downloaded with `@huggingface/hub`
 * into the cache layout of Python's huggingface_hub, so a model Python already downloaded is used
 * as is, and a model downloaded here is used by Python.
 *
 * diffusers keeps this in `utils/hub_utils.py` + `pipeline_utils.DiffusionPipeline.download`
 * (v0.30.3); the cache follows huggingface_hub's `file_download.py` / `_snapshot_download.py`:
 *
 * ```
 * <cache>/models--org--name/
 *   blobs/<etag>                       file contents, named by the Hub's ETag (LFS: sha256; git: sha1)
 *   blobs/<etag>.incomplete            a download in progress (resumed with a Range request)
 *   refs/<revision>                    the commit hash the branch/tag pointed to when downloaded
 *   snapshots/<commit>/<path>          relative symlinks to ../../blobs/<etag> (copies where symlinks fail)
 * ```
 *
 * `<cache>` is `$HF_HUB_CACHE`, else `$HUGGINGFACE_HUB_CACHE`, else `$HF_HOME/hub`, else
 * `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub` (huggingface_hub's constants.py).
 * The endpoint is `$HF_ENDPOINT` (default https://huggingface.co), the token the `token` option or
 * `$HF_TOKEN`; `$HF_HUB_OFFLINE=1` is `localFilesOnly` for every load.
 */
import { lstat, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { HubApiError, listFiles, modelInfo, type ListFileEntry } from '@huggingface/hub';
import type { HubDownloadProgress } from '../option_types.js';
import {
  AbortError, BadCheckpointError, BadConfigError, InvalidArgumentError, ModelNotFoundError, SdError, UnauthorizedError,
} from '../errors.js';
import { hubEndpoint, hubOffline, parseHubFile, parseHubId, type HubModelId } from './hub_ids.js';
import {
  COMMIT_RE, MAX_TRIES, RETRY_STATUS, backoffMs, ensureFile, hubCacheDir, readRef, repoFolderName, sizeOf, sleep, writeRef,
} from './hub_cache.js';

export { hubCacheDir, listCachedModels, repoFolderName } from './hub_cache.js';
export { hubEndpoint, hubOffline, parseHubFile, parseHubId } from './hub_ids.js';
export type { HubFileId, HubModelId } from './hub_ids.js';
export type { CachedModel, CachedRevision } from './hub_cache.js';

// =============================================================================================
// Ids, environment, cache paths
// =============================================================================================


// =============================================================================================
// Options and progress
// =============================================================================================

export type { HubDownloadProgress };

/** The Hub part of the load options (see `LoadOptions`). */
export interface HubOptions {
  /** Branch, tag or commit hash (default `main`, or the id's `@revision`). */
  revision?: string;
  /** Weight-file variant, e.g. `fp16`. */
  variant?: string;
  /** Access token (default `$HF_TOKEN`). */
  token?: string;
  /** Use the cache only (default `$HF_HUB_OFFLINE`). */
  localFilesOnly?: boolean;
  /** The cache folder (default {@link hubCacheDir}). */
  cacheDir?: string;
  /** Called as bytes arrive (at most every 100 ms, and once per finished file). */
  onProgress?: (p: HubDownloadProgress) => void;
  /** Cancels the download: the call rejects with AbortError; partial files stay `.incomplete`. */
  signal?: AbortSignal;
}

/** The Hub fields of (parsed) load options, for the download functions. */
export function hubOptionsOf(o: HubOptions): HubOptions {
  return {
    revision: o.revision, variant: o.variant, token: o.token, localFilesOnly: o.localFilesOnly,
    cacheDir: o.cacheDir, onProgress: o.onProgress, signal: o.signal,
  };
}

/** `id` parsed, or E_INVALID_ARGUMENT. */
function requireHubId(id: string): HubModelId {
  const parsed = parseHubId(id);
  if (!parsed) throw new InvalidArgumentError(`${JSON.stringify(id)} is not a Hub model id (org/name or org/name@revision)`);
  return parsed;
}

/** A local path of that name exists (a dangling symlink counts: a local path always wins). */
async function isLocalPath(location: string): Promise<boolean> {
  return (await lstat(location).catch(() => undefined)) !== undefined;
}

/** What a download produced. */
export interface HubSnapshot {
  /** The snapshot folder `<cache>/models--org--name/snapshots/<commit>` (the files the pipeline needs). */
  path: string;
  /** `org/name` */
  repo: string;
  /** The revision asked for (e.g. `main`). */
  revision: string;
  /** The commit hash it resolved to. */
  commit: string;
  /** The needed files, repo-relative. */
  files: string[];
  /** Files and bytes received over the network by this call (0 when everything was cached). */
  downloadedFiles: number;
  downloadedBytes: number;
  /** True when no request was made (served from the cache). */
  offline: boolean;
}

// =============================================================================================
// Which files a pipeline needs (diffusers' DiffusionPipeline.download allow-patterns)
// =============================================================================================

/** The model_index.json components sd-native loads (safety_checker, feature_extractor, image_encoder are not run). */
const LOADED_COMPONENTS = new Set(['unet', 'vae', 'text_encoder', 'text_encoder_2', 'tokenizer', 'tokenizer_2', 'scheduler']);
const CONFIG_FILES = ['config.json', 'scheduler_config.json'];
const TOKENIZER_FILES = ['vocab.json', 'merges.txt', 'tokenizer_config.json', 'special_tokens_map.json', 'added_tokens.json'];
const REQUIRED_TOKENIZER_FILES = ['vocab.json', 'merges.txt'];

/** One component folder to fetch: its configs / tokenizer files and, for models, weights. */
interface ComponentPlan {
  /** Folder in the repo ('' = the repo root, for a single-model repo such as a VAE). */
  dir: string;
  /** Weights base names to look for, in order ('diffusion_pytorch_model', 'model'); empty = no weights. */
  weightBases: string[];
  /** A tokenizer folder (vocab.json + merges.txt needed). */
  tokenizer: boolean;
  /** A scheduler folder (scheduler_config.json needed). */
  scheduler: boolean;
}

/** What to download: `model_index.json` (pipelines) and component folders. */
interface Plan {
  /** 'configs': a pipeline's model_index.json, configs and tokenizers without weights (a single file's configDir). */
  kind: 'pipeline' | 'configs' | 'component' | 'file';
  /** For kind 'component': the folder. */
  subfolder?: string;
  /** For kind 'file': the repo-relative file (a single-file checkpoint, a LoRA, an embedding). */
  file?: string;
}

const join = (dir: string, f: string) => (dir ? `${dir}/${f}` : f);
const variantName = (base: string, variant: string | undefined) => `${base}${variant ? `.${variant}` : ''}.safetensors`;
/** diffusers' `_add_variant('<base>.safetensors.index.json', variant)` (what the native loader reads). */
const indexName = (base: string, variant: string | undefined) => `${base}.safetensors.index${variant ? `.${variant}` : ''}.json`;

function componentPlans(modelIndex: Record<string, unknown>, where: string): ComponentPlan[] {
  const out: ComponentPlan[] = [];
  for (const [name, v] of Object.entries(modelIndex)) {
    if (name.startsWith('_') || !Array.isArray(v) || v.length !== 2) continue;
    if (v[0] === null && v[1] === null) continue; // [null, null]: not part of this pipeline
    if (typeof v[0] !== 'string' || typeof v[1] !== 'string') {
      throw new BadConfigError(`${where}: model_index.json entry "${name}" must be [library, class]; received ${JSON.stringify(v)}`);
    }
    if (!LOADED_COMPONENTS.has(name)) continue;
    const tokenizer = name.startsWith('tokenizer');
    const scheduler = name === 'scheduler';
    out.push({
      dir: name, tokenizer, scheduler,
      weightBases: tokenizer || scheduler ? [] : v[0] === 'transformers' ? ['model', 'diffusion_pytorch_model'] : ['diffusion_pytorch_model', 'model'],
    });
  }
  return out;
}

/** Repo-relative paths of the weights to use in `dir`, from the listing: a single file, or an index (shards added later). */
function pickWeights(c: ComponentPlan, files: Map<string, ListFileEntry>, variant: string | undefined, where: string): string {
  for (const base of c.weightBases) {
    const single = join(c.dir, variantName(base, variant));
    if (files.has(single)) return single;
    const index = join(c.dir, indexName(base, variant));
    if (files.has(index)) return index;
  }
  const present = [...files.keys()].filter((f) => path.posix.dirname(f) === (c.dir || '.') && /\.(safetensors|bin|ckpt|pt|pth|json)$/.test(f));
  const base = c.weightBases[0];
  const looked = `${join(c.dir, variantName(base, variant))} or ${join(c.dir, indexName(base, variant))}`;
  throw new ModelNotFoundError(
    `${where}: ${variant ? `variant "${variant}" not found: ` : 'no safetensors weights: '}the repo has neither ${looked}; ` +
    `files there: ${present.length ? present.map((f) => path.posix.basename(f)).join(', ') : 'none'}` +
    `${variant ? ' (load without a variant to use the default weights)' : ' (pickle weights .bin/.ckpt are never downloaded)'}`);
}

/** The shard file names of a sharded index (`weight_map` values), checked like the native loader. */
function shardsOf(indexJson: string, indexPath: string): string[] {
  let j: unknown;
  try { j = JSON.parse(indexJson); } catch (e) { throw new BadCheckpointError(`${indexPath}: not valid JSON`, { cause: e }); }
  const map = (j as { weight_map?: unknown })?.weight_map;
  if (!map || typeof map !== 'object') throw new BadCheckpointError(`${indexPath}: no "weight_map" object`);
  const shards = new Set<string>();
  for (const [k, s] of Object.entries(map)) {
    if (typeof s !== 'string' || s.includes('/') || s.includes('\\') || s.startsWith('.') || !s.endsWith('.safetensors')) {
      throw new BadCheckpointError(`${indexPath}: weight_map["${k}"] = ${JSON.stringify(s)} is not a safetensors file name next to the index`);
    }
    shards.add(s);
  }
  return [...shards];
}

/** Offline: the needed files of `plan` missing from a snapshot folder (empty = complete). */
async function missingInSnapshot(snap: string, plan: Plan, variant: string | undefined): Promise<string[]> {
  const has = async (rel: string) => (await stat(path.join(snap, rel)).catch(() => undefined))?.isFile() ?? false;
  if (plan.kind === 'file') return (await has(plan.file!)) ? [] : [plan.file!];
  let comps: ComponentPlan[];
  if (plan.kind === 'pipeline' || plan.kind === 'configs') {
    if (!(await has('model_index.json'))) return ['model_index.json'];
    let idx: Record<string, unknown>;
    try { idx = JSON.parse(await readFile(path.join(snap, 'model_index.json'), 'utf8')); } catch { return ['model_index.json']; }
    try { comps = componentPlans(idx, snap); } catch { return ['model_index.json']; }
  } else {
    comps = [{ dir: plan.subfolder ?? '', weightBases: ['diffusion_pytorch_model', 'model'], tokenizer: false, scheduler: false }];
  }
  const missing: string[] = [];
  for (const c of comps) {
    const need = c.tokenizer ? REQUIRED_TOKENIZER_FILES : c.scheduler ? ['scheduler_config.json'] : ['config.json'];
    for (const f of need) if (!(await has(join(c.dir, f)))) missing.push(join(c.dir, f));
    if (c.weightBases.length === 0 || plan.kind === 'configs') continue;
    let found = false;
    for (const base of c.weightBases) {
      if (await has(join(c.dir, variantName(base, variant)))) { found = true; break; }
      const index = join(c.dir, indexName(base, variant));
      if (await has(index)) {
        let shards: string[];
        try { shards = shardsOf(await readFile(path.join(snap, index), 'utf8'), index); } catch { break; }
        const absent = [];
        for (const s of shards) if (!(await has(join(c.dir, s)))) absent.push(join(c.dir, s));
        missing.push(...absent);
        found = true;
        break;
      }
    }
    if (!found) missing.push(join(c.dir, variantName(c.weightBases[0], variant)));
  }
  return missing;
}

// =============================================================================================
// HTTP through @huggingface/hub: a fetch with abort, retries and error codes
// =============================================================================================

/** The fetch handed to @huggingface/hub: adds the signal, retries 429/5xx and refused connections, remembers X-Error-Code. */
function makeFetch(signal: AbortSignal, errorCodes: Map<string, string>): typeof fetch {
  return async (input, init) => {
    for (let attempt = 0; ; attempt++) {
      let resp: Response;
      try {
        resp = await fetch(input, { ...init, signal });
      } catch (e) {
        if (signal.aborted || attempt + 1 >= MAX_TRIES) throw e;
        await sleep(backoffMs(attempt, null), signal);
        continue;
      }
      if (RETRY_STATUS.has(resp.status) && attempt + 1 < MAX_TRIES) {
        await resp.body?.cancel().catch(() => undefined);
        await sleep(backoffMs(attempt, resp.headers.get('Retry-After')), signal);
        continue;
      }
      const code = resp.headers.get('X-Error-Code');
      if (!resp.ok && code) errorCodes.set(resp.url || String(input), code);
      return resp;
    }
  };
}

/** Maps a failure of a Hub request to an SdError naming the repo (401/403 → E_UNAUTHORIZED). */
function hubError(e: unknown, id: string, revision: string, signal: AbortSignal, errorCodes: Map<string, string>): SdError {
  if (e instanceof SdError) return e;
  if (signal.aborted) return new AbortError(`download of ${id} aborted`, { cause: e });
  if (e instanceof HubApiError) {
    const code = errorCodes.get(e.url) ?? '';
    if (e.statusCode === 401 || e.statusCode === 403) {
      const gated = code === 'GatedRepo' || e.statusCode === 403;
      return new UnauthorizedError(
        `${id}: the Hub refused access (HTTP ${e.statusCode}${code ? `, ${code}` : ''}): ` +
        (gated ? `the repo is gated or private: accept its conditions at ${hubEndpoint()}/${id} and pass a token (option token or $HF_TOKEN)`
          : 'the repo is private or does not exist: pass a token with read access (option token or $HF_TOKEN)'),
        { cause: e });
    }
    if (e.statusCode === 404) {
      const what = code === 'RevisionNotFound' ? `revision "${revision}" not found in ${id}`
        : code === 'EntryNotFound' ? `${id}: a file is missing from revision "${revision}"` : `${id}: no such model on the Hub`;
      return new ModelNotFoundError(`${what} (${e.url})`, { cause: e });
    }
    return new ModelNotFoundError(`${id}: the Hub answered HTTP ${e.statusCode} (${e.message})`, { cause: e });
  }
  const msg = e instanceof Error ? e.message : String(e);
  return new ModelNotFoundError(`${id}: cannot reach the Hub at ${hubEndpoint()}: ${msg} ` +
    '(set HF_HUB_OFFLINE=1 or localFilesOnly to use the cache only)', { cause: e });
}

// =============================================================================================
// Cache writes
// =============================================================================================

// =============================================================================================
// Snapshot download
// =============================================================================================

interface Waiter {
  resolve: (s: HubSnapshot) => void;
  reject: (e: unknown) => void;
  onProgress?: (p: HubDownloadProgress) => void;
}
interface SharedDownload {
  waiters: Set<Waiter>;
  controller: AbortController;
}
/** Downloads in flight in this process, by cache + repo + revision + variant + plan: concurrent loads share one. */
const inflight = new Map<string, SharedDownload>();

/**
 * Resolves `id` (with its revision) to a snapshot folder holding what `plan` needs, downloading
 * the missing files. Concurrent calls for the same model, revision and variant share one
 * download; each caller's `signal` only detaches that caller (the download stops when no caller is left).
 */
async function snapshot(id: HubModelId, options: HubOptions, plan: Plan, refresh: boolean): Promise<HubSnapshot> {
  if (options.revision !== undefined && id.revision !== undefined && options.revision !== id.revision) {
    throw new InvalidArgumentError(`revision ${JSON.stringify(options.revision)} contradicts the id's @${id.revision}`);
  }
  const revision = options.revision ?? id.revision ?? 'main';
  const cacheDir = path.resolve(options.cacheDir ?? hubCacheDir());
  const key = JSON.stringify([cacheDir, id.repo, revision, options.variant ?? '', plan.kind, plan.subfolder ?? '', plan.file ?? '', refresh]);
  if (options.signal?.aborted) throw new AbortError(`download of ${id.repo} aborted before it started`);
  return new Promise<HubSnapshot>((resolve, reject) => {
    const waiter: Waiter = { resolve, reject, onProgress: options.onProgress };
    let shared = inflight.get(key);
    if (!shared) {
      const s: SharedDownload = { waiters: new Set(), controller: new AbortController() };
      shared = s;
      inflight.set(key, s);
      const fanout = (p: HubDownloadProgress) => { for (const w of s.waiters) { try { w.onProgress?.(p); } catch { /* a callback's failure is its own */ } } };
      run(id.repo, revision, cacheDir, options, plan, refresh, s.controller.signal, fanout).then(
        (r) => { inflight.delete(key); for (const w of s.waiters) w.resolve(r); },
        (e) => { inflight.delete(key); for (const w of s.waiters) w.reject(e); },
      );
    }
    const s = shared;
    s.waiters.add(waiter);
    options.signal?.addEventListener('abort', () => {
      if (!s.waiters.delete(waiter)) return;
      reject(new AbortError(`download of ${id.repo} aborted`, { cause: options.signal?.reason }));
      if (s.waiters.size === 0) { inflight.delete(key); s.controller.abort(options.signal?.reason); }
    }, { once: true });
  });
}

async function run(
  repo: string, revision: string, cacheDir: string, options: HubOptions, plan: Plan, refresh: boolean,
  signal: AbortSignal, onProgress: (p: HubDownloadProgress) => void,
): Promise<HubSnapshot> {
  const label = revision === 'main' ? repo : `${repo}@${revision}`;
  const storage = path.join(cacheDir, repoFolderName(repo));
  const offline = options.localFilesOnly ?? hubOffline();

  // 1. The cache first: a complete snapshot of the revision needs no request.
  const cached = await readRef(storage, revision);
  if (cached && !refresh) {
    const snap = path.join(storage, 'snapshots', cached);
    const missing = await missingInSnapshot(snap, plan, options.variant);
    if (missing.length === 0) return snapshotResult(snap, repo, revision, cached, [], 0, 0, true);
    if (offline) {
      throw new ModelNotFoundError(`${label}: the cached snapshot ${cached} lacks ${missing.slice(0, 3).join(', ')}` +
        `${missing.length > 3 ? ` (and ${missing.length - 3} more)` : ''}, and downloads are off (localFilesOnly / HF_HUB_OFFLINE) — cache: ${cacheDir}`);
    }
  } else if (offline) {
    throw new ModelNotFoundError(`${label} is not in the cache ${cacheDir} (no refs/${revision}${COMMIT_RE.test(revision) ? ' snapshot' : ''}), ` +
      'and downloads are off (localFilesOnly / HF_HUB_OFFLINE)');
  }

  // 2. The Hub: revision → commit, the file listing, then what the plan needs.
  const errorCodes = new Map<string, string>();
  const f = makeFetch(signal, errorCodes);
  const accessToken = options.token ?? (process.env.HF_TOKEN || undefined);
  const hubUrl = hubEndpoint();
  const common = { hubUrl, accessToken, fetch: f };
  try {
    const infoResp = await modelInfo({ name: repo, revision, additionalFields: ['sha'], ...common });
    const commit = (infoResp as { sha?: string }).sha;
    if (!commit || !COMMIT_RE.test(commit)) throw new ModelNotFoundError(`${label}: the Hub gave no commit hash for revision "${revision}"`);
    if (revision !== commit) await writeRef(storage, revision, commit);
    const listing = new Map<string, ListFileEntry>();
    // a single file: only its folder is listed
    const fileDir = plan.kind === 'file' ? path.posix.dirname(plan.file!) : '.';
    const prefix = plan.kind === 'component' && plan.subfolder ? plan.subfolder : plan.kind === 'file' && fileDir !== '.' ? fileDir : undefined;
    for await (const e of listFiles({ repo, revision: commit, recursive: plan.kind !== 'file', path: prefix, ...common })) {
      if (e.type === 'file') listing.set(e.path, e);
    }
    const snap = path.join(storage, 'snapshots', commit);

    let bytesDone = 0, filesDone = 0, bytesTotal = 0, filesTotal = 0, received = 0, downloadedFiles = 0;
    const t0 = performance.now();
    let lastReport = 0;
    let current: string | undefined;
    const report = (force: boolean) => {
      const now = performance.now();
      if (!force && now - lastReport < 100) return;
      lastReport = now;
      const secs = (now - t0) / 1000;
      onProgress({ bytesDone, bytesTotal, filesDone, filesTotal, bytesPerSecond: secs > 0 ? received / secs : 0, file: current });
    };
    const fetchOne = async (rel: string): Promise<void> => {
      const entry = listing.get(rel);
      if (!entry) throw new ModelNotFoundError(`${label}: ${rel} is not in the repo at ${commit}`);
      current = rel;
      const got = await ensureFile({
        repo, commit, entry, storage, hubUrl, accessToken, fetch: f, signal,
        onBytes: (n) => { bytesDone += n; received += n; current = rel; report(false); },
      });
      // bytes found in the cache (or resumed) count as done at the end of the file
      bytesDone += sizeOf(entry) - got;
      filesDone++;
      if (got > 0) downloadedFiles++;
      report(true);
    };
    const runAll = async (rels: string[], concurrency: number) => {
      let next = 0;
      await Promise.all(Array.from({ length: Math.min(concurrency, rels.length) }, async () => {
        while (next < rels.length) await fetchOne(rels[next++]);
      }));
    };

    // small metadata first (model_index.json, indexes), so the totals are known before weights start
    let comps: ComponentPlan[];
    const needed: string[] = [];
    const addNeeded = (rel: string) => { if (!needed.includes(rel)) { needed.push(rel); filesTotal++; bytesTotal += sizeOf(listing.get(rel)!); } };
    if (plan.kind === 'file') {
      if (!listing.has(plan.file!)) throw new ModelNotFoundError(`${label}: ${plan.file} is not in the repo at ${commit}`);
      addNeeded(plan.file!);
      report(true);
      await runAll([plan.file!], 1);
      return snapshotResult(snap, repo, revision, commit, needed, downloadedFiles, received, false);
    }

    if (plan.kind === 'pipeline' || plan.kind === 'configs') {
      if (!listing.has('model_index.json')) {
        throw new ModelNotFoundError(`${label}: not a diffusers pipeline (the repo has no model_index.json at ${commit})`);
      }
      addNeeded('model_index.json');
      await runAll(['model_index.json'], 1);
      let idx: Record<string, unknown>;
      try {
        idx = JSON.parse(await readFile(path.join(snap, 'model_index.json'), 'utf8'));
      } catch (e) {
        throw new BadConfigError(`${label}: model_index.json is not valid JSON`, { cause: e });
      }
      comps = componentPlans(idx, `${label}/model_index.json`);
    } else {
      comps = [{ dir: plan.subfolder ?? '', weightBases: ['diffusion_pytorch_model', 'model'], tokenizer: false, scheduler: false }];
    }
    const small: string[] = [];
    const weights: string[] = [];
    for (const c of comps) {
      const names = c.tokenizer ? TOKENIZER_FILES : CONFIG_FILES;
      for (const n of names) if (listing.has(join(c.dir, n))) small.push(join(c.dir, n));
      const required = c.tokenizer ? REQUIRED_TOKENIZER_FILES : c.scheduler ? ['scheduler_config.json'] : ['config.json'];
      for (const n of required) {
        if (!listing.has(join(c.dir, n))) throw new ModelNotFoundError(`${label}: ${join(c.dir, n)} is not in the repo at ${commit}`);
      }
      if (c.weightBases.length && plan.kind !== 'configs') {
        const w = pickWeights(c, listing, options.variant, label);
        (w.endsWith('.json') ? small : weights).push(w);
      }
    }
    for (const r of small) addNeeded(r);
    await runAll(small, 4);
    for (const r of small.filter((x) => x.endsWith('.safetensors.index.json') || /\.safetensors\.index\.[^.]+\.json$/.test(x))) {
      const dir = path.posix.dirname(r) === '.' ? '' : path.posix.dirname(r);
      for (const s of shardsOf(await readFile(path.join(snap, r), 'utf8'), `${label}/${r}`)) {
        if (!listing.has(join(dir, s))) throw new BadCheckpointError(`${label}: ${r} names shard ${s}, which is not in the repo`);
        weights.push(join(dir, s));
      }
    }
    for (const r of weights) addNeeded(r);
    report(true);
    await runAll(weights, 4);
    return snapshotResult(snap, repo, revision, commit, needed, downloadedFiles, received, false);
  } catch (e) {
    throw hubError(e, label, revision, signal, errorCodes);
  }
}

function snapshotResult(
  snap: string, repo: string, revision: string, commit: string, files: string[], downloadedFiles: number, downloadedBytes: number, offline: boolean,
): HubSnapshot {
  return { path: snap, repo, revision, commit, files, downloadedFiles, downloadedBytes, offline };
}

// =============================================================================================
// Public entry points
// =============================================================================================

/**
 * Downloads (or finds in the cache) what a diffusers pipeline needs: `model_index.json`, then for
 * each component sd-native loads (unet, vae, text_encoder, text_encoder_2, tokenizer, tokenizer_2,
 * scheduler) its `config.json` / `scheduler_config.json`, tokenizer files (vocab.json, merges.txt,
 * tokenizer_config.json, special_tokens_map.json, added_tokens.json when present) and safetensors
 * weights of the `variant` (`diffusion_pytorch_model[.fp16].safetensors`, `model[.fp16].safetensors`,
 * or a sharded `*.safetensors.index[.fp16].json` with its shards) — never `.bin`, `.ckpt`, `.pt`,
 * `.onnx`, `.msgpack` or root single-file checkpoints (diffusers' `DiffusionPipeline.download`
 * with `use_safetensors=True`).
 *
 * When `refs/<revision>` is cached and its snapshot holds every needed file, no request is made
 * (use `refresh` — `sd-native pull` — to look for a newer commit of a branch).
 *
 * @param id - `org/name` or `org/name@revision`
 * @param options - revision (default `main`), variant, token (default `$HF_TOKEN`), localFilesOnly
 *   (default `$HF_HUB_OFFLINE`), cacheDir (default {@link hubCacheDir}), onProgress, signal
 * @param refresh - ask the Hub which commit the revision is at even when a snapshot is cached
 * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) for a malformed id, or a revision contradicting `@revision`
 * @throws ModelNotFoundError (`E_MODEL_NOT_FOUND`) naming the id: unknown repo/revision/file, not a
 *   diffusers pipeline, a missing variant, the Hub unreachable, or offline and not cached
 * @throws UnauthorizedError (`E_UNAUTHORIZED`) naming the repo for HTTP 401/403 (gated or private)
 * @throws BadCheckpointError (`E_BAD_CHECKPOINT`) when the bytes received disagree with the size or sha256 listed
 * @throws AbortError (`E_ABORTED`) when `signal` aborts (partial files stay `blobs/<etag>.incomplete` and are resumed)
 */
export function downloadPipeline(id: string, options: HubOptions = {}, refresh = false): Promise<HubSnapshot> {
  const parsed = requireHubId(id);
  return snapshot(parsed, options, { kind: 'pipeline' }, refresh);
}

/**
 * As {@link downloadPipeline} without the weights: `model_index.json`, the components' configs and
 * the tokenizers — what a single-file checkpoint's `configDir` provides.
 */
export function downloadPipelineConfigs(id: string, options: HubOptions = {}): Promise<HubSnapshot> {
  const parsed = requireHubId(id);
  return snapshot(parsed, { ...options, variant: undefined }, { kind: 'configs' }, false);
}

/** A single file's `configDir`: a local folder as is (always wins), a Hub id → its configs' snapshot folder. */
export async function resolveConfigDir(configDir: string, options: HubOptions = {}): Promise<string> {
  if (await isLocalPath(configDir) || !parseHubId(configDir)) return configDir;
  return (await downloadPipelineConfigs(configDir, options)).path;
}

/**
 * As {@link downloadPipeline} for one model component: `<subfolder>/config.json` and its weights
 * (diffusers' `ModelMixin.from_pretrained(id, subfolder=...)`); `subfolder` '' = the repo root.
 */
export function downloadComponent(id: string, subfolder: string, options: HubOptions = {}): Promise<HubSnapshot> {
  const parsed = requireHubId(id);
  if (subfolder.split('/').some((p) => p === '..' || p === '.')) throw new InvalidArgumentError(`subfolder must be a folder inside the repo; received ${JSON.stringify(subfolder)}`);
  return snapshot(parsed, options, { kind: 'component', subfolder: subfolder.replace(/^\/+|\/+$/g, '') }, false);
}

/**
 * Downloads (or finds in the cache) one file of a Hub repo, into the same cache layout as
 * {@link downloadPipeline}, and returns its local path (in the snapshot folder).
 * @param spec - see {@link parseHubFile}
 * @param options - revision, token, localFilesOnly, cacheDir, onProgress, signal (variant is not used)
 * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) when `spec` is no Hub file reference
 * @throws the errors of {@link downloadPipeline}; ModelNotFoundError names a file absent from the repo.
 */
export async function downloadHubFile(spec: string, options: HubOptions = {}): Promise<string> {
  const parsed = parseHubFile(spec);
  if (!parsed) throw new InvalidArgumentError(`${JSON.stringify(spec)} is not a Hub file (org/name[@revision]/path/file.safetensors)`);
  const snap = await snapshot(parsed, options, { kind: 'file', file: parsed.file }, false);
  return path.join(snap.path, ...parsed.file.split('/'));
}

/**
 * Where a file argument points (a single-file checkpoint, a LoRA, an embedding): an existing local
 * path is returned as is (always wins); a Hub file reference ({@link parseHubFile}) is downloaded
 * and its cached path returned; anything else is returned unchanged (the caller reports it missing).
 */
export async function resolveFileLocation(location: string, options: HubOptions = {}): Promise<string> {
  if (typeof location !== 'string' || await isLocalPath(location)) return location;
  if (!parseHubFile(location)) return location;
  return downloadHubFile(location, options);
}

/**
 * Where a model argument points: an existing local path is returned as is (always wins); a Hub id
 * is downloaded (see {@link downloadPipeline}) and its snapshot folder returned; anything else is
 * returned unchanged so that the caller reports it as a missing path.
 */
export async function resolvePipelineLocation(location: string, options: HubOptions): Promise<string> {
  if (await isLocalPath(location) || !parseHubId(location)) return location;
  return (await downloadPipeline(location, options)).path;
}

