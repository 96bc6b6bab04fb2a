"""Bring-your-own folder loader on small parquet files written with pyarrow."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gkd.config import ByoSource
from gkd.data.sources import load_source
from gkd.data.sources.byo import load_byo
from gkd.errors import DataError

# A valid string-id graph; violations below change one thing in it.
NODES = {
    "node_id": ["a", "b", "c", "d"],
    "text": ["alpha", "", "gamma", "delta"],
    "label": ["cat", None, "ant", "cat"],
    "split": ["train", None, "test", None],
}
EDGES = {"src": ["a", "b", "d", "d", "a"], "dst": ["b", "c", "a", "d", "b"]}


def write(folder: Path, nodes, edges) -> Path:
    """Write nodes/edges (dict of columns or pa.Table; None = leave the file out) as parquet."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, table in (("nodes", nodes), ("edges", edges)):
        if table is not None:
            table = table if isinstance(table, pa.Table) else pa.table(table)
            pq.write_table(table, folder / f"{name}.parquet")
    return folder


def load(folder: Path, directed: bool = False):
    return load_byo(ByoSource(path=folder, directed=directed))


def with_(base: dict, **changes) -> dict:
    out = dict(base)
    for key, value in changes.items():
        if value is None:
            out.pop(key)
        else:
            out[key] = value
    return out


# ----------------------------------------------------------------------------- happy paths


def test_string_ids(tmp_path):
    g = load(write(tmp_path, NODES, EDGES), directed=True)
    assert g.class_names == ["ant", "cat"]
    assert g.nodes.column("key").to_pylist() == ["a", "b", "c", "d"]
    assert g.nodes.column("text").to_pylist() == ["alpha", "", "gamma", "delta"]
    assert g.nodes.column("label").to_pylist() == [1, -1, 0, 1]
    assert g.nodes.column("split").to_pylist() == ["train", None, "test", None]
    assert g.edges.column("src").to_pylist() == [0, 1, 3, 3, 0]
    assert g.edges.column("dst").to_pylist() == [1, 2, 0, 3, 1]
    assert g.nodes.schema.field("label").type == pa.int32()
    assert g.directed is True
    assert g.stats == {
        "empty_texts": 1,
        "unlabeled_nodes": 1,
        "given_splits": 2,
        "self_loops": 1,
        "duplicate_edges": 1,
    }
    assert any("self-loop" in n for n in g.notes) and any("empty text" in n for n in g.notes)


def test_integer_ids_no_split_column(tmp_path):
    nodes = pa.table(
        {
            "node_id": pa.array([10, 5, 7, -2], pa.int32()),
            "text": ["ten", "five", "seven", "minus two"],
            "label": ["y", "x", None, "y"],
            "extra": [1.0, 2.0, 3.0, 4.0],
        }
    )
    edges = {"src": pa.array([5, 7, -2], pa.int64()), "dst": pa.array([10, 10, 5], pa.int16())}
    g = load_source(ByoSource(path=write(tmp_path, nodes, edges)))
    assert g.class_names == ["x", "y"]
    assert g.nodes.column("key").to_pylist() == ["10", "5", "7", "-2"]
    assert g.nodes.column("label").to_pylist() == [1, 0, -1, 1]
    assert g.nodes.column("split").to_pylist() == [None] * 4
    assert g.edges.column("src").to_pylist() == [1, 2, 3]
    assert g.edges.column("dst").to_pylist() == [0, 0, 1]
    assert g.directed is False
    assert g.stats["self_loops"] == 0 and g.stats["duplicate_edges"] == 0
    assert any("extra" in n for n in g.notes)


def test_dictionary_encoded_columns(tmp_path):
    nodes = pa.table({k: pa.array(v).dictionary_encode() for k, v in NODES.items()})
    g = load(write(tmp_path, nodes, EDGES))
    assert g.nodes.column("label").to_pylist() == [1, -1, 0, 1]
    assert g.edges.column("dst").to_pylist() == [1, 2, 0, 3, 1]


