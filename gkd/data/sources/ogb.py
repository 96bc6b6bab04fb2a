"""OGB node-property datasets with their raw text: ogbn-products (+ Amazon-3M) and ogbn-arxiv (+ titleabs).

Reads the unpacked OGB folders (`raw/`, `split/`, `mapping/`; formats in shared/FORMATS.md §1-2)
from local paths only; nothing is downloaded. Vectorised with pyarrow: ogbn-products is
2,449,029 nodes and 61,859,140 edges.

Split rule (both datasets): a node listed in `split/<type>/{train,valid,test}.csv.gz` gets
train/val/test; a node in no split file keeps its label but gets split 'unlabeled' (it is neither
trained nor evaluated on, and ingest does not draw a random split for it, so the official split
stays intact); a node whose label is missing gets label -1 and split 'unlabeled'. Both counts go
to `RawGraph.stats` and a note. A node listed in two split files is a DataError.
"""

from __future__ import annotations

import gzip
import html
import io
import logging
import re
import tarfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json

from gkd.config import OgbnArxivSource, OgbnProductsSource
from gkd.data.raw import RawGraph
from gkd.errors import DataError

log = logging.getLogger(__name__)

PRODUCTS = "ogbn-products"
ARXIV = "ogbn-arxiv"
OGB_HINT = {
    PRODUCTS: "unzip products.zip from https://snap.stanford.edu/ogb/data/nodeproppred/ and set "
    "source.root to the folder holding raw/, split/, mapping/",
    ARXIV: "unzip arxiv.zip from https://snap.stanford.edu/ogb/data/nodeproppred/ and set "
    "source.root to the folder holding raw/, split/, mapping/",
}
AMAZON_HINT = (
    "put Amazon-3M's trn.json and tst.json (or .json.gz; from the XMLRepository Amazon-3M raw text "
    "zip) in <root>/Amazon-3M.raw, or set source.amazon_dir"
)
TITLEABS_HINT = (
    "get https://snap.stanford.edu/ogb/data/misc/ogbn_arxiv/titleabs.tsv.gz into source.root, "
    "or set source.titleabs"
)
SPLIT_FILES = ("train", "valid", "test")  # split/<type>/<file>.csv.gz -> SPLIT_CODES[0..2]
SPLIT_CODES = ["train", "val", "test", "unlabeled"]  # int8 codes -> split strings
_INT_RE = r"^\s*[-+]?\d+\s*$"


# ----------------------------------------------------------------------------- loaders


def load_ogbn_products(cfg: OgbnProductsSource) -> RawGraph:
    """ogbn-products: 2.4M Amazon products, 47 classes; key = ASIN, text from Amazon-3M trn/tst.json.

    Text = 'Product: {title}; Description: {content}' (title stripped of '"' and newlines as in
    GLEM); nodes whose ASIN is in neither file get '' (counted: stats['nodes_missing_text']).
    Undirected: each edge is stored once, as in the file.
    """
    t0 = time.perf_counter()
    root = _dataset_dir(cfg.root, ("ogbn_products", "products"), PRODUCTS)
    graph, asins = _read_ogb(
        root, PRODUCTS, ("nodeidx2asin.csv.gz", "asin", pa.string()),
        ("labelidx2productcategory.csv.gz", "product category", _product_category), "sales_ranking", directed=False,
    )
    amazon_dir = cfg.amazon_dir or _first_dir([root / "Amazon-3M.raw", Path(cfg.root) / "Amazon-3M.raw"])
    return _with_text(PRODUCTS, graph, *_amazon_texts(Path(amazon_dir), asins), t0)


