"""Rationale stage (Pan et al., CIKM 2024): per node, the teacher's soft label, pseudo label,
keywords, key neighbours and a short reason, streamed through LLM actors on Ray Data.

Core (Ray-free): `select_budget` (random; `gkd.llm.budget` chooses),  `RationaleGenerator.run(nodes)`.
Ray layer: `run(cfg)` feeds the not-yet-done budget nodes to an ActorPoolStrategy of
`RationaleActor`s (one LLM each) and writes one Parquet part per finished batch under
<workdir>/rationale/, so a killed run loses at most the batches in flight and a rerun skips
finished nodes; every node appears exactly once.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from gkd.config import ExperimentConfig, LLMConfig, PromptConfig, RationaleConfig
from gkd.llm.score import encode_continuations, score_prompts, soft_labels
from gkd.llm.stage import RATIONALE
from gkd.llm.prompts import RATIONALE_PRIMER
from gkd.llm.stream import stream_nodes

log = logging.getLogger(__name__)

SCHEMA = pa.schema(
    [
        ("node_id", pa.int64()),
        ("pred", pa.int32()),  # pseudo label: argmax of soft
        ("soft", pa.list_(pa.float32())),  # (C,) teacher distribution over classes
        ("gen_label", pa.int32()),  # the label the generated JSON named (-1 if none/invalid)
        ("keywords", pa.list_(pa.string())),
        ("key_neighbors", pa.list_(pa.int64())),
        ("reason", pa.string()),
        ("ok", pa.bool_()),  # generated JSON parsed with a valid label
        ("problems", pa.list_(pa.string())),
        ("tokens", pa.int64()),  # prompt + generated tokens (throughput accounting)
    ]
)


def budget_pools(split: np.ndarray, splits: list[str], exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(nodes always in the budget: those of `splits`, the others it may draw from), both sorted ids; neither
    holds a held-out node (unseen until the inductive evaluation) nor one of `exclude`."""
    out = np.zeros(len(split), bool)
    if exclude is not None:
        out[np.asarray(exclude, np.int64)] = True
    base = np.isin(split.astype(str), splits) & ~out
    return np.flatnonzero(base), np.flatnonzero(~base & (split != "holdout") & ~out)


def select_budget(labels: np.ndarray, split: np.ndarray, cfg: RationaleConfig,
                  exclude: np.ndarray | None = None) -> np.ndarray:
    """Sorted node ids: every node in cfg.splits plus `unlabeled_budget` others drawn with cfg.seed
    (see `budget_pools`). The random selector; gkd.llm.budget.teaching_budget also chooses where a first
    student is unsure."""
    base, rest = budget_pools(split, cfg.splits, exclude)
    rng = np.random.default_rng([cfg.seed, 31])
    extra = rng.choice(rest, size=min(cfg.unlabeled_budget, len(rest)), replace=False) if len(rest) else rest
    return np.sort(np.concatenate([base, extra]).astype(np.int64))


class RationaleGenerator:
    """One teacher model + prompt builder; `run(nodes)` -> rows of SCHEMA."""

    def __init__(self, model, tokenizer, builder, class_names: list[str], cfg: RationaleConfig, device="cpu"):
        self.model, self.tokenizer, self.builder = model, tokenizer, builder
        self.class_names, self.cfg, self.device = class_names, cfg, device
        self.cont_ids = encode_continuations(tokenizer, builder.class_continuations())

    def run(self, nodes: list[int]) -> dict:
        from gkd.llm.parse import parse_rationale

        prefixes = [self.builder.scoring_prefix(n) for n in nodes]
        logp, _ = score_prompts(self.model, self.tokenizer, prefixes, self.cont_ids, self.device)
        soft = soft_labels(logp)
        tokens = [len(self.tokenizer(p)["input_ids"]) for p in prefixes]
        rows = {k: [] for k in SCHEMA.names}
        requests = [self.builder.rationale_request(n) for n in nodes] if self.cfg.generate else []
        gens = self.generate([r[0] for r in requests]) if self.cfg.generate else [None] * len(nodes)
        for i, node in enumerate(nodes):
            rows["node_id"].append(int(node))
            rows["soft"].append(soft[i].tolist())
            rows["pred"].append(int(soft[i].argmax()))
            text, n_tok = gens[i] if gens[i] is not None else ("", 0)
            if self.cfg.generate:
                # only the neighbours the prompt listed can be named
                parsed, problems = parse_rationale(text, self.class_names, {int(v) for v in requests[i][1]})
            else:
                parsed, problems = {"label": -1, "keywords": [], "key_neighbors": [], "reason": "", "ok": False}, []
            rows["gen_label"].append(int(parsed["label"]))
            rows["keywords"].append(list(parsed["keywords"]))
            rows["key_neighbors"].append([int(v) for v in parsed["key_neighbors"]])
            rows["reason"].append(parsed["reason"])
            rows["ok"].append(bool(parsed["ok"]))
            rows["problems"].append(list(problems))
            rows["tokens"].append(tokens[i] + n_tok)
        return rows

    @torch.no_grad()
    def generate(self, prompts: list[str]) -> list[tuple[str, int]]:
        """Greedy JSON answers: (text, generated token count) per prompt."""
        self.tokenizer.padding_side = "left"
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        out = self.model.generate(**enc, max_new_tokens=self.cfg.max_new_tokens, do_sample=False,
                                  pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id)
        new = out[:, enc["input_ids"].shape[1]:]
        eos = self.tokenizer.eos_token_id
        counts = [int((row != eos).sum()) if eos is not None else row.shape[0] for row in new]
        texts = [RATIONALE_PRIMER + t for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]
        return list(zip(texts, counts))


