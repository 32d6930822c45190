// The canny preprocessor (cv2.Canny as controlnet_aux's CannyDetector calls it) on synthetic images
// whose edges are derived by hand below, not by running the code.
import { describe, it, expect } from 'vitest';
import sharp from 'sharp';
import { canny, SdError } from '../lib/index.js';
import { rejection } from './helpers/fixtures.js';

/** 16×16 RGB, black, with the square rows 4…11 × cols 4…11 filled with `value` in the channels `on`. */
function square(value: number, on: number[] = [0, 1, 2]) {
  const data = new Uint8Array(16 * 16 * 3);
  for (let y = 4; y <= 11; y++) for (let x = 4; x <= 11; x++) for (const c of on) data[(y * 16 + x) * 3 + c] = value;
  return { data, width: 16, height: 16, channels: 3 as const };
}

/**
 * The edge pixels of square(255) at thresholds 100/200, derived by hand from OpenCV's algorithm:
 * - Sobel (3×3, replicated borders): along a straight side both the last outside pixel and the
 *   first inside pixel have |gradient| 4·255 = 1020 (e.g. dx(y, 3) = dx(y, 4) = 1020 for rows 5…10),
 *   their neighbours across the side 0.
 * - Non-maximum suppression keeps a pixel greater than its left/upper neighbour and ≥ its
 *   right/lower one, so of each tied pair the left/upper pixel survives: column 3 (outside) on
 *   the left side, column 11 (inside) on the right, row 3 (outside) on top, row 11 (inside) at
 *   the bottom.
 * - Corners: (4,4) has dx = dy = 765 (|g| 1530, diagonal, ↘ neighbours (3,3) = 510 and (5,5) = 0:
 *   kept); (3,4) has dx = 255, dy = 765 (vertical; below it (4,4) = 1530 > 1020: suppressed) and
 *   (4,3) likewise; at the top-right (4,11) (dx −765, dy 765, ↙ neighbours (3,12) = 510, (5,10) = 0)
 *   is kept and (3,11) (vertical, below 1530) is not; bottom-left (11,4) kept ((10,5) = 0, (12,3)
 *   = 510), (11,3) not (right neighbour 1530); bottom-right (11,11) kept ((10,10) = 0, (12,12) = 510),
 *   and (10,11), (11,10) are kept as ends of the straight sides (their other neighbours are 1020 ≥
 *   ties on the ≥ side).
 * - Every kept magnitude (1020 or 1530) is > 200: all are edges.
 */
function handEdges(): Set<string> {
  const e = new Set<string>();
  const add = (y: number, x: number) => e.add(`${y},${x}`);
  for (let x = 5; x <= 10; x++) add(3, x);   // top side: row 3, its corners excluded
  add(4, 4); add(4, 11);                      // the two upper corners
  for (let y = 5; y <= 10; y++) { add(y, 3); add(y, 11); } // left (outside) and right (inside) sides
  for (let x = 4; x <= 11; x++) add(11, x);  // bottom side with both lower corners
  return e;
}

function edgesOf(img: { data: Buffer; width: number; height: number; channels: number }): Set<string> {
  expect(img.channels).toBe(3);
  const s = new Set<string>();
  for (let y = 0; y < img.height; y++) for (let x = 0; x < img.width; x++) {
    const i = (y * img.width + x) * 3;
    expect([0, 255]).toContain(img.data[i]);
    expect(img.data[i + 1]).toBe(img.data[i]); // three equal channels (controlnet_aux's HWC3)
    expect(img.data[i + 2]).toBe(img.data[i]);
    if (img.data[i] === 255) s.add(`${y},${x}`);
  }
  return s;
}

describe('canny (OpenCV cv2.Canny, the ControlNet canny preprocessor)', () => {
  it('a filled square: exactly the hand-derived 28 edge pixels', async () => {
    const out = await canny(square(255));
    expect([out.width, out.height]).toEqual([16, 16]);
    const want = handEdges();
    expect(want.size).toBe(28);
    expect([...edgesOf(out)].sort()).toEqual([...want].sort());
  });

  it('thresholds: hysteresis keeps weak sides joined to strong corners; none above high; low cuts the sides', async () => {
    // value 40: sides |g| = 4·40 = 160 (weak: 100 < 160 ≤ 200), the four kept corners 6·40 = 240 (strong)
    expect([...edgesOf(await canny(square(40)))].sort()).toEqual([...handEdges()].sort());
    expect(edgesOf(await canny(square(40), { lowThreshold: 100, highThreshold: 250 })).size).toBe(0);
    expect([...edgesOf(await canny(square(40), { lowThreshold: 170, highThreshold: 200 }))].sort())
      .toEqual(['11,11', '11,4', '4,11', '4,4']);
    // low > high is swapped, as OpenCV does
    expect([...edgesOf(await canny(square(40), { lowThreshold: 200, highThreshold: 100 }))].sort()).toEqual([...handEdges()].sort());
  });

  it('colour: each pixel takes the channel with the strongest gradient (a red-only square has the same edges)', async () => {
    expect([...edgesOf(await canny(square(255, [0])))].sort()).toEqual([...handEdges()].sort());
    expect([...edgesOf(await canny(square(255, [2])))].sort()).toEqual([...handEdges()].sort());
  });

  it('encoded images keep their size (no rounding to 8) and give the same edges as raw pixels', async () => {
    const raw = square(255);
    const png = await sharp(Buffer.from(raw.data), { raw: { width: 16, height: 16, channels: 3 } }).png().toBuffer();
    expect([...edgesOf(await canny(png))].sort()).toEqual([...handEdges()].sort());
    const odd = await sharp({ create: { width: 13, height: 10, channels: 4, background: { r: 9, g: 9, b: 9, alpha: 1 } } }).png().toBuffer();
    const o = await canny(odd);
    expect([o.width, o.height, o.data.length]).toEqual([13, 10, 13 * 10 * 3]);
    expect(edgesOf(o).size).toBe(0); // a flat image has no edges
  });

  it('bad thresholds, options and images are typed errors', async () => {
    for (const o of [{ lowThreshold: -1 }, { highThreshold: NaN }, { lowThreshold: '100' }, { blur: 3 }]) {
      const e = await rejection(canny(square(255), o as any));
      expect(e, JSON.stringify(o)).toBeInstanceOf(SdError);
      expect(e.code).toBe('E_INVALID_ARGUMENT');
    }
    for (const img of [Buffer.from('not an image'), { data: new Uint8Array(5), width: 2, height: 2, channels: 3 }, 42]) {
      expect((await rejection(canny(img as any))).code).toBe('E_INVALID_ARGUMENT');
    }
  });
});
