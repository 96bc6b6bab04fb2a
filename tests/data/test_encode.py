import numpy as np
import pytest

from gkd.config import EncoderConfig
from gkd.data.encode import FeatureCache, HashingEncoder, encoder_id, make_encoder, text_hashes


def test_hashing_encoder_is_deterministic_and_normalised():
    enc = HashingEncoder(64)
    a = enc.encode(["apt package manager", "apt package manager", "linux kernel image", ""])
    assert a.shape == (4, 64) and a.dtype == np.float32
    assert np.allclose(a[0], a[1])
    assert np.allclose(np.linalg.norm(a[:3], axis=1), 1.0)
    assert np.allclose(a[3], 0.0)
    assert np.allclose(HashingEncoder(64).encode(["linux kernel image"]), a[2])  # no per-process salt


@pytest.mark.slow  # loads the embedded MiniLM
def test_embedded_minilm_encodes_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = make_encoder(EncoderConfig(name="minilm", max_seq_length=64))
    e = enc.encode(["a text editor for programmers", "an editor for source code", "a kernel module for wifi cards"])
    assert e.shape == (3, 384) and enc.dim == 384
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert e[0] @ e[1] > e[0] @ e[2] + 0.2  # related descriptions are closer


def test_hashes_depend_on_encoder_and_text():
    a = text_hashes(["x", "y", None], "minilm-L128")
    assert a.dtype == np.dtype("S32") and len(set(a)) == 3
    assert text_hashes(["x"], "minilm-L64")[0] != a[0]
    assert text_hashes([""], "minilm-L128")[0] == a[2]
    assert encoder_id(EncoderConfig(name="hashing", dim=32)) == "hashing-d32"


def test_feature_cache_roundtrip_fill_and_compact(tmp_path):
    cache = FeatureCache(tmp_path, "enc/1")
    h = text_hashes([f"t{i}" for i in range(10)], "e")
    emb = np.arange(40, dtype=np.float32).reshape(10, 4)
    cache.add(h[:6], emb[:6])
    cache.add(h[4:], emb[4:])  # overlapping rows
    assert len(cache.parts()) == 2
    assert set(cache.known_hashes()) == set(h)
    out = np.zeros((10, 4), np.float32)
    need = np.zeros(10, bool)
    need[[1, 5, 9]] = True
    assert cache.fill(h, need, out) == 3
    assert np.array_equal(out[[1, 5, 9]], emb[[1, 5, 9]]) and not out[0].any()
    cache.compact()
    assert len(cache.parts()) == 1
    assert len(cache.known_hashes()) == 10


def test_feature_cache_drops_a_part_cut_by_a_kill(tmp_path):
    cache = FeatureCache(tmp_path, "e")
    h = text_hashes(["a", "b"], "e")
    cache.add(h, np.ones((2, 3), np.float32))
    (cache.dir / "part-broken.parquet").write_bytes(b"PAR1 truncated")
    assert list(cache.known_hashes()) == sorted(h)
    assert not (cache.dir / "part-broken.parquet").exists()
