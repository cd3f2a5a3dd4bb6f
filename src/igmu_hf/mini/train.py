"""Train the mini world (tokenizer, CLIP, VAE, classifier, UNet) from scratch with accelerate; resumable.

    python -m igmu_hf.mini.train --output_dir build/mini --stages all --export_to src/igmu_hf/mini/weights
    accelerate launch -m igmu_hf.mini.train --output_dir build/mini --stages unet  # one stage, resumes itself

The defaults are the recipe of the shipped weights (trained on one GPU in about ten minutes, see
``examples/mini_world/train_gpu.sh``). On 2 CPU cores, ``--preset cpu`` gives a smaller recipe of about an hour
whose UNet does not reach the quality bars of ``igmu_hf.mini.quality.BARS``.

Stages run in the order clip, vae, classifier, unet (the classifier learns on clean renders and on VAE
reconstructions, so it judges decoded generations as well as drawings). Each stage checkpoints with
``accelerator.save_state`` into ``<output_dir>/<stage>/checkpoint-<step>`` and, when started again, resumes from the
newest checkpoint (``--resume_from_checkpoint latest`` is the default). Finished models are written with
``save_pretrained`` (safetensors) into ``<output_dir>/<stage>/final``. Batches are drawn by a generator seeded by
(seed, step, process), so a resumed run sees the same batches. Training data stay on the accelerator's device.
"""

import argparse
import logging
import math
import os
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..seeding import seeded
from .architecture import LATENT_CHANNELS, build_tokenizer, clip_config, scheduler_config, unet_config, vae_config
from .classifier import MiniClassifier, MiniClassifierConfig, classifier_loss, encode_labels
from .domain import make_dataset


logger = logging.getLogger(__name__)
STAGES = ("clip", "vae", "classifier", "unet")
PRESETS = {  # steps per stage and batch size
    "gpu": dict(num_images=60000, clip_steps=4000, vae_steps=6000, classifier_steps=4000, unet_steps=20000,
                train_batch_size=256),
    "cpu": dict(num_images=40000, clip_steps=400, vae_steps=1000, classifier_steps=800, unet_steps=3000,
                train_batch_size=128),
}


