"""Concept Inversion / CCE (Pham et al., 2024): textual inversion of a new token against the *unlearned* model.

The original model draws ``num_images`` images of the concept (its prompts, fixed seeds). A new token ``<c*>``
is learned, with the unlearned model frozen, by the textual-inversion loss on those images::

    min_e  E_{x0, t, ε} ‖ε − ε_unlearned(x0_t, t, enc(prompt with the target replaced by <c*>))‖²

If erasure only cut the words' route to the concept, <c*> finds another route. Each attacked prompt is then
generated with its target words replaced by <c*> (or <c*> put in front when it names none) and its own seed.
The embedding is learned once per run and saved as ``concept_inversion.safetensors`` (``{"<c*>": e}``, the
textual-inversion format ``pipe.load_textual_inversion`` reads).
"""

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from tqdm.auto import trange

from ..atomic import atomic_path
from ..families import family_of
from ..text import compose_token_embeddings, encode_free_tokens
from .base import Attack, AttackConfig, AttackContext, frozen, generate_one, register_attack


EMBEDDING_FILE = "concept_inversion.safetensors"


@dataclass
class ConceptInversionConfig(AttackConfig):
    num_images: int = field(default=25, metadata={"help": "Original-model images of the concept to invert."})
    num_steps: int = field(default=5000, metadata={"help": "Textual-inversion steps."})
    train_batch_size: int = field(default=1, metadata={"help": "Images per step."})
    learning_rate: float = field(default=5e-3, metadata={"help": "AdamW learning rate on the token embedding."})
    placeholder_token: str = field(default="<c*>", metadata={"help": "The learned token's name in prompts."})
    initializer_token: str = field(default="object", metadata={"help": "Word whose embedding starts <c*>."})
    image_seed_offset: int = field(default=100_000, metadata={"help": "Training images use seed+offset+j, so they "
                                                                       "are other draws than the attacked images."})

    budget_fields: ClassVar[tuple[str, ...]] = ("num_images", "num_steps", "train_batch_size")
    fast_preset: ClassVar[dict[str, Any]] = {"num_images": 16,
                                             "num_steps": 150, "train_batch_size": 8, "learning_rate": 0.05}


class ConceptInversion(Attack):
    config_class = ConceptInversionConfig
    needs_original = True

    def _pieces(self, ctx_spec, prompt: str, embedding: torch.Tensor) -> tuple[list, str]:
        """The prompt as pieces for ``compose_token_embeddings`` (target words -> the embedding) and as text."""
        ph = self.config.placeholder_token
        pattern = r"\b(?:" + "|".join(re.escape(w) for w in ctx_spec.target_words) + r")s?\b"
        parts = re.split(pattern, prompt, flags=re.IGNORECASE)
        if len(parts) == 1:  # the prompt does not name the target: put the token in front
            return [embedding[None], prompt], f"{ph} {prompt}"
        pieces: list = [parts[0]]
        for part in parts[1:]:
            pieces += [embedding[None], part]
        return pieces, ph.join(parts)

    def _encode(self, pipe, spec, prompt: str, embedding: torch.Tensor) -> torch.Tensor:
        pieces, _ = self._pieces(spec, prompt, embedding)
        tok, te = pipe.tokenizer, pipe.text_encoder
        return encode_free_tokens(tok, te, compose_token_embeddings(tok, te, pieces)[None])

    def _prepare(self, ctx: AttackContext, prompts: list[str], seeds: list[int]) -> torch.Tensor:
        from safetensors.torch import load_file, save_file

        cfg = self.config
        path = ctx.output_dir / EMBEDDING_FILE if ctx.output_dir is not None else None
        if path is not None and path.exists():  # resuming: the embedding of this run is already learned
            return load_file(str(path))[cfg.placeholder_token]
        pipe = ctx.unlearned
        tok, te, unet = pipe.tokenizer, pipe.text_encoder, family_of(pipe).denoiser(pipe)
        init = tok(cfg.initializer_token, add_special_tokens=False).input_ids
        if len(init) != 1:
            raise ValueError(f"`initializer_token` {cfg.initializer_token!r} is {len(init)} tokens; pick one word the "
                             f"tokenizer has as a single token.")
        train_prompts = [prompts[j % len(prompts)] for j in range(cfg.num_images)]
        x0 = torch.stack([generate_one(ctx.original, p, cfg.seed + cfg.image_seed_offset + j, cfg,
                                       output_type="latent").float() for j, p in enumerate(train_prompts)])
        embedding = te.get_input_embeddings().weight[init[0]].detach().clone().float().requires_grad_(True)
        opt = torch.optim.AdamW([embedding], lr=cfg.learning_rate, weight_decay=0.0)
        gen = torch.Generator().manual_seed(cfg.seed)
        num_train = pipe.scheduler.config.num_train_timesteps
        with frozen(pipe):
            for _ in trange(cfg.num_steps, desc="concept inversion", leave=False, disable=not ctx.progress):
                idx = torch.randint(len(x0), (cfg.train_batch_size,), generator=gen)
                t = torch.randint(num_train, (len(idx),), generator=gen)
                eps = torch.randn(x0[idx].shape, generator=gen)
                x_t = family_of(pipe).noisy(pipe.scheduler, x0[idx], eps, t)
                cond = torch.cat([self._encode(pipe, ctx.spec, train_prompts[i], embedding) for i in idx.tolist()])
                pred = unet(x_t.to(unet.device, unet.dtype), t.to(unet.device), cond.to(unet.dtype)).sample
                target = family_of(pipe).target(pipe.scheduler, x0[idx], eps, t)  # ε, or v for v-prediction
                loss = F.mse_loss(pred.float(), target.to(pred.device))
                opt.zero_grad()
                loss.backward()
                opt.step()
        embedding = embedding.detach()
        if path is not None:
            with atomic_path(path) as tmp:
                save_file({cfg.placeholder_token: embedding.contiguous()}, str(tmp))
        return embedding

    def _attack_prompt(self, ctx: AttackContext, prompt_id: int, prompt: str, seed: int) -> dict[str, Any]:
        embedding = ctx.state
        with torch.no_grad():
            cond = self._encode(ctx.unlearned, ctx.spec, prompt, embedding)
        image = generate_one(ctx.unlearned, None, seed, self.config, prompt_embeds=cond)
        _, text = self._pieces(ctx.spec, prompt, embedding)
        return {"image": image, "score": float(ctx.judge.score([image])[0]), "adversarial_prompt": text,
                "adversarial_embedding": EMBEDDING_FILE, "queries": 1, "steps": self.config.num_steps,
                "extra": {"embedding_shared_by_all_prompts": True, "task": ctx.spec.target}}

    def regenerate(self, outcome, unlearned, output_dir: str | None = None):
        from safetensors.torch import load_file

        from ..taxonomy import categorize

        if outcome.adversarial_embedding is None:
            return super().regenerate(outcome, unlearned, output_dir)
        if output_dir is None:
            raise ValueError("Regenerating a Concept Inversion outcome needs the run's `output_dir` (it holds "
                             f"{EMBEDDING_FILE}).")
        embedding = load_file(str(Path(output_dir) / outcome.adversarial_embedding))[self.config.placeholder_token]
        spec = categorize(outcome.extra["task"])
        with torch.no_grad():
            cond = self._encode(unlearned, spec, outcome.prompt, embedding)
        return generate_one(unlearned, None, outcome.seed, self.config, prompt_embeds=cond)


register_attack("concept_inversion", ConceptInversion)
