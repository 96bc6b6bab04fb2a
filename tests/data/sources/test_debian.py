"""Debian source: apt index fixtures written in their exact format, then the real lists if present."""

from __future__ import annotations

import gzip
import lzma
import time
from pathlib import Path

import lz4.frame
import pytest

from gkd.config import DEFAULT_APT_LISTS, DebianSource
from gkd.data.sources.debian import (
    compare_versions,
    dependency_groups,
    find_index_files,
    load_debian,
    split_description,
)
from gkd.errors import DataError

MAIN = "deb.debian.org_debian_dists_bookworm_main"
SECURITY = "deb.debian.org_debian-security_dists_bookworm-security_main"

MAIN_PACKAGES = """\
Package: alpha
Version: 1.0-1
Architecture: amd64
Depends: libfoo (>= 1.0), beta:any | gamma (<< 2) [amd64]
Recommends: mail-transport-agent
Description: Alpha tool
Description-md5: aaa
Tag: role::program,
 use::testing
Section: utils

Package: beta
Version: 2.0
Depends: libfoo, nosuchpkg (>= 3)
Suggests: delta
Description: Beta daemon
 Long from Packages.
Description-md5: bbb
Section: contrib/net

Package: delta
Version: 3.0-1
Depends: alpha
Provides: libc-virtual
Description: Delta helper
Description-md5: ddd
Section: utils

Package: epsilon
Version: 0.1
Provides: mail-transport-agent
Section: mail

Package: gamma
Version: 1:0.5-2
Provides: mail-transport-agent (= 1.0), mta-extra
Description: Gamma mailer
Description-md5: ggg
Section: non-free-firmware/kernel

Package: libfoo
Version: 1.2-1
Depends: libfoo (>= 1.0), libc-virtual
Pre-Depends: delta
Description: Foo library
Description-md5: fff
Section: libs
"""

# delta is newer here (its old stanza in main must be ignored); alpha is older (main's wins).
SECURITY_PACKAGES = """\
Package: delta
Version: 3.0-1+deb12u1
Depends: libfoo
Provides: libc-virtual
Description: Delta helper
Description-md5: ddd2
Section: utils

Package: alpha
Version: 0.9-1
Depends: epsilon
Description: Alpha tool
Description-md5: aaa0
Section: games
"""

MAIN_TRANSLATION = """\
Package: alpha
Description-md5: aaa
Description-en: Alpha tool
 Alpha does things.
 .
  Indented verbatim line.

Package: beta
Description-md5: bbb
Description-en: Beta daemon
 Serves beta over the network.

Package: delta
Description-md5: ddd
Description-en: Delta helper
 Old text.

Package: gamma
Description-md5: ggg
Description-en: Gamma mailer

Package: libfoo
Description-md5: fff-other
Description-en: Foo library
 Shared library for foo.
"""

SECURITY_TRANSLATION = """\
Package: alpha
Description-md5: zzz
Description-en: Alpha decoy
 Wrong text.

Package: delta
Description-md5: ddd2
Description-en: Delta helper
 Fixed version.
 .
 Second paragraph.
"""

NAMES = ["alpha", "beta", "delta", "epsilon", "gamma", "libfoo"]
EDGES = {
    ("alpha", "libfoo"),
    ("alpha", "beta"),
    ("alpha", "gamma"),  # also via mail-transport-agent (provided by gamma and epsilon)
    ("alpha", "epsilon"),
    ("beta", "libfoo"),
    ("delta", "libfoo"),  # libfoo -> libc-virtual -> delta and libfoo Pre-Depends delta are the same pair
}
LONG_TEXTS = {
    "alpha": "Alpha does things.\n\n Indented verbatim line.",
    "beta": "Serves beta over the network.",
    "delta": "Fixed version.\n\nSecond paragraph.",
    "epsilon": "",
    "gamma": "Gamma mailer",
    "libfoo": "Shared library for foo.",
}


def write(path: Path, text: str) -> None:
    data = text.encode()
    if path.name.endswith(".lz4"):
        data = lz4.frame.compress(data)
    elif path.name.endswith(".gz"):
        data = gzip.compress(data)
    elif path.name.endswith(".xz"):
        data = lzma.compress(data)
    path.write_bytes(data)


