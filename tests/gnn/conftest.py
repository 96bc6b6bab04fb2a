"""A small synthetic graph store with a strong synthetic teacher's outputs and rationales in the real file formats."""

import numpy as np
import pytest

from gkd.config import build_config
from gkd.data import ingest
from gkd.data.store import TAG, build_csr
from gkd.gnn.inputs import TEST, TRAIN, UNLABELED, VAL, GraphArrays
from gkd.llm.features import OutputWriter
from gkd.llm.rationale import SCHEMA, write_part

TEACHER_ACC = 0.9


def write_synthetic_teacher(workdir, tag: TAG, covered: np.ndarray, hops: int = 2, dim: int = 24, seed: int = 0):
    """A teacher that is right on TEACHER_ACC of `covered` nodes; hop-k features = class prototype + noise."""
    rng = np.random.default_rng(seed)
    c = tag.num_classes
    labels = np.where(tag.labels >= 0, tag.labels, 0)
    wrong = rng.random(len(covered)) > TEACHER_ACC
    pred = np.where(wrong, (labels[covered] + 1 + rng.integers(0, c - 1, len(covered))) % c, labels[covered])
    soft = np.full((len(covered), c), 0.1 / (c - 1), dtype=np.float32)
    soft[np.arange(len(covered)), pred] = 0.9
    protos = rng.normal(size=(hops + 1, c, dim))
    writer = OutputWriter(workdir / "teacher", tag.num_nodes, c, hops, dim)
    writer.add({"node_id": covered, "soft": soft, **{
        f"feat_hop{k}": (protos[k][pred] + 0.3 * rng.normal(size=(len(covered), dim))).astype(np.float16)
        for k in range(hops + 1)}})
    return pred


def write_synthetic_rationales(workdir, tag: TAG, nodes: np.ndarray, pred: np.ndarray, texts: list[str]):
    """One rationale row per node: its first words as keywords, same-predicted-class neighbours as key neighbours."""
    rows = {k: [] for k in SCHEMA.names}
    c = tag.num_classes
    for n, p in zip(nodes.tolist(), pred.tolist()):
        nbrs = tag.neighbors(n)
        soft = np.full(c, 0.1 / (c - 1), dtype=np.float32)
        soft[p] = 0.9
        rows["node_id"].append(n)
        rows["pred"].append(p)
        rows["soft"].append(soft.tolist())
        rows["gen_label"].append(p)
        rows["keywords"].append(texts[n].split()[:3])
        rows["key_neighbors"].append([int(v) for v in nbrs[tag.labels[nbrs] == tag.labels[n]][:2]])
        rows["reason"].append("")
        rows["ok"].append(True)
        rows["problems"].append([])
        rows["tokens"].append(10)
    (workdir / "rationale").mkdir(parents=True, exist_ok=True)
    write_part(workdir / "rationale", rows)


@pytest.fixture(scope="session")
def student_world(ray_local, tmp_path_factory):
    """600 nodes, 4 classes, noisy features, 5 labels per class; the teacher covers 300 nodes at 90%."""
    root = tmp_path_factory.mktemp("student")
    cfg = build_config({
        "name": "stu", "workdir": str(root / "w"),
        "ingest": {"source": {"kind": "synthetic", "num_nodes": 600, "num_edges": 3000, "num_classes": 4,
                              "homophily": 0.8, "class_word_fraction": 0.08, "words_per_node": 12,
                              "num_shards": 2, "seed": 3},
                   "split": {"train_per_class": 5, "val_per_class": 10},
                   "encoder": {"name": "hashing", "dim": 64}, "num_shards": 2},
        "prompt": {"hops": 2},
        "teacher": {"eval_budget": 100},
        # the synthetic teacher has no val calibration (teacher/calibration.json): its targets weigh 1
        "distill": {"hidden": 32, "num_layers": 2, "fanouts": [10, 5], "batch_size": 64, "epochs": 30,
                    "patience": 10, "num_workers": 1, "unlabeled_seeds": 200, "lr": 0.01,
                    "teacher_weighting": "uniform"},
    })
    ingest.run(cfg)
    tag = TAG.load(cfg.graph_dir)
    rng = np.random.default_rng(1)
    from gkd.llm.teacher import eval_nodes

    evals = eval_nodes(tag.labels, tag.split, cfg.teacher.eval_budget, cfg.teacher.seed)
    covered = np.union1d(rng.choice(tag.num_nodes, 220, replace=False), evals)
    pred = write_synthetic_teacher(cfg.workdir, tag, covered)
    texts = tag.texts()
    write_synthetic_rationales(cfg.workdir, tag, covered[:150], pred[:150], texts)
    return cfg, tag

def make_sbm_graph(n: int = 600, c: int = 4, degree: int = 6, homophily: float = 0.85, noise: float = 2.0,
              dim: int = 16, shares=(0.55, 0.25, 0.12, 0.08), train_per_class: int = 5, val_per_class: int = 10,
              seed: int = 0) -> GraphArrays:
    """Imbalanced classes (`shares`), homophilous random edges, features = class mean + Gaussian noise;
    a balanced train/val split (k per class) and every other labelled node in test (so test is imbalanced)."""
    rng = np.random.default_rng(seed)
    y = rng.choice(c, size=n, p=np.asarray(shares[:c]) / np.sum(shares[:c]))
    src = np.repeat(np.arange(n), degree)
    same = rng.random(len(src)) < homophily
    by_class = [np.flatnonzero(y == k) for k in range(c)]
    dst = np.where(same, [rng.choice(by_class[y[s]]) for s in src], rng.integers(0, n, len(src)))
    indptr, indices = build_csr(src, dst, n)
    means = rng.normal(size=(c, dim))
    x = (means[y] + noise * rng.normal(size=(n, dim))).astype(np.float32)
    split = np.full(n, TEST, dtype=np.int8)
    for k in range(c):
        nodes = rng.permutation(by_class[k])
        split[nodes[:train_per_class]] = TRAIN
        split[nodes[train_per_class : train_per_class + val_per_class]] = VAL
    split[rng.choice(np.flatnonzero(split == TEST), size=n // 20, replace=False)] = UNLABELED
    return GraphArrays(x=x, y=y.astype(np.int64), split=split, indptr=indptr, indices=indices, num_classes=c)


@pytest.fixture
def sbm_graph():
    """make_sbm_graph: small seeded graphs in memory (no store, no Ray)."""
    return make_sbm_graph