def parse_args(input_args=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--output_dir", type=str, default="build/mini", help="Where checkpoints and models go.")
    p.add_argument("--stages", type=str, default="all", help="Comma list of stages (clip,vae,classifier,unet) or all.")
    p.add_argument("--preset", type=str, default="gpu", choices=list(PRESETS),
                   help="Step counts and batch size; any of them can be set on its own below.")
    p.add_argument("--num_images", type=int, default=None, help="Size of the procedurally drawn training set.")
    p.add_argument("--num_workers", type=int, default=1, help="Processes that draw the training set.")
    p.add_argument("--seed", type=int, default=0, help="Seed of data drawing and initialisation.")
    p.add_argument("--clip_steps", type=int, default=None, help="Optimisation steps of the CLIP stage.")
    p.add_argument("--vae_steps", type=int, default=None, help="Optimisation steps of the VAE stage.")
    p.add_argument("--classifier_steps", type=int, default=None, help="Optimisation steps of the classifier stage.")
    p.add_argument("--unet_steps", type=int, default=None, help="Optimisation steps of the UNet stage.")
    p.add_argument("--train_batch_size", type=int, default=None, help="Batch size per process.")
    p.add_argument("--latent_channels", type=int, default=LATENT_CHANNELS, help="VAE latent (= UNet) channels.")
    p.add_argument("--classifier_vae_mix", type=float, default=0.5,
                   help="Share of classifier training images replaced by their VAE reconstruction (needs vae).")
    p.add_argument("--time_budget_minutes", type=float, default=None,
                   help="Cut each stage's steps so it ends in about this time (measured on its first steps).")
    p.add_argument("--checkpointing_steps", type=int, default=1000, help="Save a resumable state every N steps.")
    p.add_argument("--checkpoints_total_limit", type=int, default=2, help="Keep at most this many checkpoints.")
    p.add_argument("--resume_from_checkpoint", type=str, default="latest",
                   help="'latest', a checkpoint folder, or 'none' to start over.")
    p.add_argument("--mixed_precision", type=str, default="no", choices=["no", "fp16", "bf16"],
                   help="Accelerate mixed precision.")
    p.add_argument("--export_to", type=str, default=None,
                   help="After training, assemble the shipped folders (pipeline/, clip/, classifier/) here.")
    args = p.parse_args(input_args)
    for key, value in PRESETS[args.preset].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.stages == "all":
        args.stages = list(STAGES)
    else:  # "none": only draw the data and/or --export_to
        args.stages = [s.strip() for s in args.stages.split(",") if s.strip() and s.strip() != "none"]
    unknown = set(args.stages) - set(STAGES)
    if unknown:
        p.error(f"--stages has unknown stage(s) {sorted(unknown)}; choose from {list(STAGES)} or 'all'.")
    if not 0.0 <= args.classifier_vae_mix <= 1.0:
        p.error(f"--classifier_vae_mix must be in [0, 1], got {args.classifier_vae_mix}.")
    return args


def load_data(args) -> tuple[np.ndarray, list[str], list[dict]]:
    """Draw (or load the cached) training set."""
    import json

    cache = Path(args.output_dir) / f"data-{args.num_images}-{args.seed}.npz"
    if cache.exists():
        z = np.load(cache, allow_pickle=False)
        return z["images"], json.loads(str(z["captions"])), json.loads(str(z["labels"]))
    images, captions, labels = make_dataset(args.num_images, args.seed, num_workers=args.num_workers)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, images=images, captions=json.dumps(captions), labels=json.dumps(labels))
    os.replace(tmp, cache)
    return images, captions, labels