def load_ogbn_arxiv(cfg: OgbnArxivSource) -> RawGraph:
    """ogbn-arxiv: 169k arXiv CS papers, 40 classes (cs.XX); key = MAG paper id, text from titleabs.

    Text = 'Title: {title}\\nAbstract: {abstract}'; papers missing from titleabs get '' (counted:
    stats['nodes_missing_text']). Directed citation edges, kept as in the file.
    """
    t0 = time.perf_counter()
    root = _dataset_dir(cfg.root, ("ogbn_arxiv", "arxiv"), ARXIV)
    graph, paper_ids = _read_ogb(
        root, ARXIV, ("nodeidx2paperid.csv.gz", "paper id", pa.int64()),
        ("labelidx2arxivcategeory.csv.gz", "arxiv category", _arxiv_category), "time", directed=True,
    )
    titleabs = cfg.titleabs or _first_file(
        [root / "titleabs.tsv.gz", root / "titleabs.tsv", Path(cfg.root) / "titleabs.tsv.gz",
         Path(cfg.root) / "titleabs.tsv", root.parent / "ogbn_arxiv_orig" / "titleabs.tsv"]
    )
    return _with_text(ARXIV, graph, *_titleabs_texts(Path(titleabs), paper_ids), t0)


def _read_ogb(
    root: Path, name: str, mapping: tuple, classes: tuple, split_type: str, directed: bool
) -> tuple[RawGraph, pa.Array]:
    """The OGB folder -> (RawGraph with text '', (N,) ids from the node mapping).

    mapping: (file, id column, id type); classes: (file, name column, name cleaner).
    """
    mapping_file, id_column, id_type = mapping
    classes_file, class_column, clean = classes
    num_nodes, notes = _num_nodes(root, mapping_file, name)
    ids = _read_node_mapping(root / "mapping" / mapping_file, id_column, id_type, num_nodes, name)
    class_names, class_notes = _read_class_names(root / "mapping" / classes_file, class_column, clean, name)
    labels = _read_labels(root / "raw" / "node-label.csv.gz", num_nodes, len(class_names), name)
    split, split_stats, split_notes = _read_splits(root / "split" / split_type, labels, name)
    edges = _read_edges(root / "raw" / "edge.csv.gz", num_nodes, name)
    keys = pc.cast(ids, pa.string())
    stats = {"num_nodes": num_nodes, "num_edges": edges.num_rows, **split_stats}
    stats["duplicate_keys"] = len(keys) - pc.count_distinct(keys).as_py()
    if stats["duplicate_keys"]:
        notes.append(f"{stats['duplicate_keys']} nodes share their {id_column} with another node: keys are not unique")
    nodes = pa.table({
        "key": keys,
        "text": pa.nulls(num_nodes, pa.string()).fill_null(""),
        "label": pa.array(labels, pa.int32()),
        "split": split,
    })
    notes = notes + class_notes + split_notes
    return RawGraph(nodes, edges, class_names, directed=directed, notes=notes, stats=stats), ids


def _with_text(name: str, graph: RawGraph, text: pa.Array, stats: dict, notes: list[str], t0: float) -> RawGraph:
    """Put the (N,) texts into graph.nodes and add the text stats and notes."""
    graph.nodes = graph.nodes.set_column(graph.nodes.schema.get_field_index("text"), "text", text)
    graph.stats.update(stats)
    graph.notes.extend(notes)
    log.info(
        "%s: %d nodes, %d edges, %d without text, read in %.1fs",
        name, graph.num_nodes, graph.edges.num_rows, stats.get("nodes_missing_text", 0), time.perf_counter() - t0,
    )
    return graph


# ----------------------------------------------------------------------------- OGB layout


def _dataset_dir(root: Path, subdirs: tuple[str, ...], name: str) -> Path:
    """The folder holding raw/: root itself, or root/<ogbn_x | x> (OGB's own download layout)."""
    root = Path(root)
    for cand in [root, *(root / s for s in subdirs)]:
        if (cand / "raw").is_dir():
            return cand
    raise DataError(f"{name}: no raw/ folder in {root} (nor in {', '.join(subdirs)}/ under it); {OGB_HINT[name]}")


def _first_file(cands: list[Path]) -> Path:
    """The first existing file (else the first candidate, so the error names the default)."""
    return next((c for c in cands if c.is_file()), cands[0])


def _first_dir(cands: list[Path]) -> Path:
    return next((c for c in cands if c.is_dir()), cands[0])


def _need(path: Path, name: str, hint: str) -> Path:
    if not path.is_file():
        raise DataError(f"{name}: missing file {path}; {hint}")
    return path


