"""diffusers' side of native/tools/profile_step: where one UNet CFG step (batch 2, 77 tokens) or one
VAE decode (batch 1) of diffusers spends its time, per ATen op (torch.profiler, self CPU time), on the
same diffusers folder and libtorch — so that the two op tables can be read side by side.

  . $REF/env.sh && $PY scripts/race/profile_diffusers.py --model DIR [--what unet|vae] [--size 256]
      [--dtype bfloat16] [--repeat 2] [--threads 2] [--top 25]

Attention: diffusers' default processor for the torch it runs on (AttnProcessor on torch 1.13,
AttnProcessor2_0 / SDPA on 2.x). The last of --repeat calls is profiled.
"""
import argparse
import time

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--what", default="unet", choices=["unet", "vae"])
ap.add_argument("--size", type=int, default=256)
ap.add_argument("--dtype", default="bfloat16")
ap.add_argument("--repeat", type=int, default=2)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--top", type=int, default=25)
a = ap.parse_args()
torch.set_num_threads(a.threads)
dtype = getattr(torch, a.dtype)
h = a.size // 8
g = torch.Generator().manual_seed(0)
with torch.inference_mode():
    if a.what == "unet":
        m = UNet2DConditionModel.from_pretrained(a.model, subfolder="unet").to(dtype).eval()
        x = torch.randn(2, 4, h, h, generator=g).to(dtype)
        emb = torch.randn(2, 77, m.config.cross_attention_dim, generator=g).to(dtype)
        call = lambda: m(x, torch.tensor(999), emb)  # noqa: E731
    else:
        m = AutoencoderKL.from_pretrained(a.model, subfolder="vae").to(dtype).eval()
        z = torch.randn(1, 4, h, h, generator=g).to(dtype)
        call = lambda: m.decode(z / m.config.scaling_factor)  # noqa: E731
    for i in range(a.repeat - 1):
        t0 = time.perf_counter(); call(); print(f"call {i + 1}: {time.perf_counter() - t0:.2f} s")
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter(); call(); wall = time.perf_counter() - t0
print(f"call {a.repeat} (profiled): {wall:.2f} s; torch {torch.__version__}, threads {torch.get_num_threads()}")
rows = [(e.key, e.self_cpu_time_total / 1000.0, e.count) for e in prof.key_averages()]
total = sum(r[1] for r in rows)
print(f"{'op':40s} {'self ms':>10s} {'calls':>6s} {'share':>7s}")
for key, ms, n in sorted(rows, key=lambda r: -r[1])[: a.top]:
    print(f"{key:40s} {ms:10.1f} {n:6d} {100 * ms / total:6.1f}%")
