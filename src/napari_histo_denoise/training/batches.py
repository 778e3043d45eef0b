"""Training batches drawn ahead of the model in worker threads."""

from __future__ import annotations

import collections
import os
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from ..patches import PatchSampler

_CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
#: Threads drawing training batches ahead of a GPU (numpy releases the GIL in them): half
#: the cores this process may use, at most 8. On a CPU one thread: the model is the limit.
PATCH_WORKERS = max(1, min(8, (_CORES or 2) // 2))


def prefetched(
    sampler: PatchSampler, batch_size: int, rng: np.random.Generator, count: int, workers: int
) -> Iterator[tuple[np.ndarray, dict[str, Any]]]:
    """Yield ``count`` batches, drawn ahead in ``workers`` threads while the caller trains.

    Each batch is drawn with its own generator, seeded in order from ``rng`` (only this
    thread touches ``rng``; :meth:`PatchSampler.sample` only reads the sampler), so the
    batches do not depend on how many threads draw them. Each comes with ``rng``'s state just
    after its seed was taken: a run resumed after this batch starts there.
    """

    def submit() -> tuple[Future, dict[str, Any]]:
        generator = np.random.default_rng(int(rng.integers(2**63)))
        return pool.submit(sampler.sample, batch_size, generator), rng.bit_generator.state

    pool = ThreadPoolExecutor(workers, thread_name_prefix="histo-denoise-patches")
    try:
        pending = collections.deque(submit() for _ in range(min(count, workers)))
        for index in range(count):
            future, state = pending.popleft()
            if index + len(pending) + 1 < count:
                pending.append(submit())
            yield future.result(), state
    finally:
        pool.shutdown(cancel_futures=True)  # a closed run does not wait for unused batches