def _read_csv(
    path: Path, columns: dict[str, pa.DataType], header: bool, name: str, allow_empty: bool = False
) -> pa.Table:
    """A csv(.gz) as a table with exactly `columns`; headerless files get these column names.

    Wrong column counts, non-numbers and bad gzip become DataError naming file, line and column.
    """
    _need(path, name, OGB_HINT[name])
    bad_rows: list = []

    def on_bad_row(row) -> str:
        bad_rows.append(row)
        return "skip"

    names = list(columns)
    read = pa_csv.ReadOptions(column_names=None if header else names, block_size=1 << 24)
    parse = pa_csv.ParseOptions(invalid_row_handler=on_bad_row)
    convert = pa_csv.ConvertOptions(column_types=columns)
    try:
        table = pa_csv.read_csv(path, read_options=read, parse_options=parse, convert_options=convert)
    except pa.ArrowInvalid as err:
        msg = str(err)
        if "Empty CSV file" in msg and allow_empty and not header:
            return pa.table({c: pa.array([], t) for c, t in columns.items()})
        if "Empty CSV file" in msg:
            raise DataError(f"{name}: {path} is empty; {OGB_HINT[name]}") from None
        col = re.search(r"In CSV column #(\d+)", msg)
        if col is not None:
            raise DataError(_conversion_error(path, header, names, int(col.group(1)), name, msg)) from None
        raise DataError(f"{name}: {path} cannot be read as a gzip csv ({msg}); {OGB_HINT[name]}") from None
    except OSError as err:  # bad gzip stream, unreadable file
        raise DataError(f"{name}: {path} cannot be read ({err}); re-download it; {OGB_HINT[name]}") from None
    if bad_rows:
        row = bad_rows[0]
        number = row.number if row.number is not None else _bad_row_number(path, read)
        where = f"line {number}" if number is not None else "a row"
        raise DataError(
            f"{name}: {path}: {where} has {row.actual_columns} columns, expected {row.expected_columns} "
            f"({', '.join(names)}): {row.text[:80]!r}; the file is damaged or not the OGB one, re-download it"
        )
    if header:
        missing = [c for c in names if c not in table.column_names]
        if missing:
            raise DataError(
                f"{name}: {path}: header is {','.join(table.column_names)!r}, expected columns "
                f"{', '.join(repr(c) for c in names)} (missing {', '.join(repr(c) for c in missing)}); "
                f"is this OGB's mapping file?"
            )
        table = table.select(names)
    return table


def _bad_row_number(path: Path, read: pa_csv.ReadOptions) -> int | None:
    """Error path only: re-read single-threaded, where pyarrow knows line numbers."""
    found: list = []

    def on_bad_row(row) -> str:
        found.append(row.number)
        return "error"

    opts = pa_csv.ReadOptions(column_names=read.column_names, use_threads=False, block_size=read.block_size)
    try:
        pa_csv.read_csv(path, read_options=opts, parse_options=pa_csv.ParseOptions(invalid_row_handler=on_bad_row))
    except (pa.ArrowInvalid, OSError):
        pass
    return found[0] if found else None


def _conversion_error(path: Path, header: bool, names: list[str], col: int, name: str, msg: str) -> str:
    """Error path only: find the first non-integer value of column `col` and say where it is."""
    value = re.search(r"invalid value '(.*)'", msg)
    where = ""
    try:
        read = pa_csv.ReadOptions(autogenerate_column_names=not header, block_size=1 << 24)
        table = pa_csv.read_csv(path, read_options=read)
        column = pc.cast(table.column(col), pa.string())
        ok = pc.fill_null(pc.match_substring_regex(column, _INT_RE), True)
        bad = np.flatnonzero(~ok.to_numpy(zero_copy_only=False))
        if len(bad):
            where = f"line {int(bad[0]) + 1 + int(header)}, "
        col_name = table.column_names[col] if header else names[col]
    except (pa.ArrowInvalid, OSError, IndexError):
        col_name = f"#{col + 1}"
    got = f"{value.group(1)!r}" if value else "a value"
    return f"{name}: {path}: {where}column {col_name}: {got} is not an integer; the file is damaged or not the OGB one"


