/**
 * A mock Hugging Face Hub on loopback (node:http, 127.0.0.1:0) serving fixture model folders
 * read in place from ../shared/fixtures/models (never copied), with the routes and headers
 * @huggingface/hub 2.x calls:
 *
 *   GET  /api/models/{org}/{name}/revision/{rev}?expand=…    model info (`sha` = the commit)
 *   GET  /api/models/{org}/{name}/tree/{rev}[/{path}]?recursive=…   listing, paginated with `Link: <…>; rel="next"`
 *   POST /api/models/{org}/{name}/paths-info/{rev}            paths info
 *   GET  /{org}/{name}/resolve/{rev}/{path}                   small (git) files: 200/206 with ETag = git blob sha1;
 *                                                             LFS files (*.safetensors, *.bin, *.ckpt …): 302 to
 *                                                             /cdn/{org}/{name}/{sha256} with X-Linked-Etag / X-Linked-Size
 *   GET  /cdn/{org}/{name}/{sha256}                                      the bytes, with Range support (206 + Content-Range)
 *
 * Every response carries X-Repo-Commit where the Hub sends it; errors carry X-Error-Code
 * (RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo) as the Hub does. Each repo may get a
 * synthesised variant (`x.fp16.safetensors` serving the bytes of `x.safetensors`), decoy files that
 * must never be fetched (.bin, .ckpt, .onnx, .msgpack, a root single-file checkpoint), a gate (401
 * without the right token), and one-shot faults (status codes, a cut connection, slow bodies,
 * bytes that disagree with the listed size).
 */
import http from 'node:http';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { AddressInfo } from 'node:net';

export interface MockRepo {
  /** The fixture folder served as the repo's tree. */
  dir: string;
  /** Branch/tag → commit hash; default `{ main: sha1(repo) }`. */
  revisions?: Record<string, string>;
  /** Synthesised variants: for each, every `x.safetensors` also appears as `x.<variant>.safetensors` (same bytes). */
  variants?: string[];
  /** Serve decoy files (never to be requested by a load). */
  decoys?: boolean;
  /** Gated: every route answers 401 GatedRepo unless `Authorization: Bearer <token>`. */
  gatedToken?: string;
  /** Repo-relative path → how its served bytes disagree with the listing. */
  corrupt?: Record<string, 'size' | 'bytes'>;
}

export interface MockFile {
  path: string;
  size: number;
  /** Present for LFS files (the sha256 of the bytes). */
  sha256?: string;
  /** git blob id (sha1 of "blob <size>\0" + bytes), the ETag of non-LFS files. */
  gitOid: string;
  read: () => Buffer;
}

/** A one-shot fault, applied to the next request whose path contains `match`. */
export type Fault =
  | { match: string; status: number; retryAfter?: string }
  | { match: string; cutAfter: number }
  | { match: string; slow: { chunk: number; delayMs: number } };

export interface RequestRecord {
  method: string;
  /** The path and query. */
  url: string;
  range?: string;
  authorization?: string;
}

const LFS_RE = /\.(safetensors|bin|ckpt|pt|pth|onnx|msgpack|h5)$/;
const sha1 = (b: Buffer | string) => createHash('sha1').update(b).digest('hex');
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function walk(dir: string, rel = ''): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...walk(dir, r));
    else if (e.isFile()) out.push(r);
  }
  return out.sort();
}

function fileFrom(p: string, read: () => Buffer, lfs: boolean): MockFile {
  const bytes = read();
  const gitOid = sha1(Buffer.concat([Buffer.from(`blob ${bytes.length}\0`), bytes]));
  return { path: p, size: bytes.length, gitOid, sha256: lfs ? sha256(bytes) : undefined, read };
}

