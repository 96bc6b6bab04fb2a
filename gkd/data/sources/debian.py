"""The Debian archive's own package index as a text-attributed graph.

Nodes are binary package names from apt's `*_Packages` indexes, texts are "name: short description"
then the long description from `*_Translation-en` (DebianSource.text: "name+short+long", or "long",
"short+long"), labels are Sections, edges are Depends/Pre-Depends/Recommends[/Suggests].
A package listed in several indexes (bookworm, -updates, -security) keeps its highest version
(dpkg's ordering); on equal versions the first file in name order wins.
"""

from __future__ import annotations

import gzip
import logging
import lzma
import re
import time
from collections import Counter
from pathlib import Path

import lz4.frame
import numpy as np
import pyarrow as pa

from gkd.config import DebianSource
from gkd.data.raw import RawGraph
from gkd.errors import DataError

logger = logging.getLogger(__name__)

UPDATE_HINT = "run `apt-get -o Acquire::Languages=en update` or set ingest.source.lists_dir"
# Preferred first when one index is present in several encodings.
SUFFIXES = ("", ".lz4", ".gz", ".xz")
DECOMPRESS = {
    "": lambda data: data,
    ".lz4": lz4.frame.decompress,
    ".gz": gzip.decompress,
    ".xz": lzma.decompress,
}
DEP_FIELDS = ("Depends", "Pre-Depends", "Recommends", "Suggests")
PACKAGE_FIELDS = ("Package", "Version", "Section", "Description", "Description-md5", "Provides") + DEP_FIELDS
TRANSLATION_FIELDS = ("Package", "Description-md5", "Description-en")
# A package name at the start of one alternative; ':any', '(>= 1)', '[amd64]', '<!nocheck>' follow it.
NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9+.\-]*)")


def _field_pattern(fields: tuple[str, ...]) -> re.Pattern:
    """`Field: value` plus its continuation lines, for the listed fields only."""
    names = "|".join(re.escape(f) for f in fields)
    return re.compile(rf"^({names}):[ \t]*([^\n]*(?:\n[ \t][^\n]*)*)", re.M)


PACKAGE_RE = _field_pattern(PACKAGE_FIELDS)
TRANSLATION_RE = _field_pattern(TRANSLATION_FIELDS)


# ----------------------------------------------------------------------------- files


def find_index_files(lists_dir: Path, kind: str) -> list[Path]:
    """`*_<kind>` index files in lists_dir (one encoding per index), sorted by name."""
    found: dict[str, tuple[int, Path]] = {}
    for path in sorted(lists_dir.iterdir()):
        for rank, suffix in enumerate(SUFFIXES):
            stem = path.name[: len(path.name) - len(suffix)]
            if path.name.endswith(suffix) and stem.endswith("_" + kind) and path.is_file():
                if stem not in found or rank < found[stem][0]:
                    found[stem] = (rank, path)
                break
    return [found[stem][1] for stem in sorted(found)]


def _suffix(path: Path) -> str:
    return path.suffix if path.suffix in DECOMPRESS else ""


def read_index(path: Path) -> str:
    """Decompress one index file by its suffix and decode it as UTF-8."""
    try:
        data = DECOMPRESS[_suffix(path)](path.read_bytes())
    except (RuntimeError, OSError, EOFError, lzma.LZMAError) as err:
        raise DataError(
            f"{path}: cannot decompress ({err}); the file is corrupt or truncated: delete it and {UPDATE_HINT}"
        ) from None
    return data.decode("utf-8", errors="replace")


def parse_stanzas(text: str, path: Path, pattern: re.Pattern) -> list[dict[str, str]]:
    """RFC822-style stanzas -> one {field: raw value} per stanza (only fields in pattern)."""
    chunks = text.split("\n\n")
    out = []
    for i, chunk in enumerate(chunks):
        if not chunk.strip():
            continue
        rec = dict(pattern.findall(chunk))
        if not rec.get("Package", "").strip():
            start = sum(len(c) + 2 for c in chunks[:i]) + len(chunk) - len(chunk.lstrip("\n"))
            line = text.count("\n", 0, start) + 1
            raise DataError(
                f"{path}: stanza #{i + 1} (line {line} of the decompressed text) has no Package field; "
                f"the index is corrupt: delete it and {UPDATE_HINT}"
            )
        rec["Package"] = rec["Package"].strip()
        out.append(rec)
    return out