def _num_nodes(root: Path, mapping_name: str, name: str) -> tuple[int, list[str]]:
    """N from raw/num-node-list.csv.gz, else (with a note) the row count of the node mapping."""
    path = root / "raw" / "num-node-list.csv.gz"
    if not path.is_file():
        mapping = _read_csv(root / "mapping" / mapping_name, {"node idx": pa.int64()}, True, name)
        n = mapping.num_rows
        return n, [f"{path} is missing; took the node count ({n}) from mapping/{mapping_name}"]
    values = _read_csv(path, {"num_nodes": pa.int64()}, False, name).column(0)
    if len(values) != 1 or values.null_count or values[0].as_py() < 1:
        raise DataError(
            f"{name}: {path}: expected a single positive integer (the node count), got {values.to_pylist()[:5]}"
        )
    return int(values[0].as_py()), []


def _read_node_mapping(path: Path, column: str, dtype: pa.DataType, num_nodes: int, name: str) -> pa.Array:
    """mapping/nodeidx2*.csv.gz (header 'node idx,<column>') -> (N,) array, row i = node i."""
    table = _read_csv(path, {"node idx": pa.int64(), column: dtype}, True, name)
    if table.num_rows != num_nodes:
        raise DataError(
            f"{name}: {path} has {table.num_rows} rows but the graph has {num_nodes} nodes; "
            f"mapping/ and raw/ must come from the same OGB release"
        )
    if table.column("node idx").null_count:
        bad = int(np.flatnonzero(table.column("node idx").is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError(f"{name}: {path}: line {bad + 2}, column 'node idx' is empty; re-download the mapping folder")
    idx = table.column("node idx").to_numpy()
    values = table.column(column).combine_chunks()
    if not np.array_equal(idx, np.arange(num_nodes)):
        if not np.array_equal(np.sort(idx), np.arange(num_nodes)):
            bad = int(np.flatnonzero(idx != np.arange(num_nodes))[0])
            raise DataError(
                f"{name}: {path}: line {bad + 2}, column 'node idx': {idx[bad]} — expected every node index "
                f"0..{num_nodes - 1} exactly once; re-download the mapping folder"
            )
        values = values.take(pa.array(np.argsort(idx)))  # a permutation: put row i at node i
    if values.null_count:
        bad = int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError(f"{name}: {path}: line {bad + 2}, column {column!r} is empty; re-download the mapping folder")
    return values


def _read_class_names(path: Path, column: str, clean, name: str) -> tuple[list[str], list[str]]:
    """mapping/labelidx2*.csv.gz (header 'label idx,<column>') -> readable, unique class names."""
    table = _read_csv(path, {"label idx": pa.int64(), column: pa.string()}, True, name)
    idx = table.column("label idx").to_numpy(zero_copy_only=False)
    if table.num_rows == 0 or not np.array_equal(np.sort(idx), np.arange(table.num_rows)):
        raise DataError(
            f"{name}: {path}: column 'label idx' must hold 0..C-1 once each, got {idx[:10].tolist()}...; "
            f"re-download the mapping folder"
        )
    raw = np.asarray(table.column(column).to_pylist(), dtype=object)[np.argsort(idx)]
    names, notes, seen = [], [], set()
    for i, value in enumerate(raw):
        cleaned = clean(value)
        if not cleaned:
            cleaned = f"class_{i}"
            notes.append(f"class {i}: category {value!r} in {path.name} is not a name; called it {cleaned!r}")
        if cleaned in seen:
            cleaned = f"{cleaned} ({i})"
        seen.add(cleaned)
        names.append(cleaned)
    return names, notes


def _product_category(value: str | None) -> str:
    """'Furniture &amp; D&#233;cor' -> 'Furniture & Décor'; blank or an id like '#508510' -> ''."""
    text = " ".join(html.unescape(value or "").split())
    if not text or text.lower() in {"nan", "none", "null"} or re.fullmatch(r"[#\d\W]*", text):
        return ""
    return text


def _arxiv_category(value: str | None) -> str:
    """'arxiv cs na' -> 'cs.NA'; anything else is kept (whitespace-normalised)."""
    parts = (value or "").split()
    if parts and parts[0].lower() == "arxiv":
        parts = parts[1:]
    if len(parts) == 2 and parts[0].isalpha() and parts[1].isalpha():
        return f"{parts[0].lower()}.{parts[1].upper()}"
    return " ".join(parts)


def _read_labels(path: Path, num_nodes: int, num_classes: int, name: str) -> np.ndarray:
    """raw/node-label.csv.gz -> (N,) int32, -1 where the file has NaN or nothing."""
    col = _read_csv(path, {"label": pa.float64()}, False, name).column(0)
    if len(col) != num_nodes:
        raise DataError(
            f"{name}: {path} has {len(col)} rows but the graph has {num_nodes} nodes; "
            f"raw/ and mapping/ must come from the same OGB release, re-download them"
        )
    values = col.to_numpy(zero_copy_only=False)  # nulls -> NaN
    known = np.isfinite(values)
    bad = known & ((values != np.round(values)) | (values < 0) | (values >= num_classes))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{name}: {path}: line {i + 1}: label {values[i]:g} is not a class index 0..{num_classes - 1} "
            f"(the class mapping file has {num_classes} rows); re-download raw/ and mapping/ together"
        )
    return np.where(known, values, -1).astype(np.int32)


def _read_index_file(path: Path, num_nodes: int, name: str) -> np.ndarray:
    """A headerless one-int-per-row file of node indices -> (n,) int64, each in 0..N-1."""
    col = _read_csv(path, {"node": pa.int64()}, False, name).column(0)
    if col.null_count:
        i = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError(f"{name}: {path}: line {i + 1} is empty; re-download it")
    idx = col.to_numpy()
    _check_range(idx, num_nodes, path, "node index", name)
    return idx


def _check_range(idx: np.ndarray, num_nodes: int, path: Path, column: str, name: str) -> None:
    if len(idx) == 0:
        return
    lo, hi = idx.min(), idx.max()
    if lo < 0 or hi >= num_nodes:
        i = int(np.flatnonzero((idx < 0) | (idx >= num_nodes))[0])
        raise DataError(
            f"{name}: {path}: line {i + 1}, column {column}: {int(idx[i])} is out of range 0..{num_nodes - 1} "
            f"(the graph has {num_nodes} nodes); the files come from different OGB "
            f"releases or are damaged, re-download the dataset"
        )


def _read_splits(split_dir: Path, labels: np.ndarray, name: str) -> tuple[pa.Array, dict, list[str]]:
    """split/<type>/{train,valid,test}.csv.gz -> (N,) split strings; see the module doc for the rule."""
    if not split_dir.is_dir():
        have = sorted(p.name for p in split_dir.parent.iterdir()) if split_dir.parent.is_dir() else []
        raise DataError(f"{name}: missing folder {split_dir} (split/ holds {have}); {OGB_HINT[name]}")
    n = len(labels)
    codes = np.full(n, -1, dtype=np.int8)
    owner = {}
    for i, file_stem in enumerate(SPLIT_FILES):
        path = split_dir / f"{file_stem}.csv.gz"
        idx = _read_index_file(path, n, name)
        taken = codes[idx] >= 0
        if taken.any():
            j = int(np.flatnonzero(taken)[0])
            raise DataError(
                f"{name}: {path}: line {j + 1}: node {int(idx[j])} is already in "
                f"{owner[int(codes[idx[j]])]}.csv.gz; a node belongs to one split, re-download split/"
            )
        codes[idx] = i
        owner[i] = file_stem
    no_split = (codes < 0) & (labels >= 0)
    no_label = labels < 0
    codes[(codes < 0) | no_label] = SPLIT_CODES.index("unlabeled")
    stats = {"nodes_without_split": int(no_split.sum()), "nodes_without_label": int(no_label.sum())}
    notes = []
    if stats["nodes_without_split"]:
        n = stats["nodes_without_split"]
        notes.append(f"{n} labelled nodes are in no file of {split_dir}: split 'unlabeled', label kept")
    if stats["nodes_without_label"]:
        n = stats["nodes_without_label"]
        notes.append(f"{n} nodes have no label in raw/node-label.csv.gz: label -1, split 'unlabeled'")
    split = pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(SPLIT_CODES)).cast(pa.string())
    return split, stats, notes


