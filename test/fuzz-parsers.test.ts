/**
 * libFuzzer over the untrusted-file parsers (issue 19, item 5): safetensors, JSON / config reader,
 * LoRA keys, single-file keys, with ASan + UBSan (native/tools/fuzz/fuzz_parsers.cc, run by
 * scripts/fuzz.sh with a seed corpus made from the fixtures at run time). A bounded run: 15 s per
 * target (plus the harness build, cached by ccache). Every input must be accepted or refused with a
 * typed SdException; a crash, sanitizer report or untyped error fails the run and leaves the input
 * in build/fuzz/crash-<target>-* (make it a regression test).
 *
 * Needs clang with libFuzzer (scripts/setup.sh installs clang + libclang-rt-dev) and
 * build/libsd_core.a (npm run compile); skipped, under a name that says so, without them.
 */
import { describe, it, expect } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SECONDS = 15;
const TARGETS = ['safetensors', 'json', 'lora', 'single_file'];

function hasClangFuzzer(): boolean {
  try {
    const cxx = execFileSync('bash', ['-c', 'command -v clang++ || ls /usr/bin/clang++-* 2>/dev/null | sort -V | tail -1'], { encoding: 'utf8' }).trim();
    if (!cxx) return false;
    // libFuzzer's runtime is a separate package on Debian (libclang-rt-<v>-dev)
    const probe = spawnSync(cxx, ['-fsanitize=fuzzer', '-x', 'c++', '-', '-o', '/dev/null'],
      { input: 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }\n', encoding: 'utf8' });
    return probe.status === 0;
  } catch {
    return false;
  }
}
const clang = hasClangFuzzer();
const core = fs.existsSync(path.join(root, 'build', 'libsd_core.a'));
const why = !clang ? ' (SKIPPED: no clang++ with libFuzzer; apt-get install clang libclang-rt-dev)'
  : !core ? ' (SKIPPED: no build/libsd_core.a; npm run compile)' : '';

describe(`libFuzzer: safetensors, JSON/config, LoRA and single-file parsers under ASan + UBSan${why}`, () => {
  it.skipIf(!clang || !core)(`${SECONDS} s per target, 0 crashes`, () => {
    const r = spawnSync('bash', ['scripts/fuzz.sh', '--seconds', String(SECONDS), ...TARGETS], {
      cwd: root, encoding: 'utf8', env: { ...process.env }, maxBuffer: 64 * 1024 * 1024,
    });
    const lines = r.stdout.split('\n').filter((l) => l.startsWith('fuzz '));
    console.log(lines.join('\n'));
    if (r.status !== 0) console.log(r.stderr.slice(-8000));
    expect(r.status).toBe(0);
    expect(lines).toHaveLength(TARGETS.length);
    for (const t of TARGETS) {
      const line = lines.find((l) => l.startsWith(`fuzz ${t}:`));
      expect(line).toMatch(/: \d+ runs, 0 crashes/);
      expect(Number(/: (\d+) runs/.exec(line!)![1])).toBeGreaterThan(100); // it really ran
    }
  }, 900_000);
});