def make_lists(root: Path, suffix: str = ".lz4", translations: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    write(root / f"{MAIN}_binary-amd64_Packages{suffix}", MAIN_PACKAGES)
    write(root / f"{SECURITY}_binary-amd64_Packages{suffix}", SECURITY_PACKAGES)
    (root / "deb.debian.org_debian_dists_bookworm_InRelease").write_text("not an index\n")
    if translations:
        write(root / f"{MAIN}_i18n_Translation-en{suffix}", MAIN_TRANSLATION)
        write(root / f"{SECURITY}_i18n_Translation-en{suffix}", SECURITY_TRANSLATION)
    return root


def by_key(graph, column: str) -> dict:
    return dict(zip(graph.nodes["key"].to_pylist(), graph.nodes[column].to_pylist()))


def edge_names(graph) -> set[tuple[str, str]]:
    keys = graph.nodes["key"].to_pylist()
    return {(keys[s], keys[d]) for s, d in zip(graph.edges["src"].to_pylist(), graph.edges["dst"].to_pylist())}


# ----------------------------------------------------------------------------- fixture


@pytest.mark.parametrize("suffix", [".lz4", ".gz", ".xz", ""])
def test_fixture_graph(tmp_path, suffix):
    g = load_debian(DebianSource(lists_dir=make_lists(tmp_path, suffix), text="long", min_class_size=1))
    assert g.nodes["key"].to_pylist() == NAMES
    assert by_key(g, "text") == LONG_TEXTS
    assert g.class_names == ["kernel", "libs", "mail", "net", "utils"]
    assert {k: g.class_names[v] for k, v in by_key(g, "label").items()} == {
        "alpha": "utils",  # main's 1.0-1 beats security's 0.9-1 (section games)
        "beta": "net",
        "delta": "utils",
        "epsilon": "mail",
        "gamma": "kernel",
        "libfoo": "libs",
    }
    assert g.nodes["split"].null_count == len(NAMES)
    assert edge_names(g) == EDGES
    assert g.edges.num_rows == len(EDGES)
    assert not g.directed
    assert g.notes == []
    assert {k: g.stats[k] for k in [
        "packages_files", "translation_files", "package_stanzas", "duplicate_stanzas_dropped",
        "packages_without_translation", "packages_without_description", "unresolved_dependencies",
        "unresolved_dependency_groups", "dependencies_via_provides", "self_loops_dropped",
        "duplicate_edges_dropped", "edges_outside_max_nodes_dropped", "unlabeled_packages",
    ]} == {
        "packages_files": 2,
        "translation_files": 2,
        "package_stanzas": 8,
        "duplicate_stanzas_dropped": 2,
        "packages_without_translation": 1,  # epsilon: no description anywhere
        "packages_without_description": 1,
        "unresolved_dependencies": 1,  # beta -> nosuchpkg
        "unresolved_dependency_groups": 1,
        "dependencies_via_provides": 2,  # mail-transport-agent, libc-virtual
        "self_loops_dropped": 1,  # libfoo -> libfoo
        "duplicate_edges_dropped": 3,
        "edges_outside_max_nodes_dropped": 0,
        "unlabeled_packages": 0,
    }


def test_rare_sections_unlabeled(tmp_path):
    g = load_debian(DebianSource(lists_dir=make_lists(tmp_path), min_class_size=2))
    assert g.class_names == ["utils"]
    assert by_key(g, "label") == {"alpha": 0, "beta": -1, "delta": 0, "epsilon": -1, "gamma": -1, "libfoo": -1}
    assert g.stats["unlabeled_packages"] == 4
    assert g.stats["rare_sections"] == 4


def test_short_plus_long_and_suggests(tmp_path):
    cfg = DebianSource(
        lists_dir=make_lists(tmp_path),
        text="short+long",
        edge_fields=["Depends", "Pre-Depends", "Recommends", "Suggests"],
        min_class_size=1,
    )
    g = load_debian(cfg)
    texts = by_key(g, "text")
    assert texts["alpha"] == "Alpha tool\nAlpha does things.\n\n Indented verbatim line."
    assert texts["gamma"] == "Gamma mailer"
    assert texts["libfoo"] == "Foo library\nShared library for foo."
    assert edge_names(g) == EDGES | {("beta", "delta")}


@pytest.mark.parametrize(
    "mode,alpha,gamma,epsilon",
    [
        # alpha has a long description (Translation-en), gamma only a short one, epsilon none at all
        ("name+short+long", "alpha: Alpha tool\nAlpha does things.\n\n Indented verbatim line.",
         "gamma: Gamma mailer", "epsilon"),
        ("long", "Alpha does things.\n\n Indented verbatim line.", "Gamma mailer", ""),
        ("short+long", "Alpha tool\nAlpha does things.\n\n Indented verbatim line.", "Gamma mailer", ""),
    ],
)
def test_text_modes(tmp_path, mode, alpha, gamma, epsilon):
    g = load_debian(DebianSource(lists_dir=make_lists(tmp_path), text=mode, min_class_size=1))
    texts = by_key(g, "text")
    assert (texts["alpha"], texts["gamma"], texts["epsilon"]) == (alpha, gamma, epsilon)
    assert g.stats["packages_without_description"] == 1  # epsilon, whatever the mode


def test_text_default_is_name_short_long(tmp_path):
    assert DebianSource().text == "name+short+long"
    g = load_debian(DebianSource(lists_dir=make_lists(tmp_path), min_class_size=1))
    assert by_key(g, "text")["delta"] == "delta: Delta helper\nFixed version.\n\nSecond paragraph."
    assert by_key(g, "text")["libfoo"] == "libfoo: Foo library\nShared library for foo."


def test_max_nodes(tmp_path):
    g = load_debian(DebianSource(lists_dir=make_lists(tmp_path), min_class_size=1, max_nodes=3))
    assert g.nodes["key"].to_pylist() == ["alpha", "beta", "delta"]
    assert g.class_names == ["net", "utils"]
    assert edge_names(g) == {("alpha", "beta")}
    assert g.stats["edges_outside_max_nodes_dropped"] == 6


def test_without_translation_uses_packages_descriptions(tmp_path):
    g = load_debian(DebianSource(lists_dir=make_lists(tmp_path, translations=False), text="long", min_class_size=1))
    assert by_key(g, "text") == {
        "alpha": "Alpha tool",
        "beta": "Long from Packages.",
        "delta": "Delta helper",
        "epsilon": "",
        "gamma": "Gamma mailer",
        "libfoo": "Foo library",
    }
    assert len(g.notes) == 1
    assert f"no Translation-en in {tmp_path}" in g.notes[0]
    assert "apt-get -o Acquire::Languages=en update" in g.notes[0]
    assert g.stats["translation_files"] == 0
    assert g.stats["packages_without_translation"] == len(NAMES)
    assert edge_names(g) == EDGES


def test_prefers_uncompressed_copy_of_one_index(tmp_path):
    lists = make_lists(tmp_path)
    write(lists / f"{MAIN}_binary-amd64_Packages", MAIN_PACKAGES)  # same index, two encodings
    g = load_debian(DebianSource(lists_dir=lists, min_class_size=1))
    assert g.stats["packages_files"] == 2
    assert g.nodes["key"].to_pylist() == NAMES


# ----------------------------------------------------------------------------- errors


def test_missing_dir(tmp_path):
    with pytest.raises(DataError, match=r"does not exist.*apt-get -o Acquire::Languages=en update"):
        load_debian(DebianSource(lists_dir=tmp_path / "nope"))


def test_dir_without_packages(tmp_path):
    (tmp_path / "deb.debian.org_debian_dists_bookworm_InRelease").write_text("x\n")
    write(tmp_path / f"{MAIN}_i18n_Translation-en.lz4", MAIN_TRANSLATION)
    with pytest.raises(DataError, match=r"no \*_Packages.*ingest.source.lists_dir") as err:
        load_debian(DebianSource(lists_dir=tmp_path))
    assert str(tmp_path) in str(err.value)


@pytest.mark.parametrize("name", [f"{MAIN}_binary-amd64_Packages.lz4", f"{MAIN}_i18n_Translation-en.lz4"])
def test_corrupt_lz4(tmp_path, name):
    lists = make_lists(tmp_path)
    (lists / name).write_bytes(lz4.frame.compress(b"Package: x\n" * 1000)[:40])
    with pytest.raises(DataError, match="cannot decompress") as err:
        load_debian(DebianSource(lists_dir=lists))
    assert name in str(err.value)
    (lists / name).write_bytes(b"this is not lz4 at all")
    with pytest.raises(DataError, match=name):
        load_debian(DebianSource(lists_dir=lists))


def test_stanza_without_package(tmp_path):
    lists = make_lists(tmp_path)
    name = f"{SECURITY}_binary-amd64_Packages.lz4"
    write(lists / name, "Package: a\nVersion: 1\n\nVersion: 2\nSection: utils\n")
    with pytest.raises(DataError, match=r"stanza #2 \(line 4 .*no Package field") as err:
        load_debian(DebianSource(lists_dir=lists))
    assert name in str(err.value)


# ----------------------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    "a,b,sign",
    [
        ("1.0", "1.0", 0),
        ("1.0", "1.00", 0),
        ("1.0~rc1", "1.0", -1),
        ("1.0", "1.0a", -1),
        ("1.9", "1.10", -1),
        ("1:0.1", "2.0", 1),
        ("3.0-1", "3.0-1+deb12u1", -1),
        ("2.36-9+deb12u9", "2.36-9+deb12u10", -1),
        ("1.0-1", "1.0-1~bpo1", 1),
        ("1.0+dfsg-2", "1.0-2", 1),
        ("1:2.0:1-1", "1:2.0-1", 1),
    ],
)
def test_compare_versions(a, b, sign):
    assert (compare_versions(a, b) > 0) - (compare_versions(a, b) < 0) == sign
    assert (compare_versions(b, a) > 0) - (compare_versions(b, a) < 0) == -sign