/** The files a repo serves (fixture files, synthesised variants, decoys). Bytes are read lazily from the fixture. */
export function repoFiles(repo: MockRepo): Map<string, MockFile> {
  const files = new Map<string, MockFile>();
  for (const rel of walk(repo.dir)) {
    const abs = path.join(repo.dir, rel);
    files.set(rel, fileFrom(rel, () => fs.readFileSync(abs), LFS_RE.test(rel)));
    for (const v of repo.variants ?? []) {
      if (rel.endsWith('.safetensors')) {
        const vr = rel.replace(/\.safetensors$/, `.${v}.safetensors`);
        files.set(vr, fileFrom(vr, () => fs.readFileSync(abs), true));
      }
    }
  }
  if (repo.decoys) {
    const decoy = (p: string) => files.set(p, fileFrom(p, () => Buffer.from(`decoy ${p} must never be downloaded\n`), LFS_RE.test(p)));
    for (const p of [
      'v1-5-pruned-emaonly.ckpt', 'v1-5-pruned-emaonly.safetensors', 'README.md', 'unet/diffusion_pytorch_model.bin',
      'vae/diffusion_pytorch_model.bin', 'text_encoder/pytorch_model.bin', 'text_encoder/flax_model.msgpack',
      'unet/diffusion_pytorch_model.onnx', 'unet/model.pt', 'safety_checker/config.json', 'safety_checker/model.safetensors',
      'feature_extractor/preprocessor_config.json',
    ]) decoy(p);
  }
  return files;
}

export class MockHub {
  readonly requests: RequestRecord[] = [];
  private faults: Fault[] = [];
  private server: http.Server;
  private sockets = new Set<import('node:net').Socket>();
  private files = new Map<string, Map<string, MockFile>>();
  /** Page size of tree listings (small, to exercise `Link: rel="next"`). */
  pageSize = 7;
  url = '';