def _batch_indices(args, accelerator, step: int, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(args.seed * 1_000_003 + step * 101 + accelerator.process_index)
    return torch.randint(0, n, (args.train_batch_size,), generator=g)


def _latest_checkpoint(stage_dir: Path) -> Path | None:
    ckpts = sorted(stage_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    return ckpts[-1] if ckpts else None


def _accelerator(args):
    from accelerate import Accelerator

    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    return Accelerator(mixed_precision=args.mixed_precision)


def run_loop(args, accelerator, stage: str, model, optimizer, scheduler, loss_fn, extra_state=()):
    """Generic resumable loop of ``args.<stage>_steps`` steps: ``loss_fn(step, accelerator, model) -> loss``;
    checkpoints every ``--checkpointing_steps``; returns the unwrapped model.

    With ``--time_budget_minutes``, the step count is cut after 50 timed steps so the stage ends in that time (the
    learning-rate schedule follows), and the steps done are written to ``<stage>/final/train_args.json``.
    """
    import json
    import time

    steps = getattr(args, f"{stage}_steps")
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    for obj in extra_state:
        if hasattr(obj, "to"):
            obj.to(accelerator.device)
        accelerator.register_for_checkpointing(obj)
    stage_dir = Path(args.output_dir) / stage
    start = 0
    if args.resume_from_checkpoint != "none":
        ckpt = _latest_checkpoint(stage_dir) if args.resume_from_checkpoint == "latest" else Path(
            args.resume_from_checkpoint)
        if ckpt is not None:
            accelerator.load_state(str(ckpt))
            start = int(ckpt.name.split("-")[1])
            logger.info("Resumed %s from %s", stage, ckpt)
    model.train()
    bar = tqdm(initial=start, total=steps, desc=f"train {stage}", mininterval=5,
               disable=not accelerator.is_local_main_process)
    step, t0 = start, None
    while step < steps:
        if args.time_budget_minutes and step == start + 10:
            t0 = time.perf_counter()
        if t0 is not None and step == start + 60:
            per_step = (time.perf_counter() - t0) / 50
            fit = start + 60 + int((args.time_budget_minutes * 60 - 60 * per_step) / per_step)
            if fit < steps:
                logger.info("%s: %.1f ms/step; --time_budget_minutes cuts %d steps to %d", stage, per_step * 1e3,
                            steps, fit)
                steps = max(fit, step + 1)
                setattr(args, f"{stage}_steps", steps)
                bar.total = steps
            t0 = None
        loss = loss_fn(step, accelerator, model)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        for obj in extra_state:
            obj.step(model.parameters()) if hasattr(obj, "step") else None
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        bar.update(1)
        step = done = step + 1
        if done % args.checkpointing_steps == 0 or done == steps:
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                ckpt = stage_dir / f"checkpoint-{done}"
                accelerator.save_state(str(ckpt))
                kept = sorted(stage_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
                for old in kept[: -args.checkpoints_total_limit]:
                    shutil.rmtree(old)
    bar.close()
    final = stage_dir / "final"
    if accelerator.is_main_process:
        final.mkdir(parents=True, exist_ok=True)
        record = {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, list, type(None)))}
        (final / "train_args.json").write_text(json.dumps(record, indent=1))
    return accelerator.unwrap_model(model)


def _cosine(optimizer, args, stage: str, warmup=200):
    """Warm-up then cosine decay to 0 at ``args.<stage>_steps`` (read at each step: a time budget may shorten it)."""
    def factor(s):
        steps = getattr(args, f"{stage}_steps")
        return min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class _Images:
    """The uint8 training images, moved once to the accelerator's device; ``pixels(idx)`` gives [-1, 1] floats."""

    def __init__(self, images: np.ndarray, device):
        self.data = torch.from_numpy(np.ascontiguousarray(images)).to(device)

    def __len__(self):
        return len(self.data)

    def pixels(self, idx: torch.Tensor) -> torch.Tensor:
        return self.data[idx.to(self.data.device)].permute(0, 3, 1, 2).float() / 127.5 - 1.0


def train_clip(args, images, captions):
    from transformers import CLIPImageProcessor, CLIPModel

    accelerator = _accelerator(args)
    data = _Images(images, accelerator.device)
    tokenizer = build_tokenizer()
    ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids.to(accelerator.device)
    model = CLIPModel(clip_config(len(tokenizer)))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    sched = _cosine(opt, args, "clip")

    def loss_fn(step, accelerator, m):
        idx = _batch_indices(args, accelerator, step, len(data)).to(accelerator.device)
        return m(input_ids=ids[idx], pixel_values=data.pixels(idx), return_loss=True).loss

    model = run_loop(args, accelerator, "clip", model, opt, sched, loss_fn)
    if accelerator.is_main_process:
        final = Path(args.output_dir) / "clip" / "final"
        model.save_pretrained(final)
        tokenizer.save_pretrained(final)
        CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                           image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5], do_convert_rgb=True,
                           resample=3).save_pretrained(final)


def train_vae(args, images):
    from diffusers import AutoencoderKL

    accelerator = _accelerator(args)
    data = _Images(images, accelerator.device)
    model = AutoencoderKL(**vae_config(args.latent_channels))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    sched = _cosine(opt, args, "vae")

    def loss_fn(step, accelerator, m):
        x = data.pixels(_batch_indices(args, accelerator, step, len(data)))
        posterior = m.encode(x).latent_dist
        recon = m.decode(posterior.sample()).sample
        return F.mse_loss(recon, x) + 0.5 * F.l1_loss(recon, x) + 1e-6 * posterior.kl().mean()

    model = run_loop(args, accelerator, "vae", model, opt, sched, loss_fn)
    if accelerator.is_main_process:
        model.eval()
        with torch.no_grad():
            lat = torch.cat([model.encode(data.pixels(torch.arange(i, min(i + 256, len(data))))).latent_dist.mean
                             for i in range(0, min(4096, len(data)), 256)])
        model.register_to_config(scaling_factor=float(1.0 / lat.std()))
        model.save_pretrained(Path(args.output_dir) / "vae" / "final")


