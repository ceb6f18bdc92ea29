"""The RAG baseline's prompts, cut to the token budget on their passages only.

Three wiki-18 passages overflow a small ``rollout.max_prompt_length`` (the mini config's 1,024
tokens: RAG prompts of up to 2,053 tokens were seen). FlashRAG, which Search-R1's paper uses for
this baseline, cuts the middle of an over-long prompt (``PromptTemplate.truncate_prompt``: the
first and last halves of the budget are kept), which is where its documents sit. Here only the
passage block is cut, from its end (the top-ranked passages stay whole as long as they fit), so
the instructions and the question are never cut whatever their length. The count is the exact
number of tokens fed (chat template and special tokens included, ``encode_prompts``).
"""
from __future__ import annotations

from typing import Any

from searchr1_jax.data.prompts import build_prompt, encode_prompts


def prompt_tokens(tokenizer: Any, text: str, style: str) -> int:
    """Tokens the model is fed for the full prompt string ``text``."""
    return len(encode_prompts(tokenizer, [text], style)[0])


def fit_rag_prompt(question: str, passages: str, tokenizer: Any, style: str, budget: int
                   ) -> str:
    """The RAG prompt for ``question`` whose passage block is cut until the whole prompt has at
    most ``budget`` tokens (module doc). With no room for any passage the block is empty; the
    prompt may then still exceed ``budget`` (the caller scores such a row as unanswered)."""
    full = build_prompt(question, tokenizer, style, "rag", passages=passages)
    if prompt_tokens(tokenizer, full, style) <= budget:
        return full
    empty = build_prompt(question, tokenizer, style, "rag", passages="")
    room = budget - prompt_tokens(tokenizer, empty, style)
    ids = tokenizer([passages], add_special_tokens=False)["input_ids"][0]
    keep = min(room, len(ids))
    while keep > 0:
        # Re-encoding the cut text can merge tokens across the cut: re-count and cut further.
        cut = tokenizer.decode(list(ids[:keep]), skip_special_tokens=True).rstrip()
        prompt = build_prompt(question, tokenizer, style, "rag", passages=cut)
        excess = prompt_tokens(tokenizer, prompt, style) - budget
        if excess <= 0:
            return prompt
        keep -= max(1, excess)
    return empty
