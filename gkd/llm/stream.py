"""Stream node ids through a pool of LLM actors on Ray Data, one result batch at a time."""

from __future__ import annotations

import logging
import time
from typing import Iterator

import numpy as np
import pyarrow as pa

log = logging.getLogger(__name__)


def stream_nodes(nodes: np.ndarray, actor_cls, ctor_kwargs: dict, *, batch_size: int, num_actors: int,
                 num_cpus: float, num_gpus: float, what: str, batch_format: str = "pyarrow") -> Iterator:
    """Yield actor outputs per batch (one block per batch, so results arrive as they finish).

    Logs nodes/s, tokens/s (if the actor returns a `tokens` column) and an ETA every 15 s.
    """
    import ray

    if len(nodes) == 0:
        return
    blocks = [pa.table({"node_id": np.asarray(nodes[a:a + batch_size], dtype=np.int64)})
              for a in range(0, len(nodes), batch_size)]
    ds = ray.data.from_arrow(blocks).map_batches(
        actor_cls,
        fn_constructor_kwargs=ctor_kwargs,
        compute=ray.data.ActorPoolStrategy(size=num_actors),
        batch_size=batch_size,
        num_cpus=num_cpus,
        num_gpus=num_gpus or None,
    )
    t0, done, tokens, last = time.time(), 0, 0, 0.0
    for batch in ds.iter_batches(batch_size=None, batch_format=batch_format):
        yield batch
        done += len(batch["node_id"])
        if "tokens" in (batch.column_names if isinstance(batch, pa.Table) else batch):
            tokens += int(np.sum(np.asarray(batch["tokens"])))
        if time.time() - last > 15 or done == len(nodes):
            last = time.time()
            rate = done / max(last - t0, 1e-9)
            log.info("%s: %d/%d nodes (%.2f nodes/s%s, eta %.0fs)", what, done, len(nodes), rate,
                     f", {tokens / max(last - t0, 1e-9):.0f} tokens/s" if tokens else "",
                     (len(nodes) - done) / max(rate, 1e-9))
