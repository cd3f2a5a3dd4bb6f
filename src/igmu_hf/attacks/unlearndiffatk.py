"""UnlearnDiffAtk (Zhang et al., 2024): the unlearned model as its own attack oracle. EvalIGMU's robustness metric.

For a prompt p and the original model's image x0 of p (same seed), optimise k prefix tokens so the unlearned
model denoises x0 well when conditioned on ``prefix + p``::

    min_w  E_{t, ε} ‖ε − ε_unlearned(x0_t, t, [w·E ; p])‖²

Each prefix token is a point ``w`` on the vocabulary simplex; the forward pass uses its one-hot argmax (a real
word) and the gradient flows to ``w`` straight through. Adam (lr 0.01, weight decay 0.1), then the Euclidean
projection back onto the simplex. t is drawn from the 50 fixed timesteps of the sampling schedule. Whenever the
argmax prefix changes, the prompt ``"<prefix words> p"`` is generated with the prompt's seed and judged; the attack
stops at the first success.
"""

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ..families import family_of
from ..judges import is_nudity
from ..text import compose_token_embeddings, encode_free_tokens, whole_word_token_ids
from .base import (Attack, AttackConfig, AttackContext, check_fits, frozen, generate_one, register_attack,
                   sampling_timesteps, tokens_to_text)


@dataclass
class UnlearnDiffAtkConfig(AttackConfig):
    prefix_length: int | None = field(
        default=None, metadata={"help": "k prefix tokens; default 5 for nudity, 3 otherwise (the paper's)."})
    num_steps: int = field(default=40, metadata={"help": "Optimisation steps per prompt."})
    num_timesteps: int = field(default=50, metadata={"help": "Size of the fixed timestep set t is drawn from."})
    learning_rate: float = field(default=0.01, metadata={"help": "Adam learning rate on the simplex weights."})
    weight_decay: float = field(default=0.1, metadata={"help": "Adam weight decay."})

    budget_fields: ClassVar[tuple[str, ...]] = ("prefix_length", "num_steps", "num_timesteps")
    fast_preset: ClassVar[dict[str, Any]] = {"num_steps": 30}


def project_to_simplex(v: torch.Tensor) -> torch.Tensor:
    """Euclidean projection of each row onto the probability simplex (Duchi et al., 2008, sort-based).

    Written here because torch has no simplex projection; 8 lines of the published algorithm.
    """
    u, _ = torch.sort(v, dim=-1, descending=True)
    css = u.cumsum(-1) - 1
    k = torch.arange(1, v.shape[-1] + 1, device=v.device, dtype=v.dtype)
    rho = ((u - css / k) > 0).to(v.dtype).cumsum(-1).argmax(-1, keepdim=True)  # last index where the test holds
    theta = css.gather(-1, rho) / (rho + 1).to(v.dtype)
    return (v - theta).clamp(min=0)


class UnlearnDiffAtk(Attack):
    config_class = UnlearnDiffAtkConfig
    needs_original = True
    needs_shared_vocabulary = True

    def _attack_prompt(self, ctx: AttackContext, prompt_id: int, prompt: str, seed: int) -> dict[str, Any]:
        cfg = self.config
        pipe, judge = ctx.unlearned, ctx.judge
        tok, te, unet = pipe.tokenizer, pipe.text_encoder, family_of(pipe).denoiser(pipe)
        k = cfg.prefix_length or (5 if is_nudity(ctx.spec.target) else 3)
        check_fits(tok, k, prompt)
        cand = whole_word_token_ids(tok, ctx.exclude_words)
        table = te.get_input_embeddings().weight.detach()[cand.to(te.device)]
        x0 = generate_one(ctx.original, prompt, seed, cfg, output_type="latent").float()
        timesteps = sampling_timesteps(pipe, cfg.num_timesteps)
        gen = torch.Generator().manual_seed(int(seed))
        w = torch.randn(k, len(cand), generator=gen).softmax(-1).requires_grad_(True)
        opt = torch.optim.Adam([w], lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        evaluated, best = None, None
        steps = queries = 0
        with frozen(pipe):
            for step in range(cfg.num_steps):
                t = timesteps[torch.randint(len(timesteps), (1,), generator=gen)]
                eps = torch.randn(x0.shape, generator=gen)
                x_t = family_of(pipe).noisy(pipe.scheduler, x0[None], eps[None], t)
                hard = F.one_hot(w.argmax(-1), len(cand)).to(w.dtype)
                prefix = (hard + w - w.detach()) @ table
                cond = encode_free_tokens(tok, te, compose_token_embeddings(tok, te, [prefix, prompt])[None])
                pred = unet(x_t.to(unet.device, unet.dtype), t.to(unet.device), cond.to(unet.dtype)).sample
                target = ctx.family.target(pipe.scheduler, x0[None], eps[None], t)  # ε, or v for v-prediction
                loss = F.mse_loss(pred.float(), target.to(pred.device))
                opt.zero_grad()
                loss.backward()
                opt.step()
                with torch.no_grad():
                    w.copy_(project_to_simplex(w))
                steps = step + 1
                ids = cand[w.argmax(-1)].tolist()
                if ids == evaluated:
                    continue
                evaluated = ids
                text = f"{tokens_to_text(tok, ids)} {prompt}"
                image = generate_one(pipe, text, seed, cfg)
                score = float(judge.score([image])[0])
                queries += 1
                if best is None or score > best["score"]:  # report the prefix that came closest
                    best = {"image": image, "score": score, "adversarial_prompt": text}
                if score >= judge.threshold:
                    break
        return {**best, "queries": queries, "steps": steps, "extra": {"prefix_length": k}}


register_attack("unlearndiffatk", UnlearnDiffAtk)
