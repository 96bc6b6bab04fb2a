from types import SimpleNamespace

import numpy as np
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from gkd.config import PromptConfig
from gkd.data.store import build_csr
from gkd.errors import ConfigError
from gkd.llm.prompts import NodePromptBuilder, count_tokens, sample_hops, truncate_tokens

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa kernel games fonts node text".split()
CHAT = "{% for m in messages %}<|user|>{{ m.content }}<eos>\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"


def word_tokenizer(chat: bool = False):
    vocab = {"<unk>": 0, "<pad>": 1, "<eos>": 2, "<|user|>": 3, "<|assistant|>": 4}
    for w in WORDS + [str(i) for i in range(100)]:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>", unk_token="<unk>",
                                   additional_special_tokens=["<|user|>", "<|assistant|>"])
    if chat:
        fast.chat_template = CHAT
    return fast


def graph(src, dst, n):
    indptr, indices = build_csr(np.array(src), np.array(dst), n)
    return SimpleNamespace(indptr=indptr, indices=indices)


# path 0-1-2-3-4-5, 5 is the centre of a star with leaves 6..15
PATH_STAR = graph([0, 1, 2, 3, 4] + [5] * 10, [1, 2, 3, 4, 5] + list(range(6, 16)), 16)


def rings(node, hops, per_hop=100, seed=0, g=PATH_STAR, **kw):
    return sample_hops(g.indptr, g.indices, node, hops, per_hop, np.random.default_rng(seed), **kw)


# ----------------------------------------------------------------------------- sampling


def test_rings_are_exact_bfs_distances():
    assert [set(r) for r in rings(2, 3)] == [{1, 3}, {0, 4}, {5}]
    assert [set(r) for r in rings(6, 3)] == [{5}, {4, *range(7, 16)}, {3}]
    assert [set(r) for r in rings(0, 6)] == [{1}, {2}, {3}, {4}, {5}, set(range(6, 16))]
    assert rings(0, 8)[6:] == [[], []]  # graph exhausted: empty rings, still `hops` of them
    assert rings(2, 0) == [] and rings(2, 2, per_hop=0) == [[], []]
    isolated = graph([0], [1], 3)
    assert rings(2, 2, g=isolated) == [[], []]


def test_rings_fan_out_bounded_without_duplicates():
    for seed in range(20):
        r = rings(6, 3, per_hop=3, seed=seed)
        assert [len(x) for x in r] == [1, 3, 1]
        assert set(r[1]) <= {4, *range(7, 16)}
        flat = [v for x in r for v in x]
        assert len(flat) == len(set(flat)) and 6 not in flat
    samples = {tuple(rings(6, 2, per_hop=3, seed=s)[1]) for s in range(20)}
    assert len(samples) > 5  # really sampled


def test_rings_deterministic_for_a_generator_seed():
    assert rings(6, 3, per_hop=2, seed=7) == rings(6, 3, per_hop=2, seed=7)


class CountingArray(np.ndarray):
    """An int array that counts how many elements are read through indexing."""

    def __getitem__(self, key):
        out = np.asarray(super().__getitem__(key))
        type(self).reads += out.size
        return out


def test_hub_work_is_bounded():
    leaves = 30_000  # hub 0 with leaves 1..30000, every leaf also on hub 30001
    src = np.r_[np.zeros(leaves, dtype=np.int64), np.arange(1, leaves + 1)]
    dst = np.r_[np.arange(1, leaves + 1), np.full(leaves, leaves + 1)]
    g = graph(src, dst, leaves + 2)
    indices = g.indices.view(CountingArray)
    for node, hops in [(0, 3), (1, 3), (leaves + 1, 2)]:
        CountingArray.reads = 0
        r = sample_hops(g.indptr, indices, node, hops, 4, np.random.default_rng(0), max_expand=16, max_fanin=8)
        # the work is bounded by what it reads: the node's own list, then at most max_expand x max_fanin per hop
        degree = g.indptr[node + 1] - g.indptr[node]
        assert CountingArray.reads <= degree + (hops - 1) * 16 * 8
        assert all(len(x) <= 4 for x in r)
        flat = [v for x in r for v in x]
        assert len(flat) == len(set(flat)) and node not in flat
    r = sample_hops(g.indptr, g.indices, 1, 2, 4, np.random.default_rng(0), max_expand=16, max_fanin=8)
    assert set(r[0]) == {0, leaves + 1} and len(r[1]) == 4 and set(r[1]) <= set(range(2, leaves + 1))


# ----------------------------------------------------------------------------- tokens


def test_truncate_tokens():
    tok = word_tokenizer()
    text = "alpha beta gamma delta epsilon"
    assert truncate_tokens(tok, text, 3) == "alpha beta gamma…"
    assert truncate_tokens(tok, text, 5) == text
    assert truncate_tokens(tok, text, 50) == text
    assert truncate_tokens(tok, text, 0) == ""
    assert truncate_tokens(tok, "alpha,beta gamma", 2) == "alpha,…"  # original characters, not a decode


# ----------------------------------------------------------------------------- prompts


def builder(texts, g=PATH_STAR, names=("kernel", "games"), chat=False, **cfg):
    cfg = {"hops": 2, "neighbors_per_hop": 4, "max_tokens": 400, "node_tokens": 16, "neighbor_tokens": 8, **cfg}
    return NodePromptBuilder(g, texts, list(names), word_tokenizer(chat), PromptConfig(**cfg))


SHORT = ["alpha beta", "gamma", "delta\n  epsilon", None]


