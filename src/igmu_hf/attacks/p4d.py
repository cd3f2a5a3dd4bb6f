"""P4D, Prompting4Debugging (Chin et al., 2024): make the unlearned model predict what the original model
predicts for the unsafe prompt.

With x0 the original model's image of the prompt p (same seed) and x_t its noised version, optimise free tokens
p' so that::

    min_{p'}  E_{t, ε} ‖ε_unlearned(x_t, t, enc(p')) − ε_original(x_t, t, enc(p))‖²

The tokens are continuous embeddings projected to their nearest real words (cosine) in the forward pass, the
gradient applied to the continuous ones (PEZ). P4D-N (default) uses ``num_tokens`` = 16 free tokens as the whole
prompt; P4D-K (``insert_every=K``) inserts one free token after every K words of p. AdamW (lr 0.1, weight
decay 0.1), 3000 iterations, t from the 50 sampling timesteps; every ``eval_every`` iterations the projected
prompt is generated with the seed and judged, stopping at the first success.
"""

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ..families import family_of
from ..text import compose_token_embeddings, encode_free_tokens, encode_prompts, whole_word_token_ids
from .base import (Attack, AttackConfig, AttackContext, check_fits, frozen, generate_one, register_attack,
                   sampling_timesteps, tokens_to_text)


@dataclass
class P4DConfig(AttackConfig):
    num_tokens: int = field(default=16, metadata={"help": "Free tokens of P4D-N (ignored with insert_every)."})
    insert_every: int | None = field(default=None, metadata={"help": "P4D-K: one free token after every K words."})
    num_steps: int = field(default=3000, metadata={"help": "Optimisation iterations per prompt."})
    num_timesteps: int = field(default=50, metadata={"help": "Size of the fixed timestep set t is drawn from."})
    learning_rate: float = field(default=0.1, metadata={"help": "AdamW learning rate."})
    weight_decay: float = field(default=0.1, metadata={"help": "AdamW weight decay."})
    eval_every: int = field(default=50, metadata={"help": "Generate and judge the projected prompt every N steps."})

    budget_fields: ClassVar[tuple[str, ...]] = ("num_tokens", "insert_every", "num_steps", "num_timesteps",
                                                "eval_every")
    fast_preset: ClassVar[dict[str, Any]] = {"num_tokens": 8,
                                             "num_steps": 60, "eval_every": 10}


class P4D(Attack):
    config_class = P4DConfig
    needs_original = True
    needs_shared_vocabulary = True

    def _layout(self, prompt: str) -> tuple[list[str], int]:
        """The prompt's word groups around the free tokens, and how many free tokens there are."""
        k = self.config.insert_every
        if k is None:
            return [], self.config.num_tokens
        words = prompt.split()
        groups = [" ".join(words[i:i + k]) for i in range(0, len(words), k)]
        return groups, len(groups)

    def _attack_prompt(self, ctx: AttackContext, prompt_id: int, prompt: str, seed: int) -> dict[str, Any]:
        cfg = self.config
        pipe, orig, judge = ctx.unlearned, ctx.original, ctx.judge
        tok, te, unet = pipe.tokenizer, pipe.text_encoder, family_of(pipe).denoiser(pipe)
        groups, n = self._layout(prompt)
        check_fits(tok, n, " ".join(groups))
        vocab = whole_word_token_ids(tok, ctx.exclude_words)
        table = te.get_input_embeddings().weight.detach()[vocab.to(te.device)].float()
        table_dir = F.normalize(table, dim=-1)
        gen = torch.Generator().manual_seed(int(seed))
        free = table[torch.randint(len(vocab), (n,), generator=gen)].clone().requires_grad_(True)
        opt = torch.optim.AdamW([free], lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        x0 = generate_one(orig, prompt, seed, cfg, output_type="latent").float()
        target_cond = encode_prompts(orig.tokenizer, orig.text_encoder, [prompt])
        timesteps = sampling_timesteps(pipe, cfg.num_timesteps)

        def project(embeds):
            return (F.normalize(embeds, dim=-1) @ table_dir.T).argmax(-1)

        def text_of(ids):
            words = tokens_to_text(tok, vocab[ids].tolist()).split()
            if not groups:
                return " ".join(words)
            return " ".join(f"{g} {w}" for g, w in zip(groups, words))

        def pieces(free_tokens):
            if not groups:
                return [free_tokens]
            out = []
            for j, g in enumerate(groups):
                out += [g, free_tokens[j:j + 1]]
            return out

        best, evaluated, steps, queries = None, None, 0, 0
        with frozen(pipe, orig):
            for step in range(cfg.num_steps):
                t = timesteps[torch.randint(len(timesteps), (1,), generator=gen)]
                eps = torch.randn(x0.shape, generator=gen)
                x_t = family_of(pipe).noisy(pipe.scheduler, x0[None], eps[None], t)
                with torch.no_grad():
                    orig_unet = family_of(orig).denoiser(orig)
                    target = orig_unet(x_t.to(orig_unet.device, orig_unet.dtype), t.to(orig_unet.device),
                                       target_cond.to(orig_unet.dtype)).sample.float()
                hard = table[project(free.detach())]
                straight = hard + free - free.detach()
                cond = encode_free_tokens(tok, te, compose_token_embeddings(tok, te, pieces(straight))[None])
                pred = unet(x_t.to(unet.device, unet.dtype), t.to(unet.device), cond.to(unet.dtype)).sample
                loss = F.mse_loss(pred.float(), target.to(pred.device))
                opt.zero_grad()
                loss.backward()
                opt.step()
                steps = step + 1
                if steps % cfg.eval_every and steps != cfg.num_steps:
                    continue
                ids = project(free.detach()).tolist()
                if ids == evaluated:
                    continue
                evaluated = ids
                text = text_of(ids)
                image = generate_one(pipe, text, seed, cfg)
                score = float(judge.score([image])[0])
                queries += 1
                if best is None or score > best["score"]:
                    best = {"image": image, "score": score, "adversarial_prompt": text}
                if score >= judge.threshold:
                    break
        variant = "P4D-N" if cfg.insert_every is None else f"P4D-{cfg.insert_every}"
        return {**best, "queries": queries, "steps": steps, "extra": {"variant": variant, "free_tokens": n}}


register_attack("p4d", P4D)
