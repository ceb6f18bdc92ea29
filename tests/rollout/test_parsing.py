"""Parser fuzzing against Search-R1's own regex (the reference implementation)."""
import re

from hypothesis import given, settings, strategies as st

from searchr1_jax.rollout.parsing import INVALID, Action, cut_after_action, parse_action

SEARCH_R1_PATTERN = r"<(search|answer)>(.*?)</\1>"


def reference_parse(text: str) -> Action:
    """Verbatim logic of Search-R1's ``postprocess_predictions``."""
    match = re.search(SEARCH_R1_PATTERN, text, re.DOTALL)
    return Action(match.group(1), match.group(2).strip()) if match else INVALID


def reference_cut(resp: str) -> str:
    """Verbatim logic of Search-R1's ``_postprocess_responses``."""
    return (resp.split("</search>")[0] + "</search>" if "</search>" in resp
            else resp.split("</answer>")[0] + "</answer>" if "</answer>" in resp else resp)


FRAGMENTS = ["<search>", "</search>", "<answer>", "</answer>", "<search", "search>", "</",
             "<", ">", "<think>", "</think>", "<information>", " ", "\n", "\t", "Paris", "é",
             "北京", "🙂", "<Search>", "< search>", "</answer >", "<answer><search>", "\u00a0"]
texts = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=8)),
                 max_size=30).map("".join)


@settings(max_examples=400, deadline=None)
@given(texts)
def test_parse_matches_search_r1_regex(text):
    assert parse_action(text) == reference_parse(text)


@settings(max_examples=200, deadline=None)
@given(texts)
def test_cut_matches_search_r1(text):
    assert cut_after_action(text) == reference_cut(text)


@settings(max_examples=50, deadline=None)
@given(st.text(min_size=1, max_size=50), st.sampled_from(["search", "answer"]),
       st.integers(0, 3))
def test_long_and_repeated_tags(body, tag, junk):
    long_body = body * (10_000 // len(body) + 1)
    text = "<search>" * junk + f"<{tag}>{long_body}</{tag}>" + f"<{tag}>second</{tag}>"
    assert parse_action(text) == reference_parse(text)


def test_hand_cases():
    assert parse_action("<think>x</think><search> who is  </search>") == Action("search", "who is")
    assert parse_action("<answer> Beijing </answer><search>q</search>") == Action(
        "answer", "Beijing")
    assert parse_action("<search>a<answer>b</answer>") == Action("answer", "b")
    assert parse_action("<search>a</answer>") == INVALID                # unclosed
    assert parse_action("<search></search>") == Action("search", "")    # empty query
    assert parse_action("<search><search>x</search>") == Action("search", "<search>x")  # nested
    assert parse_action("query</search>") == INVALID                    # opened in a past turn
    assert parse_action("<search>\n多 行\n</search>") == Action("search", "多 行")
    assert parse_action("") == INVALID
    assert cut_after_action("<answer>a</answer> then <search>b</search>!!") == \
        "<answer>a</answer> then <search>b</search>"
