"""The diffusers side of the race (issue 7): StableDiffusionPipeline on the SAME diffusers folder
that sd-native loads (made by `sd-native create-model --preset sd15 --scale full`), float16, SDPA
(AttnProcessor2_0), 512x512, 50 steps, CFG 7.5, batch 1, the folder's own scheduler (PNDM).

  python3 scripts/gpu/diffusers_race.py --model /tmp/sd15 --mode eager   --jsonl $OUT/race.jsonl
  python3 scripts/gpu/diffusers_race.py --model /tmp/sd15 --mode compile --jsonl $OUT/race.jsonl

Reports, per mode (median of --repeats timed runs after warm-up):
  it/s      steady-state loop rate: (steps - 1) / (time of step end 1 .. step end N), measured with a
            device synchronize in callback_on_step_end at the first and last step only
  e2e s     pipe(...) with output_type='np' (encode + loop + VAE decode + postprocess), synchronized
  peak      torch.cuda.max_memory_allocated() (and max_memory_reserved) over one timed run
Runs with the device's PyTorch; diffusers comes from PYTHONPATH (a carried src/ copy) when the
device has none. One JSON line per mode is appended to --jsonl (errors too, as {"error": ...}).
Without transformers (the H200 has none, ../shared/GPU.md) diffusers' StableDiffusionPipeline is a
dummy: ComponentsPipeline then runs the pipeline's loop over diffusers' own UNet, scheduler and VAE
(fixed random text embeddings; the row's "loaded_by" says so). Dry run on a CPU:
  PYTHONPATH=<diffusers src> python3 scripts/gpu/diffusers_race.py --model <tiny model> --device cpu \
    --dtype float32 --size 64 --steps 3 --repeats 1
"""
import argparse
import json
import os
import statistics
import sys
import time
import traceback


def log(*a):
    print("[diffusers_race]", *a, flush=True)


