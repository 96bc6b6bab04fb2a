"""The rationale parser: clean, fenced, repaired and cut-off JSON, wrong labels, unknown neighbours, bad
keywords, long reasons, and garbage that never raises."""

import pytest

from gkd.llm.parse import parse_rationale

NAMES = ["Kernel", "Games", "Text Editors"]


def parse(text, allowed=(5, 7, 9)):
    return parse_rationale(text, NAMES, set(allowed))


def test_parse_clean_json():
    out, problems = parse('{"label": "Games", "keywords": ["chess", "board"], "key_neighbors": [5, 7], '
                          '"reason": "It is a chess game."}')
    assert out == {"label": 1, "keywords": ["chess", "board"], "key_neighbors": [5, 7],
                   "reason": "It is a chess game.", "ok": True}
    assert problems == []


def test_parse_fenced_json_in_prose():
    text = 'Sure! Here is my answer:\n```json\n{"label": "text editors.", "keywords": [], "key_neighbors": [9],\n' \
           '"reason": "An editor."}\n```\nHope it helps {really}.'
    out, problems = parse(text)
    assert out["label"] == 2 and out["key_neighbors"] == [9] and out["ok"] and problems == []


def test_parse_single_quotes_trailing_commas_and_cut_off():
    out, problems = parse("{'label': 'KERNEL', 'keywords': ['irq', 'smp',], 'key_neighbors': [5,], "
                          "'reason': 'core OS part',}")
    assert out["label"] == 0 and out["keywords"] == ["irq", "smp"] and out["key_neighbors"] == [5] and out["ok"]
    assert problems == ["repaired_json"]
    out, problems = parse('{"label": "Games", "keywords": ["chess"], "reason": "a game for two play')  # max_new_tokens
    assert out["ok"] and out["reason"] == "a game for two play" and "repaired_json" in problems
    out, problems = parse('{"label": "Games", "keywords": ["chess"], "key_neigh')
    assert out["ok"] and out["keywords"] == ["chess"]


def test_parse_wrong_label():
    out, problems = parse('{"label": "Cooking", "keywords": ["x"], "key_neighbors": [], "reason": "r"}')
    assert out["label"] == -1 and not out["ok"] and problems == ["bad_label"]
    assert out["keywords"] == ["x"]  # the rest is still returned
    out, problems = parse('{"keywords": ["x"], "key_neighbors": [], "reason": "r"}')
    assert not out["ok"] and "bad_label" in problems


def test_parse_unknown_neighbors_dropped_and_reported():
    out, problems = parse('{"label": "Games", "keywords": [], "key_neighbors": [5, 123, "7", "[id 9]", 5], '
                          '"reason": "r"}')
    assert out["key_neighbors"] == [5, 7, 9] and out["ok"] and problems == ["unknown_neighbor"]
    out, problems = parse('{"label": "Games", "keywords": [], "key_neighbors": [1, 2, 3, 4], "reason": "r"}',
                          allowed=range(10))
    assert out["key_neighbors"] == [1, 2, 3] and problems == ["too_many_neighbors"]


def test_parse_bad_keywords():
    out, problems = parse('{"label": "Games", "keywords": "chess, board", "key_neighbors": [], "reason": "r"}')
    assert out["keywords"] == ["chess", "board"] and out["ok"] and problems == ["bad_keywords"]
    out, problems = parse('{"label": "Games", "keywords": {"a": 1}, "key_neighbors": [], "reason": "r"}')
    assert out["keywords"] == [] and problems == ["bad_keywords"]
    out, problems = parse('{"label": "Games", "keywords": ["a", 3, null, "b", "c", "d", "e", "f"], '
                          '"key_neighbors": [], "reason": "r"}')
    assert out["keywords"] == ["a", "b", "c", "d", "e"] and problems == ["bad_keywords", "too_many_keywords"]


def test_parse_long_reason_is_cut():
    out, problems = parse('{"label": "Games", "keywords": [], "key_neighbors": [], "reason": "%s"}' % ("x" * 500))
    assert len(out["reason"]) == 300 and problems == ["long_reason"]


@pytest.mark.parametrize("text", ["", "I think it is a game.", "{{{{", "}{", "```json\n```", "{'a': }", None, 42,
                                  "[1, 2, 3]", "{" * 5000, "\x00\ufffd{label: }"])
def test_parse_garbage_never_raises(text):
    out, problems = parse(text)
    assert out == {"label": -1, "keywords": [], "key_neighbors": [], "reason": "", "ok": False}
    assert problems == ["no_json"]
