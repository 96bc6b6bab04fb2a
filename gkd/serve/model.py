"""The served student and teacher, Ray-free: load, cache, classify known and new nodes, format answers.

At start the student runs layer-wise inference once over the whole graph and keeps every layer's
input H_0..H_{L-1} (H_0 = the features x) and the class probabilities of all N nodes. A known node
is a row of that cache: the same numbers as the evaluation. A new node (text + neighbour ids S) is
encoded with the graph's own encoder and classified inductively, layer by layer,
    h_new^(l+1) = layer_l([h_new^(l); H_l[S]], edges S -> new),
the neighbours keeping their cached rows (the new node's effect on them is ignored): exact for the
new node, and one small message-passing call per layer.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from gkd.config import EncoderConfig, ExperimentConfig
from gkd.errors import GkdError
from gkd.gnn.infer import inductive_logits, layer_inputs  # noqa: F401  (the serve tests import them from here)
from gkd.gnn.refine import NewNodeRefiner, neighbor_mean

log = logging.getLogger(__name__)

STUDENT, TEACHER, REFINED = "student", "teacher", "refined"


class RequestError(GkdError):
    """A request the server refuses: `status` is the HTTP status (400, 404, 413), the message says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


# ----------------------------------------------------------------------------- student: inference


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(1, keepdims=True)).astype(np.float32)


# ----------------------------------------------------------------------------- requests


@dataclass
class Query:
    """One request, resolved: known nodes `ids` (n,) and new nodes (texts, neighbour id arrays), in order."""

    ids: np.ndarray
    texts: list[str] = field(default_factory=list)
    neighbors: list[np.ndarray] = field(default_factory=list)
    top_k: int = 5

    def __len__(self) -> int:
        return len(self.ids) + len(self.texts)

    def teacher_items(self, rows: np.ndarray) -> list[dict]:
        """What the teacher needs for result rows `rows`: {"node_id"} or {"text", "neighbors"}."""
        n = len(self.ids)
        return [{"node_id": int(self.ids[r])} if r < n else
                {"text": self.texts[r - n], "neighbors": self.neighbors[r - n].tolist()} for r in rows.tolist()]


def _listing(values, limit: int = 10) -> str:
    values = list(values)
    more = f" and {len(values) - limit} more" if len(values) > limit else ""
    return ", ".join(repr(v) for v in values[:limit]) + more


