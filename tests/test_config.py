from pathlib import Path

import pytest

from gkd.config import (
    ExperimentConfig,
    SplitConfig,
    build_config,
    load_config,
    parse_overrides,
)
from gkd.errors import ConfigError

CONFIGS = sorted((Path(__file__).parents[1] / "jobs" / "configs").glob("*.yaml"))


def test_defaults_are_the_debian_demo():
    cfg = load_config(None)
    assert cfg.ingest.source.kind == "debian"
    assert cfg.ingest.encoder.name == "minilm"
    assert cfg.ingest.split.train_per_class == 20
    assert cfg.graph_dir == Path("runs/gkd/graph")


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_validates(path):
    cfg = load_config(path)
    assert isinstance(cfg, ExperimentConfig)
    assert cfg.name


def test_unknown_key_names_its_path(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("ingest:\n  encoder:\n    nam: minilm\n")
    with pytest.raises(ConfigError) as e:
        load_config(f)
    assert "ingest.encoder.nam: unknown key" in str(e.value)
    assert str(f) in str(e.value)


def test_bad_value_names_path_and_reason():
    with pytest.raises(ConfigError) as e:
        build_config({"ingest": {"source": {"kind": "synthetic", "num_nodes": 0, "homophily": 1.5}}})
    msg = str(e.value)
    assert "ingest.source.num_nodes: Input should be greater than or equal to 2" in msg
    assert "ingest.source.homophily: Input should be less than or equal to 1" in msg


def test_unknown_source_kind_lists_the_kinds():
    with pytest.raises(ConfigError) as e:
        build_config({"ingest": {"source": {"kind": "imdb"}}})
    assert "ingest.source" in str(e.value) and "'synthetic'" in str(e.value)


def test_source_missing_required_path():
    with pytest.raises(ConfigError, match=r"ingest.source.root: Field required"):
        build_config({"ingest": {"source": {"kind": "cora"}}})


def test_split_modes_are_checked():
    assert SplitConfig(train_fraction=0.6, val_fraction=0.2).per_class is False
    with pytest.raises(ConfigError, match="train_fraction \\+ val_fraction must be below 1"):
        build_config({"ingest": {"split": {"train_fraction": 0.8, "val_fraction": 0.3}}})
    with pytest.raises(ConfigError, match="needs val_fraction"):
        build_config({"ingest": {"split": {"train_fraction": 0.5}}})


def test_name_must_be_a_slug():
    with pytest.raises(ConfigError, match="name: String should match pattern"):
        build_config({"name": "my graph/1"})


def test_yaml_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("ingest: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping, got list"):
        load_config(lst)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_config(empty).ingest.source.kind == "debian"


def test_overrides_parse_yaml_values_and_apply():
    ov = parse_overrides(["ingest.encoder.name=hashing", "ingest.encoder.dim=64", "ingest.partition.enabled=true"])
    assert ov == [("ingest.encoder.name", "hashing"), ("ingest.encoder.dim", 64), ("ingest.partition.enabled", True)]
    cfg = build_config({}, overrides=ov)
    assert (cfg.ingest.encoder.name, cfg.ingest.encoder.dim, cfg.ingest.partition.enabled) == ("hashing", 64, True)
    with pytest.raises(ConfigError, match="expected key.path=value"):
        parse_overrides(["ingest.encoder.name"])
    with pytest.raises(ConfigError, match="ingest.num_shards: Input should be greater than or equal to 1"):
        build_config({}, overrides=[("ingest.num_shards", 0)])


def test_distill_fanouts_must_match_the_layers():
    with pytest.raises(ConfigError, match=r"distill: .*fanouts has 1 entries but num_layers=2"):
        build_config({"distill": {"fanouts": [10]}})
    with pytest.raises(ConfigError, match="positive or -1"):
        build_config({"distill": {"fanouts": [10, 0]}})
    cfg = build_config({"distill": {"num_layers": 3, "fanouts": [10, -1, 5], "method": "lingugkd"}})
    assert cfg.distill.fanouts == [10, -1, 5] and cfg.distill.method == "lingugkd"