  constructor(readonly repos: Record<string, MockRepo>) {
    for (const [id, r] of Object.entries(repos)) {
      const fl = repoFiles(r);
      this.files.set(id, fl);
    }
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((e) => {
        if (!res.headersSent) { res.statusCode = 500; res.end(String(e)); } else res.destroy();
      });
    });
    this.server.on('connection', (s) => { this.sockets.add(s); s.on('close', () => this.sockets.delete(s)); });
  }

  /** Starts listening on 127.0.0.1 (random port); sets `url`. */
  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this.url;
  }

  /** Stops the server and drops open connections. */
  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** Queues a one-shot fault. */
  fault(f: Fault): void { this.faults.push(f); }

  /** The commit a repo's revision resolves to. */
  commit(repo: string, revision = 'main'): string {
    const r = this.repos[repo];
    const revs = r.revisions ?? { main: sha1(repo) };
    if (/^[0-9a-f]{40}$/.test(revision) && Object.values(revs).includes(revision)) return revision;
    return revs[revision];
  }

  /** The files a repo serves, by path. */
  filesOf(repo: string): Map<string, MockFile> { return this.files.get(repo)!; }

  /** The ETag huggingface_hub names a file's blob by. */
  etag(repo: string, p: string): string {
    const f = this.filesOf(repo).get(p)!;
    return f.sha256 ?? f.gitOid;
  }

  /** Requests whose path contains `s`. */
  count(s?: string): number { return s === undefined ? this.requests.length : this.requests.filter((r) => r.url.includes(s)).length; }
  reset(): void { this.requests.length = 0; this.faults.length = 0; }

  /** Body faults (cut, slow) skip the `Range: bytes=0-0` probes @huggingface/hub sends before a download. */
  private takeFault(url: string, probe: boolean): Fault | undefined {
    const i = this.faults.findIndex((f) => url.includes(f.match) && (!probe || 'status' in f));
    return i < 0 ? undefined : this.faults.splice(i, 1)[0];
  }

  private error(res: http.ServerResponse, status: number, code: string, message: string): void {
    res.writeHead(status, { 'Content-Type': 'application/json', 'X-Error-Code': code, 'X-Error-Message': message });
    res.end(JSON.stringify({ error: message }));
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = req.url ?? '/';
    this.requests.push({ method: req.method ?? 'GET', url, range: req.headers.range, authorization: req.headers.authorization });
    const u = new URL(url, 'http://x');
    const p = decodeURIComponent(u.pathname);
    let fault = this.takeFault(url, req.headers.range === 'bytes=0-0');
    if (fault && 'status' in fault) {
      res.writeHead(fault.status, { 'Content-Type': 'text/plain', ...(fault.retryAfter !== undefined ? { 'Retry-After': fault.retryAfter } : {}) });
      res.end(`injected ${fault.status}`);
      return;
    }

    let m: RegExpExecArray | null;
    if ((m = /^\/cdn\/([^/]+\/[^/]+)\/([0-9a-f]{64})$/.exec(p))) {
      const hit = [...(this.files.get(m[1])?.values() ?? [])].find((f) => f.sha256 === m![2]);
      if (!hit) return this.error(res, 404, 'EntryNotFound', 'no such blob');
      return this.sendBytes(req, res, m[1], hit, fault, {});
    }

    const api = /^\/api\/models\/([^/]+\/[^/]+)\/(revision|tree|paths-info)\/([^/]+)(?:\/(.*))?$/.exec(p);
    const resolve = api ? null : /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(p);
    const repoId = api?.[1] ?? resolve?.[1];
    if (!repoId) return this.error(res, 404, 'RepoNotFound', `no route ${p}`);
    const repo = this.repos[repoId];
    if (!repo) return this.error(res, 404, 'RepoNotFound', `Repository Not Found for url: ${url}`);
    if (repo.gatedToken !== undefined && req.headers.authorization !== `Bearer ${repo.gatedToken}`) {
      return this.error(res, 401, 'GatedRepo', `Access to model ${repoId} is restricted. You must have access to it and be authenticated to access it.`);
    }
    const rev = decodeURIComponent(api?.[3] ?? resolve![2]);
    const commit = this.commit(repoId, rev);
    if (!commit) return this.error(res, 404, 'RevisionNotFound', `Invalid rev id: ${rev}`);
    const files = this.filesOf(repoId);

    if (api?.[2] === 'revision') {
      res.writeHead(200, { 'Content-Type': 'application/json', 'X-Repo-Commit': commit });
      res.end(JSON.stringify({
        _id: sha1(repoId).slice(0, 24), id: repoId, sha: commit, private: false, gated: repo.gatedToken ? 'manual' : false,
        downloads: 0, likes: 0, lastModified: '2024-01-01T00:00:00.000Z', pipeline_tag: 'text-to-image',
        siblings: [...files.keys()].map((rfilename) => ({ rfilename })),
      }));
      return;
    }
    const entry = (f: MockFile) => ({
      type: 'file', oid: f.gitOid, size: f.sha256 ? f.size : f.size, path: f.path,
      ...(f.sha256 ? { lfs: { oid: f.sha256, size: this.listedSize(repo, f), pointerSize: 134 } } : {}),
    });
    if (api?.[2] === 'tree') {
      const prefix = api[4] ? api[4].replace(/\/$/, '') : '';
      const recursive = u.searchParams.get('recursive') === 'true';
      const all: object[] = [];
      const dirs = new Set<string>();
      for (const f of files.values()) {
        if (prefix && !f.path.startsWith(prefix + '/')) continue;
        const rest = prefix ? f.path.slice(prefix.length + 1) : f.path;
        const parts = rest.split('/');
        for (let i = 1; i < parts.length; i++) {
          const d = [prefix, ...parts.slice(0, i)].filter(Boolean).join('/');
          if ((recursive || i === 1) && !dirs.has(d)) { dirs.add(d); all.push({ type: 'directory', oid: sha1(d), size: 0, path: d }); }
        }
        if (recursive || parts.length === 1) all.push(entry(f));
      }
      if (prefix && all.length === 0) return this.error(res, 404, 'EntryNotFound', `${prefix} does not exist on ${rev}`);
      const cursor = Number(u.searchParams.get('cursor') ?? 0);
      const page = all.slice(cursor, cursor + this.pageSize);
      const headers: Record<string, string> = { 'Content-Type': 'application/json' };
      if (cursor + this.pageSize < all.length) {
        const next = new URL(url, this.url);
        next.searchParams.set('cursor', String(cursor + this.pageSize));
        headers.Link = `<${next.href}>; rel="next"`;
      }
      res.writeHead(200, headers);
      res.end(JSON.stringify(page));
      return;
    }
    if (api?.[2] === 'paths-info') {
      const body = await new Promise<string>((r) => { let s = ''; req.on('data', (c) => { s += c; }); req.on('end', () => r(s)); });
      const paths: string[] = JSON.parse(body || '{}').paths ?? [];
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(paths.filter((x) => files.has(x)).map((x) => ({ ...entry(files.get(x)!), lastCommit: { id: commit, title: 'init', date: '2024-01-01T00:00:00.000Z' } }))));
      return;
    }

    // resolve
    const file = files.get(resolve![3]);
    if (!file) {
      res.writeHead(404, { 'X-Error-Code': 'EntryNotFound', 'X-Repo-Commit': commit, 'Content-Type': 'text/plain' });
      res.end('Entry not found');
      return;
    }
    if (file.sha256) {
      // LFS: redirect to the CDN path (relative Location, as the Hub's resolve-cache redirects)
      res.writeHead(302, {
        Location: `/cdn/${repoId}/${file.sha256}`, 'X-Repo-Commit': commit, 'X-Linked-Etag': `"${file.sha256}"`,
        'X-Linked-Size': String(this.listedSize(repo, file)), ETag: `"${file.gitOid}"`, 'Content-Length': '0',
      });
      res.end();
      return;
    }
    return this.sendBytes(req, res, repoId, file, fault, { 'X-Repo-Commit': commit, ETag: `"${file.gitOid}"` });
  }

  /** The size the listing gives (a 'size'-corrupt file lists 10 bytes more than it serves). */
  private listedSize(repo: MockRepo, f: MockFile): number {
    return repo.corrupt?.[f.path] === 'size' ? f.size + 10 : f.size;
  }

  private async sendBytes(
    req: http.IncomingMessage, res: http.ServerResponse, repoId: string, file: MockFile, fault: Fault | undefined, extra: Record<string, string>,
  ): Promise<void> {
    let bytes = file.read();
    if (this.repos[repoId].corrupt?.[file.path] === 'bytes') { bytes = Buffer.from(bytes); bytes[bytes.length >> 1] ^= 0xff; }
    let start = 0, end = bytes.length - 1;
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    if (range) {
      start = Number(range[1]);
      end = range[2] ? Math.min(Number(range[2]), bytes.length - 1) : bytes.length - 1;
      if (start >= bytes.length) {
        res.writeHead(416, { 'Content-Range': `bytes */${bytes.length}` });
        res.end();
        return;
      }
    }
    const body = bytes.subarray(start, end + 1);
    res.writeHead(range ? 206 : 200, {
      'Content-Type': 'application/octet-stream', 'Content-Length': String(body.length), 'Accept-Ranges': 'bytes',
      ...(file.sha256 ? { ETag: `"${file.sha256}"` } : {}),
      ...(range ? { 'Content-Range': `bytes ${start}-${end}/${bytes.length}` } : {}),
      ...extra,
    });
    if (req.method === 'HEAD') { res.end(); return; }
    if (fault && 'cutAfter' in fault) {
      res.write(body.subarray(0, fault.cutAfter));
      await new Promise((r) => setTimeout(r, 20));
      res.socket?.destroy();
      return;
    }
    if (fault && 'slow' in fault) {
      for (let i = 0; i < body.length && !res.destroyed; i += fault.slow.chunk) {
        if (!res.write(body.subarray(i, i + fault.slow.chunk))) await new Promise((r) => res.once('drain', r));
        await new Promise((r) => setTimeout(r, fault.slow.delayMs));
      }
      res.end();
      return;
    }
    res.end(body);
  }
}
