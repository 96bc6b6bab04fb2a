"""Bad inputs as corpora: malformed bring-your-own folders and experiment configs, each of which must stop
with a clear gkd error (a GkdError naming the file, the column and the first bad row, or the dotted key).
The tests (tests/data/test_bad_inputs.py) run every case; the reliability suite counts them (`tally`).

Every malformed input is built by code from one small valid BYO folder (20 nodes, 40 edges) or written as a
YAML file. `BYO_CASES` and `CONFIG_CASES` are module-level so that a benchmark can reuse them:

    for case in BYO_CASES:
        message = byo_error(case, workdir / case.id)   # Unclear unless the error is clear
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq

from gkd.cli import build_parser, config_from_args
from gkd.config import ByoSource
from gkd.data.sources.byo import load_byo
from gkd.errors import ConfigError, DataError, GkdError

class Unclear(AssertionError):
    """A malformed input that was accepted, or refused without a clear error (the message says which)."""


def _check(ok, message: str) -> None:
    if not ok:
        raise Unclear(message)


# ----------------------------------------------------------------------------- one valid folder

NUM_NODES, NUM_EDGES = 20, 40
CLASSES = ("alpha", "beta", "gamma")
SHARD_BOUNDS = ((0, 7), (7, 14), (14, 20))  # nodes/ and edges/ folders: three shards, part-00001 in the middle
EDGE_SHARD_BOUNDS = ((0, 14), (14, 27), (27, 40))


def node_ids(string_ids: bool = False) -> list:
    """Ids are not row positions (10 * i, or 'n00'..'n19'), so an unknown id cannot pass by accident."""
    return [f"n{i:02d}" for i in range(NUM_NODES)] if string_ids else [10 * i for i in range(NUM_NODES)]


def valid_nodes(string_ids: bool = False) -> pa.Table:
    """node_id, text, label (nodes 17-19 unlabeled), split (train 0-9, val 10-12, test 13-16, null 17-19)."""
    labels = [CLASSES[i % 3] if i < 17 else None for i in range(NUM_NODES)]
    split = ["train"] * 10 + ["val"] * 3 + ["test"] * 4 + [None] * 3
    ids = node_ids(string_ids)
    return pa.table({
        "node_id": pa.array(ids, pa.string() if string_ids else pa.int64()),
        "text": pa.array([f"node {i} writes about {CLASSES[i % 3]}" for i in range(NUM_NODES)], pa.string()),
        "label": pa.array(labels, pa.string()),
        "split": pa.array(split, pa.string()),
    })


def valid_edges(string_ids: bool = False) -> pa.Table:
    ids = node_ids(string_ids)
    kind = pa.string() if string_ids else pa.int64()
    return pa.table({
        "src": pa.array([ids[i % NUM_NODES] for i in range(NUM_EDGES)], kind),
        "dst": pa.array([ids[(7 * i + 3) % NUM_NODES] for i in range(NUM_EDGES)], kind),
    })


def write_table(table: pa.Table, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def write_folder(root: Path, nodes: pa.Table | None = None, edges: pa.Table | None = None,
                 *, skip: tuple[str, ...] = ()) -> Path:
    """root/nodes.parquet + root/edges.parquet (the valid ones unless given; names in skip are left out)."""
    root.mkdir(parents=True, exist_ok=True)
    if "nodes" not in skip:
        write_table(valid_nodes() if nodes is None else nodes, root / "nodes.parquet")
    if "edges" not in skip:
        write_table(valid_edges() if edges is None else edges, root / "edges.parquet")
    return root


def write_shards(folder: Path, table: pa.Table, bounds) -> list[Path]:
    return [write_table(table.slice(a, b - a), folder / f"part-{i:05d}.parquet") for i, (a, b) in enumerate(bounds)]


def set_column(table: pa.Table, name: str, values) -> pa.Table:
    """Replace (or add) one column; values is a list (type inferred) or an arrow array."""
    array = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values)
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, array)
    return table.append_column(name, array)


def set_value(table: pa.Table, name: str, row: int, value) -> pa.Table:
    """One cell changed, the column's type kept."""
    values = table.column(name).to_pylist()
    values[row] = value
    return set_column(table, name, pa.array(values, table.schema.field(name).type))


def drop_column(table: pa.Table, name: str) -> pa.Table:
    return table.drop_columns([name])