class ComponentsPipeline:
    """diffusers' StableDiffusionPipeline.__call__ loop (v0.30: steps 4-7 and the decode) over the
    diffusers UNet2DConditionModel, AutoencoderKL and the folder's scheduler, for a device without
    transformers (no CLIPTextModel/tokenizer: StableDiffusionPipeline is then a diffusers dummy).
    The text embeddings are fixed random tensors [1, 77, cross_attention_dim] (the text encoder is
    not run: a few ms of the end-to-end time on a GPU). The UNet, scheduler, CFG and VAE work is
    what the pipeline does, in its order."""

    tokenizer = None

    def __init__(self, model, torch, dtype):
        import diffusers
        from diffusers import AutoencoderKL, UNet2DConditionModel
        try:  # diffusers reads safetensors.torch as an attribute; transformers usually imports it
            import safetensors.torch  # noqa: F401
        except Exception:  # noqa: BLE001
            pass

        self.torch, self.dtype, self.device = torch, dtype, "cpu"
        self.unet = UNet2DConditionModel.from_pretrained(model, subfolder="unet", torch_dtype=dtype)
        self.vae = AutoencoderKL.from_pretrained(model, subfolder="vae", torch_dtype=dtype)
        with open(os.path.join(model, "scheduler", "scheduler_config.json")) as f:
            cls = getattr(diffusers, json.load(f)["_class_name"])
        self.scheduler = cls.from_pretrained(model, subfolder="scheduler")
        g = torch.Generator("cpu").manual_seed(0)
        d = self.unet.config.cross_attention_dim
        self.cond = torch.randn((1, 77, d), generator=g)
        self.uncond = torch.randn((1, 77, d), generator=g)

    def to(self, device):
        self.device = device
        self.unet.to(device)
        self.vae.to(device)
        return self

    def set_progress_bar_config(self, **_):
        pass

    def __call__(self, num_inference_steps, generator, callback_on_step_end=None, height=512, width=512,
                 guidance_scale=7.5, output_type="np", **_):
        torch = self.torch
        with torch.no_grad():
            emb = torch.cat([self.uncond, self.cond]).to(self.device, self.dtype)
            self.scheduler.set_timesteps(num_inference_steps, device=self.device)
            f = 2 ** (len(self.vae.config.block_out_channels) - 1)
            shape = (1, self.unet.config.in_channels, height // f, width // f)
            latents = torch.randn(shape, generator=generator).to(self.device, self.dtype) * self.scheduler.init_noise_sigma
            for i, t in enumerate(self.scheduler.timesteps):
                x = self.scheduler.scale_model_input(torch.cat([latents] * 2), t)
                noise = self.unet(x, t, encoder_hidden_states=emb, return_dict=False)[0]
                u, c = noise.chunk(2)
                noise = u + guidance_scale * (c - u)
                latents = self.scheduler.step(noise, t, latents, return_dict=False)[0]
                if callback_on_step_end:
                    callback_on_step_end(self, i, t, {})
            image = self.vae.decode(latents / self.vae.config.scaling_factor, return_dict=False)[0]
            image = (image / 2 + 0.5).clamp(0, 1).cpu().permute(0, 2, 3, 1).float().numpy()

        class Out:
            images = image

        return Out()


def transformers_available():
    try:
        import transformers  # noqa: F401
        return True
    except Exception:  # noqa: BLE001
        return False


def load_pipeline(model, torch, dtype):
    import diffusers
    if not transformers_available():
        log("transformers is not importable here: timing diffusers' loop over its UNet/scheduler/VAE (ComponentsPipeline)")
        return ComponentsPipeline(model, torch, dtype), "components loop (no transformers: text encoder not run)"
    from diffusers import StableDiffusionPipeline

    try:
        pipe = StableDiffusionPipeline.from_pretrained(
            model, torch_dtype=dtype, safety_checker=None, requires_safety_checker=False)
        return pipe, "from_pretrained"
    except Exception as e:  # noqa: BLE001 — fall back to loading the components one by one
        log("from_pretrained failed, loading components:", repr(e)[:500])
    from diffusers import AutoencoderKL, UNet2DConditionModel, PNDMScheduler
    from transformers import CLIPTextModel

    unet = UNet2DConditionModel.from_pretrained(model, subfolder="unet", torch_dtype=dtype)
    vae = AutoencoderKL.from_pretrained(model, subfolder="vae", torch_dtype=dtype)
    text_encoder = CLIPTextModel.from_pretrained(model, subfolder="text_encoder", torch_dtype=dtype)
    scheduler = PNDMScheduler.from_pretrained(model, subfolder="scheduler")
    tokenizer = None
    try:
        from transformers import CLIPTokenizer
        tokenizer = CLIPTokenizer.from_pretrained(model, subfolder="tokenizer")
    except Exception as e:  # noqa: BLE001
        log("tokenizer failed (prompt embeddings are computed from fixed ids instead):", repr(e)[:300])
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    return pipe, "components" + ("" if tokenizer else " (no tokenizer)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--mode", choices=["eager", "compile"], default="eager")
    ap.add_argument("--compile-mode", default=os.environ.get("SD_DIFFUSERS_COMPILE_MODE", "reduce-overhead"))
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--cfg", type=float, default=7.5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--jsonl", default=None)
    ap.add_argument("--device", default="cuda", help="cuda (the race) or cpu (a dry run of this script)")
    ap.add_argument("--dtype", default="float16")
    args = ap.parse_args()

    short = {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32"}.get(args.dtype, args.dtype)
    row = {"impl": "diffusers", "config": f"{short} SDPA {args.mode}" + (f" ({args.compile_mode}, channels_last)" if args.mode == "compile" else ""),
           "size": args.size, "steps": args.steps, "cfg": args.cfg, "batch": 1}

    def emit(extra):
        row.update(extra)
        line = json.dumps(row)
        print(line, flush=True)
        if args.jsonl:
            with open(args.jsonl, "a") as f:
                f.write(line + "\n")

    try:
        import torch
        import diffusers
        cuda = args.device.startswith("cuda")
        row.update(torch=torch.__version__, diffusers=diffusers.__version__, diffusers_path=os.path.dirname(diffusers.__file__),
                   gpu=torch.cuda.get_device_name(0) if cuda else None, device=args.device)
        try:
            import transformers
            row["transformers"] = transformers.__version__
        except Exception:  # noqa: BLE001
            row["transformers"] = None
        dtype = getattr(torch, args.dtype)
        sync = torch.cuda.synchronize if cuda else (lambda: None)
        t = time.perf_counter()
        pipe, how = load_pipeline(args.model, torch, dtype)
        pipe = pipe.to(args.device)
        pipe.set_progress_bar_config(disable=True)
        row["load_s"] = round(time.perf_counter() - t, 2)
        row["loaded_by"] = how
        torch.backends.cudnn.benchmark = True
        if hasattr(torch.nn.functional, "scaled_dot_product_attention"):
            from diffusers.models.attention_processor import AttnProcessor2_0
            pipe.unet.set_attn_processor(AttnProcessor2_0())
            pipe.vae.set_attn_processor(AttnProcessor2_0())
        if args.mode == "compile":
            pipe.unet.to(memory_format=torch.channels_last)
            pipe.vae.to(memory_format=torch.channels_last)
            pipe.unet = torch.compile(pipe.unet, mode=args.compile_mode, fullgraph=True)

        prompt = "a photo of an astronaut riding a horse on mars"
        kwargs = dict(height=args.size, width=args.size, guidance_scale=args.cfg, output_type="np")
        if isinstance(pipe, ComponentsPipeline):  # fixed random embeddings inside the loop
            def embeds():
                return {}
        elif pipe.tokenizer is None:  # embeddings from fixed ids, computed inside the timed call
            ids = torch.full((1, 77), 49407, dtype=torch.long, device=args.device)
            ids[0, :8] = torch.tensor([49406, 320, 1125, 539, 550, 18376, 6765, 320])

            def embeds():
                with torch.no_grad():
                    return {"prompt_embeds": pipe.text_encoder(ids)[0], "negative_prompt_embeds": pipe.text_encoder(torch.full_like(ids, 49407))[0]}
        else:
            def embeds():
                return {"prompt": prompt}

        marks = {}

        def on_step_end(_pipe, i, _t, kw):
            if i == 0 or i == args.steps - 1:
                sync()
                marks[i] = time.perf_counter()
            return kw

        def run(steps):
            g = torch.Generator("cpu").manual_seed(42)
            sync()
            t0 = time.perf_counter()
            out = pipe(**embeds(), num_inference_steps=steps, generator=g, callback_on_step_end=on_step_end, **kwargs)
            sync()
            return time.perf_counter() - t0, out

        t = time.perf_counter()
        for _ in range(2):  # warm-up: cuDNN autotuner, torch.compile (both full-size, same shapes)
            run(3)
        row["warmup_s"] = round(time.perf_counter() - t, 2)
        log(f"{row['config']}: warm-up {row['warmup_s']} s")

        e2e, its, peaks, reserved = [], [], [], []
        for _ in range(args.repeats):
            marks.clear()
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            s, out = run(args.steps)
            e2e.append(s)
            its.append((args.steps - 1) / (marks[args.steps - 1] - marks[0]))
            peaks.append(torch.cuda.max_memory_allocated() if cuda else 0)
            reserved.append(torch.cuda.max_memory_reserved() if cuda else 0)
        img = out.images[0]
        emit({"it_s": round(statistics.median(its), 2), "e2e_s": round(statistics.median(e2e), 3),
              "peak_alloc_MiB": round(max(peaks) / 2**20, 1), "peak_reserved_MiB": round(max(reserved) / 2**20, 1),
              "peak_source": "torch.cuda.max_memory_allocated", "runs_it_s": [round(x, 2) for x in its],
              "runs_e2e_s": [round(x, 3) for x in e2e], "image_mean": float(img.mean()), "image_finite": bool((img == img).all())})
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        emit({"error": f"{type(e).__name__}: {e}"[:1000]})
        sys.exit(1)


if __name__ == "__main__":
    main()