def _read_edges(path: Path, num_nodes: int, name: str) -> pa.Table:
    """raw/edge.csv.gz (headerless src,dst) -> table src, dst int64, checked against N."""
    table = _read_csv(path, {"src": pa.int64(), "dst": pa.int64()}, False, name, allow_empty=True)
    if table.num_rows == 0:
        log.warning("%s: %s is empty: a graph without edges", name, path)
    for column in ("src", "dst"):
        col = table.column(column)
        if col.null_count:
            i = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
            raise DataError(f"{name}: {path}: line {i + 1}, column {column} is empty; re-download raw/")
        _check_range(col.to_numpy(), num_nodes, path, column, name)
    return table


# ----------------------------------------------------------------------------- text


def _join_text(node_ids: pa.Array, record_ids: pa.Array, record_text: pa.Array, what: str, where: Path):
    """(N,) text of each node's first record with its id ('' if none) -> (text, missing count, notes)."""
    row = pc.index_in(node_ids, value_set=record_ids)
    text = pc.fill_null(pc.take(record_text, row), "")
    missing, total = row.null_count, len(node_ids)
    notes = []
    if missing:
        notes.append(f"{missing} of {total} nodes ({100 * missing / total:.2f}%) have no {what} in {where}: text ''")
    return text, missing, notes