def raw_strings(values: list) -> pa.Array:
    """A string column holding these raw bytes, not checked for UTF-8 (as a foreign writer may leave it)."""
    return pa.array(values, pa.binary()).view(pa.string())


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# ----------------------------------------------------------------------------- the BYO corpus


@dataclass(frozen=True)
class ByoCase:
    """One malformed folder: build(root) writes it under root and returns the path given to load_byo."""

    id: str
    build: Callable[[Path], Path]
    file: str  # the message starts with <root>/<file>
    expect: str  # ... and says this
    column: str | None = None  # ... and names this column
    row: int | None = None  # ... and this row, 0-based within that file


def _nodes(change: Callable[[pa.Table], pa.Table], string_ids: bool = False) -> Callable[[Path], Path]:
    return lambda root: write_folder(root, change(valid_nodes(string_ids)), valid_edges(string_ids))


def _edges(change: Callable[[pa.Table], pa.Table], string_ids: bool = False) -> Callable[[Path], Path]:
    return lambda root: write_folder(root, valid_nodes(string_ids), change(valid_edges(string_ids)))


def _files(action: Callable[[Path], None]) -> Callable[[Path], Path]:
    """A valid folder, then action(root) breaks its files."""
    def build(root: Path) -> Path:
        write_folder(root)
        action(root)
        return root
    return build


def _node_shards(bad_middle: Callable[[pa.Table], pa.Table] | None = None,
                 after: Callable[[Path], None] | None = None) -> Callable[[Path], Path]:
    """nodes/ as three shards (rows 0-6, 7-13, 14-19); bad_middle changes part-00001 (rows 7-13) before writing."""
    def build(root: Path) -> Path:
        nodes = valid_nodes()
        parts = [nodes.slice(a, b - a) for a, b in SHARD_BOUNDS]
        if bad_middle is not None:
            parts[1] = bad_middle(parts[1])
        for i, part in enumerate(parts):
            write_table(part, root / "nodes" / f"part-{i:05d}.parquet")
        write_table(valid_edges(), root / "edges.parquet")
        if after is not None:
            after(root)
        return root
    return build


def _edge_shards(bad_middle: Callable[[pa.Table], pa.Table]) -> Callable[[Path], Path]:
    def build(root: Path) -> Path:
        write_folder(root, skip=("edges",))
        edges = valid_edges()
        parts = [edges.slice(a, b - a) for a, b in EDGE_SHARD_BOUNDS]
        parts[1] = bad_middle(parts[1])
        for i, part in enumerate(parts):
            write_table(part, root / "edges" / f"part-{i:05d}.parquet")
        return root
    return build


