"""Bring-your-own folder: nodes.parquet (node_id, text, label, [split]) + edges.parquet (src, dst).

Either file may instead be a folder of parquet shards (`nodes/`, `edges/`), read in file-name
order. Every violation raises DataError naming the file, the column and the first bad row
(0-based, counted within that file).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from gkd.config import ByoSource
from gkd.data.raw import RawGraph
from gkd.errors import DataError

logger = logging.getLogger(__name__)

GIVEN_SPLITS = ("train", "val", "test")
NODE_COLUMNS = ("node_id", "text", "label")  # plus optional "split"
EDGE_COLUMNS = ("src", "dst")
_INT64_MAX = np.iinfo(np.int64).max


@dataclass
class _Parquet:
    """One logical table read from `<stem>.parquet` or the shards of `<stem>/`."""

    stem: str  # "nodes" or "edges"
    files: list[Path]
    tables: list[pa.Table]
    extra: list[str] = field(default_factory=list)  # columns found but not used
    starts: np.ndarray = field(init=False)  # (num_files,) first global row of each file

    def __post_init__(self) -> None:
        self.starts = np.cumsum([0] + [t.num_rows for t in self.tables[:-1]])

    @property
    def num_rows(self) -> int:
        return sum(t.num_rows for t in self.tables)

    @property
    def name(self) -> str:
        return str(self.files[0]) if len(self.files) == 1 else str(self.files[0].parent) + "/"

    def where(self, row: int) -> tuple[Path, int]:
        """Global row -> (file, row within that file)."""
        i = int(np.searchsorted(self.starts, row, side="right")) - 1
        return self.files[i], int(row - self.starts[i])


def load_byo(cfg: ByoSource) -> RawGraph:
    """Read a bring-your-own folder; node i = row i of the nodes file(s), edges as row positions."""
    folder = Path(cfg.path).expanduser()
    if not folder.is_dir():
        raise DataError(
            f"{folder}: bring-your-own folder not found (source.path). Point source.path at a "
            "folder holding nodes.parquet and edges.parquet."
        )
    nodes_pq = _read(folder, "nodes", (*NODE_COLUMNS, "split"))
    edges_pq = _read(folder, "edges", EDGE_COLUMNS)
    notes: list[str] = []

    ids, text, label, split = _node_columns(nodes_pq)
    _check_ids(nodes_pq, ids)
    _check_text(nodes_pq, text)
    class_names = _check_labels(nodes_pq, label)
    _check_split(nodes_pq, split, label)
    src, dst = _edge_columns(edges_pq, nodes_pq, ids.type)
    src_idx, dst_idx = _map_edges(edges_pq, ids, src, dst)

    n, num_edges = len(ids), len(src_idx)
    label_idx = pc.fill_null(pc.index_in(label, value_set=pa.array(class_names, pa.string())), -1)
    empty_texts = int(pc.sum(pc.equal(pc.utf8_length(text), 0)).as_py() or 0)
    self_loops = int(np.count_nonzero(src_idx == dst_idx))
    pairs = np.sort(src_idx * n + dst_idx)  # a sort: numpy's hash-based unique is far slower here
    duplicate_edges = int(np.count_nonzero(pairs[1:] == pairs[:-1]))
    stats = {
        "empty_texts": empty_texts,
        "unlabeled_nodes": int(label.null_count),
        "given_splits": int(n - split.null_count),
        "self_loops": self_loops,
        "duplicate_edges": duplicate_edges,
    }
    if num_edges == 0:
        notes.append(f"{edges_pq.name} has no rows: the graph has no edges.")
    if not class_names:
        notes.append(f"{nodes_pq.name}: no node has a label.")
    if empty_texts:
        notes.append(f"{empty_texts} nodes have empty text.")
    if self_loops:
        notes.append(f"{self_loops} edges are self-loops (kept).")
    if duplicate_edges:
        notes.append(f"{duplicate_edges} edges repeat an earlier (src, dst) pair (kept).")
    for pq_ in (nodes_pq, edges_pq):
        if pq_.extra:
            notes.append(f"{pq_.name}: columns {pq_.extra} ignored.")

    nodes = pa.table(
        {
            "key": pc.cast(ids, pa.string()),
            "text": text,
            "label": pc.cast(label_idx, pa.int32()),
            "split": split,
        }
    )
    edges = pa.table({"src": pa.array(src_idx), "dst": pa.array(dst_idx)})
    logger.info(
        "byo %s: %d nodes, %d edges, %d classes, %d given splits",
        folder, n, num_edges, len(class_names), stats["given_splits"],
    )
    return RawGraph(nodes, edges, class_names, directed=cfg.directed, notes=notes, stats=stats)


# ----------------------------------------------------------------------------- reading


def _read(folder: Path, stem: str, wanted: tuple[str, ...]) -> _Parquet:
    """Read `<stem>.parquet` or every `<stem>/*.parquet` shard (file-name order), wanted columns only."""
    single = folder / f"{stem}.parquet"
    found = [p for p in (single, folder / stem) if p.exists()]
    if len(found) > 1:
        raise DataError(f"{folder}: both {stem}.parquet and a {stem}/ folder exist. Keep one of them.")
    if not found:
        listing = sorted(p.name for p in folder.iterdir())[:20]
        raise DataError(
            f"{single}: file not found (nor a {stem}/ folder of shards); the folder holds {listing}. "
            f"Write the {stem} table to {single.name}."
        )
    files = [found[0]]
    if found[0].is_dir():  # nodes/ or Spark's nodes.parquet/ folder: its *.parquet shards
        files = sorted(
            p for p in found[0].iterdir()
            if p.is_file() and p.suffix == ".parquet" and not p.name.startswith(("_", "."))
        )
        if not files:
            raise DataError(
                f"{found[0]}/: no *.parquet shards inside. Put the {stem} table there as "
                f"parquet files, or write a single {single.name} instead."
            )
    tables, extra = [], []
    for path in files:
        try:
            names = pq.read_schema(path).names
            twice = [c for c in wanted if names.count(c) > 1]
            if not twice:
                tables.append(pq.read_table(path, columns=[c for c in names if c in wanted]))
        except (pa.ArrowException, OSError) as e:
            raise DataError(
                f"{path}: not a readable parquet file ({e}). Write it with "
                "pandas.DataFrame.to_parquet or pyarrow.parquet.write_table."
            ) from None
        if twice:
            raise DataError(
                f"{path}: column '{twice[0]}' appears {names.count(twice[0])} times; columns found: {names}. "
                "Keep one column of each name."
            )
        extra += [c for c in names if c not in wanted and not c.startswith("__") and c not in extra]
    return _Parquet(stem, files, tables, extra)


def _bad(pq_: _Parquet, column: str, row: int, problem: str, fix: str, value=None) -> DataError:
    """A DataError naming the file, column, 0-based row (within the file) and offending value."""
    path, local = pq_.where(row)
    shown = "null" if value is None else repr(value)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    return DataError(f"{path}: column '{column}', row {local} (0-based), value {shown}: {problem}. {fix}")


def _first(mask) -> int:
    """Index of the first True in a boolean (chunked) arrow array (nulls count as False), or -1."""
    arr = np.asarray(pc.fill_null(mask, False), dtype=bool)
    return int(np.argmax(arr)) if arr.any() else -1


def _kind(t: pa.DataType) -> str:
    """'int', 'string', 'null', or the arrow type's own name."""
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string"
    if pa.types.is_null(t):
        return "null"
    return str(t)


