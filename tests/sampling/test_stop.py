"""Stop strings on token ids vs the decoded text (reference: ``tokenizer.decode``), incl. split tags."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings, strategies as st

from searchr1_jax import sampling
from searchr1_jax.models import KVCache
from searchr1_jax.sampling.stop import StopTable, kmp_byte_automaton, step_stop_state

STOPS = ["</search>", "</answer>"]
PIECES = ["</", "<", "/", "search", "sea", "rch", "answer", "ans", "wer", ">", ">\n", " ", "\n",
          "</search>", "</answer>", " </", "x", "Paris", "<search>", "</sear", "ch>", "<<", "//",
          "é", "猫", "<|im_end|>", "answer>", "</ans", "w", "er>"]


@pytest.fixture(scope="module")
def tok():
    from searchr1_jax.models import gguf_io
    from searchr1_jax.models.loader import resolve_model

    return gguf_io.load_gguf_tokenizer(resolve_model("smollm2-135m-instruct").path)


@pytest.fixture(scope="module")
def table(tok):
    return StopTable.build(tok, STOPS)


def text_of(tok, ids) -> str:
    return tok.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)


def reference_stop_index(tok, ids) -> int | None:
    """First k such that a stop string occurs in decode(ids[:k+1]); None if never."""
    for k in range(len(ids)):
        if any(s in text_of(tok, ids[:k + 1]) for s in STOPS):
            return k
    return None


def table_stop_index(table, ids) -> int | None:
    state = jnp.zeros((1, table.num_strings), jnp.int32)
    nxt, match = jnp.asarray(table.next_state), jnp.asarray(table.match_state)
    for k, t in enumerate(ids):
        state, hit = step_stop_state(nxt, match, state, jnp.asarray([t]))
        if bool(hit[0]):
            return k
    return None


def test_kmp_automaton_on_overlapping_prefixes():
    pattern = b"abab"
    delta = kmp_byte_automaton(pattern)
    state = 0
    for i, c in enumerate(b"aabababx"):
        state = delta[state, c]
        if i == 5:  # "aababa" ends with "aba": matched once at i=4 (state 4 absorbing)
            assert state == 4
    assert state == 4


def test_token_bytes_reassemble_decoded_text(tok):
    """Concatenated token bytes == transformers' decode, on random and tag-heavy sequences."""
    tb = sampling.token_byte_strings(tok)
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, len(tok), 40).tolist() for _ in range(20)]
    seqs += [tok("a <search> b </search> é 猫 </answer>\n", add_special_tokens=False)["input_ids"]]
    for ids in seqs:
        ours = b"".join(tb[i] for i in ids).decode("utf-8", errors="replace")
        assert ours == text_of(tok, ids)


@pytest.mark.parametrize("text", ["x</search>", " </answer> more", "</sear" "ch>",
                                  "<search> q </search>", "a</ans", "answer>", "</answer"])
def test_stop_index_matches_text_split_per_char(tok, table, text):
    # Worst split: every character its own token (tags spread over many tokens).
    ids = [i for ch in text for i in tok(ch, add_special_tokens=False)["input_ids"]]
    assert table_stop_index(table, ids) == reference_stop_index(tok, ids)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(PIECES), min_size=1, max_size=12))
def test_stop_index_matches_decoded_text(tok, table, pieces):
    ids = [i for p in pieces for i in tok(p, add_special_tokens=False)["input_ids"]]
    assert table_stop_index(table, ids) == reference_stop_index(tok, ids)


@pytest.fixture(scope="module")
def tag_char_tokens(tok) -> list[int]:
    """Tokens spelled only with tag characters (and space)."""
    tb = sampling.token_byte_strings(tok)
    return [i for i, b in enumerate(tb) if b and set(b) <= set(b"</searchnw> ")]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 48), min_size=1, max_size=40), st.integers(0, 2**31 - 1))
def test_stop_index_on_random_tag_tokens(tok, table, tag_char_tokens, picks, seed):
    """Random sequences over the tokens spelled with tag characters only."""
    rng = np.random.default_rng(seed)
    pool = tag_char_tokens
    assert len(pool) > 50
    ids = [pool[(p * 7919 + int(rng.integers(0, len(pool)))) % len(pool)] for p in picks]
    assert table_stop_index(table, ids) == reference_stop_index(tok, ids)


