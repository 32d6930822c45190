/**
 * The cache side of lib/loaders/hub.ts: huggingface_hub's cache layout (file_download.py,
 * _snapshot_download.py, scan_cache_dir), blob downloads that resume and verify, refs and
 * snapshot links, the retry timing of its http_backoff, and listing what is cached.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, mkdir, open, readFile, readdir, realpath, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import type { ReadableStream as NodeReadableStream } from 'node:stream/web';
import { downloadFile, fileDownloadInfo, HubApiError, type ListFileEntry } from '@huggingface/hub';
import { BadCheckpointError, ModelNotFoundError, SdError } from '../errors.js';

export const COMMIT_RE = /^[0-9a-f]{40}$/;

/** huggingface_hub's cache folder (see the module doc for the order of the variables). */
export function hubCacheDir(): string {
  const env = process.env;
  if (env.HF_HUB_CACHE) return env.HF_HUB_CACHE;
  if (env.HUGGINGFACE_HUB_CACHE) return env.HUGGINGFACE_HUB_CACHE;
  const home = env.HF_HOME || path.join(env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'huggingface');
  return path.join(home, 'hub');
}

/** `models--org--name` (huggingface_hub's `repo_folder_name`). */
export function repoFolderName(repo: string): string {
  return ['models', ...repo.split('/')].join('--');
}


export const RETRY_STATUS = new Set([429, 500, 502, 503, 504]);
export const MAX_TRIES = 5;

/** huggingface_hub's http_backoff: 1, 2, 4, 8, 8 s (or the server's Retry-After, at most 8 s). */
export function backoffMs(attempt: number, retryAfter: string | null): number {
  const s = retryAfter === null ? NaN : Number(retryAfter);
  if (Number.isFinite(s) && s >= 0) return Math.min(s, 8) * 1000;
  return Math.min(2 ** attempt, 8) * 1000;
}

export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) { reject(signal.reason); return; }
    const t = setTimeout(() => { signal.removeEventListener('abort', onAbort); resolve(); }, ms);
    const onAbort = () => { clearTimeout(t); reject(signal.reason); };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

export async function exists(p: string): Promise<boolean> {
  return (await stat(p).catch(() => undefined)) !== undefined;
}

/** huggingface_hub's _create_symlink: a relative link, or a copy where links are not allowed. */
export async function linkBlob(blob: string, pointer: string): Promise<void> {
  await mkdir(path.dirname(pointer), { recursive: true });
  await rm(pointer, { force: true });
  try {
    await symlink(path.relative(path.dirname(pointer), blob), pointer);
  } catch {
    const tmp = `${pointer}.${process.pid}.tmp`;
    await copyFile(blob, tmp);
    await rename(tmp, pointer);
  }
}

/** Writes `refs/<revision>` atomically. */
export async function writeRef(storage: string, revision: string, commit: string): Promise<void> {
  const ref = path.join(storage, 'refs', revision);
  await mkdir(path.dirname(ref), { recursive: true });
  const tmp = `${ref}.${process.pid}.tmp`;
  await writeFile(tmp, commit);
  await rename(tmp, ref);
}

export async function readRef(storage: string, revision: string): Promise<string | undefined> {
  if (COMMIT_RE.test(revision)) return revision;
  const s = await readFile(path.join(storage, 'refs', revision), 'utf8').catch(() => undefined);
  return s !== undefined && COMMIT_RE.test(s.trim()) ? s.trim() : undefined;
}

export async function sha256Prefix(file: string): Promise<ReturnType<typeof createHash>> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h;
}

/** Blob downloads in flight in this process (two plans needing the same file share it). */
export const blobJobs = new Map<string, Promise<number>>();

export interface FileJob {
  repo: string; commit: string; entry: ListFileEntry; storage: string;
  hubUrl: string; accessToken?: string; fetch: typeof fetch; signal: AbortSignal;
  onBytes: (n: number) => void;
}

