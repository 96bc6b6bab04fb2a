"""TAPE's raw-text Cora and PubMed releases (local files only; see FORMATS.md sections 3 and 4).

Both graphs are citation graphs returned undirected: each edge once as (min, max), no self loops.
Every node is labelled; splits are left to ingest (SplitConfig). Bag-of-words features are ignored
(node features come from the text encoder).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pyarrow as pa

from gkd.config import CoraSource, PubmedSource
from gkd.data.raw import RawGraph
from gkd.errors import DataError

logger = logging.getLogger(__name__)

# Raw cora.content class names, in TAPE's fixed label order (0-6).
CORA_RAW_CLASSES = [
    "Case_Based",
    "Genetic_Algorithms",
    "Neural_Networks",
    "Probabilistic_Methods",
    "Reinforcement_Learning",
    "Rule_Learning",
    "Theory",
]
# Stored class names: '_' -> ' ', as TAPE's prompts spell them (the LLM answers with these).
CORA_CLASSES = [name.replace("_", " ") for name in CORA_RAW_CLASSES]
PUBMED_CLASSES = [
    "Diabetes Mellitus Experimental",
    "Diabetes Mellitus Type 1",
    "Diabetes Mellitus Type 2",
]


# ----------------------------------------------------------------------------- shared helpers


def _require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DataError(f"{path}: file not found ({what}); point source.root at the unpacked TAPE folder")
    return path


def _read_lines(path: Path) -> list[str]:
    """All lines of a text file without line endings (a BOM is dropped; undecodable bytes become U+FFFD)."""
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        return f.read().splitlines()


def _bad_row(path: Path, lineno: int, problem: str, fix: str) -> DataError:
    return DataError(f"{path} line {lineno}: {problem}; {fix}")


def _undirected_edges(pairs: list[tuple[int, int]]) -> tuple[pa.Table, dict]:
    """Row-index pairs -> edges table (each undirected edge once, src < dst) and drop counts."""
    arr = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    loops = arr[:, 0] == arr[:, 1]
    arr = arr[~loops]
    arr = np.sort(arr, axis=1)
    uniq = np.unique(arr, axis=0) if len(arr) else arr
    stats = {"dropped_self_loops": int(loops.sum()), "dropped_duplicate_edges": int(len(arr) - len(uniq))}
    table = pa.table({"src": pa.array(uniq[:, 0], pa.int64()), "dst": pa.array(uniq[:, 1], pa.int64())})
    return table, stats


def _index_pairs(ends, index: dict[str, int]) -> tuple[list[tuple[int, int]], int]:
    """(key, key) citation ends -> row-index pairs, and how many pairs named an unknown key."""
    pairs: list[tuple[int, int]] = []
    unknown = 0
    for a, b in ends:
        ia, ib = index.get(a), index.get(b)
        if ia is None or ib is None:
            unknown += 1
        else:
            pairs.append((ia, ib))
    return pairs, unknown


def _citation_graph(
    name: str,
    cites: Path,
    keys: list[str],
    texts: list[str],
    labels: list[int],
    class_names: list[str],
    pairs: list[tuple[int, int]],
    unknown: int,
    text_stats: dict,
    text_notes: list[str],
) -> RawGraph:
    """Assemble the undirected RawGraph (all splits None), its stats and notes, and log them."""
    edges, edge_stats = _undirected_edges(pairs)
    notes = [f"{cites.name}: dropped {unknown} citation(s) naming ids that are not nodes"] if unknown else []
    notes += text_notes
    stats = {"cites_rows": len(pairs) + unknown, "dropped_edges_unknown_ids": unknown, **edge_stats, **text_stats}
    for note in notes:
        logger.warning("%s: %s", name, note)
    logger.info("%s: %d nodes, %d undirected edges from %s", name, len(keys), edges.num_rows, cites.parent)
    nodes = pa.table(
        {
            "key": pa.array(keys, pa.string()),
            "text": pa.array(texts, pa.string()),
            "label": pa.array(labels, pa.int32()),
            "split": pa.nulls(len(keys), pa.string()),
        }
    )
    return RawGraph(nodes=nodes, edges=edges, class_names=list(class_names), directed=False, notes=notes, stats=stats)


# ----------------------------------------------------------------------------- Cora


def load_cora(cfg: CoraSource) -> RawGraph:
    """cora.content (nodes, labels) + cora.cites (edges) + mccallum extractions (Title/Abstract text)."""
    root = Path(cfg.root)
    if not root.is_dir():
        raise DataError(f"{root}: Cora folder not found; set source.root to TAPE's dataset/cora_orig")
    keys, labels = _read_cora_content(_require_file(root / "cora.content", "Cora nodes"))
    index = {k: i for i, k in enumerate(keys)}
    cites = _require_file(root / "cora.cites", "Cora citations")
    pairs, unknown = _index_pairs(_cora_cite_ends(cites), index)
    papers = _require_file(root / "mccallum" / "cora" / "papers", "paper id -> extraction file name")
    extractions = root / "mccallum" / "cora" / "extractions"
    if not extractions.is_dir():
        raise DataError(f"{extractions}: folder not found (Cora title/abstract files); unpack TAPE's cora_orig fully")
    texts, text_stats = _cora_texts(keys, _read_cora_papers(papers), extractions)

    notes = []
    if text_stats["text_missing"]:
        notes.append(
            f"{text_stats['text_missing']} Cora paper(s) have no extraction file "
            f"({text_stats['no_papers_entry']} not listed in {papers.name}); their text is empty"
        )
    if text_stats["no_title_or_abstract"]:
        notes.append(f"{text_stats['no_title_or_abstract']} Cora extraction file(s) hold no Title:/Abstract: line")
    return _citation_graph("cora", cites, keys, texts, labels, CORA_CLASSES, pairs, unknown, text_stats, notes)


def _read_cora_content(path: Path) -> tuple[list[str], list[int]]:
    """Rows `<paper_id> <0/1 features...> <class>` (whitespace-separated, as np.genfromtxt reads them)."""
    classes = {name: i for i, name in enumerate(CORA_RAW_CLASSES)}
    keys: list[str] = []
    labels: list[int] = []
    seen: dict[str, int] = {}
    width = None
    for lineno, line in enumerate(_read_lines(path), 1):
        fields = line.split()
        if not fields:
            continue
        if width is None:
            width = len(fields)
            if width < 2:
                raise _bad_row(path, lineno, f"expected `<paper_id>\\t<features...>\\t<class>`, got {line!r}",
                               "check that this is TAPE's cora.content")
        if len(fields) != width:
            raise _bad_row(path, lineno, f"{len(fields)} fields where the first row has {width}",
                           "every row needs the paper id, the same number of 0/1 features and the class; "
                           "fix or remove it")
        key, cls = fields[0], fields[-1]
        if cls not in classes:
            raise _bad_row(path, lineno, f"unknown class {cls!r} (expected one of {', '.join(CORA_RAW_CLASSES)})",
                           "fix the class name")
        if key in seen:
            raise _bad_row(path, lineno, f"paper id {key} already on line {seen[key]}", "remove the duplicate row")
        seen[key] = lineno
        keys.append(key)
        labels.append(classes[cls])
    if not keys:
        raise DataError(f"{path}: no rows; expected TAPE's cora.content (2,708 papers)")
    return keys, labels


def _cora_cite_ends(path: Path):
    """Rows `<cited> <citing>` -> (cited id, citing id)."""
    for lineno, line in enumerate(_read_lines(path), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise _bad_row(path, lineno, f"expected `<cited>\\t<citing>`, got {line!r}", "fix or remove the row")
        yield fields[0], fields[1]


def _read_cora_papers(path: Path) -> dict[str, list[str]]:
    """Rows `<paper_id>\\t<filename>\\t<citation or empty>` -> paper id -> file names, in file order."""
    out: dict[str, list[str]] = {}
    for lineno, line in enumerate(_read_lines(path), 1):
        if not line.strip():
            continue
        fields = line.split("\t", 2)
        if len(fields) < 2 or not fields[0].strip() or not fields[1].strip():
            raise _bad_row(path, lineno, f"expected `<paper_id>\\t<filename>\\t<citation>`, got {line[:80]!r}",
                           "fix or remove the row")
        out.setdefault(fields[0].strip(), []).append(fields[1].strip())
    return out


def _cora_texts(keys: list[str], filenames: dict[str, list[str]], folder: Path) -> tuple[list[str], dict]:
    """Text per paper: last `Title:` line + '\\n' + last `Abstract:` line of its extraction file."""
    by_lower: dict[str, str] = {}
    for name in sorted(os.listdir(folder)):
        by_lower.setdefault(name.lower(), name)
    stats = {"text_missing": 0, "no_papers_entry": 0, "extraction_name_fixed": 0, "no_title_or_abstract": 0}
    texts: list[str] = []
    for key in keys:
        names = filenames.get(key)
        if not names:
            stats["no_papers_entry"] += 1
            stats["text_missing"] += 1
            texts.append("")
            continue
        # TAPE keeps the last papers line for an id; try it first, then the others.
        found = None
        for name in reversed(names):
            found = _find_extraction(folder, name, by_lower)
            if found is not None:
                break
        if found is None:
            stats["text_missing"] += 1
            texts.append("")
            continue
        if found.name != names[-1]:
            stats["extraction_name_fixed"] += 1
        text = _title_abstract(found)
        if not text:
            stats["no_title_or_abstract"] += 1
        texts.append(text)
    return texts, stats


def _find_extraction(folder: Path, name: str, by_lower: dict[str, str]) -> Path | None:
    """Exact name, then case-insensitive, then the same two with ':' replaced by '_'."""
    for candidate in dict.fromkeys([name, name.replace(":", "_")]):
        if (folder / candidate).is_file():
            return folder / candidate
        real = by_lower.get(candidate.lower())
        if real is not None and (folder / real).is_file():
            return folder / real
    return None


def _title_abstract(path: Path) -> str:
    """Last line containing 'Title:' and last containing 'Abstract:', prefixes kept, joined by '\\n'."""
    title = abstract = ""
    for line in _read_lines(path):
        if "Title:" in line:
            title = line
        if "Abstract:" in line:
            abstract = line
    return "\n".join(part for part in (title, abstract) if part)


# ----------------------------------------------------------------------------- PubMed


def load_pubmed(cfg: PubmedSource) -> RawGraph:
    """Pubmed-Diabetes NODE/DIRECTED.cites .tab files (nodes, labels, edges) + pubmed.json (TI/AB text)."""
    root = Path(cfg.root)
    if not root.is_dir():
        raise DataError(f"{root}: PubMed folder not found; set source.root to TAPE's dataset/PubMed_orig")
    node_file = _require_file(root / "data" / "Pubmed-Diabetes.NODE.paper.tab", "PubMed nodes")
    cites = _require_file(root / "data" / "Pubmed-Diabetes.DIRECTED.cites.tab", "PubMed citations")
    json_file = _require_file(root / "pubmed.json", "PubMed titles and abstracts")
    keys, labels = _read_pubmed_nodes(node_file)
    index = {k: i for i, k in enumerate(keys)}
    pairs, unknown = _index_pairs(_pubmed_cite_ends(cites), index)
    texts, text_stats = _pubmed_texts(keys, _read_pubmed_json(json_file))

    notes = []
    if text_stats["json_misaligned"]:
        n = text_stats["json_misaligned"]
        notes.append(f"{json_file.name}: {n} record(s) not at their node's row; matched by PMID")
    if text_stats["json_without_pmid"]:
        notes.append(f"{json_file.name}: {text_stats['json_without_pmid']} record(s) without PMID; used by position")
    if text_stats["json_missing"]:
        notes.append(f"{json_file.name}: no record for {text_stats['json_missing']} node(s); their text is empty")
    return _citation_graph("pubmed", cites, keys, texts, labels, PUBMED_CLASSES, pairs, unknown, text_stats, notes)


def _data_lines(path: Path, looks_like_row):
    """(lineno, line) after the 2 header lines; a data row among the first two means the header is gone."""
    lines = _read_lines(path)
    for lineno, line in enumerate(lines[:2], 1):
        if looks_like_row(line):
            raise _bad_row(path, lineno, f"a data row where a header line belongs: {line[:60]!r}",
                           "use the LINQS Pubmed-Diabetes file unchanged (it starts with 2 header lines)")
    for lineno, line in enumerate(lines[2:], 3):
        if line.strip():
            yield lineno, line


def _is_node_row(line: str) -> bool:
    fields = line.split("\t", 2)
    return len(fields) > 1 and fields[1].strip().startswith("label=")


def _is_cites_row(line: str) -> bool:
    return "\tpaper:" in line


def _read_pubmed_nodes(path: Path) -> tuple[list[str], list[int]]:
    """Rows `<pmid>\\tlabel=<1..3>\\t<features...>\\tsummary=...` -> pmids, 0-based labels."""
    keys: list[str] = []
    labels: list[int] = []
    seen: dict[str, int] = {}
    for lineno, line in _data_lines(path, _is_node_row):
        fields = line.split("\t", 2)
        if len(fields) < 2 or not fields[0].strip():
            raise _bad_row(path, lineno, f"expected `<pmid>\\tlabel=<1..3>\\t...`, got {line[:80]!r}",
                           "fix or remove the row")
        key, label = fields[0].strip(), fields[1].strip()
        value = label[len("label="):] if label.startswith("label=") else ""
        if value not in ("1", "2", "3"):
            raise _bad_row(path, lineno, f"bad label field {label!r} (expected label=1, label=2 or label=3)",
                           "fix the row's label")
        if key in seen:
            raise _bad_row(path, lineno, f"pmid {key} already on line {seen[key]}", "remove the duplicate row")
        seen[key] = lineno
        keys.append(key)
        labels.append(int(value) - 1)
    if not keys:
        raise DataError(f"{path}: no node rows after the 2 header lines; expected 19,717 papers")
    return keys, labels


def _pubmed_cite_ends(path: Path):
    """Rows `<id>\\tpaper:<tail>\\t|\\tpaper:<head>` -> (tail pmid, head pmid)."""
    for lineno, line in _data_lines(path, _is_cites_row):
        fields = [f.strip() for f in line.split("\t")]
        if len(fields) != 4 or fields[2] != "|" or not all(f.startswith("paper:") for f in (fields[1], fields[3])):
            raise _bad_row(path, lineno, f"expected `<id>\\tpaper:<pmid>\\t|\\tpaper:<pmid>`, got {line[:80]!r}",
                           "fix or remove the row")
        yield fields[1][len("paper:"):], fields[3][len("paper:"):]


def _read_pubmed_json(path: Path) -> list[dict]:
    """pubmed.json: one JSON array of MEDLINE-style records (element i = node i, if aligned)."""
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as f:
            records = json.load(f)
    except json.JSONDecodeError as err:
        raise _bad_row(path, err.lineno, f"invalid JSON ({err.msg}, column {err.colno})",
                       "restore TAPE's pubmed.json") from None
    if not isinstance(records, list):
        raise DataError(f"{path}: top level is a {type(records).__name__}, expected a JSON array of records; "
                        "restore TAPE's pubmed.json")
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise DataError(f"{path}: element {i} is a {type(rec).__name__}, expected an object with PMID, TI, AB; "
                            "fix or remove it")
    return records


def _pmid(record: dict) -> str:
    """A record's PMID as a string ('' if absent); numbers compare like the tab file's ids."""
    value = record.get("PMID")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return "" if value is None else str(value).strip()


def _field_text(value) -> str:
    """A MEDLINE field as text: None/NaN -> '', lists joined by spaces."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, list):
        return " ".join(_field_text(v) for v in value).strip()
    return str(value)


def _pubmed_texts(keys: list[str], records: list[dict]) -> tuple[list[str], dict]:
    """Text per node `Title: {TI}\\nAbstract: {AB}`: record i if its PMID matches, else found by PMID."""
    by_pmid: dict[str, dict] = {}
    for rec in records:
        by_pmid.setdefault(_pmid(rec), rec)
    by_pmid.pop("", None)
    stats = {"json_records": len(records), "json_misaligned": 0, "json_without_pmid": 0, "json_missing": 0}
    texts: list[str] = []
    for i, key in enumerate(keys):
        rec = records[i] if i < len(records) else None
        if rec is not None and _pmid(rec) == key:
            pass
        elif key in by_pmid:
            rec = by_pmid[key]
            stats["json_misaligned"] += 1
        elif rec is not None and not _pmid(rec) and len(records) == len(keys):
            stats["json_without_pmid"] += 1
        else:
            stats["json_missing"] += 1
            texts.append("")
            continue
        texts.append(f"Title: {_field_text(rec.get('TI'))}\nAbstract: {_field_text(rec.get('AB'))}")
    return texts, stats
