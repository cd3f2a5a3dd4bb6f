"""Train the mini world (tokenizer, CLIP, VAE, classifier, UNet) from scratch with accelerate; resumable.

    python -m igmu_hf.mini.train --output_dir build/mini --stages all            # about an hour on 2 CPU cores
    accelerate launch -m igmu_hf.mini.train --output_dir build/mini --stages unet  # one stage, resumes itself
    python -m igmu_hf.mini.train --output_dir build/mini --export_to src/igmu_hf/mini/weights

Each stage checkpoints with ``accelerator.save_state`` into ``<output_dir>/<stage>/checkpoint-<step>`` and, when
started again, resumes from the newest checkpoint (``--resume_from_checkpoint latest`` is the default). The
finished models are written with ``save_pretrained`` (safetensors) into ``<output_dir>/<stage>/final``.
Batches are drawn by a generator seeded by (seed, step, process), so a resumed run sees the same batches.
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

from .architecture import build_tokenizer, clip_config, scheduler_config, unet_config, vae_config
from .classifier import MiniClassifier, MiniClassifierConfig, classifier_loss, encode_labels
from .domain import make_dataset


logger = logging.getLogger(__name__)
STAGES = ("classifier", "clip", "vae", "unet")


def parse_args(input_args=None):
    p = argparse.ArgumentParser(description="Train the igmu_hf mini world from scratch.")
    p.add_argument("--output_dir", type=str, default="build/mini", help="Where checkpoints and models go.")
    p.add_argument("--stages", type=str, default="all", help="Comma list of stages (clip,vae,classifier,unet) or all.")
    p.add_argument("--num_images", type=int, default=40000, help="Size of the procedurally drawn training set.")
    p.add_argument("--seed", type=int, default=0, help="Seed of data drawing and initialisation.")
    p.add_argument("--clip_steps", type=int, default=400, help="Optimisation steps of the CLIP stage.")
    p.add_argument("--vae_steps", type=int, default=1000, help="Optimisation steps of the VAE stage.")
    p.add_argument("--classifier_steps", type=int, default=800, help="Optimisation steps of the classifier stage.")
    p.add_argument("--unet_steps", type=int, default=3000, help="Optimisation steps of the UNet stage.")
    p.add_argument("--train_batch_size", type=int, default=128, help="Batch size per process.")
    p.add_argument("--checkpointing_steps", type=int, default=250, help="Save a resumable state every N steps.")
    p.add_argument("--checkpoints_total_limit", type=int, default=2, help="Keep at most this many checkpoints.")
    p.add_argument("--resume_from_checkpoint", type=str, default="latest",
                   help="'latest', a checkpoint folder, or 'none' to start over.")
    p.add_argument("--mixed_precision", type=str, default="no", choices=["no", "fp16", "bf16"],
                   help="Accelerate mixed precision.")
    p.add_argument("--export_to", type=str, default=None,
                   help="After training, assemble the shipped folders (pipeline/, clip/, classifier/) here.")
    args = p.parse_args(input_args)
    args.stages = list(STAGES) if args.stages == "all" else [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = set(args.stages) - set(STAGES)
    if unknown:
        p.error(f"--stages has unknown stage(s) {sorted(unknown)}; choose from {list(STAGES)} or 'all'.")
    return args


def load_data(args) -> tuple[np.ndarray, list[str], list[dict]]:
    """Draw (or load the cached) training set."""
    import json

    cache = Path(args.output_dir) / f"data-{args.num_images}-{args.seed}.npz"
    if cache.exists():
        z = np.load(cache, allow_pickle=False)
        return z["images"], json.loads(str(z["captions"])), json.loads(str(z["labels"]))
    images, captions, labels = make_dataset(args.num_images, args.seed)
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


def run_loop(args, stage: str, model, optimizer, scheduler, steps: int, loss_fn, extra_state=()):
    """Generic resumable loop: ``loss_fn(step) -> loss``; checkpoints every ``--checkpointing_steps``."""
    from accelerate import Accelerator

    accelerator = Accelerator(mixed_precision=args.mixed_precision)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    for obj in extra_state:
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
    bar = tqdm(range(start, steps), initial=start, total=steps, desc=f"train {stage}",
               disable=not accelerator.is_local_main_process)
    for step in bar:
        loss = loss_fn(step, accelerator, model)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        for obj in extra_state:
            obj.step(model.parameters()) if hasattr(obj, "step") else None
        bar.set_postfix(loss=f"{loss.item():.4f}")
        done = step + 1
        if done % args.checkpointing_steps == 0 or done == steps:
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                ckpt = stage_dir / f"checkpoint-{done}"
                accelerator.save_state(str(ckpt))
                kept = sorted(stage_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
                for old in kept[: -args.checkpoints_total_limit]:
                    shutil.rmtree(old)
    return accelerator, accelerator.unwrap_model(model)


def _cosine(optimizer, steps, warmup=200):
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))


def _pixels(images: np.ndarray, idx: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(images[idx.numpy()]).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def train_clip(args, images, captions):
    from transformers import CLIPImageProcessor, CLIPModel

    tokenizer = build_tokenizer()
    ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    torch.manual_seed(args.seed)
    model = CLIPModel(clip_config(len(tokenizer)))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    sched = _cosine(opt, args.clip_steps)

    def loss_fn(step, accelerator, m):
        idx = _batch_indices(args, accelerator, step, len(images))
        out = m(input_ids=ids[idx].to(accelerator.device), pixel_values=_pixels(images, idx).to(accelerator.device),
                return_loss=True)
        return out.loss

    accelerator, model = run_loop(args, "clip", model, opt, sched, args.clip_steps, loss_fn)
    if accelerator.is_main_process:
        final = Path(args.output_dir) / "clip" / "final"
        model.save_pretrained(final)
        tokenizer.save_pretrained(final)
        CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                           image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5], do_convert_rgb=True,
                           resample=3).save_pretrained(final)


def train_vae(args, images):
    from diffusers import AutoencoderKL

    torch.manual_seed(args.seed)
    model = AutoencoderKL(**vae_config())
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    sched = _cosine(opt, args.vae_steps)

    def loss_fn(step, accelerator, m):
        idx = _batch_indices(args, accelerator, step, len(images))[: max(1, args.train_batch_size // 2)]
        x = _pixels(images, idx).to(accelerator.device)
        posterior = m.encode(x).latent_dist
        recon = m.decode(posterior.sample()).sample
        return F.mse_loss(recon, x) + 0.5 * F.l1_loss(recon, x) + 1e-6 * posterior.kl().mean()

    accelerator, model = run_loop(args, "vae", model, opt, sched, args.vae_steps, loss_fn)
    if accelerator.is_main_process:
        model.eval()
        with torch.no_grad():
            lat = torch.cat([model.encode(_pixels(images, torch.arange(i, min(i + 256, len(images))))).latent_dist
                             .mean for i in range(0, min(4096, len(images)), 256)])
        model.register_to_config(scaling_factor=float(1.0 / lat.std()))
        model.save_pretrained(Path(args.output_dir) / "vae" / "final")


def train_classifier(args, images, labels):
    torch.manual_seed(args.seed)
    model = MiniClassifier(MiniClassifierConfig())
    targets, masks = encode_labels(labels)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = _cosine(opt, args.classifier_steps)

    def loss_fn(step, accelerator, m):
        idx = _batch_indices(args, accelerator, step, len(images))
        x = (_pixels(images, idx) + 1) / 2
        # robustness to generated images: random blur and noise
        g = torch.Generator().manual_seed(step)
        if torch.rand(1, generator=g).item() < 0.5:
            x = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1) * 0.5 + x * 0.5
        x = (x + 0.04 * torch.randn(x.shape, generator=g)).clamp(0, 1)
        logits = m(x.to(accelerator.device))
        return classifier_loss(logits, {k: v[idx].to(accelerator.device) for k, v in targets.items()},
                               {k: v[idx].to(accelerator.device) for k, v in masks.items()})

    accelerator, model = run_loop(args, "classifier", model, opt, sched, args.classifier_steps, loss_fn)
    if accelerator.is_main_process:
        model.save_pretrained(Path(args.output_dir) / "classifier" / "final")


def train_unet(args, images, captions):
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from diffusers.training_utils import EMAModel
    from transformers import CLIPTextModel

    out = Path(args.output_dir)
    tokenizer = build_tokenizer()
    text_encoder = CLIPTextModel.from_pretrained(out / "clip" / "final").eval()
    vae = AutoencoderKL.from_pretrained(out / "vae" / "final").eval()
    cache = out / "unet-inputs.pt"
    if cache.exists():
        data = torch.load(cache, weights_only=True)
        latents, states, empty = data["latents"], data["states"], data["empty"]
    else:
        with torch.no_grad():
            latents = torch.cat([vae.encode(_pixels(images, torch.arange(i, min(i + 512, len(images))))).latent_dist
                                 .mean for i in tqdm(range(0, len(images), 512), desc="encode latents")])
            latents = latents * vae.config.scaling_factor
            uniq = sorted(set(captions))
            pos = {c: i for i, c in enumerate(uniq)}
            tok = tokenizer(uniq + [""], padding="max_length", max_length=tokenizer.model_max_length,
                            truncation=True, return_tensors="pt").input_ids
            hidden = torch.cat([text_encoder(tok[i:i + 1024])[0] for i in tqdm(range(0, len(tok), 1024),
                                                                                desc="encode captions")])
            states = {"hidden": hidden[:-1].half(), "index": torch.tensor([pos[c] for c in captions])}
            empty = hidden[-1:]
        torch.save({"latents": latents, "states": states, "empty": empty}, cache)

    noise_scheduler = DDIMScheduler(**scheduler_config())  # only its training noise schedule is used
    torch.manual_seed(args.seed)
    model = UNet2DConditionModel(**unet_config())
    ema = EMAModel(model.parameters(), decay=0.999, model_cls=UNet2DConditionModel, model_config=model.config)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    sched = _cosine(opt, args.unet_steps, warmup=200)
    acp = noise_scheduler.alphas_cumprod

    def loss_fn(step, accelerator, m):
        idx = _batch_indices(args, accelerator, step, len(latents))
        g = torch.Generator().manual_seed(args.seed + 7919 * step + accelerator.process_index)
        x0 = latents[idx]
        cond = states["hidden"][states["index"][idx]].float()
        drop = torch.rand(len(idx), generator=g) < 0.1  # caption dropout: classifier-free guidance
        cond[drop] = empty
        noise = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, 1000, (len(idx),), generator=g)
        a = acp[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        pred = m(xt.to(accelerator.device), t.to(accelerator.device), cond.to(accelerator.device)).sample
        return F.mse_loss(pred, noise.to(accelerator.device))

    accelerator, model = run_loop(args, "unet", model, opt, sched, args.unet_steps, loss_fn, extra_state=(ema,))
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
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    images, captions, labels = load_data(args)
    for stage in args.stages:
        if (Path(args.output_dir) / stage / "final").exists():
            logger.info("stage %s already finished; skipping", stage)
            continue
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
    main(parse_args())
