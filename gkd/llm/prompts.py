"""Prompts for every LLM stage: k-hop neighbour sampling, token budgets, LinguGKD instruction
prompts and Pan et al. rationale requests (gkd.llm.parse reads the JSON the model writes back).

Ray-free and model-free: numpy plus a Hugging Face tokenizer. Everything is deterministic for
`PromptConfig.seed`: a node's neighbours come from `default_rng([seed, node])`, so prompts do not
depend on call order, batch or worker.

Token counts are what the scorers feed the model: `tokenizer(prompt)` (special tokens included)
for the plain `### Instruction` prompts, `tokenizer(prompt, add_special_tokens=False)` for
chat-templated rationale prompts (the template already holds its special tokens).
"""

from __future__ import annotations

import logging
from typing import Callable, Sequence

import numpy as np

from gkd.config import PromptConfig
from gkd.errors import ConfigError

log = logging.getLogger(__name__)

ELLIPSIS = "…"
MAX_EXPAND = 64  # ring nodes whose neighbours are read to grow the next ring
MAX_FANIN = 64  # neighbours read per expanded node (a random subset beyond this)
# limits of the rationale answer that RATIONALE_KEYS asks for (gkd.llm.parse enforces them)
MAX_KEYWORDS = 5
MAX_KEY_NEIGHBORS = 3
MAX_REASON_CHARS = 300
NEIGHBOR_SEP = " | "  # between neighbour texts on one classification-prompt line
RATIONALE_KEYS = (
    "Reply with one JSON object and nothing else. Keys: label (one class name from the list), keywords "
    "(up to 5 words copied from the node text), key_neighbors (ids of up to 3 listed neighbors that "
    "matter most), reason (one short sentence)."
)
# The answer is primed with this, so even a small model starts writing the JSON asked for;
# callers prepend it to the generated text before parsing.
RATIONALE_PRIMER = '{"label": "'


# ----------------------------------------------------------------------------- neighbours


def _gather(indptr, indices, frontier: np.ndarray, max_fanin: int, rng: np.random.Generator) -> np.ndarray:
    """Neighbours of `frontier` nodes, at most `max_fanin` (a random subset) per node."""
    starts = np.asarray(indptr[frontier], dtype=np.int64)
    deg = np.asarray(indptr[frontier + 1], dtype=np.int64) - starts
    big = deg > max_fanin
    lens = np.where(big, 0, deg)
    pos = np.repeat(starts - (np.cumsum(lens) - lens), lens) + np.arange(int(lens.sum()))
    parts = [np.asarray(indices[pos], dtype=np.int64)]
    for s, d in zip(starts[big], deg[big]):
        parts.append(np.asarray(indices[s + rng.choice(int(d), max_fanin, replace=False)], dtype=np.int64))
    return np.concatenate(parts)


def sample_hops(
    indptr,
    indices,
    node: int,
    hops: int,
    per_hop: int,
    rng: np.random.Generator,
    max_expand: int = MAX_EXPAND,
    max_fanin: int = MAX_FANIN,
) -> list[list[int]]:
    """Neighbours at exact hop distance 1..hops (BFS rings), each sampled to <= per_hop without replacement.

    Ring 1 is the node's CSR row. Ring k+1 is grown from at most `max_expand` random ring-k nodes,
    reading at most `max_fanin` random neighbours of each, so work per hop is bounded by
    max_expand * max_fanin ids (plus one pass over the node's own row) whatever the degrees.
    Rings are exact while they stay within those bounds. Beyond them (hubs) ring k+1 is a random
    subset of the true ring, and once a ring was cut, a later ring may hold a node that is really
    one hop nearer (it was in the unexplored part of the earlier ring).
    """
    if hops <= 0:
        return []
    if per_hop <= 0:
        return [[] for _ in range(hops)]
    node = int(node)
    seen = np.array([node], dtype=np.int64)
    ring = np.unique(np.asarray(indices[indptr[node] : indptr[node + 1]], dtype=np.int64))
    ring = ring[ring != node]
    out: list[list[int]] = []
    for k in range(hops):
        if len(ring) == 0:
            break
        take = rng.choice(len(ring), size=min(per_hop, len(ring)), replace=False)
        out.append(ring[take].tolist())
        if k == hops - 1:
            break
        seen = np.concatenate([seen, ring])
        frontier = ring if len(ring) <= max_expand else ring[rng.choice(len(ring), max_expand, replace=False)]
        cand = np.unique(_gather(indptr, indices, frontier, max_fanin, rng))
        ring = cand[~np.isin(cand, seen)]
    return out + [[] for _ in range(hops - len(out))]


