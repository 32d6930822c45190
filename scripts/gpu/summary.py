"""Summary tables of scripts/gpu-check.sh (markdown, for $OUT/summary.md and docs/BENCHMARKS.md).
  python3 scripts/gpu/summary.py $OUT/race.jsonl $OUT/parity.json
race.jsonl: rows of scripts/gpu/bench-race.ts and scripts/gpu/diffusers_race.py, plus gpu-check.sh's
nvidia-smi rows ({"impl", "smi_peak_MiB", "smi_base_MiB"}); parity.json: test/gpu.test.ts's report.
"""
import json
import os
import sys


def race(path):
    rows = [json.loads(line) for line in open(path) if line.strip()] if os.path.exists(path) else []
    smi = {r["impl"]: r for r in rows if "smi_peak_MiB" in r}
    sdxl = [r for r in rows if "smi_peak_MiB" not in r and str(r.get("impl", "")).startswith("sdxl")]
    runs = [r for r in rows if "smi_peak_MiB" not in r and r not in sdxl]
    print("## Race: SD 1.5-shaped random weights (the same folder), 512², 50 steps, CFG 7.5, batch 1, fp16\n")
    print("| impl | config | it/s | e2e s | peak allocated MiB | GPU memory used, process peak MiB (nvidia-smi: + context + cache) | note |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    best = {}
    for r in runs:
        impl = r.get("impl", "?")
        key = impl if impl == "sd-native" else ("diffusers-compile" if "compile" in r.get("config", "") else "diffusers-eager")
        s = smi.get(key, {})
        used = f"{s['smi_peak_MiB'] - s['smi_base_MiB']}" if s else ""
        note = r.get("error") or r.get("skipped") or ("not in this build: " + ", ".join(r["missing"]) if r.get("missing") else "")
        print(f"| {impl} | {r.get('config', '')} | {r.get('it_s', '')} | {r.get('e2e_s', '')} | "
              f"{r.get('peak_alloc_MiB') or ''} | {used} | {note[:200]} |")
        if r.get("it_s"):
            best[impl] = max(best.get(impl, 0.0), r["it_s"])
    if sdxl:
        print("\n## SDXL peak GPU memory (issue 6 item 6): float16 vs fp8 UNet storage\n")
        print("| setting | load s | first call s | it/s | e2e s | weights MiB | GPU memory used, process peak MiB (nvidia-smi) | note |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in sdxl:
            s = smi.get(r["impl"], {})
            used = f"{s['smi_peak_MiB'] - s['smi_base_MiB']}" if s else ""
            w = r.get("weights_MiB") or {}
            print(f"| {r.get('config', '')} | {r.get('load_s', '')} | {r.get('first_call_s', '')} | {r.get('it_s', '')} | "
                  f"{r.get('e2e_s', '')} | {sum(w.values()) if w else ''} ({', '.join(f'{k} {v}' for k, v in w.items())}) | {used} | "
                  f"{(r.get('error') or '')[:200]} |")
    if "sd-native" in best and "diffusers" in best:
        print(f"\nsd-native best {best['sd-native']} it/s vs diffusers best {best['diffusers']} it/s: "
              f"ratio {best['sd-native'] / best['diffusers']:.2f}")


def parity(path):
    if not os.path.exists(path):
        print("\n(no parity.json: the CUDA parity tests did not run or did not finish; see parity.log)")
        return
    p = json.load(open(path))
    print(f"\n## CUDA parity on {p.get('device')} (TF32 switched off: {p.get('tf32Off')}): largest error per dtype\n")
    print("| dtype | cases | latents max|Δ|/max|ref| | image max |Δ| | image mean |Δ| (worst case) | initial latents rel |")
    print("| --- | --- | --- | --- | --- | --- |")
    for d in ("float32", "float16", "bfloat16"):
        rs = [r for r in p["rows"] if r["dtype"] == d]
        if not rs:
            continue
        ini = [r["initialRel"] for r in rs if r.get("initialRel") is not None]
        b = p["bounds"][d]
        print(f"| {d} | {len(rs)} | {max(r['latentsRel'] for r in rs):.3g} (< {b['latents']:.3g}) | "
              f"{max(r['imageMax'] for r in rs):.3g} (≤ {b['imageMax']:.3g}) | {max(r['imageMean'] for r in rs):.3g} (≤ {b['imageMean']:.3g}) | "
              f"{(f'{max(ini):.3g}' if ini else '-')} (≤ {b['initial']:.3g}) |")


if __name__ == "__main__":
    race(sys.argv[1])
    parity(sys.argv[2])