/** The ETag huggingface_hub names the blob by: the LFS sha256, else the git blob id. */
export function etagOf(entry: ListFileEntry): string {
  const etag = entry.lfs?.oid ?? entry.oid ?? entry.xetHash;
  if (!etag || !/^[0-9a-zA-Z_-]+$/.test(etag)) throw new BadCheckpointError(`${entry.path}: the Hub listing gives no usable ETag`);
  return etag;
}
export const sizeOf = (entry: ListFileEntry) => entry.lfs?.size ?? entry.size;

/**
 * Makes `snapshots/<commit>/<path>` → `blobs/<etag>`, downloading the blob unless present. The
 * blob is written as `<etag>.incomplete`, resumed with a Range request after a cut, checked
 * (size; LFS files also sha256) and only then renamed to `<etag>`. Returns the bytes received.
 */
export async function ensureFile(job: FileJob): Promise<number> {
  const { entry, storage } = job;
  const pointer = path.join(storage, 'snapshots', job.commit, ...entry.path.split('/'));
  if (await exists(pointer)) return 0;
  const etag = etagOf(entry);
  const blob = path.join(storage, 'blobs', etag);
  // Another download in this process is writing the same blob: wait for it (its bytes are
  // reported there); if it failed or was aborted, fetch it here (resuming its .incomplete).
  for (let running = blobJobs.get(blob); running; running = blobJobs.get(blob)) {
    const ok = await running.then(() => true, () => false);
    if (ok && (await stat(blob).catch(() => undefined))?.size === sizeOf(entry)) {
      await linkBlob(blob, pointer);
      return 0;
    }
  }
  if (job.signal.aborted) throw job.signal.reason;
  const mine = downloadBlob(job, blob, etag).finally(() => blobJobs.delete(blob));
  blobJobs.set(blob, mine);
  const received = await mine;
  await linkBlob(blob, pointer);
  return received;
}

export async function downloadBlob(job: FileJob, blob: string, etag: string): Promise<number> {
  const { entry } = job;
  const size = sizeOf(entry);
  if ((await stat(blob).catch(() => undefined))?.size === size) return 0;
  await mkdir(path.dirname(blob), { recursive: true });
  const incomplete = `${blob}.incomplete`;
  const checkSha = entry.lfs !== undefined && /^[0-9a-f]{64}$/.test(etag);
  const params = { repo: job.repo, path: entry.path, revision: job.commit, hubUrl: job.hubUrl, accessToken: job.accessToken, fetch: job.fetch };
  let received = 0;
  for (let attempt = 0; ; attempt++) {
    let have = (await stat(incomplete).catch(() => undefined))?.size ?? 0;
    if (have > size) { await rm(incomplete, { force: true }); have = 0; }
    const info = await fileDownloadInfo(params);
    if (!info) throw new ModelNotFoundError(`${job.repo}: ${entry.path} is listed but the Hub has no such file at ${job.commit}`);
    if (info.size !== size) {
      throw new BadCheckpointError(`${job.repo}: ${entry.path}: the Hub lists ${size} bytes but serves ${info.size}`);
    }
    const hash = checkSha && have > 0 ? await sha256Prefix(incomplete) : checkSha ? createHash('sha256') : undefined;
    let fh;
    try {
      const b = await downloadFile({ ...params, downloadInfo: info });
      if (!b) throw new ModelNotFoundError(`${job.repo}: ${entry.path} not found at ${job.commit}`);
      const body = have > 0 ? b.slice(have).stream() : b.stream();
      fh = await open(incomplete, have > 0 ? 'a' : 'w');
      for await (const chunk of Readable.fromWeb(body as unknown as NodeReadableStream<Uint8Array>)) {
        const buf = chunk as Uint8Array;
        if (have + buf.length > size) {
          throw new BadCheckpointError(`${job.repo}: ${entry.path}: the Hub lists ${size} bytes but sends more`);
        }
        await fh.write(buf);
        hash?.update(buf);
        have += buf.length;
        received += buf.length;
        job.onBytes(buf.length);
      }
      await fh.close();
      fh = undefined;
    } catch (e) {
      await fh?.close().catch(() => undefined);
      if (e instanceof BadCheckpointError) { await rm(incomplete, { force: true }); throw e; }
      if (job.signal.aborted || e instanceof SdError || e instanceof HubApiError || attempt + 1 >= MAX_TRIES) throw e;
      await sleep(backoffMs(attempt, null) / 4, job.signal); // a cut connection: resume from what was written
      continue;
    }
    if (have !== size) {
      // The stream ended early without an error: resume, unless it keeps happening.
      if (attempt + 1 < MAX_TRIES) continue;
      await rm(incomplete, { force: true });
      throw new BadCheckpointError(`${job.repo}: ${entry.path}: received ${have} bytes of ${size}`);
    }
    if (hash && hash.digest('hex') !== etag) {
      await rm(incomplete, { force: true });
      throw new BadCheckpointError(`${job.repo}: ${entry.path}: the bytes received do not match the sha256 ${etag} the Hub lists`);
    }
    await rename(incomplete, blob);
    return received;
  }
}

