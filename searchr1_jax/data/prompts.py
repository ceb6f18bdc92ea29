"""Prompt templates: Search-R1's agent prompt (byte for byte) and the evaluation baselines.

The Search-R1 user turn (``scripts/data_process/nq_search.py``, kept verbatim, typos included):
``SEARCH_R1_TEMPLATE.format(question=q)`` where ``q`` is the stripped question with ``?``
appended when it does not already end with one. Style ``auto`` (the default) is Search-R1's rule
(``verl/utils/dataset/rl_dataset.py``, ``RLHFDataset.__getitem__``): the tokenizer's chat
template whenever it has one (one user message, ``add_generation_prompt=True``), base models
included (Qwen2.5 base tokenizers have one: the published base-model traces show its system
prompt), else the raw text. A Search-R1 parquet's own ``prompt`` messages are rendered the same
way (``example_prompt``; raw: the first message's content, as Search-R1 does).
"""
from __future__ import annotations

from typing import Any, Sequence

SEARCH_R1_TEMPLATE = (
    "Answer the given question. You must conduct reasoning inside <think> and </think> first "
    "every time you get new information. After reasoning, if you find you lack some knowledge, "
    "you can call a search engine by <search> query </search> and it will return the top "
    "searched results between <information> and </information>. You can search as many times "
    "as your want. If you find no further external knowledge needed, you can directly provide "
    "the answer inside <answer> and </answer>, without detailed illustrations. For example, "
    "<answer> Beijing </answer>. Question: {question}\n")

# Baselines of the paper's Table 2, all asking for the answer inside <answer> tags so that one
# extractor scores every method.
DIRECT_TEMPLATE = (
    "Answer the given question directly, without any explanation. Provide the answer inside "
    "<answer> and </answer>. For example, <answer> Beijing </answer>. Question: {question}\n")
COT_TEMPLATE = (
    "Answer the given question. Reason step by step inside <think> and </think> first, then "
    "provide the answer inside <answer> and </answer>, without detailed illustrations. For "
    "example, <answer> Beijing </answer>. Question: {question}\n")
RAG_TEMPLATE = (
    "Answer the given question using the retrieved documents below. Provide the answer inside "
    "<answer> and </answer>, without detailed illustrations. For example, <answer> Beijing "
    "</answer>.\n\n<information>{passages}</information>\n\nQuestion: {question}\n")

TEMPLATES = {"search_r1": SEARCH_R1_TEMPLATE, "direct": DIRECT_TEMPLATE, "cot": COT_TEMPLATE,
             "rag": RAG_TEMPLATE}
PROMPT_STYLES = ("auto", "chat", "raw")


def clean_question(question: str) -> str:
    """``question.strip()`` with ``?`` appended when it does not end with one (Search-R1)."""
    q = question.strip()
    if not q:
        raise ValueError("question is empty")
    return q if q.endswith("?") else q + "?"


def user_prompt(question: str, method: str = "search_r1", passages: str = "") -> str:
    """The user-turn text of ``method`` (search_r1 | direct | cot | rag) for ``question``."""
    if method not in TEMPLATES:
        raise ValueError(f"prompt method {method!r}: must be one of {sorted(TEMPLATES)}")
    if method == "rag":
        return RAG_TEMPLATE.format(question=clean_question(question), passages=passages)
    return TEMPLATES[method].format(question=clean_question(question))


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def resolve_style(tokenizer: Any, style: str) -> str:
    """``auto`` becomes ``chat`` when the tokenizer has a chat template, else ``raw``."""
    if style not in PROMPT_STYLES:
        raise ValueError(f"data.prompt_style = {style!r}: must be one of {list(PROMPT_STYLES)}")
    if style == "auto":
        return "chat" if has_chat_template(tokenizer) else "raw"
    if style == "chat" and not has_chat_template(tokenizer):
        raise ValueError("data.prompt_style = 'chat' but the tokenizer has no chat_template "
                         "(a base model? use 'raw' or 'auto')")
    return style


def render_prompt(text: str, tokenizer: Any = None, style: str = "auto") -> str:
    """Wraps a user-turn ``text`` in the chat template (``style`` chat) or returns it (raw)."""
    if tokenizer is None:
        if style == "chat":
            raise ValueError("prompt_style 'chat' needs a tokenizer")
        return text
    if resolve_style(tokenizer, style) == "raw":
        return text
    return tokenizer.apply_chat_template([{"role": "user", "content": text}],
                                         add_generation_prompt=True, tokenize=False)


def build_prompt(question: str, tokenizer: Any = None, style: str = "auto",
                 method: str = "search_r1", passages: str = "") -> str:
    """The full prompt string the model sees for ``question``."""
    return render_prompt(user_prompt(question, method, passages), tokenizer, style)


def render_messages(messages: Sequence[tuple[str, str]], tokenizer: Any = None,
                    style: str = "auto") -> str:
    """Chat ``messages`` (``(role, content)`` pairs) as the model sees them: the chat template
    (style chat/auto with a template) or the first message's content (raw: Search-R1's
    ``chat[0]['content']``)."""
    if not messages:
        raise ValueError("render_messages: no messages")
    if tokenizer is None or resolve_style(tokenizer, style) == "raw":
        if style == "chat" and tokenizer is None:
            raise ValueError("prompt_style 'chat' needs a tokenizer")
        return messages[0][1]
    return tokenizer.apply_chat_template([{"role": r, "content": c} for r, c in messages],
                                         add_generation_prompt=True, tokenize=False)


def example_prompt(example: Any, tokenizer: Any = None, style: str = "auto",
                   use_file_prompt: bool = True) -> str:
    """The Search-R1 prompt of a ``QaExample``: its file's own ``prompt_messages`` when it has
    them and ``use_file_prompt`` (``data.use_file_prompt``), else ``build_prompt(question)``."""
    messages = getattr(example, "prompt_messages", ())
    if use_file_prompt and messages:
        return render_messages(messages, tokenizer, style)
    return build_prompt(example.question, tokenizer, style)


def encode_prompts(tokenizer: Any, texts: list[str], style: str = "auto") -> list[list[int]]:
    """Token ids of full prompt strings made by ``build_prompt`` with the same ``style``.

    Chat-templated text already spells its special tokens (``add_special_tokens=False``, as
    veRL's dataset does); raw text gets the tokenizer's own (e.g. Llama's BOS; none for Qwen).
    """
    add_special = resolve_style(tokenizer, style) == "raw"
    encoded = tokenizer(list(texts), add_special_tokens=add_special)["input_ids"]
    return [list(ids) for ids in encoded]