def _amazon_file(amazon_dir: Path, stem: str) -> Path:
    for suffix in (".json", ".json.gz"):
        if (amazon_dir / f"{stem}{suffix}").is_file():
            return amazon_dir / f"{stem}{suffix}"
    raise DataError(f"{PRODUCTS}: missing file {amazon_dir / stem}.json (or {stem}.json.gz); {AMAZON_HINT}")


def _read_amazon(path: Path) -> pa.Table:
    """Amazon-3M JSON lines (uid, title, content, target_ind, ...) -> table uid, title, content."""
    schema = pa.schema([("uid", pa.string()), ("title", pa.string()), ("content", pa.string())])
    parse = pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    try:  # pyarrow skips a UTF-8 BOM and gunzips by extension
        table = pa_json.read_json(path, read_options=pa_json.ReadOptions(block_size=1 << 24), parse_options=parse)
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(
            f"{PRODUCTS}: {path} is not JSON Lines with string fields uid, title, content ({err}); "
            f"expected Amazon-3M's raw trn.json/tst.json, one object per line"
        ) from None
    if table.num_rows and table.column("uid").null_count == table.num_rows:
        raise DataError(f"{PRODUCTS}: {path}: no line has a 'uid' field; expected Amazon-3M's raw trn.json/tst.json")
    return table


def _amazon_texts(amazon_dir: Path, asins: pa.Array) -> tuple[pa.Array, dict, list[str]]:
    """(N,) texts 'Product: {title}; Description: {content}' joined on uid == asin (first uid wins)."""
    if not amazon_dir.is_dir():
        raise DataError(f"{PRODUCTS}: missing folder {amazon_dir}; {AMAZON_HINT}")
    tables = []
    for stem in ("trn", "tst"):
        path = _amazon_file(amazon_dir, stem)
        t0 = time.perf_counter()
        tables.append(_read_amazon(path))
        log.info("%s: %s: %d records in %.1fs", PRODUCTS, path.name, tables[-1].num_rows, time.perf_counter() - t0)
    records = pa.concat_tables(tables).combine_chunks()
    records = records.filter(pc.is_valid(records.column("uid")))
    uids = pc.utf8_trim_whitespace(records.column("uid"))
    duplicates = len(uids) - pc.count_distinct(uids).as_py()
    title = pc.utf8_trim_whitespace(pc.utf8_trim(pc.fill_null(records.column("title"), ""), characters='"\n'))
    content = pc.utf8_trim_whitespace(pc.fill_null(records.column("content"), ""))
    text = pc.utf8_trim_whitespace(pc.binary_join_element_wise("Product: ", title, "; Description: ", content, ""))
    text, missing, notes = _join_text(asins, uids, text, "Amazon-3M record (trn/tst.json)", amazon_dir)
    stats = {"amazon_records": records.num_rows, "amazon_duplicate_uids": duplicates, "nodes_missing_text": missing}
    if duplicates:
        notes.append(f"{duplicates} Amazon-3M records repeat a uid seen before; the first (trn before tst) is used")
    return text, stats, notes


