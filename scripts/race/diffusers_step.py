# diffusers side of the CPU race (scripts/race.sh): the same diffusers folder loaded with diffusers'
# UNet2DConditionModel / AutoencoderKL and transformers' CLIPTextModel, on the same libtorch;
# seconds per CFG step (UNet at batch 2, median of the calls after the first), text encoding and
# VAE decode, printed as one `RESULT` JSON line. Default attention processor (AttnProcessor2_0 =
# SDPA on torch >= 2, AttnProcessor on 1.13), as a CPU user gets it.
#   python3 scripts/race/diffusers_step.py MODEL_DIR SIZE STEPS DTYPE THREADS
import json, sys, time
import torch
from diffusers import UNet2DConditionModel, AutoencoderKL
from transformers import CLIPTextModel

model, size, steps, dtype_name, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
torch.set_num_threads(threads)
dtype = getattr(torch, dtype_name)
unet = UNet2DConditionModel.from_pretrained(model, subfolder='unet').eval().to(dtype)
vae = AutoencoderKL.from_pretrained(model, subfolder='vae').eval().to(dtype)
te = CLIPTextModel.from_pretrained(model, subfolder='text_encoder').eval().to(dtype)
torch.manual_seed(0)
h = size // 8
with torch.inference_mode():
    ids = torch.randint(0, 49407, (2, 77))
    t0 = time.perf_counter(); emb = te(ids).last_hidden_state; t_text = time.perf_counter() - t0
    x = torch.randn(2, 4, h, h, dtype=dtype)
    times = []
    for i in range(steps):
        t0 = time.perf_counter(); unet(x, torch.tensor(999 - 100 * i), emb); times.append(time.perf_counter() - t0)
    t0 = time.perf_counter(); vae.decode(x[:1] / 0.18215); t_vae = time.perf_counter() - t0
per = sorted(times[1:]) if len(times) > 1 else times
print('RESULT ' + json.dumps({'system': 'diffusers', 'torch': torch.__version__, 'threads': torch.get_num_threads(),
    'dtype': dtype_name, 'size': size, 'step': per[len(per) // 2], 'steps': times, 'text': t_text, 'vae': t_vae}))
