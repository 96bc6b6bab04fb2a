"""ogbn-products / ogbn-arxiv loaders on small fixtures written in the exact OGB + raw-text formats."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest

from gkd.config import OgbnArxivSource, OgbnProductsSource
from gkd.data.sources.ogb import load_ogbn_arxiv, load_ogbn_products
from gkd.errors import DataError

EDGES = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 6), (6, 7), (7, 0), (0, 4)]


def write_gz(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8", newline="") as f:
        f.write(text)


def rows(values) -> str:
    """Headerless OGB csv: one row per item, comma-joined when an item is a tuple."""
    return "".join((",".join(map(str, v)) if isinstance(v, tuple) else str(v)) + "\n" for v in values)


def write_ogb_layout(root: Path, split_type: str, n: int, edges, labels, splits, mapping: str, classes: str) -> None:
    write_gz(root / "raw" / "edge.csv.gz", rows(edges))
    write_gz(root / "raw" / "node-label.csv.gz", rows(labels))
    write_gz(root / "raw" / "num-node-list.csv.gz", f"{n}\n")
    write_gz(root / "raw" / "num-edge-list.csv.gz", f"{len(edges)}\n")
    for name, idx in splits.items():
        write_gz(root / "split" / split_type / f"{name}.csv.gz", rows(idx))
    mapping_name, mapping_text = mapping.split("\n", 1)
    write_gz(root / "mapping" / mapping_name, mapping_text)
    classes_name, classes_text = classes.split("\n", 1)
    write_gz(root / "mapping" / classes_name, classes_text)
    (root / "mapping" / "README.md").write_text("mapping\n")


# ----------------------------------------------------------------------------- ogbn-products

ASINS = [f"B00000000{i}" for i in range(8)]


@pytest.fixture
def products_root(tmp_path: Path) -> Path:
    root = tmp_path / "ogbn_products"
    mapping = "nodeidx2asin.csv.gz\nnode idx,asin\n" + "".join(f"{i},{a}\n" for i, a in enumerate(ASINS))
    classes = (
        "labelidx2productcategory.csv.gz\nlabel idx,product category\n"
        '0,Home &amp; Kitchen\n1,\n2,#508510\n3,"Patio, Lawn & Garden"\n'
    )
    splits = {"train": [0, 1, 2], "valid": [3, 4], "test": [5, 6]}  # node 7 is in no split file
    write_ogb_layout(root, "sales_ranking", 8, EDGES, [0, 1, 2, 3, 0, 1, 2, 3], splits, mapping, classes)
    amazon = root / "Amazon-3M.raw"
    amazon.mkdir()
    trn = [
        {"uid": ASINS[0], "title": '"Chef Knife"\n', "content": "Sharp steel.", "target_ind": [1, 5]},
        {"uid": ASINS[1], "title": "Garden Hose", "content": "", "target_ind": [2]},
        {"uid": ASINS[2], "title": "  Lamp ", "target_ind": []},  # no content key
        {"uid": ASINS[3], "title": "Mug", "content": " Holds tea \n", "target_ind": [3]},
        {"uid": "B0NOTINGRAPH", "title": "Other", "content": "x", "target_ind": [4]},
    ]
    tst = [
        {"uid": ASINS[4], "title": "Pan", "content": "Non-stick.", "target_ind": [1]},
        {"uid": ASINS[5], "title": "Rake", "content": "Leaves.", "target_ind": [1]},
        {"uid": ASINS[0], "title": "Duplicate knife", "content": "ignored", "target_ind": [1]},
        {"uid": ASINS[7], "title": "Chair", "content": "Wooden, \"antique\".", "target_ind": [9]},
    ]  # ASINS[6] has no record
    # trn.json plain with a UTF-8 BOM (GLEM reads utf_8_sig); tst.json.gz gzipped as in the zip
    (amazon / "trn.json").write_text("\ufeff" + "".join(json.dumps(r) + "\n" for r in trn), encoding="utf-8")
    write_gz(amazon / "tst.json.gz", "".join(json.dumps(r) + "\n" for r in tst))
    return root


def test_products_values(products_root: Path):
    g = load_ogbn_products(OgbnProductsSource(root=products_root))
    nodes = g.nodes.to_pydict()
    assert nodes["key"] == ASINS
    assert nodes["text"][0] == "Product: Chef Knife; Description: Sharp steel."  # trn wins over the tst duplicate
    assert nodes["text"][1] == "Product: Garden Hose; Description:"
    assert nodes["text"][2] == "Product: Lamp; Description:"
    assert nodes["text"][3] == "Product: Mug; Description: Holds tea"
    assert nodes["text"][6] == ""
    assert nodes["text"][7] == 'Product: Chair; Description: Wooden, "antique".'
    assert nodes["label"] == [0, 1, 2, 3, 0, 1, 2, 3]
    assert nodes["split"] == ["train"] * 3 + ["val"] * 2 + ["test"] * 2 + ["unlabeled"]
    assert g.class_names == ["Home & Kitchen", "class_1", "class_2", "Patio, Lawn & Garden"]
    assert g.edges.to_pydict() == {"src": [s for s, _ in EDGES], "dst": [d for _, d in EDGES]}
    assert g.directed is False
    assert g.stats["nodes_missing_text"] == 1
    assert g.stats["amazon_records"] == 9
    assert g.stats["amazon_duplicate_uids"] == 1
    assert g.stats["nodes_without_split"] == 1
    assert g.stats["num_nodes"] == 8 and g.stats["num_edges"] == len(EDGES)
    notes = " | ".join(g.notes)
    assert "1 of 8 nodes" in notes and "class_1" in notes and "'#508510'" in notes
    assert "split 'unlabeled', label kept" in notes


def test_products_parent_root_and_amazon_dir(products_root: Path, tmp_path: Path):
    """root may be OGB's dataset dir holding ogbn_products/; amazon_dir may live elsewhere."""
    moved = tmp_path / "elsewhere"
    (products_root / "Amazon-3M.raw").rename(moved)
    g = load_ogbn_products(OgbnProductsSource(root=products_root.parent, amazon_dir=moved))
    assert g.num_nodes == 8 and g.nodes.column("text")[4].as_py() == "Product: Pan; Description: Non-stick."


