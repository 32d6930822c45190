/**
 * Tokenizer loading off the JS thread (issue 19, item 3): `vocab.json` (≈ 1 MB, 49,408 entries
 * for CLIP) and `merges.txt` (48,894 lines) are parsed and checked in a worker thread, and come back
 * flat — one string of all tokens (merges), their lengths and ids (typed arrays, transferred, not copied) — so the JS thread only
 * fills a Map, in slices between which the event loop runs ({@link yieldToEventLoop}). A 1 MB
 * `JSON.parse` on the JS thread blocks it for 20–90 ms (measured on a loaded 2-core machine).
 */
import { Worker } from 'node:worker_threads';
import { BadConfigError } from './errors.js';
import { PY_SPACE, PY_SPACE_NOT_BLANK } from './tokenization_utils.js';

/** Merges, flat: merge r is `pairs.slice(start_r, start_r + lengths[r])` ("first second", one space), rank r. */
export interface FlatMerges {
  pairs: string;
  lengths: Uint32Array;
}

/** A vocabulary, flat: token i is `tokens.slice(start_i, start_i + lengths[i])` with id `ids[i]`, in `for…in` order of the JSON object. */
export interface FlatVocab {
  tokens: string;
  lengths: Uint32Array;
  ids: Float64Array;
}

/** What the worker hands back. */
export interface TokenizerFiles {
  vocab: FlatVocab;
  merges: FlatMerges;
}

type WorkerReply = { ok: TokenizerFiles } | { error: string };

/**
 * The worker's code (plain JS, run with `eval: true`, so it works the same from `lib/` sources
 * under a TS loader and from `dist/`). The messages are those of the in-thread parser
 * ({@link parseVocab}).
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
${parseVocabSource()}
try {
  const d = workerData;
  const v = parseVocab(d.vocabText, d.vocabFile);
  const m = parseMerges(d.mergesText, d.mergesFile, d.maxMerges);
  parentPort.postMessage({ ok: { vocab: v, merges: m } }, [v.lengths.buffer, v.ids.buffer, m.lengths.buffer]);
} catch (e) {
  parentPort.postMessage({ error: e.message });
}
`;

function parseVocabSource(): string {
  return `function parseVocab(text, file) {
  let value;
  try { value = JSON.parse(text); } catch (e) { throw new Error(file + ': invalid JSON: ' + e.message); }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error(file + ': expected a JSON object at the top level');
  const names = [];
  const ids = [];
  for (const token in value) {
    const id = value[token];
    if (!Number.isSafeInteger(id) || id < 0) {
      throw new Error(file + ': the id of token ' + JSON.stringify(token) + ' must be a non-negative integer, got ' + JSON.stringify(id));
    }
    names.push(token);
    ids.push(id);
  }
  return { tokens: names.join(''), lengths: Uint32Array.from(names, (t) => t.length), ids: Float64Array.from(ids) };
}
// merges: lines[1 : maxMerges + 1] of the stripped file, each split on Python whitespace
function parseMerges(text, file, maxMerges) {
  const PY_SPACE = new RegExp(${JSON.stringify(PY_SPACE.source)}, ${JSON.stringify(PY_SPACE.flags)});
  const PY_SPACE_NOT_BLANK = new RegExp(${JSON.stringify(PY_SPACE_NOT_BLANK.source)}, ${JSON.stringify(PY_SPACE_NOT_BLANK.flags)});
  const lines = text.trim().split('\\n').slice(1, maxMerges + 1);
  const pairs = [];
  for (let rank = 0; rank < lines.length; rank++) {
    const line = lines[rank];
    const space = line.indexOf(' ');
    // fast path: "first second" with one space and no other whitespace (byte-mapped symbols hold none)
    if (space > 0 && space < line.length - 1 && line.indexOf(' ', space + 1) < 0 && !PY_SPACE_NOT_BLANK.test(line)) {
      pairs.push(line);
      continue;
    }
    const parts = line.split(PY_SPACE).filter((t) => t.length > 0);
    if (parts.length !== 2) throw new Error(file + ': line ' + (rank + 2) + ' is not a merge of two symbols: ' + JSON.stringify(line));
    pairs.push(parts[0] + ' ' + parts[1]);
  }
  return { pairs: pairs.join(''), lengths: Uint32Array.from(pairs, (t) => t.length) };
}`;
}

// The same functions for the in-thread fallback (one source for both).
// eslint-disable-next-line @typescript-eslint/no-implied-eval
const inThread = new Function(`${parseVocabSource()}; return { parseVocab, parseMerges };`)() as {
  parseVocab: (text: string, file: string) => FlatVocab;
  parseMerges: (text: string, file: string, maxMerges: number) => FlatMerges;
};

/**
 * Parses and checks `vocab.json` (token → non-negative integer id) and `merges.txt` (after a
 * `#version` line, at most `maxMerges` lines of two whitespace-separated symbols) in a worker
 * thread. Falls back to parsing on the calling thread when no worker can be started.
 * @throws BadConfigError (`E_BAD_CONFIG`) for invalid JSON, a top level that is not an object, an
 *   id that is not a non-negative integer, or a merge line that is not two symbols; the message
 *   names the file (and token or line).
 */
export async function parseTokenizerFilesOffThread(
  vocabText: string, vocabFile: string, mergesText: string, mergesFile: string, maxMerges: number,
): Promise<TokenizerFiles> {
  const workerData = { vocabText, vocabFile, mergesText, mergesFile, maxMerges };
  let reply: WorkerReply;
  try {
    reply = await new Promise<WorkerReply>((resolve, reject) => {
      const w = new Worker(WORKER_SOURCE, { eval: true, workerData });
      w.once('message', (m: WorkerReply) => { resolve(m); void w.terminate(); });
      w.once('error', reject);
      w.once('exit', (code) => reject(new Error(`tokenizer worker exited with code ${code}`)));
    });
  } catch {
    // no worker (thread limits, a sandbox): the same parse here
    try {
      return { vocab: inThread.parseVocab(vocabText, vocabFile), merges: inThread.parseMerges(mergesText, mergesFile, maxMerges) };
    } catch (e) {
      throw new BadConfigError((e as Error).message);
    }
  }
  if ('error' in reply) throw new BadConfigError(reply.error);
  return reply.ok;
}

/** Resolves after the event loop has run its pending I/O and timers (one `setImmediate` turn). */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