# ----------------------------------------------------------------------------- tokens


def count_tokens(tokenizer, text: str, add_special_tokens: bool = True) -> int:
    return len(tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])


def _truncate(tokenizer, text: str, n: int) -> tuple[str, int]:
    """(text cut to n tokens + '…' if cut, approximate token count of the result)."""
    if n <= 0:
        return "", 0
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = enc["offset_mapping"]
    except (NotImplementedError, ValueError, TypeError):  # slow tokenizers have no offsets
        enc, offsets = tokenizer(text, add_special_tokens=False), None
    ids = enc["input_ids"]
    if len(ids) <= n:
        return text, len(ids)
    if offsets is not None:
        head = text[: offsets[n - 1][1]]
    else:
        head = tokenizer.decode(ids[:n], skip_special_tokens=True)
    return head.rstrip() + ELLIPSIS, n + 1


def truncate_tokens(tokenizer, text: str, n: int) -> str:
    """`text` cut to its first n tokens (original characters kept), '…' appended when cut; n <= 0 -> ''."""
    return _truncate(tokenizer, text, n)[0]


def one_line(text) -> str:
    """One line: None -> '', whitespace runs (newlines included) -> one space."""
    return " ".join(str(text).split()) if text is not None else ""


# ----------------------------------------------------------------------------- prompts