def _check_text(text: str, where: str) -> None:
    """Valid JSON may still carry text that is not Unicode (a lone UTF-16 surrogate such as "\\ud8b1"): a 400
    naming the field, not a tokenizer crash."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise RequestError(400, f"{where} is not valid Unicode: a lone surrogate {text[err.start]!r} at character "
                                f"{err.start} (\\ud800-\\udfff escapes must come in pairs)") from None


class StudentService:
    """The student over one graph: cached answers for its N nodes, inductive answers for new ones."""

    def __init__(self, gnn, info: dict, tag, model_info: dict, cfg: ExperimentConfig, encoder=None,
                 refined: np.ndarray | None = None):
        s = cfg.serve
        self.cfg, self.scfg, self.gnn, self.info, self.model_info = cfg, s, gnn.eval(), info, model_info
        self.class_names = list(info["class_names"])
        self.device = _device(s.device, "serve.device")
        if tag.x.shape[1] != gnn.in_dim:
            raise GkdError(f"the student takes {gnn.in_dim}-d features but {tag.graph_dir}/x.npy has "
                           f"{tag.x.shape[1]}: serve the student with the graph it was trained on")
        if list(tag.class_names) != self.class_names:
            raise GkdError(f"the student's classes differ from {tag.graph_dir}'s: serve it with its own graph")
        self.num_nodes = tag.num_nodes
        t = time.perf_counter()
        self.hidden, logits = layer_inputs(self.gnn, tag.x, tag.indptr, tag.indices, s.infer_batch_size, self.device)
        self.probs = softmax(logits)
        # known nodes: the refine stage's whole-graph predictions when the model carries them (refined.npy)
        self.known_by = STUDENT
        if refined is not None:
            if refined.shape != self.probs.shape:
                raise GkdError(f"the model's refined predictions are {refined.shape[0]} x {refined.shape[1]}, the "
                               f"graph {tag.graph_dir} has {self.probs.shape[0]} nodes x {self.probs.shape[1]} "
                               "classes: serve the model with the graph it was refined on")
            self.probs, self.known_by = np.asarray(refined, dtype=np.float32), REFINED
        # new nodes: the student's logits refined as val chose (temperature, prior, neighbours' refined rows)
        self.new_refiner = NewNodeRefiner.from_json(info.get("new_node_refine")) if refined is not None else None
        self.keys = _node_keys(tag.graph_dir, tag.num_nodes)
        self._key_index: dict[str, int] | None = None
        self.encoder = encoder if encoder is not None else graph_encoder(tag.meta, s.device, s.torch_threads)
        self.max_chars = cfg.ingest.max_text_chars
        log.info("student %s ready: %d nodes cached in %.1f s", model_info.get("name"), self.num_nodes,
                 time.perf_counter() - t)

    @classmethod
    def from_config(cls, cfg: ExperimentConfig, tracking_uri: str | None = None) -> "StudentService":
        from gkd.data.store import TAG

        if cfg.serve.torch_threads:
            torch.set_num_threads(cfg.serve.torch_threads)
        gnn, info, model_info, refined = load_served_student(cfg, tracking_uri)
        tag = TAG.load(cfg.graph_dir)
        return cls(gnn, info, tag, model_info, cfg, refined=refined)

    # -- request -> Query (semantic checks; the schema's types are checked by pydantic before)

    def key_index(self) -> dict[str, int]:
        if self._key_index is None:
            self._key_index = {k: i for i, k in enumerate(self.keys)}
        return self._key_index

    def parse(self, node_ids=(), keys=(), nodes=(), top_k: int | None = None) -> Query:
        """Validate a request's node ids, keys and new nodes ({text, neighbors, neighbor_keys}) -> Query."""
        s = self.scfg
        total = len(node_ids) + len(keys) + len(nodes)
        if total == 0:
            raise RequestError(400, "empty request: give node_ids, keys or nodes (new nodes with text and neighbors)")
        if total > s.max_nodes_per_request:
            raise RequestError(413, f"{total} nodes in one request; this server takes at most "
                                    f"{s.max_nodes_per_request} (serve.max_nodes_per_request): split the request")
        ids = self._node_ids(node_ids, "node_ids")
        ids = np.concatenate([ids, self._key_ids(keys, "keys")])
        texts, neighbors = [], []
        for j, node in enumerate(nodes):
            text, nb, nb_keys = node["text"], node.get("neighbors") or [], node.get("neighbor_keys") or []
            where = f"nodes[{j}]"
            _check_text(text, f"{where}.text")
            if not text.strip():
                raise RequestError(400, f"{where}.text is empty: a new node needs its text")
            if len(text) > s.max_text_chars:
                raise RequestError(413, f"{where}.text has {len(text):,} characters; this server takes at most "
                                        f"{s.max_text_chars:,} (serve.max_text_chars)")
            if len(nb) + len(nb_keys) > s.max_neighbors_per_node:
                raise RequestError(413, f"{where} lists {len(nb) + len(nb_keys)} neighbours; this server takes at "
                                        f"most {s.max_neighbors_per_node} (serve.max_neighbors_per_node)")
            nb = self._node_ids(nb, f"{where}.neighbors")
            texts.append(text[: self.max_chars])  # as ingest cut the graph's texts before encoding
            neighbors.append(np.concatenate([nb, self._key_ids(nb_keys, f"{where}.neighbor_keys")]))
        k = self.scfg.top_k if top_k is None else top_k
        return Query(ids, texts, neighbors, max(1, min(int(k), len(self.class_names))))

    def _node_ids(self, values, where: str) -> np.ndarray:
        """Ids from a request -> int64 array; any outside 0..N-1 is a 404 naming the field. Checked as Python
        ints before the cast: JSON allows integers int64 cannot hold (numpy would raise OverflowError)."""
        values = [int(v) for v in values]
        bad = [v for v in values if not 0 <= v < self.num_nodes]
        if bad:
            raise RequestError(404, f"{where}: unknown node ids {_listing(bad)}; this graph has ids "
                                    f"0..{self.num_nodes - 1}")
        return np.asarray(values, dtype=np.int64).reshape(-1)

    def _key_ids(self, keys, where: str) -> np.ndarray:
        if not len(keys):
            return np.zeros(0, dtype=np.int64)
        index = self.key_index()
        missing = [k for k in keys if k not in index]
        if missing:
            raise RequestError(404, f"{where}: unknown keys {_listing(missing)} (keys are the source's own node "
                                    "ids, e.g. Debian package names)")
        return np.fromiter((index[k] for k in keys), dtype=np.int64, count=len(keys))

    # -- the model

    def student_probs(self, queries: list[Query]) -> list[np.ndarray]:
        """Class probabilities (len(q), C) per query: cache rows for known nodes, one inductive pass for new ones."""
        new = [(t, nb) for q in queries for t, nb in zip(q.texts, q.neighbors)]
        new_probs = None
        if new:
            x_new = self.encoder.encode([t for t, _ in new])
            nbrs = [nb for _, nb in new]
            logits = inductive_logits(self.gnn, self.hidden, x_new, nbrs, self.device)
            if self.new_refiner is not None:
                new_probs = self.new_refiner.apply(logits, *neighbor_mean(self.probs, nbrs))
            else:
                new_probs = softmax(logits)
        out, at = [], 0
        for q in queries:
            rows = self.probs[q.ids]
            if q.texts:
                rows = np.concatenate([rows, new_probs[at : at + len(q.texts)]])
                at += len(q.texts)
            out.append(rows)
        return out

    def answered_by(self, q: Query) -> list[str]:
        """Per row of a query: who answers it (known nodes: refined or student; new nodes: the student)."""
        return [self.known_by] * len(q.ids) + [STUDENT] * len(q.texts)

    # -- answers

    def answer(self, q: Query, probs: np.ndarray, answered_by: list[str]) -> dict:
        """The JSON body of /v1/predict: one prediction per node, request order."""
        best = probs.argmax(1)
        top = np.argsort(-probs, axis=1, kind="stable")[:, : q.top_k]
        names, n = self.class_names, len(q.ids)
        preds = []
        for r in range(len(probs)):
            known = r < n
            node = int(q.ids[r]) if known else None
            preds.append({
                "node_id": node, "key": self.keys[node] if known else None, "label": names[best[r]],
                "confidence": round(float(probs[r, best[r]]), 6),
                "probabilities": {names[c]: round(float(probs[r, c]), 6) for c in top[r]},
                "answered_by": answered_by[r],
            })
        return {"model": self.model_info["name"], "version": self.model_info.get("version"), "predictions": preds}

    def describe(self) -> dict:
        """GET /v1/model."""
        enc = self.info.get("encoder", {})
        return {**self.model_info, "graph": self.info.get("graph"), "gnn": self.info.get("gnn"),
                "method": self.info.get("method"), "num_nodes": self.num_nodes,
                "answers": {"known_nodes": self.known_by, "new_nodes": STUDENT,
                            "known_nodes_from": ("the refine stage's whole-graph predictions (temperature, class "
                                                 "prior, Correct & Smooth)" if self.known_by == REFINED
                                                 else "the student's full-neighbourhood inference"),
                            "new_nodes_from": f"the {self.info.get('new_nodes', 'student')} student, inductively "
                                              "(the node's text and its neighbours' cached rows)"
                                              + (", then refined: temperature"
                                                 + (", class prior" if self.new_refiner.ratio is not None else "")
                                                 + (f", {self.new_refiner.alpha:g} x its neighbours' refined "
                                                    "predictions" if self.new_refiner.alpha else "")
                                                 if self.new_refiner is not None else "")},
                "num_classes": len(self.class_names), "class_names": self.class_names,
                "encoder": {k: enc.get(k) for k in ("id", "name", "dim")},
                "limits": {"max_nodes_per_request": self.scfg.max_nodes_per_request,
                           "max_neighbors_per_node": self.scfg.max_neighbors_per_node,
                           "max_text_chars": self.scfg.max_text_chars}}