# ----------------------------------------------------------------------------- fields


def compare_versions(a: str, b: str) -> int:
    """dpkg's ordering of Debian versions: <0, 0, >0 as a <, ==, > b ('~' sorts before all)."""
    ea, _, ra = a.partition(":") if ":" in a else ("0", "", a)
    eb, _, rb = b.partition(":") if ":" in b else ("0", "", b)
    ea, eb = int(ea) if ea.isdigit() else 0, int(eb) if eb.isdigit() else 0
    if ea != eb:
        return ea - eb
    ua, _, va = ra.rpartition("-") if "-" in ra else (ra, "", "")
    ub, _, vb = rb.rpartition("-") if "-" in rb else (rb, "", "")
    return _verrevcmp(ua, ub) or _verrevcmp(va, vb)


def _order(c: str) -> int:
    if c == "~":
        return -1
    if c.isdigit():
        return 0
    return ord(c) if c.isalpha() else ord(c) + 256


def _verrevcmp(a: str, b: str) -> int:
    i = j = 0
    while i < len(a) or j < len(b):
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _order(a[i]) if i < len(a) else 0
            bc = _order(b[j]) if j < len(b) else 0
            if ac != bc:
                return ac - bc
            i, j = i + 1, j + 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        first_diff = 0
        while i < len(a) and a[i].isdigit() and j < len(b) and b[j].isdigit():
            first_diff = first_diff or ord(a[i]) - ord(b[j])
            i, j = i + 1, j + 1
        if i < len(a) and a[i].isdigit():
            return 1
        if j < len(b) and b[j].isdigit():
            return -1
        if first_diff:
            return first_diff
    return 0


def dependency_groups(value: str) -> list[list[str]]:
    """'a (>= 1) | b:any [amd64], c' -> [['a', 'b'], ['c']] (names only)."""
    groups = []
    for group in value.replace("\n", " ").split(","):
        names = [m.group(1) for alt in group.split("|") if (m := NAME.match(alt))]
        if names:
            groups.append(names)
    return groups


def split_description(raw: str | None) -> tuple[str, str]:
    """'short\\n long line\\n .\\n more' -> ('short', 'long line\\n\\nmore')."""
    if not raw:
        return "", ""
    first, _, rest = raw.partition("\n")
    lines = []
    for line in rest.split("\n"):
        line = line[1:] if line.startswith((" ", "\t")) else line
        lines.append("" if line.strip() == "." else line.rstrip())
    return first.strip(), "\n".join(lines).strip("\n")


def section_name(section: str) -> str:
    """'contrib/net' -> 'net', 'non-free-firmware/kernel' -> 'kernel'."""
    return section.strip().rsplit("/", 1)[-1]


# ----------------------------------------------------------------------------- loader


