"""TAPE Cora / PubMed loaders on small fixtures written in the exact raw file formats."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pytest

from gkd.config import CoraSource, PubmedSource
from gkd.data.sources import load_source
from gkd.data.sources.tape import CORA_CLASSES, PUBMED_CLASSES, load_cora, load_pubmed
from gkd.errors import DataError

# ----------------------------------------------------------------------------- Cora fixture

# paper_id, 4 bag-of-words columns, class (cora.content row order = node order)
CORA_ROWS = [
    ("31336", "0\t1\t0\t0", "Neural_Networks"),
    ("1061127", "1\t0\t0\t0", "Rule_Learning"),
    ("1106406", "0\t0\t1\t1", "Reinforcement_Learning"),
    ("35", "0\t0\t0\t1", "Theory"),
    ("1033", "1\t1\t0\t0", "Genetic_Algorithms"),
    ("103482", "0\t1\t1\t0", "Case_Based"),
    ("1106388", "0\t0\t0\t0", "Probabilistic_Methods"),
]
CORA_CITES = [
    "35\t1033",
    "35\t103482",
    "1033\t35",  # the same edge, reversed
    "35\t35",  # self loop
    "35\t999999",  # unknown id
    "31336\t1061127",
]
CORA_PAPERS = [
    "272\thttp:##www.cs.rpi.edu#tr#93-21.ps\t[39] <author> C. V. Stewart. MINPRAN: </author> <title> ...",
    "31336\thttp:##www.cs.rpi.edu#tr#nn-96.ps\t[1] <author> A. Author. </author>",
    "1061127\thttp:##www.ai.edu#ICCBR2.ps\t",  # on disk in lower case
    "1106406\thttp:##www.x.edu#T.Yu#rl.ps\t",  # on disk with ':' replaced by '_'
    "35\tfile35-old\tolder entry, no file",
    "35\tfile35",  # TAPE keeps the last entry; two fields only
    "1033\tf1033\tfirst entry has the file",
    "1033\tf1033-gone\tlast entry has none",
    "1106388\tnowhere.ps\t",  # listed, but no extraction file
    # 103482 is not listed at all
]
CORA_EXTRACTIONS = {
    "http:##www.cs.rpi.edu#tr#nn-96.ps": (
        "URL: http://www.cs.rpi.edu/tr/nn-96.ps\n"
        "Title: A draft title\n"
        "Author: A. Author\n"
        "Title: Learning with neural nets\n"
        "Abstract: We train networks.\n"
        "Date: 1996\n"
    ),
    "http:##www.ai.edu#iccbr2.ps": "Title: Rules from cases\nAbstract: Rules are induced.\n",
    "http_##www.x.edu#T.Yu#rl.ps": "Title: Q-learning\nAbstract: Rewards.\r\n",
    "file35": "Note: none\nTitle: Theory of learning\nAbstract: First abstract.\nAbstract: Second abstract.\n",
    "f1033": "Date: 1994\n",  # no Title:/Abstract: line
}
CORA_LATIN1 = ("http:##www.cs.rpi.edu#tr#nn-96.ps", b"Title: Na\xefve nets\nAbstract: x\n")


def write_cora(root: Path) -> Path:
    ext = root / "mccallum" / "cora" / "extractions"
    ext.mkdir(parents=True)
    (root / "cora.content").write_text("".join(f"{p}\t{x}\t{c}\n" for p, x, c in CORA_ROWS))
    (root / "cora.cites").write_text("\n".join(CORA_CITES) + "\n")
    (root / "mccallum" / "cora" / "papers").write_text("\n".join(CORA_PAPERS) + "\n")
    for name, text in CORA_EXTRACTIONS.items():
        (ext / name).write_bytes(text.encode())
    return root


def edge_set(table: pa.Table) -> set[tuple[int, int]]:
    return set(zip(table["src"].to_pylist(), table["dst"].to_pylist()))


def test_cora_nodes_labels_texts(tmp_path):
    g = load_cora(CoraSource(root=write_cora(tmp_path)))
    assert g.class_names == [
        "Case Based",
        "Genetic Algorithms",
        "Neural Networks",
        "Probabilistic Methods",
        "Reinforcement Learning",
        "Rule Learning",
        "Theory",
    ]
    assert g.class_names == CORA_CLASSES
    assert g.directed is False
    assert g.nodes["key"].to_pylist() == [p for p, _, _ in CORA_ROWS]
    assert g.nodes["label"].to_pylist() == [2, 5, 4, 6, 1, 0, 3]
    assert g.nodes["label"].type == pa.int32()
    assert g.nodes["split"].to_pylist() == [None] * 7
    text = dict(zip(g.nodes["key"].to_pylist(), g.nodes["text"].to_pylist()))
    assert text["31336"] == "Title: Learning with neural nets\nAbstract: We train networks."  # last Title wins
    assert text["1061127"] == "Title: Rules from cases\nAbstract: Rules are induced."  # case-insensitive name
    assert text["1106406"] == "Title: Q-learning\nAbstract: Rewards."  # ':' -> '_' name, CRLF
    assert text["35"] == "Title: Theory of learning\nAbstract: Second abstract."  # last papers entry, last Abstract
    assert text["1033"] == ""  # earlier papers entry found, but the file has no Title/Abstract
    assert text["103482"] == ""  # not in papers
    assert text["1106388"] == ""  # no extraction file


def test_cora_edges_and_stats(tmp_path):
    g = load_cora(CoraSource(root=write_cora(tmp_path)))
    # 35=3, 1033=4, 103482=5, 31336=0, 1061127=1; each undirected edge once, src < dst
    assert edge_set(g.edges) == {(3, 4), (3, 5), (0, 1)}
    assert g.edges.num_rows == 3
    assert g.edges.schema.field("src").type == pa.int64()
    assert g.stats == {
        "cites_rows": 6,
        "dropped_edges_unknown_ids": 1,
        "dropped_self_loops": 1,
        "dropped_duplicate_edges": 1,
        "text_missing": 2,
        "no_papers_entry": 1,
        "extraction_name_fixed": 3,
        "no_title_or_abstract": 1,
    }
    joined = "\n".join(g.notes)
    assert "cora.cites: dropped 1 citation" in joined
    assert "2 Cora paper(s) have no extraction file (1 not listed in papers)" in joined
    assert "1 Cora extraction file(s) hold no Title:/Abstract: line" in joined


def test_cora_undecodable_bytes_are_replaced(tmp_path):
    root = write_cora(tmp_path)
    name, raw = CORA_LATIN1
    (root / "mccallum" / "cora" / "extractions" / name).write_bytes(raw)
    g = load_cora(CoraSource(root=root))
    assert g.nodes["text"][0].as_py() == "Title: Na\ufffdve nets\nAbstract: x"


def test_cora_bom_and_dispatch(tmp_path):
    root = write_cora(tmp_path)
    content = root / "cora.content"
    content.write_bytes(b"\xef\xbb\xbf" + content.read_bytes())
    g = load_source(CoraSource(root=root))
    assert g.nodes["key"][0].as_py() == "31336"
    assert g.num_nodes == 7


def _cora_rows_with(extra: str):
    def mutate(root: Path) -> None:
        with open(root / "cora.content", "a") as f:
            f.write(extra)

    return mutate


CORA_ERRORS = [
    ("root", lambda r: shutil.rmtree(r), "Cora folder not found"),
    ("content", lambda r: (r / "cora.content").unlink(), r"cora\.content: file not found"),
    ("cites", lambda r: (r / "cora.cites").unlink(), r"cora\.cites: file not found"),
    ("papers", lambda r: (r / "mccallum/cora/papers").unlink(), r"papers: file not found"),
    ("extractions", lambda r: shutil.rmtree(r / "mccallum/cora/extractions"), r"extractions: folder not found"),
    ("empty", lambda r: (r / "cora.content").write_text("\n"), r"cora\.content: no rows"),
    ("width", _cora_rows_with("777\t0\t1\t0\tTheory\n"), r"cora\.content line 8: 5 fields where the first row has 6"),
    ("class", _cora_rows_with("777\t0\t1\t0\t0\tAstrology\n"), r"cora\.content line 8: unknown class 'Astrology'"),
    ("dup", _cora_rows_with("35\t0\t1\t0\t0\tTheory\n"), r"cora\.content line 8: paper id 35 already on line 4"),
    ("cites_row", lambda r: (r / "cora.cites").write_text("35\t1033\n35\t1033\t7\n"), r"cora\.cites line 2: expected"),
    ("papers_row", lambda r: (r / "mccallum/cora/papers").write_text("35\tfile35\n\n36\n"), r"papers line 3: expected"),
]


@pytest.mark.parametrize("mutate,match", [(m, s) for _, m, s in CORA_ERRORS], ids=[i for i, _, _ in CORA_ERRORS])
def test_cora_format_errors(tmp_path, mutate, match):
    root = write_cora(tmp_path / "cora_orig")
    mutate(root)
    with pytest.raises(DataError, match=match):
        load_cora(CoraSource(root=root))


# ----------------------------------------------------------------------------- PubMed fixture

NODE_HEADER = "NODE\tpaper\ncat=1,2,3:label\tnumeric:w-rat:0.0\tnumeric:w-common:0.0\tstring:summary\n"
NODE_ROWS = [
    "12187484\tlabel=1\tw-rat=0.0939\tw-common=0.0287\tsummary=w-rat,w-common",
    "2344352\tlabel=3\tw-common=0.05\tsummary=w-common",
    "14654069\tlabel=2\tw-rat=0.1\tsummary=w-rat",
    "16443886\tlabel=2\tsummary=",
    "17874530\tlabel=3\tw-rat=0.3\tsummary=w-rat",
]
CITES_HEADER = "DIRECTED\tcites\nNO_FEATURES\n"
CITES_ROWS = [
    "33824\tpaper:2344352\t|\tpaper:12187484",
    "33825\tpaper:12187484\t|\tpaper:2344352",  # duplicate, reversed
    "33826\tpaper:14654069\t|\tpaper:14654069",  # self loop
    "33827\tpaper:99999\t|\tpaper:12187484",  # unknown pmid
    "33828\tpaper:16443886\t|\tpaper:17874530",
]
RECORDS = [
    {"PMID": "12187484", "TI": "Insulin in rats.", "AB": "We measured insulin.", "MH": ["Rats"]},
    {"PMID": 2344352, "TI": "Type 2 risk.", "AB": "Obesity matters."},  # PMID as a number
    {"PMID": 14654069.0, "TI": "Autoimmunity.", "AB": None},  # PMID as a float
    {"PMID": "16443886", "AB": "No title here."},
    {"PMID": "17874530", "TI": "Failed record", "AB": ""},
]


def write_pubmed(root: Path, records=RECORDS) -> Path:
    (root / "data").mkdir(parents=True)
    (root / "data" / "Pubmed-Diabetes.NODE.paper.tab").write_text(NODE_HEADER + "\n".join(NODE_ROWS) + "\n")
    (root / "data" / "Pubmed-Diabetes.DIRECTED.cites.tab").write_text(CITES_HEADER + "\n".join(CITES_ROWS) + "\n")
    (root / "pubmed.json").write_text(json.dumps(records))
    return root


def test_pubmed_aligned(tmp_path):
    g = load_pubmed(PubmedSource(root=write_pubmed(tmp_path)))
    assert g.class_names == PUBMED_CLASSES == [
        "Diabetes Mellitus Experimental",
        "Diabetes Mellitus Type 1",
        "Diabetes Mellitus Type 2",
    ]
    assert g.directed is False
    assert g.nodes["key"].to_pylist() == ["12187484", "2344352", "14654069", "16443886", "17874530"]
    assert g.nodes["label"].to_pylist() == [0, 2, 1, 1, 2]
    assert g.nodes["split"].null_count == 5
    assert g.nodes["text"].to_pylist() == [
        "Title: Insulin in rats.\nAbstract: We measured insulin.",
        "Title: Type 2 risk.\nAbstract: Obesity matters.",
        "Title: Autoimmunity.\nAbstract: ",
        "Title: \nAbstract: No title here.",
        "Title: Failed record\nAbstract: ",
    ]
    assert edge_set(g.edges) == {(0, 1), (3, 4)}
    assert g.edges.num_rows == 2
    assert g.stats == {
        "cites_rows": 5,
        "dropped_edges_unknown_ids": 1,
        "dropped_self_loops": 1,
        "dropped_duplicate_edges": 1,
        "json_records": 5,
        "json_misaligned": 0,
        "json_without_pmid": 0,
        "json_missing": 0,
    }
    assert g.notes == ["Pubmed-Diabetes.DIRECTED.cites.tab: dropped 1 citation(s) naming ids that are not nodes"]


def test_pubmed_misaligned_json_is_matched_by_pmid(tmp_path):
    records = [RECORDS[0], RECORDS[1], RECORDS[3], RECORDS[2]]  # 2 and 3 swapped, last one missing
    g = load_pubmed(PubmedSource(root=write_pubmed(tmp_path, records)))
    texts = g.nodes["text"].to_pylist()
    assert texts[2] == "Title: Autoimmunity.\nAbstract: "
    assert texts[3] == "Title: \nAbstract: No title here."
    assert texts[4] == ""
    assert (g.stats["json_misaligned"], g.stats["json_missing"], g.stats["json_records"]) == (2, 1, 4)
    joined = "\n".join(g.notes)
    assert "pubmed.json: 2 record(s) not at their node's row; matched by PMID" in joined
    assert "pubmed.json: no record for 1 node(s); their text is empty" in joined


def test_pubmed_record_without_pmid_is_used_by_position(tmp_path):
    records = [dict(r) for r in RECORDS]
    del records[4]["PMID"]
    g = load_pubmed(PubmedSource(root=write_pubmed(tmp_path, records)))
    assert g.nodes["text"][4].as_py() == "Title: Failed record\nAbstract: "
    assert g.stats["json_without_pmid"] == 1
    assert any("1 record(s) without PMID; used by position" in n for n in g.notes)


def test_pubmed_dispatch_and_list_fields(tmp_path):
    records = [dict(r) for r in RECORDS]
    records[0]["AB"] = ["Part one.", "Part two."]
    g = load_source(PubmedSource(root=write_pubmed(tmp_path, records)))
    assert g.nodes["text"][0].as_py() == "Title: Insulin in rats.\nAbstract: Part one. Part two."


def _node_rows(*rows: str):
    def mutate(root: Path) -> None:
        (root / "data/Pubmed-Diabetes.NODE.paper.tab").write_text(NODE_HEADER + "\n".join(rows) + "\n")

    return mutate


def _write(rel: str, text: str):
    return lambda root: (root / rel).write_text(text)


NODE_TAB = r"Pubmed-Diabetes\.NODE\.paper\.tab"
CITES_TAB = r"Pubmed-Diabetes\.DIRECTED\.cites\.tab"
PUBMED_ERRORS = [
    ("root", lambda r: shutil.rmtree(r), "PubMed folder not found"),
    ("nodes", lambda r: (r / "data/Pubmed-Diabetes.NODE.paper.tab").unlink(), NODE_TAB + ": file not found"),
    ("cites", lambda r: (r / "data/Pubmed-Diabetes.DIRECTED.cites.tab").unlink(), CITES_TAB + ": file not found"),
    ("json", lambda r: (r / "pubmed.json").unlink(), r"pubmed\.json: file not found"),
    ("label4", _node_rows(NODE_ROWS[0], "1\tlabel=4\tsummary="), NODE_TAB + r" line 4: bad label field 'label=4'"),
    ("labelx", _node_rows("1\tlabel=x\tsummary="), NODE_TAB + r" line 3: bad label field 'label=x'"),
    ("nolabel", _node_rows("1\tw-rat=0.1\tsummary="), NODE_TAB + r" line 3: bad label field 'w-rat=0.1'"),
    ("onefield", _node_rows(NODE_ROWS[0], "", "12345"), NODE_TAB + r" line 5: expected"),
    ("dup", _node_rows(NODE_ROWS[0], NODE_ROWS[0]), NODE_TAB + r" line 4: pmid 12187484 already on line 3"),
    ("noheader", _write("data/Pubmed-Diabetes.NODE.paper.tab", "\n".join(NODE_ROWS) + "\n"), NODE_TAB + " line 1"),
    ("empty", _write("data/Pubmed-Diabetes.NODE.paper.tab", NODE_HEADER), NODE_TAB + ": no node rows"),
    ("cites_row", _write("data/Pubmed-Diabetes.DIRECTED.cites.tab", CITES_HEADER + "1\tpaper:1\tpaper:2\n"),
     CITES_TAB + r" line 3: expected"),
    ("cites_bar", _write("data/Pubmed-Diabetes.DIRECTED.cites.tab", CITES_HEADER + CITES_ROWS[0] + "\n1\t1\t|\t2\n"),
     CITES_TAB + r" line 4: expected"),
    ("cites_header", _write("data/Pubmed-Diabetes.DIRECTED.cites.tab", "\n".join(CITES_ROWS) + "\n"),
     CITES_TAB + " line 1: a data row where a header line belongs"),
    ("badjson", _write("pubmed.json", '[\n{"PMID": "1",\n}\n]'), r"pubmed\.json line 3: invalid JSON"),
    ("notarray", _write("pubmed.json", '{"PMID": "1"}'), r"pubmed\.json: top level is a dict"),
    ("notobject", _write("pubmed.json", '[{"PMID": "1"}, 5]'), r"pubmed\.json: element 1 is a int"),
]


@pytest.mark.parametrize("mutate,match", [(m, s) for _, m, s in PUBMED_ERRORS], ids=[i for i, _, _ in PUBMED_ERRORS])
def test_pubmed_format_errors(tmp_path, mutate, match):
    root = write_pubmed(tmp_path / "PubMed_orig")
    mutate(root)
    with pytest.raises(DataError, match=match):
        load_pubmed(PubmedSource(root=root))