def test_products_missing_amazon_file(products_root: Path):
    (products_root / "Amazon-3M.raw" / "tst.json.gz").unlink()
    with pytest.raises(DataError, match=r"missing file .*tst\.json \(or tst\.json\.gz\)"):
        load_ogbn_products(OgbnProductsSource(root=products_root))


def test_products_bad_json(products_root: Path):
    (products_root / "Amazon-3M.raw" / "trn.json").write_text('[{"uid": "B1"},\n{"uid": 3]\n')
    with pytest.raises(DataError, match=r"trn\.json is not JSON Lines"):
        load_ogbn_products(OgbnProductsSource(root=products_root))


def test_products_mapping_header(products_root: Path):
    write_gz(products_root / "mapping" / "nodeidx2asin.csv.gz", rows((i, a) for i, a in enumerate(ASINS)))
    with pytest.raises(DataError, match=r"nodeidx2asin\.csv\.gz: header is .* expected columns 'node idx', 'asin'"):
        load_ogbn_products(OgbnProductsSource(root=products_root))


# ----------------------------------------------------------------------------- ogbn-arxiv

PAPER_IDS = [9657784, 39886162, 116214155, 200971, 549074, 1000, 2000]
ARXIV_EDGES = [(0, 1), (1, 2), (3, 0), (4, 3), (5, 6), (6, 5)]
TITLEABS = (
    "200971\tontology as a source for rule generation\tThis paper discloses the potential of OWL.\n"
    "549074\ta novel methodology for thermal analysis\tThe semiconductor industry\tis reaching.\n"
    "\n"
    "9657784\tevasion attacks\tAdversarial examples.\n"
    "39886162\tgraph kernels \t Kernels on graphs. \n"
    "77777777\tnot in the graph\tExtra line (titleabs is a superset).\n"
    "116214155\tno abstract here\n"
    "1000\tfirst copy\tkept\n"
    "1000\tsecond copy\tdropped\n"
)  # paper 2000 has no line