def load_debian(cfg: DebianSource) -> RawGraph:
    """apt lists dir -> RawGraph: nodes sorted by package name, Section labels, dependency edges."""
    t0 = time.perf_counter()
    lists_dir = Path(cfg.lists_dir)
    if not lists_dir.is_dir():
        raise DataError(f"apt lists dir {lists_dir} does not exist: {UPDATE_HINT}")
    package_files = find_index_files(lists_dir, "Packages")
    if not package_files:
        raise DataError(f"apt lists dir {lists_dir} holds no *_Packages index: {UPDATE_HINT}")
    notes: list[str] = []
    stats: dict = {"packages_files": len(package_files)}

    packages, stanzas = _read_packages(package_files)
    stats["package_stanzas"] = stanzas
    stats["duplicate_stanzas_dropped"] = stanzas - len(packages)
    names = sorted(packages)
    if cfg.max_nodes is not None and cfg.max_nodes < len(names):
        if cfg.sample == "snowball":
            names = snowball(names, packages, cfg.edge_fields, cfg.max_nodes, cfg.sample_seed)
        else:
            names = names[: cfg.max_nodes]
        stats["sample"] = {"kind": cfg.sample, "nodes": len(names), "of": len(packages)}
    index = {name: i for i, name in enumerate(names)}

    translation_files = find_index_files(lists_dir, "Translation-en")
    stats["translation_files"] = len(translation_files)
    if not translation_files:
        notes.append(
            f"no Translation-en in {lists_dir}: using Packages descriptions (short only unless the "
            "Packages index carries long ones); run `apt-get -o Acquire::Languages=en update`"
        )
    texts = _texts(names, packages, translation_files, cfg.text, stats)
    labels, class_names = _labels(names, packages, cfg.min_class_size, stats, notes)
    src, dst = _edges(names, index, packages, cfg.edge_fields, stats)

    nodes = pa.table(
        {
            "key": pa.array(names, pa.string()),
            "text": pa.array(texts, pa.string()),
            "label": pa.array(labels, pa.int32()),
            "split": pa.nulls(len(names), pa.string()),
        }
    )
    edges = pa.table({"src": pa.array(src, pa.int64()), "dst": pa.array(dst, pa.int64())})
    logger.info(
        "debian: %d packages, %d edges, %d classes (>= %d packages) from %s in %.1f s",
        len(names), len(src), len(class_names), cfg.min_class_size, lists_dir, time.perf_counter() - t0,
    )
    return RawGraph(nodes=nodes, edges=edges, class_names=class_names, directed=False, notes=notes, stats=stats)


def snowball(names: list[str], packages: dict, edge_fields: list[str], budget: int, seed: int) -> list[str]:
    """`budget` package names: seeds in a seeded random order, each followed breadth-first by what it
    depends on, so the sample is closed under dependencies (up to the budget) and keeps its edges."""
    index = {name: i for i, name in enumerate(names)}
    src, dst = _edges(names, index, packages, edge_fields, {})
    order = np.argsort(src, kind="stable")
    indptr = np.searchsorted(src[order], np.arange(len(names) + 1))
    deps = dst[order]
    taken = np.zeros(len(names), bool)
    picked: list[int] = []
    for s in np.random.default_rng(seed).permutation(len(names)):
        queue = [int(s)]
        while queue and len(picked) < budget:
            node = queue.pop(0)
            if taken[node]:
                continue
            taken[node] = True
            picked.append(node)
            queue.extend(int(d) for d in deps[indptr[node] : indptr[node + 1]] if not taken[d])
        if len(picked) >= budget:
            break
    return sorted(names[i] for i in picked)


def _read_packages(files: list[Path]) -> tuple[dict[str, dict[str, str]], int]:
    """name -> stanza of its highest version over all Packages files; also the stanza count."""
    packages: dict[str, dict[str, str]] = {}
    stanzas = 0
    for path in files:
        recs = parse_stanzas(read_index(path), path, PACKAGE_RE)
        stanzas += len(recs)
        logger.info("debian: %s: %d packages", path.name, len(recs))
        for rec in recs:
            old = packages.get(rec["Package"])
            if old is None or compare_versions(rec.get("Version", "").strip(), old.get("Version", "").strip()) > 0:
                packages[rec["Package"]] = rec
    return packages, stanzas


