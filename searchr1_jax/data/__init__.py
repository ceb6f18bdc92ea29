"""QA data: records and readers, the embedded mini suite, TFDS builders, prompts, batching.

TFDS builders live in ``searchr1_jax.data.builders`` (imported lazily by ``load_examples``).
"""
from searchr1_jax.data.batching import (BatchIterator, IteratorState, epoch_order,
                                        padded_batches, repeat_for_groups)
from searchr1_jax.data.loading import load_examples, load_mini_corpus
from searchr1_jax.data.mini import (MULTI_HOP, SINGLE_HOP, TEST_SETS, TRAIN_SETS, mini_suite,
                                    union_corpus, write_corpus_jsonl)
from searchr1_jax.data.prompts import (SEARCH_R1_TEMPLATE, build_prompt, clean_question,
                                       render_prompt, resolve_style, user_prompt)
from searchr1_jax.data.records import DataError, QaExample, read_qa_file

__all__ = [
    "BatchIterator", "IteratorState", "epoch_order", "padded_batches", "repeat_for_groups",
    "load_examples", "load_mini_corpus", "MULTI_HOP", "SINGLE_HOP", "TEST_SETS", "TRAIN_SETS",
    "mini_suite", "union_corpus", "write_corpus_jsonl", "SEARCH_R1_TEMPLATE", "build_prompt",
    "clean_question", "render_prompt", "resolve_style", "user_prompt", "DataError", "QaExample",
    "read_qa_file",
]
