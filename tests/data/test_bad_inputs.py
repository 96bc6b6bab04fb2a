"""Bad inputs as corpora (gkd.bench.bad_inputs): every malformed bring-your-own folder and experiment config
stops with a clear gkd error; odd but valid inputs load; the CLI exits 2 and leaves nothing a rerun would trust."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from gkd.bench.bad_inputs import (BYO_CASES, CLASSES, CONFIG_CASES, EDGE_SHARD_BOUNDS, NUM_EDGES, NUM_NODES,
                                  SHARD_BOUNDS, ByoCase, byo_error, config_error, drop_column, load_like_the_cli,
                                  node_ids, set_column, set_value, tally, valid_edges, valid_nodes, write_folder,
                                  write_shards, write_table)
from gkd.cli import main
from gkd.config import ByoSource, load_config
from gkd.data.sources.byo import load_byo
from gkd.errors import ConfigError

def test_the_valid_folder_loads(tmp_path):
    """The corpus is built from this folder: if it did not load, every case would 'fail' for nothing."""
    g = load_byo(ByoSource(path=write_folder(tmp_path)))
    assert g.num_nodes == NUM_NODES and g.edges.num_rows == NUM_EDGES
    assert g.class_names == list(CLASSES)
    assert g.stats["unlabeled_nodes"] == 3 and g.stats["given_splits"] == 17
    shards = tmp_path / "shards"
    write_shards(shards / "nodes", valid_nodes(), SHARD_BOUNDS)
    write_shards(shards / "edges", valid_edges(), EDGE_SHARD_BOUNDS)
    g2 = load_byo(ByoSource(path=shards))
    assert g2.nodes.equals(g.nodes) and g2.edges.equals(g.edges)
    g3 = load_byo(ByoSource(path=write_folder(tmp_path / "s", valid_nodes(True), valid_edges(True))))
    assert g3.edges.equals(g.edges)


@pytest.mark.parametrize("case", BYO_CASES, ids=[c.id for c in BYO_CASES])
def test_malformed_byo_folder_stops_with_a_clear_error(case, tmp_path):
    byo_error(case, tmp_path / "byo")


# Inputs that look odd but the loader accepts by design: not in the corpus (they are not malformed).
ACCEPTED = [
    # extra columns are ignored, with a note
    ("extra-columns", lambda root: write_folder(root, set_column(valid_nodes(), "score", [1.5] * NUM_NODES),
                                                set_column(valid_edges(), "weight", [1] * NUM_EDGES)),
     lambda g: any("['score'] ignored" in n for n in g.notes) and any("['weight'] ignored" in n for n in g.notes)),
    # negative integer ids are ids like any other
    ("negative-ids", lambda root: write_folder(
        root, set_column(valid_nodes(), "node_id", [-v - 1 for v in node_ids()]),
        pa.table({c: [-v - 1 for v in valid_edges().column(c).to_pylist()] for c in ("src", "dst")})),
     lambda g: g.nodes.column("key")[1].as_py() == "-11" and g.edges.num_rows == NUM_EDGES),
    # no length limit in the loader: ingest.max_text_chars cuts texts later
    ("huge-text", lambda root: write_folder(root, set_value(valid_nodes(), "text", 3, "x" * (8 << 20))),
     lambda g: len(g.nodes.column("text")[3].as_py()) == 8 << 20),
    # an empty edges file is an edgeless graph, whatever type its empty columns were written with
    ("empty-int-edges-for-string-ids", lambda root: write_folder(
        root, valid_nodes(True), pa.table({"src": pa.array([], pa.int64()), "dst": pa.array([], pa.int64())})),
     lambda g: g.edges.num_rows == 0 and any("no edges" in n for n in g.notes)),
    ("empty-middle-shard-other-types", lambda root: (
        write_shards(root / "nodes", valid_nodes(), ((0, 10), (10, 10), (10, 20))),
        write_table(pa.table({"node_id": pa.array([], pa.float64()), "text": pa.array([], pa.int32()),
                              "label": pa.array([], pa.int8())}), root / "nodes" / "part-00001.parquet"),
        write_table(valid_edges(), root / "edges.parquet"), root)[-1],
     lambda g: g.num_nodes == NUM_NODES and g.nodes.column("key")[10].as_py() == "100"),
    # no split column at all: ingest draws every split
    ("no-split-column", lambda root: write_folder(root, drop_column(valid_nodes(), "split")),
     lambda g: g.stats["given_splits"] == 0),
]


@pytest.mark.parametrize("build, ok", [a[1:] for a in ACCEPTED], ids=[a[0] for a in ACCEPTED])
def test_odd_but_valid_folders_load(build, ok, tmp_path):
    g = load_byo(ByoSource(path=build(tmp_path / "byo")))
    assert ok(g)


@pytest.mark.parametrize("case", CONFIG_CASES, ids=[c.id for c in CONFIG_CASES])
def test_malformed_config_stops_with_a_clear_error(case, tmp_path):
    message = config_error(case, tmp_path)
    if not isinstance(case.text, bytes) and case.id != "ingest-as-int":  # that check is the CLI's own
        with pytest.raises(ConfigError) as e:  # the library's loader says the same
            load_config(tmp_path / "experiment.yaml")
        assert str(e.value) == message


@pytest.mark.parametrize("text", ["", "# nothing set yet\n"], ids=["empty-file", "comments-only"])
def test_an_empty_config_is_the_defaults(text, tmp_path):
    """Not in the corpus: an empty file is the embedded defaults by design."""
    path = tmp_path / "experiment.yaml"
    path.write_text(text)
    assert load_like_the_cli(path).model_dump() == load_config(None).model_dump()


def test_duplicate_keys_are_found_at_any_depth_but_not_across_mappings(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("serve:\n  cascade:\n    enabled: true\n    enabled: false\n")
    with pytest.raises(ConfigError, match=r"serve\.cascade\.enabled: key given twice \(lines 3 and 4\)"):
        load_config(path)
    path.write_text("teacher:\n  epochs: 2\ndistill:\n  epochs: 3\n")  # the same name in two sections is fine
    cfg = load_config(path)
    assert (cfg.teacher.epochs, cfg.distill.epochs) == (2, 3)


# ----------------------------------------------------------------------------- the CLI


def _cli_case(case_id: str) -> ByoCase:
    return next(c for c in BYO_CASES if c.id == case_id)


# `gkd ingest` is the one command that reads a BYO folder, and it starts Ray before it reads the source.
@pytest.mark.ray
@pytest.mark.slow
def test_cli_ingest_of_bad_folders_exits_2_and_leaves_nothing_to_trust(ray_local, tmp_path, capsys):
    from gkd.pipeline import MARKER

    for case_id in ("node_id-duplicate", "shard-truncated"):
        case = _cli_case(case_id)
        folder = case.build(tmp_path / case_id / "byo")
        out = tmp_path / case_id / "work"
        argv = ["ingest", "--source", "byo", "--path", str(folder), "--out", str(out), "--no-track",
                "--set", "ingest.encoder.name=hashing", "--set", "ingest.num_shards=1"]
        for attempt in (1, 2):  # a rerun reads the folder again: nothing of the first run is trusted
            rc = main(argv)
            captured = capsys.readouterr()
            assert rc == 2, (case_id, attempt, captured.err)
            assert "Traceback" not in captured.err + captured.out
            errors = [line for line in captured.err.splitlines() if line.startswith("gkd ingest: error:")]
            assert len(errors) == 1, captured.err
            first = errors[0]
            assert first.startswith(f"gkd ingest: error: {folder / case.file}: "), first
            assert case.expect in first
            if case.column is not None:
                assert f"column '{case.column}', row {case.row} (0-based)" in first
            graph = out / "graph"
            assert not (graph / "meta.json").exists()
            marker = graph / MARKER
            assert not marker.exists() or json.loads(marker.read_text())["status"] != "done"


# ----------------------------------------------------------------------------- the corpus as a whole


def test_every_input_tried_got_a_clear_error(tmp_path):
    assert len({c.id for c in BYO_CASES}) == len(BYO_CASES) >= 30
    assert len({c.id for c in CONFIG_CASES}) == len(CONFIG_CASES) >= 10
    t = tally(tmp_path)
    assert t["unclear"] == []
    assert (t["tried"], t["clear_errors"]) == (len(BYO_CASES) + len(CONFIG_CASES),) * 2