@pytest.fixture
def arxiv_root(tmp_path: Path) -> Path:
    root = tmp_path / "ogbn_arxiv"
    mapping = "nodeidx2paperid.csv.gz\nnode idx,paper id\n" + "".join(f"{i},{p}\n" for i, p in enumerate(PAPER_IDS))
    classes = "labelidx2arxivcategeory.csv.gz\nlabel idx,arxiv category\n0,arxiv cs na\n1,arxiv cs mm\n2,arxiv cs lo\n"
    splits = {"train": [0, 1, 2], "valid": [3, 4], "test": [5, 6]}
    write_ogb_layout(root, "time", 7, ARXIV_EDGES, [0, 1, 2, 0, 1, 2, 0], splits, mapping, classes)
    write_gz(root / "raw" / "node_year.csv.gz", rows([2013, 2015, 2014, 2019, 2019, 2020, 2020]))
    write_titleabs_tar(root / "titleabs.tsv.gz", TITLEABS.encode(), "w:gz")
    return root


def write_titleabs_tar(path: Path, data: bytes, mode: str) -> None:
    """As OGB ships it: a (gzipped) tar with one member titleabs.tsv; tarfile adds the NUL padding."""
    info = tarfile.TarInfo("titleabs.tsv")
    info.size = len(data)
    with tarfile.open(path, mode) as tar:
        tar.addfile(info, io.BytesIO(data))


def test_arxiv_fixture_is_the_trap(arxiv_root: Path):
    """The .tsv.gz really is a gzipped tar: plain gunzip shows the tar header and NUL padding."""
    raw = gzip.decompress((arxiv_root / "titleabs.tsv.gz").read_bytes())
    assert raw.startswith(b"titleabs.tsv\x00") and raw.endswith(b"\x00" * 1024)


def test_arxiv_values(arxiv_root: Path):
    g = load_ogbn_arxiv(OgbnArxivSource(root=arxiv_root))
    nodes = g.nodes.to_pydict()
    assert nodes["key"] == [str(p) for p in PAPER_IDS]
    assert nodes["text"][0] == "Title: evasion attacks\nAbstract: Adversarial examples."
    assert nodes["text"][1] == "Title: graph kernels\nAbstract: Kernels on graphs."
    assert nodes["text"][2] == "Title: no abstract here\nAbstract:"
    assert nodes["text"][3] == (
        "Title: ontology as a source for rule generation\nAbstract: This paper discloses the potential of OWL."
    )
    assert nodes["text"][4] == (
        "Title: a novel methodology for thermal analysis\nAbstract: The semiconductor industry\tis reaching."
    )
    assert nodes["text"][5] == "Title: first copy\nAbstract: kept"
    assert nodes["text"][6] == ""
    assert nodes["label"] == [0, 1, 2, 0, 1, 2, 0]
    assert nodes["split"] == ["train"] * 3 + ["val"] * 2 + ["test"] * 2
    assert g.class_names == ["cs.NA", "cs.MM", "cs.LO"]
    assert g.edges.to_pydict() == {"src": [s for s, _ in ARXIV_EDGES], "dst": [d for _, d in ARXIV_EDGES]}
    assert g.directed is True
    assert g.stats["nodes_missing_text"] == 1
    assert g.stats["titleabs_records"] == 8 and g.stats["titleabs_bad_lines"] == 0
    assert g.stats["nodes_without_split"] == 0
    assert any("1 of 7 nodes" in n for n in g.notes)