/** One cached revision (a snapshot) of a cached model. */
export interface CachedRevision {
  commit: string;
  /** The refs (branches/tags) pointing at it, e.g. ['main']. */
  refs: string[];
  /** Bytes of its files (blobs shared with other revisions count in each). */
  size: number;
  files: number;
  path: string;
}
/** One cached model repo. */
export interface CachedModel {
  repo: string;
  /** Bytes on disk (blobs, counted once). */
  size: number;
  path: string;
  revisions: CachedRevision[];
}

/** Files under `dir` (recursive), relative with '/' separators. */
export async function walkFiles(dir: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(path.join(dir, rel), { withFileTypes: true }).catch(() => [])) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...await walkFiles(dir, r));
    else out.push(r);
  }
  return out;
}

/**
 * The models in the cache (huggingface_hub's `scan_cache_dir`, models only: refs, including
 * `refs/pr/N`, and snapshot files followed to their blobs), largest first; an empty list when the
 * cache folder does not exist. Folders that are not `models--org--name` repos are skipped.
 */
export async function listCachedModels(cacheDir: string = hubCacheDir()): Promise<CachedModel[]> {
  const out: CachedModel[] = [];
  for (const e of await readdir(cacheDir, { withFileTypes: true }).catch(() => [])) {
    const m = /^models--(.+?)--(.+)$/.exec(e.name);
    if (!e.isDirectory() || !m) continue;
    const storage = path.join(cacheDir, e.name);
    const refsByCommit = new Map<string, string[]>();
    for (const ref of await walkFiles(path.join(storage, 'refs'))) {
      const commit = (await readFile(path.join(storage, 'refs', ref), 'utf8').catch(() => '')).trim();
      refsByCommit.set(commit, [...(refsByCommit.get(commit) ?? []), ref]);
    }
    const blobSizes = new Map<string, number>();
    const revisions: CachedRevision[] = [];
    for (const commit of await readdir(path.join(storage, 'snapshots')).catch(() => [] as string[])) {
      const snap = path.join(storage, 'snapshots', commit);
      let size = 0, files = 0;
      for (const f of await walkFiles(snap)) {
        const st = await stat(path.join(snap, f)).catch(() => undefined);
        if (!st) continue; // a dangling link
        const real = await realpath(path.join(snap, f)).catch(() => path.join(snap, f));
        blobSizes.set(real, st.size);
        size += st.size;
        files++;
      }
      revisions.push({ commit, refs: (refsByCommit.get(commit) ?? []).sort(), size, files, path: snap });
    }
    out.push({ repo: `${m[1]}/${m[2]}`, size: [...blobSizes.values()].reduce((a, b) => a + b, 0), path: storage, revisions });
  }
  return out.sort((a, b) => b.size - a.size || a.repo.localeCompare(b.repo));
}