def _texts(names, packages, translation_files, mode, stats) -> list[str]:
    """Per node, from Translation-en, else from Packages: "long" (short if none), "short+long"
    ("short\nlong"), "name+short+long" ("name: short\nlong"; the name alone without any description)."""
    by_md5: dict[tuple[str, str], str] = {}
    by_name: dict[str, str] = {}
    for path in translation_files:
        for rec in parse_stanzas(read_index(path), path, TRANSLATION_RE):
            raw = rec.get("Description-en")
            if raw is None:
                continue
            by_md5[(rec["Package"], rec.get("Description-md5", "").strip())] = raw
            by_name.setdefault(rec["Package"], raw)
    texts = []
    untranslated = empty = 0
    for name in names:
        rec = packages[name]
        raw = by_md5.get((name, rec.get("Description-md5", "").strip())) or by_name.get(name)
        if raw is None:
            untranslated += 1
            raw = rec.get("Description")
        short, long = split_description(raw)
        empty += not (short or long)
        if mode == "long":
            text = long or short
        elif mode == "short+long":
            text = f"{short}\n{long}" if long else short
        else:
            head = f"{name}: {short}" if short or long else name
            text = f"{head}\n{long}" if long else head
        texts.append(text)
    stats["packages_without_translation"] = untranslated
    stats["packages_without_description"] = empty
    return texts


def _labels(names, packages, min_class_size, stats, notes) -> tuple[list[int], list[str]]:
    """Section (component prefix stripped) -> class index; sections below min_class_size -> -1."""
    sections = [section_name(packages[name].get("Section", "")) for name in names]
    counts = Counter(s for s in sections if s)
    class_names = sorted(s for s, n in counts.items() if n >= min_class_size)
    cls = {s: i for i, s in enumerate(class_names)}
    labels = [cls.get(s, -1) for s in sections]
    missing = sum(1 for s in sections if not s)
    if missing:
        notes.append(f"{missing} packages have no Section field: label -1 (unlabeled)")
    stats["packages_without_section"] = missing
    stats["sections"] = len(counts)
    stats["rare_sections"] = len(counts) - len(class_names)
    stats["unlabeled_packages"] = sum(1 for x in labels if x < 0)
    return labels, class_names


def _edges(names, index, packages, edge_fields, stats) -> tuple[np.ndarray, np.ndarray]:
    """Dependency edges src -> dst (src depends on dst), one per unordered pair, no self-loops.

    A name that is a real package resolves to itself; otherwise to every package that Provides it.
    Edges to packages outside `names` (max_nodes) are dropped and counted.
    """
    providers: dict[str, list[str]] = {}
    for name, rec in packages.items():
        for group in dependency_groups(rec.get("Provides", "")):
            for virtual in group:
                providers.setdefault(virtual, []).append(name)
    resolved: dict[str, tuple[str, ...]] = {}

    def resolve(dep: str) -> tuple[str, ...]:
        if dep not in resolved:
            resolved[dep] = (dep,) if dep in packages else tuple(sorted(set(providers.get(dep, ()))))
        return resolved[dep]

    seen: set[tuple[int, int]] = set()
    src, dst = [], []
    unresolved = unresolved_groups = via_provides = outside = self_loops = duplicates = 0
    for s, name in enumerate(names):
        rec = packages[name]
        missing: set[str] = set()
        for field in edge_fields:
            for group in dependency_groups(rec.get(field, "")):
                hit = False
                for dep in group:
                    targets = resolve(dep)
                    if not targets:
                        missing.add(dep)
                        continue
                    hit = True
                    via_provides += targets != (dep,)
                    for target in targets:
                        d = index.get(target)
                        if d is None:
                            outside += 1
                        elif d == s:
                            self_loops += 1
                        elif (min(s, d), max(s, d)) in seen:
                            duplicates += 1
                        else:
                            seen.add((min(s, d), max(s, d)))
                            src.append(s)
                            dst.append(d)
                unresolved_groups += not hit
        unresolved += len(missing)
    stats["unresolved_dependencies"] = unresolved
    stats["unresolved_dependency_groups"] = unresolved_groups
    stats["dependencies_via_provides"] = via_provides
    stats["self_loops_dropped"] = self_loops
    stats["duplicate_edges_dropped"] = duplicates
    stats["edges_outside_max_nodes_dropped"] = outside
    order = np.lexsort((np.asarray(dst, np.int64), np.asarray(src, np.int64)))
    return np.asarray(src, np.int64)[order], np.asarray(dst, np.int64)[order]