def _check_type(pq_: _Parquet, column: str, allowed: tuple[str, ...], fix: str) -> list[str]:
    """Check one column's type in every file (all-null columns pass); returns each file's kind.

    A column missing from a file is an error, except 'split' (read as all null). A file with no rows has
    no value of a wrong type: its kind is 'null'. Strings must be valid UTF-8 (parquet readers do not check).
    """
    kinds = []
    for i, (path, table) in enumerate(zip(pq_.files, pq_.tables)):
        if column not in table.column_names:
            if column == "split":
                kinds.append("null")
                continue
            found = sorted(pq.read_schema(path).names)
            needs = list(NODE_COLUMNS if pq_.stem == "nodes" else EDGE_COLUMNS)
            raise DataError(
                f"{path}: required column '{column}' missing; columns found: {found}. "
                f"The {pq_.stem} table needs columns {needs}: rename or add it."
            )
        col = table.column(column)
        kind = _kind(col.type) if table.num_rows else "null"
        if kind not in allowed + ("null",):
            row = max(_first(pc.is_valid(col)), 0)
            raise _bad(pq_, column, int(pq_.starts[i]) + row,
                       f"type {col.type}, expected {' or '.join(allowed)}", fix, col[row].as_py())
        if kind == "int" and pa.types.is_uint64(_value_type(col.type)):
            row = _first(pc.greater(col, pa.scalar(_INT64_MAX, pa.uint64())))
            if row >= 0:
                raise _bad(pq_, column, int(pq_.starts[i]) + row, "integer does not fit int64", fix,
                           col[row].as_py())
        if kind == "string":
            row = _first_bad_utf8(col)
            if row >= 0:
                raise _bad(pq_, column, int(pq_.starts[i]) + row, "not valid UTF-8 text",
                           "Decode the bytes with their real encoding (e.g. latin-1) and write str values.",
                           _as_bytes(col)[row].as_py())
        kinds.append(kind)
    return kinds