def build_generator(graph_dir: Path, llm: LLMConfig, prompt: PromptConfig, cfg: RationaleConfig) -> RationaleGenerator:
    from gkd.data.store import TAG
    from gkd.llm.models import load_teacher
    from gkd.llm.prompts import NodePromptBuilder

    tag = TAG.load(graph_dir, features=False)
    model, tokenizer = load_teacher(llm)
    builder = NodePromptBuilder(tag, tag.texts(), tag.class_names, tokenizer, prompt)
    return RationaleGenerator(model, tokenizer, builder, tag.class_names, cfg, device=model.device)


class RationaleActor:
    """Ray Data callable class: one teacher LLM per actor, loaded once."""

    def __init__(self, graph_dir: str, llm: dict, prompt: dict, rationale: dict):
        self.gen = build_generator(Path(graph_dir), LLMConfig.model_validate(llm), PromptConfig.model_validate(prompt),
                                   RationaleConfig.model_validate(rationale))

    def __call__(self, batch: dict) -> dict:
        return self.gen.run([int(n) for n in batch["node_id"]])


# ----------------------------------------------------------------------------- resumable output


def done_nodes(out_dir: Path) -> np.ndarray:
    """Node ids already in finished parts (a part cut by a kill is removed and redone)."""
    ids = []
    for p in sorted(out_dir.glob("part-*.parquet")):
        try:
            ids.append(pq.read_table(p, columns=["node_id"])["node_id"].to_numpy())
        except Exception as err:
            log.warning("rationale: dropping unreadable part %s (%s)", p, err)
            p.unlink(missing_ok=True)
    return np.concatenate(ids) if ids else np.array([], dtype=np.int64)


def write_part(out_dir: Path, rows: dict) -> None:
    table = pa.Table.from_pydict({k: rows[k] for k in SCHEMA.names}, schema=SCHEMA)
    name = f"part-{time.time_ns()}-{uuid.uuid4().hex[:8]}"
    tmp = out_dir / f".{name}.tmp"
    pq.write_table(table, tmp)
    os.replace(tmp, out_dir / f"{name}.parquet")


def read_rationales(out_dir: Path) -> pa.Table:
    """All rationale rows in the rationale stage's folder (`cfg.stage_dir(RATIONALE)`), sorted by node_id."""
    parts = sorted(out_dir.glob("part-*.parquet"))
    if not parts:
        return SCHEMA.empty_table()
    t = pa.concat_tables([pq.read_table(p) for p in parts])
    t = t.take(pc.sort_indices(t["node_id"]))
    ids = t["node_id"].to_numpy()
    first = np.ones(len(ids), dtype=bool)
    first[1:] = ids[1:] != ids[:-1]
    if not first.all():  # a retried task wrote a node twice: keep one row per node
        log.warning("rationale: %d duplicate rows dropped", int((~first).sum()))
        t = t.filter(pa.array(first))
    return t


def summarize(table: pa.Table) -> dict:
    problems = Counter(p for row in table["problems"].to_pylist() for p in row)
    n = table.num_rows
    return {"nodes": n, "json_ok": int(pc.sum(table["ok"]).as_py() or 0) if n else 0,
            "problems": dict(problems)}


def run(cfg: ExperimentConfig) -> dict:
    """Stream rationale generation for the budget over LLM actors; resumable."""
    from gkd.data.store import node_arrays
    from gkd.runtime import init_ray

    rcfg = cfg.rationale
    out_dir = cfg.stage_dir(RATIONALE)
    out_dir.mkdir(parents=True, exist_ok=True)
    labels, split = node_arrays(cfg.graph_dir)
    from gkd.llm.budget import teaching_budget
    from gkd.llm.teacher import measured_nodes, teacher_split

    budget = teaching_budget(cfg, labels, teacher_split(cfg, labels, split),
                             exclude=np.concatenate(measured_nodes(cfg, labels, split)))
    done = done_nodes(out_dir)
    todo = np.setdiff1d(budget, done)
    log.info("rationale: %d nodes in budget, %d done, %d to go on %d actor(s)", len(budget), len(budget) - len(todo),
             len(todo), rcfg.num_actors)
    t0, n_done, n_tok = time.time(), 0, 0
    if len(todo):
        init_ray(cfg.ray)
        ctor = {"graph_dir": str(cfg.graph_dir.resolve()), "llm": cfg.llm.model_dump(mode="json"),
                "prompt": cfg.prompt.model_dump(mode="json"), "rationale": rcfg.model_dump(mode="json")}
        for batch in stream_nodes(todo, RationaleActor, ctor, batch_size=rcfg.batch_size, num_actors=rcfg.num_actors,
                                  num_cpus=rcfg.num_cpus_per_actor, num_gpus=rcfg.num_gpus_per_actor, what="rationale"):
            write_part(out_dir, batch.to_pydict())  # persisted per batch: a kill loses only batches in flight
            n_done += batch.num_rows
            n_tok += int(pc.sum(batch["tokens"]).as_py())
    wall = time.time() - t0
    table = read_rationales(out_dir)
    summary = {**summarize(table), "budget": int(len(budget)), "new_nodes": n_done, "wall_s": round(wall, 2),
               "nodes_per_s": round(n_done / wall, 3) if n_done else None,
               "tokens_per_s": round(n_tok / wall, 1) if n_done else None}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