@pytest.mark.parametrize("variant", ["plain-tsv", "gzip-tsv", "plain-tar-named-tsv", "custom-path"])
def test_arxiv_titleabs_variants(arxiv_root: Path, tmp_path: Path, variant: str):
    (arxiv_root / "titleabs.tsv.gz").unlink()
    titleabs = None
    if variant == "plain-tsv":
        (arxiv_root / "titleabs.tsv").write_bytes(TITLEABS.encode() + b"\x00" * 300)
    elif variant == "gzip-tsv":
        write_gz(arxiv_root / "titleabs.tsv.gz", TITLEABS)
    elif variant == "plain-tar-named-tsv":  # what `gunzip titleabs.tsv.gz` leaves behind
        write_titleabs_tar(arxiv_root / "titleabs.tsv", TITLEABS.encode(), "w")
    else:
        titleabs = tmp_path / "downloads" / "ta.tar.gz"
        titleabs.parent.mkdir()
        write_titleabs_tar(titleabs, TITLEABS.encode(), "w:gz")
    g = load_ogbn_arxiv(OgbnArxivSource(root=arxiv_root, titleabs=titleabs))
    assert g.nodes.column("text")[3].as_py().startswith("Title: ontology as a source")
    assert g.stats["nodes_missing_text"] == 1 and g.stats["titleabs_bad_lines"] == 0


def test_arxiv_titleabs_tar_members(arxiv_root: Path):
    path = arxiv_root / "titleabs.tsv.gz"
    with tarfile.open(path, "w:gz") as tar:  # one member under another name: used
        info = tarfile.TarInfo("data/ta.tsv")
        info.size = len(TITLEABS)
        tar.addfile(info, io.BytesIO(TITLEABS.encode()))
    assert load_ogbn_arxiv(OgbnArxivSource(root=arxiv_root)).stats["titleabs_records"] == 8
    with tarfile.open(path, "w:gz") as tar:  # two members, neither titleabs.tsv: ambiguous
        for name in ("a.tsv", "b.tsv"):
            info = tarfile.TarInfo(name)
            info.size = 0
            tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(DataError, match=r"\.tsv\.gz is a tar without titleabs\.tsv \(members: \['a\.tsv', 'b\.tsv'\]"):
        load_ogbn_arxiv(OgbnArxivSource(root=arxiv_root))


def test_arxiv_missing_labels_and_bad_titleabs_lines(arxiv_root: Path):
    write_gz(arxiv_root / "raw" / "node-label.csv.gz", "0\n1\n2\n0\n1\n2\nnan\n")
    write_titleabs_tar(arxiv_root / "titleabs.tsv.gz", b"paper id\ttitle\tabstract\n" + TITLEABS.encode(), "w:gz")
    g = load_ogbn_arxiv(OgbnArxivSource(root=arxiv_root))
    assert g.nodes.column("label").to_pylist()[-1] == -1
    assert g.nodes.column("split").to_pylist()[-1] == "unlabeled"
    assert g.stats["nodes_without_label"] == 1 and g.stats["titleabs_bad_lines"] == 1
    assert any("line 1: 'paper id" in n for n in g.notes)


# ----------------------------------------------------------------------------- errors


def _write(rel: str, text: str):
    return lambda root: write_gz(root / rel, text)


def _unlink(rel: str):
    return lambda root: (root / rel).unlink()


MAPPING_WITH_TEXT_ID = "node idx,paper id\n" + "".join(
    f"{i},{'abc' if p == 549074 else p}\n" for i, p in enumerate(PAPER_IDS)
)


def _truncate(rel: str, size: int):
    return lambda root: (root / rel).write_bytes((root / rel).read_bytes()[:size])