def test_dependency_groups():
    value = "a (>= 1.0) | b:any [amd64], c <!nocheck>,\n d:amd64 (<< 2~), libstdc++6 (>= 12) | e [!i386]"
    assert dependency_groups(value) == [["a", "b"], ["c"], ["d"], ["libstdc++6", "e"]]
    assert dependency_groups("") == []


def test_split_description():
    assert split_description("Short\n one\n .\n  two\n three") == ("Short", "one\n\n two\nthree")
    assert split_description("Short only") == ("Short only", "")
    assert split_description(None) == ("", "")


# ----------------------------------------------------------------------------- real apt lists


@pytest.fixture(scope="module")
def real_lists() -> Path:
    lists = Path(DEFAULT_APT_LISTS)
    if not lists.is_dir() or not find_index_files(lists, "Packages"):
        pytest.skip(f"no *_Packages index in {lists} (run apt-get -o Acquire::Languages=en update)")
    return lists


@pytest.fixture(scope="module")
def real_graph(real_lists):
    t0 = time.perf_counter()
    g = load_debian(DebianSource(lists_dir=real_lists, min_class_size=60))
    print(f"\nreal apt lists: {g.num_nodes} nodes, {g.edges.num_rows} edges, "
          f"{len(g.class_names)} classes, loaded in {time.perf_counter() - t0:.1f} s")
    return g


