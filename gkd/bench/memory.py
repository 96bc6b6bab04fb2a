"""Peak memory of a process tree (this process, the Ray cluster it started, its workers), or of this process."""

from __future__ import annotations

import threading
import time

import psutil

GIB = 2**30
MIB = 2**20


class PeakMemory:
    """Samples the tree (tree=False: this process alone) every `interval` s. PSS counts shared pages (Ray's
    object store) once; RSS sums do not. `rise_mib`: the peak PSS over its value when the block started."""

    def __init__(self, interval: float = 0.5, tree: bool = True):
        self.interval, self.tree = interval, tree
        self.base_pss = self.peak_pss = self.peak_rss_sum = self.peak_system_used = 0
        self._stop = threading.Event()
        self._base_used = psutil.virtual_memory().total - psutil.virtual_memory().available
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _pss_rss(self) -> tuple[int, int]:
        root = psutil.Process()
        pss = rss = 0
        for p in [root, *root.children(recursive=True)] if self.tree else [root]:
            try:
                info = p.memory_full_info()
                pss += info.pss
                rss += info.rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return pss, rss

    def _sample(self) -> None:
        pss, rss = self._pss_rss()
        vm = psutil.virtual_memory()
        self.peak_pss = max(self.peak_pss, pss)
        self.peak_rss_sum = max(self.peak_rss_sum, rss)
        self.peak_system_used = max(self.peak_system_used, vm.total - vm.available - self._base_used)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            time.sleep(self.interval)

    def __enter__(self) -> "PeakMemory":
        self.base_pss = self._pss_rss()[0]
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    @property
    def rise_mib(self) -> float:
        return round((self.peak_pss - self.base_pss) / MIB, 1)

    def as_dict(self) -> dict:
        return {
            "peak_rss_gib": round(self.peak_pss / GIB, 2),
            "peak_rss_sum_gib": round(self.peak_rss_sum / GIB, 2),
            "peak_system_used_gib": round(self.peak_system_used / GIB, 2),
            "memory_method": "peak_rss_gib = peak over time of the summed PSS (shared pages counted once) of the "
            "driver and every process it started (Ray GCS, raylet, workers, object store mappings), sampled every "
            f"{self.interval:g} s; peak_rss_sum_gib sums plain RSS (double-counts the shared object store); "
            "peak_system_used_gib = peak rise of the machine's used memory over the start of the run",
        }