@contextmanager
def _open_titleabs(path: Path) -> Iterator[IO[bytes]]:
    """Bytes of titleabs.tsv from a gzipped tar (the OGB download), a plain tar, a .gz, or a plain tsv."""
    if tarfile.is_tarfile(path):  # also true for the gzipped tar: tarfile gunzips transparently
        with tarfile.open(path, mode="r:*") as tar:
            member, files = None, []
            for m in tar:  # OGB's tar holds titleabs.tsv first: stop there, don't gunzip it all twice
                if m.isfile() and Path(m.name).name == "titleabs.tsv":
                    member = m
                    break
                if m.isfile():
                    files.append(m)
            if member is None and len(files) == 1:
                member = files[0]
            if member is None:
                raise DataError(
                    f"{ARXIV}: {path} is a tar without titleabs.tsv (members: {[m.name for m in files][:10]}); "
                    f"{TITLEABS_HINT}"
                )
            yield tar.extractfile(member)
    else:
        with open(path, "rb") as raw:
            is_gzip = raw.read(2) == b"\x1f\x8b"
        with (gzip.open(path, "rb") if is_gzip else open(path, "rb")) as f:
            yield f


def _parse_titleabs(path: Path) -> tuple[pa.Table, int, str | None]:
    """titleabs.tsv lines 'paper id \\t title \\t abstract' -> table (paper_id, title, abstract), bad lines."""
    ids, titles, abstracts = [], [], []
    bad, first_bad = 0, None
    try:
        with _open_titleabs(path) as f:
            lines = io.TextIOWrapper(f, encoding="utf-8-sig", errors="replace", newline="\n")
            for number, line in enumerate(lines, 1):
                line = line.strip("\x00\r\n")
                if not line.strip():
                    continue  # blank lines and the tar's NUL padding
                parts = line.split("\t", 2)
                try:
                    paper_id = int(parts[0].strip())
                except ValueError:
                    paper_id = None
                if paper_id is None or len(parts) < 2:
                    bad += 1
                    first_bad = first_bad or f"line {number}: {line[:60]!r}"
                    continue
                ids.append(paper_id)
                titles.append(parts[1])
                abstracts.append(parts[2] if len(parts) == 3 else "")
    except (tarfile.TarError, EOFError, OSError) as err:  # OSError covers gzip.BadGzipFile
        raise DataError(
            f"{ARXIV}: {path} cannot be read ({err}); it is damaged or truncated, {TITLEABS_HINT}"
        ) from None
    table = pa.table({"paper_id": pa.array(ids, pa.int64()), "title": titles, "abstract": abstracts})
    return table, bad, first_bad


def _titleabs_texts(path: Path, paper_ids: pa.Array) -> tuple[pa.Array, dict, list[str]]:
    """(N,) texts 'Title: {title}\\nAbstract: {abstract}' joined on paper id (first line wins)."""
    _need(path, ARXIV, TITLEABS_HINT)
    t0 = time.perf_counter()
    table, bad, first_bad = _parse_titleabs(path)
    log.info("%s: %s: %d papers in %.1fs", ARXIV, path.name, table.num_rows, time.perf_counter() - t0)
    if table.num_rows == 0:
        raise DataError(
            f"{ARXIV}: {path} holds no 'paper id<TAB>title<TAB>abstract' line"
            + (f" (first bad {first_bad})" if first_bad else "")
            + f"; {TITLEABS_HINT}"
        )
    title = pc.utf8_trim_whitespace(table.column("title"))
    abstract = pc.utf8_trim_whitespace(table.column("abstract"))
    text = pc.utf8_trim_whitespace(pc.binary_join_element_wise("Title: ", title, "\nAbstract: ", abstract, ""))
    text, missing, notes = _join_text(paper_ids, table.column("paper_id"), text, "title/abstract", path)
    stats = {"titleabs_records": table.num_rows, "titleabs_bad_lines": bad, "nodes_missing_text": missing}
    if bad:
        notes.append(f"skipped {bad} lines of {path} not shaped 'paper id<TAB>title<TAB>abstract' (first: {first_bad})")
    return text, stats, notes
