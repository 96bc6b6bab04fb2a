"""A forgiving parser for the rationale JSON the LLM writes back (Pan et al.): the first answer object
in the text, repaired when it is JSON-ish or cut off, checked against the class names and the
neighbours its prompt listed. Never raises: what went wrong is returned as `problems`.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Collection, Sequence

from gkd.llm.prompts import MAX_KEY_NEIGHBORS, MAX_KEYWORDS, MAX_REASON_CHARS, one_line

_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'', re.S)
_BARE_KEY = re.compile(r"([{,]\s*)([A-Za-z_][\w-]*)(\s*:)")
_PY_WORDS = {"true": "True", "false": "False", "null": "None"}
_NAME_STRIP = " \t\r\n\"'`.,;:!?()[]{}<>*_"
_MAX_CANDIDATES = 16  # '{' positions tried
_MAX_SCAN = 8000  # characters scanned per candidate
# answer keys after _norm_key (lower case, letters only), aliases included
_LABEL_KEYS = ("label", "class", "category")
_KEYWORD_KEYS = ("keywords", "keyword")
_NEIGHBOR_KEYS = ("keyneighbors", "keyneighbours", "keyneighbor", "keyneighbour", "neighbors", "neighbours")
_REASON_KEYS = ("reason", "rationale", "explanation")
_ANSWER_KEYS = {*_LABEL_KEYS, *_KEYWORD_KEYS, *_NEIGHBOR_KEYS, *_REASON_KEYS}


def _balanced(text: str, start: int) -> tuple[str, bool, list[int]]:
    """(object text from text[start] == '{', closed by us?, top-level comma offsets)."""
    stack, quote, esc, commas = [], None, False, []
    end = min(len(text), start + _MAX_SCAN)
    for i in range(start, end):
        c = text[i]
        if quote:
            if esc:
                esc = False
            elif c == "\\":
                esc = True
            elif c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif c in "{[":
            stack.append("}" if c == "{" else "]")
        elif c in "}]":
            if not stack or stack[-1] != c:
                return text[start : i + 1], False, commas  # mismatched: let the parsers reject it
            stack.pop()
            if not stack:
                return text[start : i + 1], False, commas
        elif c == "," and len(stack) == 1:
            commas.append(i - start)
    body = text[start:end] + (quote or "")  # cut off (max_new_tokens): close what is open
    return body + "".join(reversed(stack)), True, commas


def _pythonish(s: str) -> str:
    """JSON-ish -> Python literal: true/false/null -> True/False/None, bare keys quoted (outside strings)."""
    out, last = [], 0
    for m in _STRING.finditer(s):
        out.append(_fix_code(s[last : m.start()]))
        out.append(m.group())
        last = m.end()
    out.append(_fix_code(s[last:]))
    return "".join(out)


def _fix_code(seg: str) -> str:
    seg = re.sub(r"\b(true|false|null)\b", lambda m: _PY_WORDS[m.group(1)], seg)
    return _BARE_KEY.sub(lambda m: f'{m.group(1)}"{m.group(2)}"{m.group(3)}', seg)


def _loads(s: str):
    """(object or None, lenient?): strict JSON, then trailing commas removed, then a Python literal."""
    try:
        return json.loads(s), False
    except Exception:
        pass
    for attempt in (lambda: json.loads(re.sub(r",\s*([}\]])", r"\1", s)), lambda: ast.literal_eval(_pythonish(s))):
        try:
            return attempt(), True
        except Exception:  # SyntaxError, ValueError, RecursionError, MemoryError, ...
            continue
    return None, True


def _first_object(text: str) -> tuple[dict | None, bool]:
    """First dict in `text` with a 'label' key (else the first with any answer key), and whether it was repaired."""
    first = None
    for n, m in enumerate(re.finditer(r"\{", text)):
        if n >= _MAX_CANDIDATES:
            break
        body, cut, commas = _balanced(text, m.start())
        obj, lenient = _loads(body)
        if not isinstance(obj, dict) and cut:  # cut mid-member: drop the partial member
            for c in reversed(commas[-4:]):
                obj, _ = _loads(body[:c] + "}")
                if isinstance(obj, dict):
                    break
        keys = {_norm_key(k) for k in obj} if isinstance(obj, dict) else set()
        if keys & set(_LABEL_KEYS):
            return obj, lenient or cut
        if first is None and keys & _ANSWER_KEYS:
            first = (obj, lenient or cut)
    return first if first else (None, False)


def _norm_key(key) -> str:
    return re.sub(r"[^a-z]", "", str(key).lower())


def _norm_name(name) -> str:
    return " ".join(str(name).strip(_NAME_STRIP).lower().split())


def _pick(fields: dict, *names: str):
    for n in names:
        if n in fields:
            return fields[n]
    return None


def _parse_label(value, class_names: Sequence[str]) -> int:
    if isinstance(value, (list, tuple)) and len(value) == 1:
        value = value[0]
    if value is None or isinstance(value, (bool, dict, list, tuple, float)):
        return -1
    want = _norm_name(value)
    for i, name in enumerate(class_names):
        if _norm_name(name) == want:
            return i
    return -1


def _parse_keywords(value, problems: list[str]) -> list[str]:
    if isinstance(value, str):  # "a, b, c": salvage, but say so
        problems.append("bad_keywords")
        value = re.split(r"[,;]", value)
    elif not isinstance(value, (list, tuple)):
        problems.append("bad_keywords")
        return []
    out, seen = [], set()
    for item in value:
        if not isinstance(item, str) or not one_line(item):
            problems.append("bad_keywords")
            continue
        word = one_line(item)[:64]
        if word.lower() not in seen:
            seen.add(word.lower())
            out.append(word)
    if len(out) > MAX_KEYWORDS:
        problems.append("too_many_keywords")
    return out[:MAX_KEYWORDS]


def _as_id(item) -> int | None:
    if isinstance(item, bool):
        return None
    if isinstance(item, int):
        return item
    if isinstance(item, float) and item.is_integer():
        return int(item)
    if isinstance(item, str):
        nums = re.findall(r"\d+", item)
        if len(nums) == 1:
            return int(nums[0])
    return None


def _parse_neighbors(value, allowed: Collection[int], problems: list[str]) -> list[int]:
    if isinstance(value, str):
        problems.append("bad_neighbors")
        value = re.findall(r"\d+", value)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        problems.append("bad_neighbors")
        value = [value]
    elif not isinstance(value, (list, tuple)):
        problems.append("bad_neighbors")
        return []
    out = []
    for item in value:
        v = _as_id(item)
        if v is None:
            problems.append("bad_neighbors")
        elif v not in allowed:
            problems.append("unknown_neighbor")
        elif v not in out:
            out.append(v)
    if len(out) > MAX_KEY_NEIGHBORS:
        problems.append("too_many_neighbors")
    return out[:MAX_KEY_NEIGHBORS]


def parse_rationale(text: str, class_names: Sequence[str], allowed_neighbors: Collection[int]) -> tuple[dict, list[str]]:
    """Model output -> ({label, keywords, key_neighbors, reason, ok}, problems); never raises.

    label: class index or -1; keywords: <= 5 strings; key_neighbors: <= 3 ids from allowed_neighbors;
    reason: <= 300 chars; ok: a JSON object was found and named a valid class. problems (unique, in
    order) is drawn from: no_json, repaired_json (found only after fixing quotes, commas, literals or
    a cut-off end), bad_label, bad_keywords, too_many_keywords, bad_neighbors, unknown_neighbor,
    too_many_neighbors, bad_reason, long_reason.
    """
    result = {"label": -1, "keywords": [], "key_neighbors": [], "reason": "", "ok": False}
    problems: list[str] = []
    try:
        obj, repaired = _first_object(text if isinstance(text, str) else "")
    except Exception:  # defensive: model output must never take a worker down
        obj, repaired = None, False
    if obj is None:
        return result, ["no_json"]
    if repaired:
        problems.append("repaired_json")
    fields = {_norm_key(k): v for k, v in obj.items()}
    result["label"] = _parse_label(_pick(fields, *_LABEL_KEYS), class_names)
    if result["label"] < 0:
        problems.append("bad_label")
    result["keywords"] = _parse_keywords(_pick(fields, *_KEYWORD_KEYS), problems)
    nbrs = _pick(fields, *_NEIGHBOR_KEYS)
    result["key_neighbors"] = _parse_neighbors(nbrs, allowed_neighbors, problems)
    reason = _pick(fields, *_REASON_KEYS)
    if isinstance(reason, str):
        reason = one_line(reason)
        if len(reason) > MAX_REASON_CHARS:
            problems.append("long_reason")
            reason = reason[:MAX_REASON_CHARS]
        result["reason"] = reason
    else:
        problems.append("bad_reason")
    result["ok"] = result["label"] >= 0
    return result, list(dict.fromkeys(problems))
