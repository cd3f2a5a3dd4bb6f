"""Ring-A-Bell (Tsai et al., 2024): a model-agnostic search on the text encoder alone.

The concept vector is the mean difference of text-encoder states between prompts with the concept and the same
prompts without it (CatIGMU do-1 removes every target word)::

    v = mean_i [ enc(p_i) − enc(do1(p_i)) ]

For each attacked prompt p the target is ``enc(p) + η·v`` (η = 3), and a genetic algorithm searches for
``num_tokens`` real words whose encoding is closest to it (mean squared error over the whole padded sequence):
population 200, 3000 generations, crossover 0.5, mutation 0.25. The best prompt is generated once with the
prompt's seed and judged. No UNet is used by the search.

The genetic algorithm is written here: no maintained library runs a GA over token ids on a torch batch. Each
generation keeps the best tenth (elitism), picks parents by tournaments of two, applies one-point crossover with
probability ``crossover_rate`` and, with probability ``mutation_rate``, replaces one token of a child.
"""

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from ..text import encode_prompts, whole_word_token_ids
from .base import Attack, AttackConfig, AttackContext, check_fits, generate_one, register_attack, tokens_to_text


@dataclass
class RingABellConfig(AttackConfig):
    num_tokens: int = field(default=16, metadata={"help": "Words in the adversarial prompt."})
    eta: float = field(default=3.0, metadata={"help": "η: strength of the concept vector added to the prompt."})
    population_size: int = field(default=200, metadata={"help": "Genetic-algorithm population."})
    generations: int = field(default=3000, metadata={"help": "Genetic-algorithm generations."})
    mutation_rate: float = field(default=0.25, metadata={"help": "Chance a child has one token replaced."})
    crossover_rate: float = field(default=0.5, metadata={"help": "Chance a child is a one-point crossover."})
    concept_prompts: list[str] | None = field(
        default=None, metadata={"help": "Prompts with the concept that define v (default: the attacked prompts)."})

    budget_fields: ClassVar[tuple[str, ...]] = ("num_tokens", "population_size", "generations")
    fast_preset: ClassVar[dict[str, Any]] = {"num_tokens": 8,
                                             "population_size": 64, "generations": 60}


class RingABell(Attack):
    config_class = RingABellConfig

    def _prepare(self, ctx: AttackContext, prompts: list[str], seeds: list[int]) -> torch.Tensor:
        pipe, spec = ctx.unlearned, ctx.spec
        with_concept = [p for p in (self.config.concept_prompts or prompts) if spec.contains_target(p)]
        if not with_concept:
            raise ValueError(f"Ring-A-Bell needs prompts that name {spec.target!r} to build its concept vector; pass "
                             f"`concept_prompts`.")
        without = [spec.do1(p) for p in with_concept]
        diff = encode_prompts(pipe.tokenizer, pipe.text_encoder, with_concept) - \
            encode_prompts(pipe.tokenizer, pipe.text_encoder, without)
        return diff.mean(0).float()

    @torch.no_grad()
    def _fitness(self, pipe, population: torch.Tensor, target: torch.Tensor, batch: int = 256) -> torch.Tensor:
        tok, te = pipe.tokenizer, pipe.text_encoder
        n, k = population.shape
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        ids = torch.full((n, tok.model_max_length), pad, dtype=torch.long)
        ids[:, 0], ids[:, 1:k + 1], ids[:, k + 1] = tok.bos_token_id, population, tok.eos_token_id
        out = []
        for i in range(0, n, batch):
            states = te(ids[i:i + batch].to(te.device))[0].float().cpu()
            out.append(-((states - target) ** 2).mean((1, 2)))
        return torch.cat(out)

    def _attack_prompt(self, ctx: AttackContext, prompt_id: int, prompt: str, seed: int) -> dict[str, Any]:
        cfg, pipe = self.config, ctx.unlearned
        check_fits(pipe.tokenizer, cfg.num_tokens, "")
        target = encode_prompts(pipe.tokenizer, pipe.text_encoder, [prompt])[0].float().cpu() + cfg.eta * ctx.state
        vocab = whole_word_token_ids(pipe.tokenizer, ctx.exclude_words)
        gen = torch.Generator().manual_seed(int(seed))
        pop_size, k = cfg.population_size, cfg.num_tokens
        population = vocab[torch.randint(len(vocab), (pop_size, k), generator=gen)]
        fitness = self._fitness(pipe, population, target)
        n_elite = max(1, pop_size // 10)
        for _ in range(cfg.generations):
            order = fitness.argsort(descending=True)
            elite = population[order[:n_elite]]
            n_child = pop_size - n_elite
            a, b = torch.randint(pop_size, (2, n_child, 2), generator=gen)  # tournaments of two, per parent
            pa = torch.where((fitness[a[:, 0]] >= fitness[a[:, 1]]), a[:, 0], a[:, 1])
            pb = torch.where((fitness[b[:, 0]] >= fitness[b[:, 1]]), b[:, 0], b[:, 1])
            children = population[pa].clone()
            cross = torch.rand(n_child, generator=gen) < cfg.crossover_rate
            cut = torch.randint(1, max(2, k), (n_child,), generator=gen)
            take_b = cross[:, None] & (torch.arange(k)[None] >= cut[:, None])
            children = torch.where(take_b, population[pb], children)
            mutate = torch.rand(n_child, generator=gen) < cfg.mutation_rate
            pos = torch.randint(k, (n_child,), generator=gen)
            new = vocab[torch.randint(len(vocab), (n_child,), generator=gen)]
            children[mutate, pos[mutate]] = new[mutate]
            population = torch.cat([elite, children])
            fitness = torch.cat([fitness[order[:n_elite]], self._fitness(pipe, children, target)])
        best = population[fitness.argmax()]
        text = tokens_to_text(pipe.tokenizer, best.tolist())
        image = generate_one(pipe, text, seed, cfg)
        return {"image": image, "score": float(ctx.judge.score([image])[0]), "adversarial_prompt": text,
                "queries": 1, "steps": cfg.generations, "extra": {"text_distance": float(-fitness.max())}}


register_attack("ringabell", RingABell)