def _garble_first_page(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[4:20] = b"\xff" * 16  # the first page header, right after the PAR1 magic
    path.write_bytes(bytes(data))


def _twice(table: pa.Table, name: str) -> pa.Table:
    return pa.Table.from_arrays([*table.columns, table.column(name)], names=[*table.column_names, name])


NP, EP = "nodes.parquet", "edges.parquet"
MIDDLE = "nodes/part-00001.parquet"
BAD_UTF8 = "not valid UTF-8"

BYO_CASES: list[ByoCase] = [
    # --- files: missing, empty, truncated, not parquet
    ByoCase("folder-missing", lambda root: root / "no-such-folder", "no-such-folder", "folder not found"),
    ByoCase("nodes-file-missing", lambda root: write_folder(root, skip=("nodes",)), NP, "file not found"),
    ByoCase("edges-file-missing", lambda root: write_folder(root, skip=("edges",)), EP, "file not found"),
    ByoCase("nodes-zero-rows", _nodes(lambda t: t.slice(0, 0)), NP, "has no rows"),
    ByoCase("nodes-zero-bytes", _files(lambda root: (root / NP).write_bytes(b"")), NP, "not a readable parquet"),
    ByoCase("nodes-truncated", _files(lambda root: truncate(root / NP)), NP, "not a readable parquet"),
    ByoCase("edges-truncated", _files(lambda root: truncate(root / EP)), EP, "not a readable parquet"),
    ByoCase("nodes-is-csv", _files(lambda root: (root / NP).write_text("node_id,text,label\n0,hi,alpha\n")),
            NP, "not a readable parquet"),
    ByoCase("edges-is-json", _files(lambda root: (root / EP).write_text(json.dumps({"src": [0], "dst": [10]}))),
            EP, "not a readable parquet"),
    ByoCase("nodes-page-header-garbled", _files(lambda root: _garble_first_page(root / NP)), NP,
            "not a readable parquet"),
    ByoCase("nodes-file-and-folder", _files(lambda root: (root / "nodes").mkdir()), ".",
            "both nodes.parquet and a nodes/ folder"),
    ByoCase("nodes-folder-without-shards",
            lambda root: (write_folder(root, skip=("nodes",)), (root / "nodes").mkdir(),
                          (root / "nodes" / "_SUCCESS").write_text(""), root)[-1],
            "nodes", "no *.parquet shards"),
    # --- columns: missing, doubled, files swapped
    ByoCase("nodes-no-node_id", _nodes(lambda t: drop_column(t, "node_id")), NP, "required column", "node_id"),
    ByoCase("nodes-no-text", _nodes(lambda t: drop_column(t, "text")), NP, "required column", "text"),
    ByoCase("nodes-no-label", _nodes(lambda t: drop_column(t, "label")), NP, "required column", "label"),
    ByoCase("edges-no-src", _edges(lambda t: drop_column(t, "src")), EP, "required column", "src"),
    ByoCase("edges-no-dst", _edges(lambda t: drop_column(t, "dst")), EP, "required column", "dst"),
    ByoCase("files-swapped", lambda root: write_folder(root, valid_edges(), valid_nodes()), NP,
            "required column", "node_id"),
    ByoCase("nodes-text-column-twice", _nodes(lambda t: _twice(t, "text")), NP, "appears 2 times", "text"),
    # --- mistyped columns
    ByoCase("node_id-float", _nodes(lambda t: set_column(t, "node_id", [10.0 * i for i in range(NUM_NODES)])),
            NP, "type double", "node_id", 0),
    ByoCase("node_id-bool", _nodes(lambda t: set_column(t, "node_id", [i % 2 == 0 for i in range(NUM_NODES)])),
            NP, "type bool", "node_id", 0),
    ByoCase("node_id-uint64-overflow",
            _nodes(lambda t: set_column(t, "node_id", pa.array([*range(5), 2**63 + 1, *range(6, NUM_NODES)],
                                                               pa.uint64()))),
            NP, "does not fit int64", "node_id", 5),
    ByoCase("text-int", _nodes(lambda t: set_column(t, "text", pa.array([None, None, *range(2, NUM_NODES)]))),
            NP, "type int64", "text", 2),
    ByoCase("text-binary", _nodes(lambda t: set_column(t, "text", pa.array([b"raw bytes"] * NUM_NODES))),
            NP, "type binary", "text", 0),
    ByoCase("text-list", _nodes(lambda t: set_column(t, "text", pa.array([["a", "b"]] * NUM_NODES))),
            NP, "type list", "text", 0),
    ByoCase("label-float", _nodes(lambda t: set_column(t, "label", pa.array([None, 1.5] + [0.0] * 18))),
            NP, "type double", "label", 1),
    ByoCase("label-int", _nodes(lambda t: set_column(t, "label", pa.array([None] * 3 + list(range(17))))),
            NP, "type int64", "label", 3),
    ByoCase("split-bool", _nodes(lambda t: set_column(t, "split", pa.array([None] * 4 + [True] * 16))),
            NP, "type bool", "split", 4),
    ByoCase("src-float", _edges(lambda t: set_column(t, "src", [float(v) for v in t.column("src").to_pylist()])),
            EP, "type double", "src", 0),
    ByoCase("dst-string-for-int-ids",
            _edges(lambda t: set_column(t, "dst", [str(v) for v in t.column("dst").to_pylist()])),
            EP, "type string", "dst", 0),
    ByoCase("src-int-for-string-ids", _edges(lambda t: set_column(t, "src", list(range(NUM_EDGES))), string_ids=True),
            EP, "type int64", "src", 0),
    # --- bad values
    ByoCase("node_id-duplicate", _nodes(lambda t: set_value(t, "node_id", 12, 30)), NP, "duplicate node_id",
            "node_id", 12),
    ByoCase("node_id-null", _nodes(lambda t: set_value(t, "node_id", 6, None)), NP, "null node_id", "node_id", 6),
    ByoCase("text-null", _nodes(lambda t: set_value(t, "text", 9, None)), NP, "null text", "text", 9),
    ByoCase("label-empty-string", _nodes(lambda t: set_value(t, "label", 4, "")), NP, "empty class name", "label", 4),
    ByoCase("split-unknown-name", _nodes(lambda t: set_value(t, "split", 11, "validation")), NP,
            "split must be one of", "split", 11),
    ByoCase("split-capitalised", _nodes(lambda t: set_value(t, "split", 0, "Train")), NP,
            "split must be one of", "split", 0),
    ByoCase("split-train-label-null", _nodes(lambda t: set_value(t, "label", 8, None)), NP,
            "label is null", "split", 8),
    ByoCase("src-null", _edges(lambda t: set_value(t, "src", 21, None)), EP, "null src", "src", 21),
    ByoCase("dst-null", _edges(lambda t: set_value(t, "dst", 3, None)), EP, "null dst", "dst", 3),
    ByoCase("src-unknown-id", _edges(lambda t: set_value(t, "src", 17, 15)), EP, "unknown node_id", "src", 17),
    ByoCase("dst-negative-unknown-id", _edges(lambda t: set_value(t, "dst", 30, -10)), EP, "unknown node_id",
            "dst", 30),
    ByoCase("dst-unknown-string-id", _edges(lambda t: set_value(t, "dst", 2, "n20"), string_ids=True), EP,
            "unknown node_id", "dst", 2),
    # --- text that is not UTF-8
    ByoCase("text-invalid-utf8",
            _nodes(lambda t: set_column(t, "text", raw_strings([b"fine"] * 13 + [b"\xff\xfe\x00bad"] + [b"ok"] * 6))),
            NP, BAD_UTF8, "text", 13),
    ByoCase("text-latin1",
            _nodes(lambda t: set_column(t, "text", raw_strings([s.encode() for s in t.column("text").to_pylist()[:7]]
                                                                + ["café crème".encode("latin-1")] * 13))),
            NP, BAD_UTF8, "text", 7),
    ByoCase("label-invalid-utf8",
            _nodes(lambda t: set_column(t, "label", raw_strings([b"alpha", b"beta", "gamm\u00e4".encode("latin-1")]
                                                                 + [b"alpha"] * 17))),
            NP, BAD_UTF8, "label", 2),
    ByoCase("node_id-invalid-utf8",
            _nodes(lambda t: set_column(t, "node_id",
                                        raw_strings([f"n{i:02d}".encode() for i in range(19)] + [b"n\xff"])),
                   string_ids=True),
            NP, BAD_UTF8, "node_id", 19),
    ByoCase("split-invalid-utf8",
            _nodes(lambda t: set_column(t, "split", raw_strings([b"train"] * 5 + [b"tr\xe4in"] + [b"train"] * 4
                                                                 + [b"val"] * 3 + [b"test"] * 4 + [None] * 3))),
            NP, BAD_UTF8, "split", 5),
    ByoCase("src-invalid-utf8",
            _edges(lambda t: set_column(t, "src", raw_strings([v.encode() for v in t.column("src").to_pylist()[:33]]
                                                              + [b"\xc3("] * 7)), string_ids=True),
            EP, BAD_UTF8, "src", 33),
    # --- shard folders with a bad shard in the middle (rows counted within that shard)
    ByoCase("shard-truncated", _node_shards(after=lambda root: truncate(root / MIDDLE)), MIDDLE,
            "not a readable parquet"),
    ByoCase("shard-not-parquet", _node_shards(after=lambda root: (root / MIDDLE).write_text("oops")), MIDDLE,
            "not a readable parquet"),
    ByoCase("shard-no-label", _node_shards(lambda t: drop_column(t, "label")), MIDDLE, "required column", "label"),
    ByoCase("shard-text-null", _node_shards(lambda t: set_value(t, "text", 2, None)), MIDDLE, "null text", "text", 2),
    ByoCase("shard-duplicate-id", _node_shards(lambda t: set_value(t, "node_id", 4, 30)), MIDDLE,
            "duplicate node_id", "node_id", 4),
    ByoCase("shard-string-ids", _node_shards(lambda t: set_column(t, "node_id", [f"x{i}" for i in range(t.num_rows)])),
            MIDDLE, "but int in", "node_id", 0),
    ByoCase("shard-label-int", _node_shards(lambda t: set_column(t, "label", pa.array([None, None, None, 1, 2, 3, 4]))),
            MIDDLE, "type int64", "label", 3),
    ByoCase("shard-text-invalid-utf8",
            _node_shards(lambda t: set_column(t, "text", raw_strings([b"a", b"b", b"c", b"d", b"\x80e", b"f", b"g"]))),
            MIDDLE, BAD_UTF8, "text", 4),
    ByoCase("edge-shard-unknown-dst", _edge_shards(lambda t: set_value(t, "dst", 6, 999)),
            "edges/part-00001.parquet", "unknown node_id", "dst", 6),
    ByoCase("edge-shard-null-src", _edge_shards(lambda t: set_value(t, "src", 10, None)),
            "edges/part-00001.parquet", "null src", "src", 10),
]


def byo_error(case: ByoCase, root: Path) -> str:
    """Build the case under root, load it, and return the error message; Unclear unless load_byo
    stopped with a DataError that starts with the file and names the column and the row (0-based)."""
    path = case.build(root)
    try:
        load_byo(ByoSource(path=path))
    except GkdError as caught:
        err, message = caught, str(caught)
    else:
        raise Unclear(f"{case.id}: load_byo accepted the malformed folder {path}")
    _check(isinstance(err, DataError), f"{case.id}: {type(err).__name__}, not DataError: {message}")
    _check(err.__cause__ is None and (err.__context__ is None or err.__suppress_context__),
           f"{case.id}: chained to {err.__context__!r}")  # no arrow traceback rides along
    where = message.split(": ", 1)[0].rstrip("/")
    _check(where == str(root / case.file), f"{case.id}: starts with {where!r}, not {root / case.file}: {message}")
    _check(case.expect in message, f"{case.id}: {case.expect!r} not in {message}")
    if case.column is not None:
        _check(f"column '{case.column}'" in message, f"{case.id}: column {case.column!r} not named: {message}")
    if case.row is not None:
        _check(re.search(rf"\brow {case.row} \(0-based\)", message), f"{case.id}: row {case.row} not named: {message}")
    return message


# ----------------------------------------------------------------------------- the config corpus


@dataclass(frozen=True)
class ConfigCase:
    """One malformed experiment YAML (str, or bytes for encodings)."""

    id: str
    text: str | bytes
    expect: str  # the message says this
    key: str | None = None  # ... and names this dotted key (None: the whole file is wrong)


CONFIG_CASES: list[ConfigCase] = [
    # not a mapping, not YAML, not text
    ConfigCase("top-level-list", "- ingest\n- distill\n", "top level must be a mapping, got list"),
    ConfigCase("top-level-int", "42\n", "top level must be a mapping, got int"),
    ConfigCase("top-level-sentence", "train the student please\n", "top level must be a mapping, got str"),
    ConfigCase("unclosed-bracket", "ingest: [1, 2\n", "not valid YAML"),
    ConfigCase("tab-indented", "ingest:\n\tnum_shards: 2\n", "not valid YAML"),
    ConfigCase("python-object-tag", "name: !!python/object/apply:os.system ['true']\n", "not valid YAML"),
    ConfigCase("latin1-bytes", "name: gkd\nworkdir: runs/caf\u00e9\n".encode("latin-1"), "not UTF-8"),
    ConfigCase("duplicate-key", "distill:\n  epochs: 5\n  hidden: 64\n  epochs: 50\n", "key given twice",
               "distill.epochs"),
    # unknown keys at several depths
    ConfigCase("unknown-top-key", "nmae: demo\n", "unknown key", "nmae"),
    ConfigCase("unknown-depth-2", "ingest:\n  nmu_shards: 4\n", "unknown key", "ingest.nmu_shards"),
    ConfigCase("unknown-depth-3", "ingest:\n  encoder:\n    nam: hashing\n", "unknown key", "ingest.encoder.nam"),
    ConfigCase("unknown-byo-source-key", "ingest:\n  source:\n    kind: byo\n    path: /data\n    pth: /x\n",
               "unknown key", "ingest.source.pth"),
    ConfigCase("unknown-depth-3-serve", "serve:\n  cascade:\n    treshold: 0.5\n", "unknown key",
               "serve.cascade.treshold"),
    # out-of-range values
    ConfigCase("negative-epochs", "teacher:\n  epochs: -1\n", "greater than or equal to 1", "teacher.epochs"),
    ConfigCase("port-70000", "serve:\n  port: 70000\n", "less than or equal to 65535", "serve.port"),
    ConfigCase("dropout-2", "distill:\n  dropout: 2\n", "less than 1", "distill.dropout"),
    ConfigCase("holdout-1.5", "ingest:\n  split:\n    holdout_fraction: 1.5\n", "less than 1",
               "ingest.split.holdout_fraction"),
    ConfigCase("zero-threshold", "serve:\n  cascade:\n    threshold: 0\n", "greater than 0",
               "serve.cascade.threshold"),
    ConfigCase("fanouts-vs-layers", "distill:\n  num_layers: 3\n  fanouts: [10, 5]\n",
               "fanouts has 2 entries but num_layers=3", "distill"),
    # wrong types
    ConfigCase("hidden-string", "distill:\n  hidden: big\n", "valid integer", "distill.hidden"),
    ConfigCase("bool-maybe", "ingest:\n  partition:\n    enabled: maybe\n", "valid boolean",
               "ingest.partition.enabled"),
    ConfigCase("section-as-string", "ingest:\n  encoder: minilm\n", "valid dictionary", "ingest.encoder"),
    ConfigCase("section-as-list", "ray: [1, 2]\n", "valid dictionary", "ray"),
    ConfigCase("ingest-as-int", "ingest: 5\n", "must be a mapping", "ingest"),
    ConfigCase("fanouts-as-string", "distill:\n  fanouts: '15,10'\n", "valid list", "distill.fanouts"),
    ConfigCase("unknown-source-kind", "ingest:\n  source:\n    kind: imdb\n", "'byo'", "ingest.source"),
    ConfigCase("byo-without-path", "ingest:\n  source:\n    kind: byo\n", "Field required", "ingest.source.path"),
]


def load_like_the_cli(path: Path):
    """The CLI's own path from --config to a validated config (gkd.cli.config_from_args)."""
    return config_from_args(build_parser().parse_args(["ingest", "--config", str(path)]))


def config_error(case: ConfigCase, folder: Path) -> str:
    """Write the case as <folder>/experiment.yaml, load it as the CLI does, return the error message;
    Unclear unless it is a ConfigError naming the file and the dotted key."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "experiment.yaml"
    path.write_bytes(case.text if isinstance(case.text, bytes) else case.text.encode())
    try:
        load_like_the_cli(path)
    except GkdError as caught:
        err, message = caught, str(caught)
    else:
        raise Unclear(f"{case.id}: the config was accepted")
    _check(isinstance(err, ConfigError), f"{case.id}: {type(err).__name__}, not ConfigError: {message}")
    _check(str(path) in message, f"{case.id}: file not named: {message}")
    _check(case.expect in message, f"{case.id}: {case.expect!r} not in {message}")
    if case.key is not None:
        rest = message.replace(str(path), "<file>")
        _check(re.search(rf"(?<![\w.]){re.escape(case.key)}(?![\w.])", rest),
               f"{case.id}: key {case.key!r} not named: {message}")
    return message


def tally(root: Path) -> dict:
    """Every case of both corpora, built under `root`: {tried, clear_errors, byo, configs, unclear: [what was not
    clear]}. An unexpected exception is counted as unclear, not raised: that is what the count is for."""
    unclear = []
    for i, case in enumerate(BYO_CASES):
        try:
            byo_error(case, root / "byo" / f"{i:02d}")
        except Exception as e:  # noqa: BLE001 - a raw exception is exactly what this counts
            unclear.append(f"{case.id}: {type(e).__name__}: {e}")
    for i, case in enumerate(CONFIG_CASES):
        try:
            config_error(case, root / "config" / f"{i:02d}")
        except Exception as e:  # noqa: BLE001
            unclear.append(f"{case.id}: {type(e).__name__}: {e}")
    tried = len(BYO_CASES) + len(CONFIG_CASES)
    return {"tried": tried, "clear_errors": tried - len(unclear), "byo": len(BYO_CASES),
            "configs": len(CONFIG_CASES), "unclear": unclear}
