"""Text-side helpers shared by methods, attacks and metrics: vocabulary checks and prompt encoding."""

import torch


def _is_open_vocabulary(tokenizer) -> bool:
    """True for byte-level tokenizers (CLIP's) that can spell any text; the mini world's is closed."""
    vocab = tokenizer.get_vocab()
    return sum(1 for tok in vocab if len(tok.replace("</w>", "")) == 1) >= 200


def check_concept_in_vocab(tokenizer, concept: str) -> None:
    """Raise ``ValueError`` if ``concept`` has a word the tokenizer cannot represent.

    A word is unrepresentable when it encodes to the unknown token, or, in a closed vocabulary (one that cannot
    spell arbitrary text, like the mini world's), when it is not one vocabulary entry: its pieces were never
    seen by the text encoder, so editing or evaluating them would silently do nothing useful.
    """
    if not isinstance(concept, str) or not concept.strip():
        raise ValueError("`concept` is empty; pass the words to unlearn, e.g. --concept 'circle'.")
    open_vocab = _is_open_vocabulary(tokenizer)
    missing = []
    for word in concept.split():
        ids = tokenizer(word, add_special_tokens=False).input_ids
        if not ids or tokenizer.unk_token_id in ids and word != tokenizer.unk_token or (not open_vocab and len(ids) > 1):
            missing.append(word)
    if missing:
        raise ValueError(
            f"`concept` {concept!r} has word(s) {missing} absent from the tokenizer vocabulary, so the model cannot "
            f"have learnt them; use words the model knows (for the mini world: igmu_hf.mini.domain.vocabulary()).")


@torch.no_grad()
def encode_prompts(tokenizer, text_encoder, prompts: list[str]) -> torch.Tensor:
    """Per-token text-encoder states ``(N, model_max_length, hidden)`` as the pipeline computes them."""
    ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids.to(text_encoder.device)
    return text_encoder(ids)[0]


def last_token_index(tokenizer, prompt: str) -> int:
    """Index of the prompt's last content token (before the end-of-text token) in the padded sequence."""
    ids = tokenizer(prompt, truncation=True, max_length=tokenizer.model_max_length).input_ids
    return len(ids) - 2