def test_classification_prompt_exact_format():
    b = builder(SHORT, g=graph([0, 1, 2], [1, 2, 3], 4))
    head = ("### Instruction:\nClassify the node into one of these classes: kernel, games. "
            "Answer with the class name only.\n\n### Input:\n")
    assert b.classification_prompt(0) == (
        head + "Node: alpha beta\n1-hop neighbors: gamma\n2-hop neighbors: delta epsilon\n\n### Response:\n"
    )
    assert b.classification_prompt(0, hops=1) == head + "Node: alpha beta\n1-hop neighbors: gamma\n\n### Response:\n"
    assert b.classification_prompt(0, hops=0) == head + "Node: alpha beta\n\n### Response:\n"
    assert b.hop_prompts(0) == [b.classification_prompt(0, hops=k) for k in range(3)]
    assert "Node: (no text)" in b.classification_prompt(3)
    with pytest.raises(ValueError):
        b.classification_prompt(0, hops=3)
    assert b.instruction_example(0, 1) == {"prompt": b.classification_prompt(0), "response": "games"}
    assert b.scoring_prefix(0) == b.classification_prompt(0) and b.scoring_prefix(0).endswith("### Response:\n")
    assert b.class_continuations() == ["kernel<eos>", "games<eos>"]
    eos = b.tokenizer.eos_token_id
    assert [b.tokenizer(c, add_special_tokens=False)["input_ids"][-1] for c in b.class_continuations()] == [eos, eos]
    comma = builder(SHORT, g=graph([0, 1, 2], [1, 2, 3], 4), names=("Arts, Crafts", "games"))
    assert "classes: Arts, Crafts; games." in comma.classification_prompt(0)


LONG = [f"node {i} " + " ".join(WORDS * 3) for i in range(16)]


def test_prompts_fit_the_budget_and_drop_farthest_first():
    b = builder(LONG, max_tokens=100, node_tokens=20, neighbor_tokens=10, neighbors_per_hop=3)
    tok = b.tokenizer
    dropped = 0
    for node in range(16):
        flat = [v for r in b.hop_neighbors(node) for v in r]
        for k in range(3):
            assert count_tokens(tok, b.classification_prompt(node, hops=k)) <= 100
        prompt, kept = b.rationale_request(node)
        assert count_tokens(tok, prompt) <= b.rationale_max_tokens
        assert kept == flat[: len(kept)]  # a prefix of ring-major order: farthest dropped first
        assert all(f"[id {v}]" in prompt for v in kept)
        dropped += len(flat) - len(kept)
    assert dropped > 0
    # node 6 has one 1-hop (5) and three 2-hop neighbours; all four need 108 tokens, so exactly the
    # last 2-hop one goes and the 1-hop line stays
    full = builder(LONG, max_tokens=400, node_tokens=20, neighbor_tokens=10, neighbors_per_hop=3)
    assert count_tokens(tok, full.classification_prompt(6)) == 108
    one, two = b.hop_neighbors(6)
    lines = b.classification_prompt(6).split("\n")
    assert lines[5].startswith(f"1-hop neighbors: node {one[0]} ")
    assert lines[6] == "2-hop neighbors: " + " | ".join(
        f"node {v} alpha beta gamma delta epsilon zeta eta theta…" for v in two[:2]
    )


def test_node_text_shrinks_when_no_neighbor_fits():
    b = builder(LONG, max_tokens=40, node_tokens=40, neighbor_tokens=10)
    for node in (0, 5, 6):
        p = b.classification_prompt(node)
        assert count_tokens(b.tokenizer, p) <= 40 and "neighbors:" not in p and "Node: node" in p


def test_too_small_budget_is_a_config_error():
    with pytest.raises(ConfigError, match="prompt.max_tokens"):
        builder(LONG, names=[f"class {i}" for i in range(40)], max_tokens=60)


def test_prompts_do_not_depend_on_call_order():
    nodes = list(range(16))
    a = builder(LONG, neighbors_per_hop=2)
    b = builder(LONG, neighbors_per_hop=2)
    pa = {n: (a.classification_prompt(n), a.rationale_prompt(n)) for n in nodes}
    pb = {n: (b.classification_prompt(n), b.rationale_prompt(n)) for n in reversed(nodes)}
    assert pa == pb
    assert builder(LONG, neighbors_per_hop=2, seed=1).hop_neighbors(6) != a.hop_neighbors(6) or any(
        builder(LONG, neighbors_per_hop=2, seed=s).hop_neighbors(6) != a.hop_neighbors(6) for s in range(2, 10)
    )


def test_rationale_prompt_chat_and_plain():
    b = builder(SHORT, g=graph([0, 1, 2], [1, 2, 3], 4), chat=True)
    p, ids = b.rationale_request(1)
    assert p.startswith("<|user|>") and p.endswith('<eos>\n<|assistant|>{"label": "')  # primed answer
    assert "[id 0] alpha beta" in p and "[id 2] delta epsilon" in p and "[id 3] (no text)" in p
    assert set(ids) == {0, 2, 3} and "key_neighbors (ids of up to 3 listed neighbors" in p
    plain = builder(SHORT, g=graph([0, 1, 2], [1, 2, 3], 4)).rationale_prompt(1)
    assert plain.startswith("### Instruction:\n") and plain.endswith("\n\n### Response:\n{\"label\": \"")


def test_rationale_prompt_has_no_example_answer_to_echo():
    b = builder(SHORT, g=graph([0, 1, 2], [1, 2, 3], 4), chat=True)
    p = b.rationale_prompt(1)
    assert "Example" not in p and "[12]" not in p and "Keys: label (one class name from the list)" in p