class NodePromptBuilder:
    """Prompts for one graph + tokenizer + PromptConfig; node ids are rows of the CSR (indptr, indices)."""

    _CACHE_MAX = 65_536  # (node, token limit) -> (cut text, tokens); cleared when full

    def __init__(self, tag_like, texts: Sequence[str], class_names: Sequence[str], tokenizer, cfg: PromptConfig,
                 class_list: bool = True):
        """class_list=False: classification prompts leave out the class names (a teacher with a classification
        head answers through its head, not by naming a class); rationale prompts always list them."""
        if not class_names:
            raise ConfigError("NodePromptBuilder: the graph has no class names; ingest a labelled graph")
        self.indptr, self.indices = tag_like.indptr, tag_like.indices
        self.texts = texts
        self.class_names = [str(c) for c in class_names]
        self.tokenizer = tokenizer
        self.cfg = cfg
        self.chat_template = bool(getattr(tokenizer, "chat_template", None))  # rationale prompts use it
        self._cache: dict[tuple[int, int], tuple[str, int]] = {}
        sep = "; " if any("," in c for c in self.class_names) else ", "
        self._names = sep.join(self.class_names)
        self.class_list = class_list
        fixed = self._count_classification(self._render_classification("", []))
        fixed_r = self._count_rationale(self._render_rationale("", []))
        if fixed > cfg.max_tokens:
            raise ConfigError(
                f"prompt.max_tokens={cfg.max_tokens} is too small: the instruction"
                f"{f' with {len(self.class_names)} class names' if class_list else ''} alone takes {fixed} tokens; raise prompt.max_tokens above {fixed + cfg.node_tokens}"
            )
        if fixed + cfg.node_tokens > cfg.max_tokens:
            log.warning("prompt.max_tokens=%d leaves %d tokens for node text (prompt.node_tokens=%d)",
                        cfg.max_tokens, cfg.max_tokens - fixed, cfg.node_tokens)
        # Rationale prompts get the same room for node and neighbour text as classification prompts.
        self.rationale_max_tokens = cfg.max_tokens + max(0, fixed_r - fixed)

    # -- neighbours and texts

    def hop_neighbors(self, node: int) -> list[list[int]]:
        """cfg.hops rings of sampled neighbour ids (ring k = exact distance k+1), seeded per node."""
        rng = np.random.default_rng([self.cfg.seed, int(node)])
        return sample_hops(self.indptr, self.indices, node, self.cfg.hops, self.cfg.neighbors_per_hop, rng)

    def _text(self, node: int, limit: int) -> tuple[str, int]:
        key = (int(node), limit)
        hit = self._cache.get(key)
        if hit is None:
            if len(self._cache) >= self._CACHE_MAX:
                self._cache.clear()
            text, n = _truncate(self.tokenizer, one_line(self.texts[node]), limit)
            hit = self._cache[key] = (text or "(no text)", n)
        return hit

    # -- rendering (items: [(hop, node id, text)] nearest hop first)

    def _render_classification(self, node_text: str, items: list) -> str:
        lines = [f"Node: {node_text}"]
        for hop in sorted({h for h, _, _ in items}):
            lines.append(f"{hop}-hop neighbors: " + NEIGHBOR_SEP.join(t for h, _, t in items if h == hop))
        task = (f"Classify the node into one of these classes: {self._names}. Answer with the class name only."
                if self.class_list else "Classify the node from its text and its neighbors' texts.")
        return f"### Instruction:\n{task}\n\n### Input:\n" + "\n".join(lines) + "\n\n### Response:\n"

    def _render_rationale(self, node_text: str, items: list) -> str:
        lines = [
            "Classify a node of a graph from its text and the texts of its neighbors.",
            f"Classes: {self._names}.",
            "",
            f"Node: {node_text}",
        ]
        for hop in sorted({h for h, _, _ in items}):
            lines.append(f"{hop}-hop neighbors:")
            lines.extend(f"[id {v}] {t}" for h, v, t in items if h == hop)
        # No example answer: SmolLM2-135M echoed one verbatim in 298 of 300 nodes (keywords, label, id).
        lines += ["", RATIONALE_KEYS]
        message = "\n".join(lines)
        if self.chat_template:
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": message}], tokenize=False, add_generation_prompt=True
            ) + RATIONALE_PRIMER
        return f"### Instruction:\n{message}\n\n### Response:\n{RATIONALE_PRIMER}"

    def _count_classification(self, prompt: str) -> int:
        return count_tokens(self.tokenizer, prompt)

    def _count_rationale(self, prompt: str) -> int:
        return count_tokens(self.tokenizer, prompt, add_special_tokens=not self.chat_template)

    def _fit(self, node: int, rings: list[list[int]], render: Callable, count: Callable, budget: int):
        """(prompt, items kept): drop the farthest neighbours, then cut the node text, until <= budget tokens."""
        node_text = self._text(node, self.cfg.node_tokens)[0]
        items = [(h + 1, v, *self._text(v, self.cfg.neighbor_tokens)) for h, ring in enumerate(rings) for v in ring]
        m = len(items)

        def at(m):
            p = render(node_text, [it[:3] for it in items[:m]])
            return p, count(p)

        prompt, n = at(m)
        if n > budget and m:
            excess = n - budget  # estimate from per-text counts, then correct exactly
            while m and excess > 0:
                m -= 1
                excess -= items[m][3] + 1
            prompt, n = at(m)
            while n > budget and m:
                m -= 1
                prompt, n = at(m)
            while n <= budget and m < len(items):  # the estimate dropped one too many
                p2, n2 = at(m + 1)
                if n2 > budget:
                    break
                m, prompt, n = m + 1, p2, n2
        limit = self.cfg.node_tokens
        raw = one_line(self.texts[node])
        while n > budget and limit > 0:  # even the node text alone is too long
            cur = self._text(node, limit)[1] if limit == self.cfg.node_tokens else limit + 1
            limit = max(0, min(limit - 1, cur - (n - budget) - 1))
            node_text = _truncate(self.tokenizer, raw, limit)[0]
            prompt, n = at(m)
        return prompt, [v for _, v, _, _ in items[:m]]

    # -- LinguGKD

    def classification_prompt(self, node: int, hops: int | None = None) -> str:
        """Instruction prompt holding the node text and sampled neighbours of hops 1..hops (default cfg.hops)."""
        k = self.cfg.hops if hops is None else hops
        if not 0 <= k <= self.cfg.hops:
            raise ValueError(f"hops must be in 0..prompt.hops={self.cfg.hops}, got {k}")
        return self._classification(node, self.hop_neighbors(node)[:k])

    def hop_prompts(self, node: int) -> list[str]:
        """Classification prompts for hops 0..cfg.hops (LinguGKD's hierarchical teacher features F_0..F_K)."""
        rings = self.hop_neighbors(node)
        return [self._classification(node, rings[:k]) for k in range(self.cfg.hops + 1)]

    def sectioned_prompt(self, node: int) -> tuple[str, list[int]]:
        """The K-hop classification prompt and, per hop k = 0..K, the character offset just past the end of
        hop k's section (k = 0: the node's own line). Under causal attention the prompt's token ending there
        sees exactly the instruction, the node and hops <= k: LinguGKD's F_k in one forward pass. A hop whose
        neighbours were all dropped to fit (or that has none) ends where the hop before it ends."""
        prompt = self._classification(node, self.hop_neighbors(node))
        start = prompt.index("### Input:\n") + len("### Input:\n")
        body_end = prompt.index("\n\n### Response:", start)
        ends, at = {}, start
        for line in prompt[start:body_end].split("\n"):
            stop = at + len(line)
            if line.startswith("Node: "):
                ends[0] = stop
            else:
                hop = line.split("-hop neighbors: ", 1)[0]
                if hop.isdigit():
                    ends[int(hop)] = stop
            at = stop + 1
        out = []
        for k in range(self.cfg.hops + 1):
            out.append(ends.get(k, out[-1] if out else ends[0]))
        return prompt, out

    def _classification(self, node: int, rings: list[list[int]]) -> str:
        return self._fit(node, rings, self._render_classification, self._count_classification, self.cfg.max_tokens)[0]

    def response(self, label: int) -> str:
        """The target text for a label: its class name (the trainer appends eos)."""
        if not 0 <= int(label) < len(self.class_names):
            raise ValueError(f"label {label} is not a class index 0..{len(self.class_names) - 1}")
        return self.class_names[int(label)]

    def instruction_example(self, node: int, label: int) -> dict:
        """{'prompt': K-hop classification prompt, 'response': class name}; loss on the response only."""
        return {"prompt": self.classification_prompt(node), "response": self.response(label)}

    def scoring_prefix(self, node: int) -> str:
        """The K-hop classification prompt (ends in '### Response:\\n'); class_continuations() follow it."""
        return self.classification_prompt(node)

    def class_continuations(self) -> list[str]:
        """Each class name + eos (what the tuned teacher emits), so no name scores as a prefix of another.

        Without an eos token the terminator is '\\n'. Tokenize them with add_special_tokens=False.
        """
        end = self.tokenizer.eos_token or "\n"
        return [name + end for name in self.class_names]

    # -- Pan et al.

    def rationale_request(self, node: int) -> tuple[str, list[int]]:
        """(JSON-answer prompt, ids of the neighbours it lists): pass set(ids) to parse_rationale."""
        return self._fit(node, self.hop_neighbors(node), self._render_rationale, self._count_rationale,
                         self.rationale_max_tokens)

    def rationale_prompt(self, node: int) -> str:
        """JSON-answer prompt (chat template when the tokenizer has one), <= rationale_max_tokens tokens."""
        return self.rationale_request(node)[0]
