"""Continuous soft-prompt attacks: k free token embeddings before a prompt, optimised against a differentiable
objective of the text encoder's states. The inner attack of adversarial unlearning (AdvUnlearn's "prefix_k" word
embedding attack; Receler's adversarial soft prompts), kept here beside the evaluation attacks so there is one
implementation of "prefix tokens + prompt -> encoder states -> loss".
"""

from __future__ import annotations

from typing import Callable

import torch

from ..text import compose_token_embeddings, encode_free_tokens, whole_word_token_ids


def random_vocabulary_embeddings(tokenizer, text_encoder, k: int, generator: torch.Generator) -> torch.Tensor:
    """``(k, hidden)`` embeddings of k vocabulary tokens drawn uniformly (AdvUnlearn's ``attack_init='random'``:
    ``torch.randint(0, len(tokenizer))``; here whole-word tokens only, so the mini world's closed vocabulary works)."""
    ids = whole_word_token_ids(tokenizer)
    table = text_encoder.get_input_embeddings().weight.detach()
    return table[ids[torch.randint(len(ids), (k,), generator=generator)].to(table.device)].clone()


def prefixed_states(tokenizer, text_encoder, prefix: torch.Tensor, prompt: str) -> torch.Tensor:
    """Encoder states ``(1, L, hidden)`` of ``[BOS, prefix..., prompt tokens, EOS, pad]`` (differentiable in
    ``prefix`` and in the text encoder's weights)."""
    return encode_free_tokens(tokenizer, text_encoder, compose_token_embeddings(tokenizer, text_encoder,
                                                                                [prefix, prompt])[None])


def soft_prefix_attack(tokenizer, text_encoder, prompt: str, objective: Callable[[torch.Tensor, int], torch.Tensor],
                       init: torch.Tensor, num_steps: int, learning_rate: float, method: str = "pgd",
                       accumulate_gradients: bool = False, return_before_last_update: bool = False
                       ) -> tuple[torch.Tensor, list[float]]:
    """Minimise ``objective(states, step)`` over the prefix embeddings, starting from ``init`` ``(k, hidden)``, with
    Adam (``method='pgd'``, AdvUnlearn's default) or Adam on the gradient's sign (``'fast_at'``). The text encoder
    is not updated. Returns the optimised prefix (detached) and the loss of every step.

    ``accumulate_gradients`` and ``return_before_last_update`` reproduce the authors' AdvUnlearn attack as it runs
    (``train-scripts/utils/attack_util.py`` at 9d23124): its gradient is never zeroed, so step i steps on the sum of
    the gradients of steps 0..i, and it returns the prefix from before its last update."""
    if method not in ("pgd", "fast_at"):
        raise ValueError(f"`attack_method` must be 'pgd' or 'fast_at', got {method!r}.")
    prefix = init.detach().clone().float().requires_grad_(True)
    opt = torch.optim.Adam([prefix], lr=learning_rate)
    losses, summed, before = [], None, prefix.detach().clone()
    for step in range(num_steps):
        opt.zero_grad(set_to_none=True)
        loss = objective(prefixed_states(tokenizer, text_encoder, prefix, prompt), step)
        loss.backward()
        if accumulate_gradients:
            summed = prefix.grad.detach().clone() if summed is None else summed + prefix.grad
            prefix.grad = summed.clone()
        if method == "fast_at":
            prefix.grad.sign_()
        before = prefix.detach().clone()
        opt.step()
        losses.append(float(loss.detach()))
    text_encoder.zero_grad(set_to_none=True)  # the attack's backward passes leave no gradient on the encoder
    return (before if return_before_last_update else prefix.detach()), losses