def test_shard_folders(tmp_path):
    nodes, edges = tmp_path / "nodes", tmp_path / "edges.parquet"  # Spark writes edges.parquet/ folders
    nodes.mkdir()
    edges.mkdir()
    pq.write_table(pa.table({k: v[:3] for k, v in NODES.items()}), nodes / "part-0.parquet")
    pq.write_table(pa.table({k: v[3:] for k, v in NODES.items()}), nodes / "part-1.parquet")
    pq.write_table(pa.table({k: v[:2] for k, v in EDGES.items()}), edges / "part-0.parquet")
    pq.write_table(pa.table({k: v[2:] for k, v in EDGES.items()}), edges / "part-1.parquet")
    (edges / "_SUCCESS").write_text("")  # Spark's marker files are skipped
    g = load(tmp_path)
    assert g.nodes.column("key").to_pylist() == ["a", "b", "c", "d"]
    assert g.nodes.column("label").to_pylist() == [1, -1, 0, 1]
    assert g.edges.column("src").to_pylist() == [0, 1, 3, 3, 0]
    assert g.edges.column("dst").to_pylist() == [1, 2, 0, 3, 1]


def test_shard_rows_are_counted_within_each_file(tmp_path):
    (tmp_path / "nodes").mkdir()
    pq.write_table(pa.table({"node_id": ["a", "b"], "text": ["", ""], "label": [None, None]}),
                   tmp_path / "nodes" / "part-0.parquet")
    pq.write_table(pa.table({"node_id": ["c", "b"], "text": ["", ""], "label": [None, None]}),
                   tmp_path / "nodes" / "part-1.parquet")
    write(tmp_path, None, {"src": ["a"], "dst": ["c"]})
    with pytest.raises(DataError) as e:
        load(tmp_path)
    msg = str(e.value)
    assert "part-1.parquet" in msg and "'node_id'" in msg and "row 1 " in msg
    assert "part-0.parquet row 1" in msg  # the row it duplicates


def test_empty_edges_is_an_edgeless_graph(tmp_path):
    edges = pa.table({"src": pa.array([], pa.string()), "dst": pa.array([], pa.string())})
    g = load(write(tmp_path, NODES, edges))
    assert g.edges.num_rows == 0 and g.num_nodes == 4
    assert any("no edges" in n for n in g.notes)


# ----------------------------------------------------------------------------- violations

# (id, nodes, edges, file, column, row); file-level problems have column/row None.
VIOLATIONS = [
    ("empty-nodes", {"node_id": pa.array([], pa.string()), "text": pa.array([], pa.string()),
                     "label": pa.array([], pa.string())}, EDGES, "nodes.parquet", None, None),
    ("no-node_id", with_(NODES, node_id=None), EDGES, "nodes.parquet", "node_id", None),
    ("no-text", with_(NODES, text=None), EDGES, "nodes.parquet", "text", None),
    ("no-label", with_(NODES, label=None), EDGES, "nodes.parquet", "label", None),
    ("no-src", NODES, with_(EDGES, src=None), "edges.parquet", "src", None),
    ("no-dst", NODES, with_(EDGES, dst=None), "edges.parquet", "dst", None),
    ("float-node_id", with_(NODES, node_id=[1.0, 2.0, 3.0, 4.0]), EDGES, "nodes.parquet", "node_id", 0),
    ("int-text", with_(NODES, text=[None, 1, 2, 3]), EDGES, "nodes.parquet", "text", 1),
    ("int-label", with_(NODES, label=[None, None, 3, 4]), EDGES, "nodes.parquet", "label", 2),
    ("bool-split", with_(NODES, split=[True, None, None, None]), EDGES, "nodes.parquet", "split", 0),
    ("float-src", NODES, with_(EDGES, src=[1.0, 2.0, 3.0, 4.0, 5.0]), "edges.parquet", "src", 0),
    ("int-dst-for-string-ids", NODES, with_(EDGES, dst=[1, 2, 3, 4, 5]), "edges.parquet", "dst", 0),
    ("null-node_id", with_(NODES, node_id=["a", "b", None, "d"]), EDGES, "nodes.parquet", "node_id", 2),
    ("duplicate-node_id", with_(NODES, node_id=["a", "b", "c", "b"]), EDGES, "nodes.parquet", "node_id", 3),
    ("null-text", with_(NODES, text=["x", "y", "z", None]), EDGES, "nodes.parquet", "text", 3),
    ("empty-label", with_(NODES, label=["cat", None, "", "cat"]), EDGES, "nodes.parquet", "label", 2),
    ("bad-split", with_(NODES, split=["train", None, "valid", None]), EDGES, "nodes.parquet", "split", 2),
    ("split-without-label", with_(NODES, split=["train", "val", "test", None]), EDGES,
     "nodes.parquet", "split", 1),
    ("null-src", NODES, with_(EDGES, src=["a", "b", None, "d", "a"]), "edges.parquet", "src", 2),
    ("null-dst", NODES, with_(EDGES, dst=["b", "c", "a", "d", None]), "edges.parquet", "dst", 4),
    ("unknown-src", NODES, with_(EDGES, src=["a", "b", "d", "zz", "a"]), "edges.parquet", "src", 3),
    ("unknown-dst", NODES, with_(EDGES, dst=["b", "q", "a", "d", "zz"]), "edges.parquet", "dst", 1),
]


