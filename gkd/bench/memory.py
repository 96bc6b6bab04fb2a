"""Peak memory of a process tree (this process, the Ray cluster it started, its workers)."""

from __future__ import annotations

import threading
import time

import psutil

GIB = 2**30


class PeakMemory:
    """Samples the tree every `interval` s. PSS counts shared pages (Ray's object store) once; RSS sums do not."""

    def __init__(self, interval: float = 0.5):
        self.interval = interval
        self.peak_pss = self.peak_rss_sum = self.peak_system_used = 0
        self._stop = threading.Event()
        self._base_used = psutil.virtual_memory().total - psutil.virtual_memory().available
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        root = psutil.Process()
        pss = rss = 0
        for p in [root, *root.children(recursive=True)]:
            try:
                info = p.memory_full_info()
                pss += info.pss
                rss += info.rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        vm = psutil.virtual_memory()
        self.peak_pss = max(self.peak_pss, pss)
        self.peak_rss_sum = max(self.peak_rss_sum, rss)
        self.peak_system_used = max(self.peak_system_used, vm.total - vm.available - self._base_used)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            time.sleep(self.interval)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def as_dict(self) -> dict:
        return {
            "peak_rss_gib": round(self.peak_pss / GIB, 2),
            "peak_rss_sum_gib": round(self.peak_rss_sum / GIB, 2),
            "peak_system_used_gib": round(self.peak_system_used / GIB, 2),
            "memory_method": "peak_rss_gib = peak over time of the summed PSS (shared pages counted once) of the "
            "driver and every process it started (Ray GCS, raylet, workers, object store mappings), sampled every "
            "0.5 s; peak_rss_sum_gib sums plain RSS (double-counts the shared object store); "
            "peak_system_used_gib = peak rise of the machine's used memory over the start of the run",
        }