def train_classifier(args, images, labels):
    from diffusers import AutoencoderKL

    accelerator = _accelerator(args)
    data = _Images(images, accelerator.device)
    vae = None
    vae_dir = Path(args.output_dir) / "vae" / "final"
    if args.classifier_vae_mix > 0:
        if not (vae_dir / "config.json").exists():
            raise FileNotFoundError(f"--classifier_vae_mix {args.classifier_vae_mix} needs a trained VAE in "
                                    f"{vae_dir}; run the vae stage first or pass --classifier_vae_mix 0.")
        vae = AutoencoderKL.from_pretrained(vae_dir).to(accelerator.device).eval().requires_grad_(False)
    model = MiniClassifier(MiniClassifierConfig())
    targets, masks = encode_labels(labels)
    targets = {k: v.to(accelerator.device) for k, v in targets.items()}
    masks = {k: v.to(accelerator.device) for k, v in masks.items()}
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = _cosine(opt, args, "classifier")

    def loss_fn(step, accelerator, m):
        idx = _batch_indices(args, accelerator, step, len(data)).to(accelerator.device)
        x = data.pixels(idx)
        g = torch.Generator().manual_seed(args.seed + step)
        if vae is not None:  # judge decoded generations as well as drawings
            swap = (torch.rand(len(idx), generator=g) < args.classifier_vae_mix).to(x.device)
            with torch.no_grad():
                recon = vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1)
            x = torch.where(swap.view(-1, 1, 1, 1), recon, x)
        x = (x + 1) / 2
        if torch.rand(1, generator=g).item() < 0.5:  # robustness: random blur and noise
            x = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1) * 0.5 + x * 0.5
        x = (x + 0.04 * torch.randn(x.shape, generator=g).to(x.device)).clamp(0, 1)
        logits = m(x)
        return classifier_loss(logits, {k: v[idx] for k, v in targets.items()}, {k: v[idx] for k, v in masks.items()})

    model = run_loop(args, accelerator, "classifier", model, opt, sched, loss_fn)
    if accelerator.is_main_process:
        model.save_pretrained(Path(args.output_dir) / "classifier" / "final")