_BYTES = {pa.string(): pa.binary(), pa.large_string(): pa.large_binary(), pa.string_view(): pa.binary_view()}


def _as_bytes(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """A (dictionary-encoded) string column's values as binary, without UTF-8 checks."""
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    return pa.chunked_array([c.view(_BYTES[c.type]) for c in col.chunks], _BYTES[col.type])


def _first_bad_utf8(col: pa.ChunkedArray) -> int:
    """First row of a string column that is not valid UTF-8, or -1 (rows are decoded only after a failed check)."""
    try:
        col.validate(full=True)
        return -1
    except pa.ArrowInvalid:
        pass
    for row, value in enumerate(_as_bytes(col).to_pylist()):
        if value is not None:
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                return row
    return -1


def _concat(pq_: _Parquet, column: str, target: pa.DataType) -> pa.ChunkedArray:
    """One column of every file, cast to target, as one chunked array (missing -> nulls)."""
    chunks = []
    for table in pq_.tables:
        if column not in table.column_names or table.num_rows == 0:
            chunks.append(pa.nulls(table.num_rows, target))
            continue
        col = table.column(column)
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        chunks.extend(col.cast(target).chunks)
    return pa.chunked_array(chunks, target)


def _value_type(t: pa.DataType) -> pa.DataType:
    return t.value_type if pa.types.is_dictionary(t) else t


# ----------------------------------------------------------------------------- nodes


def _node_columns(nodes: _Parquet):
    """(node_id: int64|string, text, label, split: string) chunked arrays, one row per node."""
    if nodes.num_rows == 0:
        raise DataError(f"{nodes.name}: has no rows (empty nodes file). Write at least one node.")
    id_fix = "node_id must be integers or strings, the same type in every file."
    kinds = _check_type(nodes, "node_id", ("int", "string"), id_fix)
    typed = [(i, k) for i, k in enumerate(kinds) if k != "null"]
    for i, kind in typed:  # every shard must have the first one's kind
        if kind != typed[0][1]:
            col = nodes.tables[i].column("node_id")
            problem = f"type {col.type}, but {typed[0][1]} in {nodes.files[typed[0][0]]}"
            raise _bad(nodes, "node_id", int(nodes.starts[i]), problem, id_fix, col[0].as_py())
    id_type = pa.int64() if typed and typed[0][1] == "int" else pa.string()
    _check_type(nodes, "text", ("string",), "Write text as strings (e.g. df['text'].astype(str)).")
    _check_type(nodes, "label", ("string",),
                "Write labels as class names (strings), null for unknown (e.g. df['label'].astype(str)).")
    _check_type(nodes, "split", ("string",), f"split must be one of {list(GIVEN_SPLITS)} or null.")
    return (_concat(nodes, "node_id", id_type), _concat(nodes, "text", pa.string()),
            _concat(nodes, "label", pa.string()), _concat(nodes, "split", pa.string()))


def _check_ids(nodes: _Parquet, ids: pa.ChunkedArray) -> None:
    """node_id: no nulls, no duplicates (the error names the duplicate and the row it repeats)."""
    row = _first(pc.is_null(ids))
    if row >= 0:
        raise _bad(nodes, "node_id", row, "null node_id", "Give every node an id.")
    encoded = pc.dictionary_encode(ids.combine_chunks())
    if len(encoded.dictionary) == len(ids):
        return
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    first_seen = np.full(len(encoded.dictionary), len(codes))
    np.minimum.at(first_seen, codes, np.arange(len(codes)))
    row = int(np.argmax(first_seen[codes] != np.arange(len(codes))))
    orig_path, orig_row = nodes.where(int(first_seen[codes[row]]))
    raise _bad(nodes, "node_id", row, f"duplicate node_id (first seen in {orig_path} row {orig_row})",
               "node_ids must be unique: drop or rename the duplicate.", ids[row].as_py())


def _check_text(nodes: _Parquet, text: pa.ChunkedArray) -> None:
    """text: no nulls (empty strings are allowed and counted)."""
    row = _first(pc.is_null(text))
    if row >= 0:
        raise _bad(nodes, "text", row, "null text", "Give every node a text (an empty string is allowed).")


def _check_labels(nodes: _Parquet, label: pa.ChunkedArray) -> list[str]:
    """Class names = sorted distinct non-null labels; an empty-string label is an error."""
    row = _first(pc.equal(label, ""))
    if row >= 0:
        raise _bad(nodes, "label", row, "empty class name", "Use null for an unknown label.", "")
    return sorted(pc.unique(label.drop_null()).to_pylist())


def _check_split(nodes: _Parquet, split: pa.ChunkedArray, label: pa.ChunkedArray) -> None:
    """split: train/val/test or null; never given on a node whose label is null."""
    allowed = pa.array(GIVEN_SPLITS, pa.string())
    row = _first(pc.and_(pc.is_valid(split), pc.invert(pc.is_in(split, value_set=allowed))))
    if row >= 0:
        raise _bad(nodes, "split", row, f"split must be one of {list(GIVEN_SPLITS)} or null",
                   "Fix the value, or write null to let ingest draw the split.", split[row].as_py())
    row = _first(pc.and_(pc.is_valid(split), pc.is_null(label)))
    if row >= 0:
        raise _bad(nodes, "split", row, "split given on a node whose label is null",
                   "Give the node a label, or set its split to null.", split[row].as_py())


# ----------------------------------------------------------------------------- edges


def _edge_columns(edges: _Parquet, nodes: _Parquet, id_type: pa.DataType):
    """src, dst cast to node_id's type; any other type (e.g. float ids) is an error."""
    kind, name = ("int", "int64") if pa.types.is_integer(id_type) else ("string", "str")
    fix = (f"src/dst must have node_id's type ({kind}, as in {nodes.name}); "
           f"e.g. df[['src', 'dst']].astype({name!r}).")
    for column in EDGE_COLUMNS:
        _check_type(edges, column, (kind,), fix)
    return _concat(edges, "src", id_type), _concat(edges, "dst", id_type)


def _map_edges(edges: _Parquet, ids: pa.ChunkedArray, src, dst) -> tuple[np.ndarray, np.ndarray]:
    """node_ids -> row positions, (E,) int64 each; null or unknown ids are errors (first bad row)."""
    for name, col in (("src", src), ("dst", dst)):
        row = _first(pc.is_null(col))
        if row >= 0:
            raise _bad(edges, name, row, f"null {name}", "Every edge needs both ends; drop the row.")
    value_set = ids.combine_chunks()
    mapped, bad = [], []
    for name, col in (("src", src), ("dst", dst)):
        idx = pc.index_in(col, value_set=value_set)
        row = _first(pc.is_null(idx))
        if row >= 0:
            bad.append((row, name, col[row].as_py(), int(idx.null_count)))
        mapped.append(idx.to_numpy(zero_copy_only=False) if row < 0 else None)
    if bad:
        row, name, value, count = min(bad, key=lambda b: b[0])  # src first on a tie
        raise _bad(edges, name, row, f"{name} names an unknown node_id ({count} rows of {name} do)",
                   "Add the node to the nodes file, or drop the edges that name it.", value)
    return mapped[0].astype(np.int64), mapped[1].astype(np.int64)
