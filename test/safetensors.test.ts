import { describe, it, expect, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readSafetensorsHeader, readSafetensors, writeSafetensors, SdError } from '../lib/index.js';
import { fixture } from './helpers/fixtures.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sd-st-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('safetensors', () => {
  it('reads a header: names, dtypes, shapes and offsets', async () => {
    const h = await readSafetensorsHeader(fixture('goldens', 'tiny-sd15', 'vae.safetensors'));
    const decoded = h.tensors.find((t) => t.name === 'decoded')!;
    expect(decoded.dtype).toBe('F32');
    expect(decoded.shape).toEqual([1, 3, 16, 16]);
    expect(decoded.dataOffsets[1] - decoded.dataOffsets[0]).toBe(3 * 16 * 16 * 4);
    expect(decoded.fileOffsets[0]).toBe(8 + h.headerSize + decoded.dataOffsets[0]);
  });

  it('round-trips through the writer', async () => {
    const p = path.join(tmp, 'rt.safetensors');
    const f = new Float32Array([1, 2, 3, 4, 5, 6]);
    const l = new BigInt64Array([1n, -2n]);
    await writeSafetensors(p, { b: { data: f, shape: [2, 3] }, a: { data: l, shape: [2] } }, { format: 'pt' });
    const h = await readSafetensorsHeader(p);
    expect(h.metadata).toEqual({ format: 'pt' });
    expect(h.tensors.map((t) => t.name).sort()).toEqual(['a', 'b']);
    expect(h.headerSize % 8).toBe(0);
    const t = await readSafetensors(p);
    expect(Array.from(t.b.data)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(t.b.shape).toEqual([2, 3]);
    expect(Array.from(t.a.data)).toEqual([1n, -2n]);
  });

  const bad: Array<[string, () => Buffer, RegExp]> = [
    ['a file shorter than 8 bytes', () => Buffer.from([1, 2, 3]), /shorter than the 8-byte/],
    ['an absurd header length', () => { const b = Buffer.alloc(16); b.writeBigUInt64LE(1n << 40n); return b; }, /exceeds the 100 MB limit/],
    ['a header running past the end', () => header('{}', 0, 100), /runs past the end/],
    ['malformed JSON', () => header('{"a": ', 0), /invalid JSON/],
    ['an unknown dtype', () => header('{"a":{"dtype":"F7","shape":[1],"data_offsets":[0,4]}}', 4), /unknown dtype "F7"/],
    ['a shape that disagrees with the range', () => header('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}', 4), /needs 8 bytes/],
    ['a range outside the data', () => header('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', 4), /ends at byte 8/],
    ['overlapping ranges', () => header('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}}', 8), /overlaps/],
    ['a hole in the data', () => header('{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', 8), /hole/],
    ['duplicate keys', () => header('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', 4), /duplicate key/],
    ['a negative dimension', () => header('{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}', 4), /non-negative integer/],
  ];
  for (const [what, make, msg] of bad) {
    it(`refuses ${what} with E_BAD_CHECKPOINT`, async () => {
      const p = path.join(tmp, 'bad.safetensors');
      fs.writeFileSync(p, make());
      const err = await readSafetensorsHeader(p).catch((e) => e);
      expect(err).toBeInstanceOf(SdError);
      expect(err.code).toBe('E_BAD_CHECKPOINT');
      expect(err.message).toMatch(msg);
      expect(err.message).toContain(p);
    });
  }

  it('reports a missing file as E_MODEL_NOT_FOUND', async () => {
    const err = await readSafetensorsHeader(path.join(tmp, 'nope.safetensors')).catch((e) => e);
    expect(err.code).toBe('E_MODEL_NOT_FOUND');
  });
});

function header(json: string, dataBytes: number, claimedLength?: number): Buffer {
  const j = Buffer.from(json, 'utf8');
  const b = Buffer.alloc(8 + j.length + dataBytes);
  b.writeBigUInt64LE(BigInt(claimedLength ?? j.length));
  j.copy(b, 8);
  return b;
}