def _device(device: str, key: str) -> str:
    from gkd.runtime import resolve_device

    return resolve_device(device, key)


def _node_keys(graph_dir: Path, n: int) -> list[str]:
    """(N,) the source's own node ids (`key` column), in node id order."""
    from gkd.data.store import read_table

    t = read_table(Path(graph_dir) / "nodes", ["node_id", "key"])
    keys = [None] * n
    for i, k in zip(t["node_id"].to_numpy().tolist(), t["key"].to_pylist()):
        keys[i] = k
    return keys


def graph_encoder(meta: dict, device: str, torch_threads: int | None):
    """The encoder the graph's features came from (its meta.json `encoder`), for new nodes' texts."""
    from gkd.data.encode import encoder_id, make_encoder

    enc = meta.get("encoder") or {}
    ecfg = EncoderConfig(name=enc.get("name") or "minilm", dim=int(enc.get("dim") or 256),
                         max_seq_length=int(enc.get("max_seq_length") or 128), device=device,
                         torch_threads=torch_threads, batch_size=64)
    if enc.get("id") and encoder_id(ecfg) != enc["id"]:
        raise GkdError(f"cannot rebuild the graph's encoder {enc['id']!r} from its meta.json {enc}")
    return make_encoder(ecfg)


def load_served_student(cfg: ExperimentConfig, tracking_uri: str | None = None):
    """(student, student.json, model info, refined (N, C) or None) from serve.checkpoint, else from
    models:/<model>@<alias> in MLflow."""
    from gkd.gnn.distill import load_refined, load_student

    s = cfg.serve
    if s.checkpoint is not None:
        if not (Path(s.checkpoint) / "student.json").is_file():
            raise GkdError(f"serve.checkpoint={s.checkpoint} is not a student checkpoint (no student.json): point "
                           "it at <workdir>/student/checkpoint")
        gnn, info = load_student(s.checkpoint)
        return gnn, info, {"name": f"{cfg.name}-student", "version": None, "alias": None, "source": "checkpoint",
                           "uri": str(Path(s.checkpoint).resolve()),
                           "metrics": {"val_acc": info.get("val_acc"), "test_acc": info.get("test_acc")}}, \
            load_refined(s.checkpoint, info)
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from gkd.tracking.registry import load_champion, registered_name
    from gkd.tracking.tracker import tracking_uri as default_uri

    uri = tracking_uri or default_uri(cfg.workdir)
    mlflow.set_tracking_uri(uri)
    name = s.model or registered_name(cfg.name)
    try:
        version = MlflowClient().get_model_version_by_alias(name, s.alias)
        student = load_champion(name, s.alias).unwrap_python_model()
    except MlflowException as err:
        raise GkdError(f"no version of {name!r} has alias {s.alias!r} in the MLflow registry at {uri} "
                       f"({err.message}): run `gkd register` and `gkd promote`, or set serve.checkpoint") from err
    tags = version.tags or {}
    metrics = {k: float(tags[k]) if k in tags else None for k in ("val_acc", "test_acc")}
    return student.gnn, student.info, {"name": name, "version": str(version.version), "alias": s.alias,
                                       "source": "registry", "uri": f"models:/{name}@{s.alias}",
                                       "run_id": version.run_id, "metrics": metrics}, student.refined