ERROR_CASES = {  # case: (how the fixture is broken, what the message must say)
    "missing-edge-file": (_unlink("raw/edge.csv.gz"), r"missing file .*raw/edge\.csv\.gz; unzip"),
    "edge-columns": (
        _write("raw/edge.csv.gz", "0,1\n1,2,3\n"),
        r"edge\.csv\.gz: line 2 has 3 columns, expected 2 \(src, dst\)",
    ),
    "edge-not-int": (
        _write("raw/edge.csv.gz", "0,1\n1,x\n"),
        r"edge\.csv\.gz: line 2, column dst: 'x' is not an integer",
    ),
    "edge-range": (
        _write("raw/edge.csv.gz", "0,1\n1,2\n2,99\n"),
        r"edge\.csv\.gz: line 3, column dst: 99 is out of range 0\.\.6",
    ),
    "label-length": (
        _write("raw/node-label.csv.gz", "0\n1\n"),
        r"node-label\.csv\.gz has 2 rows but the graph has 7 nodes",
    ),
    "label-range": (
        _write("raw/node-label.csv.gz", "0\n1\n2\n0\n7\n2\n0\n"),
        r"node-label\.csv\.gz: line 5: label 7 is not a class index 0\.\.2",
    ),
    "split-range": (
        _write("split/time/valid.csv.gz", "3\n-1\n"),
        r"valid\.csv\.gz: line 2, column node index: -1 is out of range",
    ),
    "split-overlap": (
        _write("split/time/test.csv.gz", "5\n0\n"),
        r"test\.csv\.gz: line 2: node 0 is already in train\.csv\.gz",
    ),
    "missing-split-dir": (
        lambda root: (root / "split" / "time").rename(root / "split" / "random"),
        r"missing folder .*split/time \(split/ holds \['random'\]\)",
    ),
    "num-nodes": (
        _write("raw/num-node-list.csv.gz", "7\n8\n"),
        r"num-node-list\.csv\.gz: expected a single positive integer",
    ),
    "mapping-rows": (
        _write("mapping/nodeidx2paperid.csv.gz", "node idx,paper id\n0,1\n1,2\n"),
        r"nodeidx2paperid\.csv\.gz has 2 rows but the graph has 7",
    ),
    "mapping-not-int": (
        _write("mapping/nodeidx2paperid.csv.gz", MAPPING_WITH_TEXT_ID),
        r"nodeidx2paperid\.csv\.gz: line 6, column paper id: 'abc' is not an integer",
    ),
    "not-gzip": (
        lambda root: (root / "raw" / "edge.csv.gz").write_text("0,1\n"),
        r"edge\.csv\.gz cannot be read",
    ),
    "missing-titleabs": (_unlink("titleabs.tsv.gz"), r"missing file .*titleabs\.tsv\.gz; get https://snap"),
    "empty-titleabs": (
        lambda root: write_titleabs_tar(root / "titleabs.tsv.gz", b"", "w:gz"),
        r"titleabs\.tsv\.gz holds no 'paper id<TAB>title<TAB>abstract' line",
    ),
    "truncated-titleabs": (
        _truncate("titleabs.tsv.gz", 40),
        r"titleabs\.tsv\.gz cannot be read .* damaged or truncated",
    ),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_arxiv_errors(arxiv_root: Path, case: str):
    mutate, pattern = ERROR_CASES[case]
    mutate(arxiv_root)
    with pytest.raises(DataError, match=pattern):
        load_ogbn_arxiv(OgbnArxivSource(root=arxiv_root))


def test_arxiv_without_num_node_list_and_edges(arxiv_root: Path):
    (arxiv_root / "raw" / "num-node-list.csv.gz").unlink()
    write_gz(arxiv_root / "raw" / "edge.csv.gz", "")
    g = load_ogbn_arxiv(OgbnArxivSource(root=arxiv_root))
    assert g.num_nodes == 7 and g.edges.num_rows == 0
    assert any("took the node count (7) from mapping/nodeidx2paperid.csv.gz" in n for n in g.notes)


def test_products_missing_amazon_dir(products_root: Path):
    (products_root / "Amazon-3M.raw" / "trn.json").unlink()
    (products_root / "Amazon-3M.raw" / "tst.json.gz").unlink()
    (products_root / "Amazon-3M.raw").rmdir()
    with pytest.raises(DataError, match=r"missing folder .*ogbn_products/Amazon-3M\.raw; put Amazon-3M's trn\.json"):
        load_ogbn_products(OgbnProductsSource(root=products_root))


def test_no_raw_folder(tmp_path: Path):
    with pytest.raises(DataError, match=r"no raw/ folder in .* set source\.root"):
        load_ogbn_arxiv(OgbnArxivSource(root=tmp_path))
