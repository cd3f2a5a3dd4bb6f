"""Text-side helpers shared by methods, attacks and metrics: vocabulary checks and prompt encoding."""

import re
import weakref

import torch

_OPEN_VOCABULARY: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # tokenizer -> (its size, the answer)


def _is_open_vocabulary(tokenizer) -> bool:
    """True for byte-level tokenizers (CLIP's) that can spell any text; the mini world's is closed. Remembered per
    tokenizer (and its size, which added tokens change): the scan of CLIP's 49,408 entries costs ~0.1 s a call."""
    size = len(tokenizer)
    try:
        known = _OPEN_VOCABULARY.get(tokenizer)
    except TypeError:  # not weak-referenceable: no memory
        known = None
    if known is not None and known[0] == size:
        return known[1]
    vocab = tokenizer.get_vocab()
    answer = sum(1 for tok in vocab if len(tok.replace("</w>", "")) == 1) >= 200
    try:
        _OPEN_VOCABULARY[tokenizer] = (size, answer)
    except TypeError:
        pass
    return answer


def check_token_length(tokenizer, text: str, name: str = "concept") -> None:
    """Refuse a text the text encoder would cut at its ``model_max_length`` (77 for CLIP): the cut text would be
    erased, edited or scored instead, without a word said."""
    limit = getattr(tokenizer, "model_max_length", None)
    if not isinstance(limit, int) or limit > 100_000:
        return
    n = len(tokenizer(text, add_special_tokens=True, truncation=False).input_ids)
    if n > limit:
        shown = text if len(text) <= 60 else text[:57] + "..."
        raise ValueError(f"`{name}` {shown!r} is {n} tokens; the text encoder reads at most {limit} and would cut it. "
                         f"Shorten it.")


def check_config_texts(tokenizer, config) -> None:
    """:func:`check_token_length` on the concept and prompt fields of a method config (every string or list of
    strings whose name says ``concept`` or ``prompt``), before any work."""
    from dataclasses import fields

    for f in fields(config):
        if not any(word in f.name for word in ("concept", "prompt")):
            continue
        value = getattr(config, f.name)
        for text in ([value] if isinstance(value, str) else value if isinstance(value, (list, tuple)) else []):
            if isinstance(text, str) and text.strip():
                check_token_length(tokenizer, text, f.name)


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
    # words and punctuation apart, as CLIP's pre-tokenizer splits them ("circle," is "circle" and ",")
    for word in re.findall(r"[^\W\d_]+|\d|[^\w\s]", concept):
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
    return prompt_states(tokenizer, text_encoder, prompts)


def prompt_states(tokenizer, text_encoder, prompts: list[str]) -> torch.Tensor:
    """:func:`encode_prompts` with gradients (for methods that train the text encoder)."""
    ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids.to(text_encoder.device)
    return text_encoder(ids)[0]


def last_token_index(tokenizer, prompt: str) -> int:
    """Index of the prompt's last content token (before the end-of-text token) in the padded sequence."""
    ids = tokenizer(prompt, truncation=True, max_length=tokenizer.model_max_length).input_ids
    return len(ids) - 2


def encode_free_tokens(tokenizer, text_encoder, token_embeds: torch.Tensor) -> torch.Tensor:
    """Encoder states ``(N, model_max_length, hidden)`` of prompts whose words are free token embeddings.

    Row ``i`` encodes ``[BOS, token_embeds[i, 0], ..., token_embeds[i, L-1], EOS, pad ...]``: the embeddings enter
    where the token-embedding table's output would be (a forward hook on ``get_input_embeddings()``), so positions,
    causal mask and final norm are the text encoder's own. Differentiable in ``token_embeds`` (mined embeddings,
    textual-inversion-style attacks).
    """
    n, length, dim = token_embeds.shape
    max_len = tokenizer.model_max_length
    if length > max_len - 2:
        raise ValueError(f"An embedding of {length} tokens does not fit the tokenizer's {max_len} positions (BOS and "
                         f"EOS take 2); use a length ≤ {max_len - 2}.")
    layer = text_encoder.get_input_embeddings()
    if dim != layer.embedding_dim:
        raise ValueError(f"Token embeddings have width {dim} but the text encoder's are {layer.embedding_dim} wide.")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids = torch.full((n, max_len), pad, dtype=torch.long)
    ids[:, 0] = tokenizer.bos_token_id
    ids[:, length + 1] = tokenizer.eos_token_id

    def splice(module, inputs, output):
        return torch.cat([output[:, :1], token_embeds.to(output.device, output.dtype), output[:, length + 1:]], dim=1)

    handle = layer.register_forward_hook(splice)
    try:
        return text_encoder(ids.to(layer.weight.device))[0]
    finally:
        handle.remove()


def compose_token_embeddings(tokenizer, text_encoder, pieces: list) -> torch.Tensor:
    """Token embeddings ``(L, hidden)`` of a prompt made of text pieces and free embeddings, in order.

    Each piece is a string (tokenized without BOS/EOS and looked up in the text encoder's embedding table) or a
    tensor ``(k, hidden)`` of free token embeddings (kept differentiable). Feed the result, batched, to
    ``encode_free_tokens``: ``["a red", e]`` encodes as the prompt "a red <e>".
    """
    table = text_encoder.get_input_embeddings()
    parts = []
    for piece in pieces:
        if isinstance(piece, str):
            if not piece.strip():
                continue
            ids = tokenizer(piece, add_special_tokens=False).input_ids
            parts.append(table(torch.tensor(ids, device=table.weight.device)))
        else:
            parts.append(piece.to(table.weight.device, table.weight.dtype).reshape(-1, table.embedding_dim))
    if not parts:
        raise ValueError("The prompt has no tokens; pass at least one non-empty piece.")
    return torch.cat(parts)


def whole_word_token_ids(tokenizer, exclude_words: list[str] = ()) -> torch.Tensor:
    """Ids of the vocabulary's alphabetic whole-word tokens (``"word</w>"`` entries), minus special tokens and
    ``exclude_words``: the tokens a discrete prompt search may use, each decoding to a word that re-tokenizes to
    itself, so an adversarial prompt found as ids is reproducible as text."""
    banned = {w.lower() for phrase in exclude_words for w in phrase.split()}
    special = set(tokenizer.all_special_ids)
    ids = [i for tok, i in tokenizer.get_vocab().items()
           if tok.endswith("</w>") and tok[:-4].isalpha() and i not in special and tok[:-4].lower() not in banned]
    if not ids:
        raise ValueError("The tokenizer has no whole-word tokens left to search over; exclude fewer words.")
    return torch.tensor(sorted(ids))
