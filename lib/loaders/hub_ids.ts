/**
 * What a Hugging Face Hub reference looks like and where it points: model ids `org/name[@revision]`,
 * file references `org/name[@revision]/path/file.ext` (or their huggingface.co URLs), the endpoint
 * (`$HF_ENDPOINT`) and offline mode (`$HF_HUB_OFFLINE`), as huggingface_hub reads them.
 */

/** A parsed Hub model id. */
export interface HubModelId {
  /** `org/name` */
  repo: string;
  /** The `@revision` part, if any (branch, tag or commit hash). */
  revision?: string;
}

// huggingface_hub's validate_repo_id: letters, digits, '-', '_', '.'; no '--' or '..'; ≤ 96 chars.
const REPO_PART = '[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9_-])?';
const HUB_ID_RE = new RegExp(`^(${REPO_PART}/${REPO_PART})(?:@([^\\s@]+))?$`);

/**
 * Parses `org/name` or `org/name@revision`; `undefined` when `s` is not shaped like a Hub id
 * (e.g. `./a/b`, `/abs/path`, `a/b/c`, `name`). Whether a local path of that name exists is the
 * caller's question: a local path always wins.
 */
export function parseHubId(s: string): HubModelId | undefined {
  if (typeof s !== 'string') return undefined;
  const m = HUB_ID_RE.exec(s);
  if (!m || m[1].length > 96 || m[1].includes('--') || m[1].includes('..')) return undefined;
  return m[2] === undefined ? { repo: m[1] } : { repo: m[1], revision: m[2] };
}

/** The Hub's base URL: `$HF_ENDPOINT` or https://huggingface.co (no trailing slash). */
export function hubEndpoint(): string {
  return (process.env.HF_ENDPOINT || 'https://huggingface.co').replace(/\/+$/, '');
}

const isTrue = (v: string | undefined) => v !== undefined && ['1', 'on', 'yes', 'true'].includes(v.trim().toLowerCase());
/** `$HF_HUB_OFFLINE` set to 1/true/yes/on (huggingface_hub's `_is_true`). */
export function hubOffline(): boolean { return isTrue(process.env.HF_HUB_OFFLINE); }

/** A file in a Hub repo: `org/name[@revision]/path/to/file.safetensors`, or a Hub URL to it. */
export interface HubFileId extends HubModelId {
  /** The repo-relative path, e.g. `v1-5-pruned-emaonly.safetensors` or `loras/pixel.safetensors`. */
  file: string;
}

/**
 * Parses a Hub file reference, as diffusers' `from_single_file` and loaders take them:
 * `org/name[@revision]/path/file.ext`, or a URL `https://<host>/org/name/{blob,resolve}/<revision>/path/file.ext`
 * (any host: the download goes to `$HF_ENDPOINT`). `undefined` for anything else.
 */
export function parseHubFile(s: string): HubFileId | undefined {
  if (typeof s !== 'string') return undefined;
  const url = /^https?:\/\/[^/]+\/([^/]+\/[^/]+)\/(?:blob|resolve)\/([^/]+)\/(.+)$/.exec(s);
  const m = url ?? /^([^/@\s]+\/[^/@\s]+)(?:@([^/\s]+))?\/(.+)$/.exec(s);
  if (!m) return undefined;
  const id = parseHubId(m[1]);
  const file = decodeURIComponent(m[3].split('?')[0]);
  if (!id || !/\.[A-Za-z0-9]+$/.test(file) || file.split('/').some((p) => p === '' || p === '.' || p === '..')) return undefined;
  return { repo: id.repo, revision: m[2] ?? undefined, file };
}