@pytest.mark.parametrize("nodes, edges, file, column, row", [v[1:] for v in VIOLATIONS],
                         ids=[v[0] for v in VIOLATIONS])
def test_violation_names_file_column_row(tmp_path, nodes, edges, file, column, row):
    with pytest.raises(DataError) as e:
        load(write(tmp_path, nodes, edges))
    msg = str(e.value)
    assert file in msg, msg
    if column is not None:
        assert f"'{column}'" in msg, msg
    if row is not None:
        assert re.search(rf"\brow {row}\b", msg), msg


def test_missing_column_lists_columns_found(tmp_path):
    with pytest.raises(DataError, match=r"columns found: \['label', 'node_id', 'split'\]"):
        load(write(tmp_path, with_(NODES, text=None), EDGES))


def test_unknown_id_reports_value_and_count(tmp_path):
    with pytest.raises(DataError) as e:
        load(write(tmp_path, NODES, with_(EDGES, src=["zz", "b", "d", "yy", "a"])))
    assert "'zz'" in str(e.value) and "2 rows of src do" in str(e.value)


def test_duplicate_names_the_row_it_repeats(tmp_path):
    with pytest.raises(DataError, match=r"first seen in .*nodes\.parquet row 1"):
        load(write(tmp_path, with_(NODES, node_id=["a", "b", "c", "b"]), EDGES))


def test_uint64_id_beyond_int64(tmp_path):
    nodes = with_(NODES, node_id=pa.array([1, 2, 2**63, 4], pa.uint64()))
    with pytest.raises(DataError, match=r"nodes\.parquet: column 'node_id', row 2 "):
        load(write(tmp_path, nodes, {"src": [1], "dst": [2]}))


@pytest.mark.parametrize("missing", ["folder", "nodes", "edges"])
def test_missing_folder_or_file(tmp_path, missing):
    if missing == "folder":
        folder, name = tmp_path / "nope", "nope"
    else:
        folder = write(tmp_path, None if missing == "nodes" else NODES, None if missing == "edges" else EDGES)
        name = f"{missing}.parquet"
    with pytest.raises(DataError, match=rf"{name}.*not found"):
        load(folder)


@pytest.mark.parametrize("name", ["nodes", "edges"])
def test_corrupt_parquet(tmp_path, name):
    write(tmp_path, NODES, EDGES)
    (tmp_path / f"{name}.parquet").write_bytes(b"node_id,text\na,b\n")
    with pytest.raises(DataError, match=rf"{name}\.parquet: not a readable parquet file"):
        load(tmp_path)


def test_file_and_shard_folder_both_present(tmp_path):
    write(tmp_path, NODES, EDGES)
    (tmp_path / "nodes").mkdir()
    with pytest.raises(DataError, match="both nodes.parquet and a nodes/ folder"):
        load(tmp_path)


def test_shard_folder_without_parquet_files(tmp_path):
    write(tmp_path, None, EDGES)
    (tmp_path / "nodes").mkdir()
    (tmp_path / "nodes" / "_SUCCESS").write_text("")
    with pytest.raises(DataError, match=r"nodes/: no \*\.parquet shards"):
        load(tmp_path)


def test_shards_with_different_node_id_types(tmp_path):
    (tmp_path / "nodes").mkdir()
    pq.write_table(pa.table({"node_id": [1, 2], "text": ["", ""], "label": ["x", "y"]}),
                   tmp_path / "nodes" / "part-0.parquet")
    pq.write_table(pa.table({"node_id": ["3"], "text": [""], "label": ["x"]}),
                   tmp_path / "nodes" / "part-1.parquet")
    write(tmp_path, None, {"src": [1], "dst": [2]})
    match = r"part-1\.parquet: column 'node_id', row 0 .*but int in .*part-0\.parquet"
    with pytest.raises(DataError, match=match):
        load(tmp_path)