def train_unet(args, images, captions):
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from diffusers.training_utils import EMAModel
    from transformers import CLIPTextModel

    accelerator = _accelerator(args)
    dev = accelerator.device
    out = Path(args.output_dir)
    cache = out / "unet-inputs.pt"
    if cache.exists():
        data = torch.load(cache, weights_only=True)
        latents, states, empty = data["latents"], data["states"], data["empty"]
    else:
        tokenizer = build_tokenizer()
        text_encoder = CLIPTextModel.from_pretrained(out / "clip" / "final").to(dev).eval()
        vae = AutoencoderKL.from_pretrained(out / "vae" / "final").to(dev).eval()
        pix = _Images(images, dev)
        with torch.no_grad():
            latents = torch.cat([vae.encode(pix.pixels(torch.arange(i, min(i + 512, len(pix))))).latent_dist.mean
                                 for i in tqdm(range(0, len(pix), 512), desc="encode latents")]).cpu()
            latents = latents * vae.config.scaling_factor
            uniq = sorted(set(captions))
            pos = {c: i for i, c in enumerate(uniq)}
            tok = tokenizer(uniq + [""], padding="max_length", max_length=tokenizer.model_max_length,
                            truncation=True, return_tensors="pt").input_ids.to(dev)
            hidden = torch.cat([text_encoder(tok[i:i + 1024])[0] for i in tqdm(range(0, len(tok), 1024),
                                                                                desc="encode captions")]).cpu()
            states = {"hidden": hidden[:-1].half(), "index": torch.tensor([pos[c] for c in captions])}
            empty = hidden[-1:]
        del pix, vae, text_encoder
        torch.save({"latents": latents, "states": states, "empty": empty}, cache)
    latents, empty = latents.to(dev), empty.to(dev)
    hidden, index = states["hidden"].to(dev), states["index"].to(dev)

    noise_scheduler = DDIMScheduler(**scheduler_config())  # only its training noise schedule is used
    model = UNet2DConditionModel(**unet_config(latents.shape[1]))
    ema = EMAModel(model.parameters(), decay=0.999, model_cls=UNet2DConditionModel, model_config=model.config,
                   foreach=True)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    sched = _cosine(opt, args, "unet", warmup=200)
    acp = noise_scheduler.alphas_cumprod.to(dev)

    def loss_fn(step, accelerator, m):
        idx = _batch_indices(args, accelerator, step, len(latents)).to(dev)
        g = torch.Generator().manual_seed(args.seed + 7919 * step + accelerator.process_index)
        x0 = latents[idx]
        cond = hidden[index[idx]].float()
        drop = (torch.rand(len(idx), generator=g) < 0.1).to(dev)  # caption dropout: classifier-free guidance
        cond = torch.where(drop.view(-1, 1, 1), empty, cond)
        noise = torch.randn(x0.shape, generator=g).to(dev)
        t = torch.randint(0, 1000, (len(idx),), generator=g).to(dev)
        a = acp[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        return F.mse_loss(m(xt, t, cond).sample, noise)

    model = run_loop(args, accelerator, "unet", model, opt, sched, loss_fn, extra_state=(ema,))
    if accelerator.is_main_process:
        ema.copy_to(model.parameters())
        model.save_pretrained(out / "unet" / "final")


def export(output_dir: str | os.PathLike, export_to: str | os.PathLike) -> None:
    """Assemble the shipped folders from the trained stages: ``pipeline/`` (a stock StableDiffusionPipeline),
    ``clip/`` (CLIPModel + processor + tokenizer) and ``classifier/``."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPModel, CLIPTextModel

    src, dst = Path(output_dir), Path(export_to)
    tokenizer = build_tokenizer()
    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL.from_pretrained(src / "vae" / "final"),
        text_encoder=CLIPTextModel.from_pretrained(src / "clip" / "final"),
        tokenizer=tokenizer, unet=UNet2DConditionModel.from_pretrained(src / "unet" / "final"),
        scheduler=DDIMScheduler(**scheduler_config()), safety_checker=None, feature_extractor=None,
        image_encoder=None, requires_safety_checker=False)
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp / "pipeline", safe_serialization=True)
    clip = CLIPModel.from_pretrained(src / "clip" / "final")
    clip.save_pretrained(tmp / "clip", safe_serialization=True)
    for f in ("preprocessor_config.json",):
        shutil.copy(src / "clip" / "final" / f, tmp / "clip" / f)
    tokenizer.save_pretrained(tmp / "clip")
    MiniClassifier.from_pretrained(src / "classifier" / "final").save_pretrained(tmp / "classifier",
                                                                                  safe_serialization=True)
    if dst.exists():
        shutil.rmtree(dst)
    os.replace(tmp, dst)


def main(args):
    logging.basicConfig(level=logging.INFO)
    images, captions, labels = load_data(args)
    for stage in args.stages:
        if (Path(args.output_dir) / stage / "final" / "config.json").exists():
            logger.info("stage %s already finished; skipping", stage)
            continue
        with seeded(args.seed):  # each stage starts from the same seed; the caller's RNG is left as it was
            if stage == "clip":
                train_clip(args, images, captions)
            elif stage == "vae":
                train_vae(args, images)
            elif stage == "classifier":
                train_classifier(args, images, labels)
            elif stage == "unet":
                train_unet(args, images, captions)
    if args.export_to:
        export(args.output_dir, args.export_to)


if __name__ == "__main__":
    # every core for the script run; set here, not in main(), so a caller's thread count is left as it was
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    main(parse_args())