class ScriptedLM(nnx.Module):
    """Emits ``script[b, i]`` at its i-th decode step (one-hot logits); honours the cache rules."""

    def __init__(self, script: np.ndarray, start_pos: np.ndarray, vocab: int):
        self.script = nnx.Variable(jnp.asarray(script, jnp.int32))
        self.start = nnx.Variable(jnp.asarray(start_pos, jnp.int32))
        self.vocab = vocab

    def __call__(self, tokens, positions, token_mask=None, cache=None, advance=None,
                 window=None):
        step = jnp.clip(positions[:, 0] - self.start[...], 0, self.script.shape[1] - 1)
        nxt = jnp.take_along_axis(self.script[...], step[:, None], axis=1)
        logits = 30.0 * jax.nn.one_hot(nxt, self.vocab)
        slots = cache.chunk_slots(tokens.shape[1])
        cache = cache.write_meta(slots, positions, token_mask).advanced(tokens.shape[1], advance)
        return logits, cache


def test_generate_stops_per_row_on_split_tags(tok, table):
    texts = ["Hm. <search> capital </search> ignored",
             "ok</think> <answer> Paris </ans" "wer> tail",
             "no tag here at all, just a long long long long answer text ...",
             "short <|im_end|> then more"]
    scripts = [[i for ch in t for i in tok(ch, add_special_tokens=False)["input_ids"]]
               for t in texts[:2]]
    scripts += [tok(t, add_special_tokens=False)["input_ids"] for t in texts[2:]]
    n = 64
    script = np.zeros((4, n), np.int32)
    for r, s in enumerate(scripts):
        s = (s + [tok.convert_tokens_to_ids("x")] * n)[:n]
        script[r] = s
    start = np.array([3, 5, 0, 9])
    model = ScriptedLM(script, start, len(tok))
    cache = KVCache(k=(jnp.zeros((4, 1, 80, 2)),), v=(jnp.zeros((4, 1, 80, 2)),),
                    pos=jnp.zeros((4, 80), jnp.int32), valid=jnp.zeros((4, 80), bool),
                    end=jnp.asarray(start, jnp.int32))
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    out = sampling.generate(model, cache, jnp.zeros(4, jnp.int32), jnp.asarray(start),
                            jax.random.key(0), max_new_tokens=n, temperature=0.0,
                            eos_ids=[eos], stop_sequences=table)
    lengths, reasons = np.asarray(out.lengths), np.asarray(out.stop_reason)
    for r in range(4):
        k = reference_stop_index(tok, script[r].tolist())
        eos_at = script[r].tolist().index(eos) if eos in script[r] else None
        if eos_at is not None and (k is None or eos_at <= k):
            assert (lengths[r], reasons[r]) == (eos_at + 1, sampling.STOP_EOS), r
        elif k is not None:
            assert (lengths[r], reasons[r]) == (k + 1, sampling.STOP_SEQUENCE), r
        else:
            assert (lengths[r], reasons[r]) == (n, sampling.STOP_BUDGET), r
        np.testing.assert_array_equal(np.asarray(out.tokens)[r, :lengths[r]],
                                      script[r, :lengths[r]])
    assert reasons.tolist() == [2, 2, 0, 1]
    text0 = text_of(tok, script[0, :lengths[0]].tolist())
    assert text0.endswith("</search>")
    assert np.asarray(out.cache.end).tolist() == (start + lengths).tolist()


def test_strings_need_a_tokenizer(table):
    model = ScriptedLM(np.zeros((1, 2)), np.zeros(1), 10)
    cache = KVCache(k=(jnp.zeros((1, 1, 8, 2)),), v=(jnp.zeros((1, 1, 8, 2)),),
                    pos=jnp.zeros((1, 8), jnp.int32), valid=jnp.zeros((1, 8), bool),
                    end=jnp.zeros(1, jnp.int32))
    with pytest.raises(ValueError, match="tokenizer="):
        sampling.generate(model, cache, jnp.zeros(1, jnp.int32), jnp.zeros(1, jnp.int32),
                          jax.random.key(0), max_new_tokens=2, stop_sequences=["</answer>"])