# ----------------------------------------------------------------------------- teacher


class _TextsWithNew:
    """The graph's node texts, then new nodes' texts at ids N, N+1, ... (what the prompt builder indexes)."""

    def __init__(self, texts: list[str], new: list[str]):
        self.texts, self.new, self.n = texts, new, len(texts)

    def __getitem__(self, i: int) -> str:
        return self.texts[i] if i < self.n else self.new[i - self.n]

    def __len__(self) -> int:
        return self.n + len(self.new)


def teacher_path(cfg: ExperimentConfig) -> str:
    """serve.cascade.model, else the tuned teacher <workdir>/teacher/checkpoint if present, else llm.model."""
    if cfg.serve.cascade.model:
        return cfg.serve.cascade.model
    from gkd.llm.stage import tuned_teacher

    tuned = tuned_teacher(cfg)
    return str(tuned) if tuned is not None else cfg.llm.model


class TeacherService:
    """The teacher LLM classifying nodes as in the teacher stage: its head's logits, or each class name scored
    after the K-hop prompt."""

    def __init__(self, cfg: ExperimentConfig):
        from gkd.data.store import TAG
        from gkd.llm.models import load_teacher
        from gkd.llm.prompts import NodePromptBuilder
        from gkd.llm.score import encode_continuations, is_classifier

        self.cfg = cfg
        self.tag = TAG.load(cfg.graph_dir, features=False)
        self.texts = self.tag.texts()
        self.model, self.tokenizer = load_teacher(cfg.llm.model_copy(update={"model": teacher_path(cfg)}))
        self.class_list = not is_classifier(self.model)  # a head teacher's prompts carry no class list
        self.builder = NodePromptBuilder(self.tag, self.texts, self.tag.class_names, self.tokenizer, cfg.prompt,
                                         class_list=self.class_list)
        self.cont_ids = encode_continuations(self.tokenizer, self.builder.class_continuations())

    def prompts(self, items: list[dict]) -> list[str]:
        """Scoring prompts: a known node's as in the teacher stage; a new node's from its text and neighbours."""
        new = [it for it in items if "node_id" not in it]
        new_builder = self._builder_with(new) if new else None
        out, j, n = [], 0, self.tag.num_nodes
        for it in items:
            if "node_id" in it:
                out.append(self.builder.scoring_prefix(int(it["node_id"])))
            else:
                out.append(new_builder.scoring_prefix(n + j))
                j += 1
        return out

    def _builder_with(self, new: list[dict]):
        """A prompt builder over the graph plus the new nodes (ids N..), each linked to its neighbours."""
        from gkd.llm.prompts import NodePromptBuilder

        tag = self.tag
        deg = np.array([len(it["neighbors"]) for it in new], dtype=np.int64)
        indptr = np.concatenate([tag.indptr, tag.indptr[-1] + np.cumsum(deg)])
        indices = np.concatenate([tag.indices, *[np.asarray(it["neighbors"], dtype=np.int64) for it in new]])
        texts = _TextsWithNew(self.texts, [it["text"] for it in new])
        return NodePromptBuilder(SimpleNamespace(indptr=indptr, indices=indices), texts, tag.class_names,
                                 self.tokenizer, self.cfg.prompt, class_list=self.class_list)

    def score(self, items: list[dict]) -> np.ndarray:
        """(k,) items -> (k, C) the teacher's distribution over the classes."""
        from gkd.llm.score import class_distribution

        return class_distribution(self.model, self.tokenizer, self.prompts(items), self.cont_ids, self.model.device)