def test_real_lists_shape(real_graph):
    g = real_graph
    assert g.num_nodes > 50_000
    assert len(g.class_names) > 40
    assert g.edges.num_rows > 100_000
    keys = g.nodes["key"].to_pylist()
    assert keys == sorted(set(keys))
    texts = g.nodes["text"].to_pylist()
    assert sum(1 for t in texts if t) > 0.95 * len(texts)
    assert g.stats["packages_without_description"] == sum(1 for t in texts if not t)
    src, dst = g.edges["src"].to_numpy(), g.edges["dst"].to_numpy()
    assert (src != dst).all()
    assert src.max() < g.num_nodes and dst.max() < g.num_nodes
    pairs = set(zip(src.tolist(), dst.tolist()))
    assert len(pairs) == len(src)
    assert not any((d, s) in pairs for s, d in pairs)


def test_real_lists_known_packages(real_graph, real_lists):
    g = real_graph
    keys = g.nodes["key"].to_pylist()
    edges = edge_names(g)
    text = by_key(g, "text")
    label = by_key(g, "label")
    assert "python3" in keys and "bash" in keys
    assert g.class_names[label["python3"]] == "python"
    assert text["python3"].startswith("python3: ") and "interactive" in text["python3"]
    assert ("python3", "python3-minimal") in edges
    assert "sh-compatible command language interpreter" in text["bash"]
    assert {d for s, d in edges if s == "bash"} >= {"base-files", "debianutils", "libc6"}
    # bash's section 'shells' is below 60 packages; with every section a class it is labelled
    few = load_debian(DebianSource(lists_dir=real_lists, min_class_size=1, max_nodes=keys.index("bash") + 1))
    assert few.class_names[by_key(few, "label")["bash"]] == "shells"
