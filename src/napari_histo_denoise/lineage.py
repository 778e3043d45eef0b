"""The training behind a weights file: chunks, each going on from the last, and their totals.

A run started from a weights file (its parent) records the parent's chunks, the parent's
SHA-256 on the last of them, and its own chunk, so that weights trained a chunk at a time
(a session of CPU training, say) carry the sum of what went into them: optimiser steps,
patches seen, hours and the devices they ran on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

#: Key of the lineage in a weights file's metadata.
LINEAGE_KEY = "lineage"
#: What a training record must hold to count as a chunk.
_CHUNK_KEYS = ("steps", "batch_size", "elapsed_s", "device")


def chunk(meta: Mapping[str, Any]) -> dict[str, Any]:
    """One run's chunk, from the metadata training writes beside its weights.

    ``steps`` counts every optimiser step run; ``best_step`` (with validation) is the step
    whose weights were kept.
    """
    steps, batch = int(meta["steps"]), int(meta["batch_size"])
    return {
        "steps": steps,
        "best_step": meta.get("best_step"),
        "batch_size": batch,
        "patches": steps * batch,
        "hours": round(float(meta["elapsed_s"]) / 3600, 3),
        "device": meta.get("machine") or meta["device"],
        "precision": meta.get("precision"),
        "train_images": list(meta.get("train_images") or []),
        "parent_sha256": meta.get("init_sha256"),
    }


def parent_chunks(meta: Mapping[str, Any], sha256: str) -> list[dict[str, Any]]:
    """The chunks behind a parent file (its metadata ``meta``, its digest ``sha256``).

    A parent written before lineages were recorded counts as one chunk, its own, marked
    ``"earlier_unrecorded"`` where it too went on from other weights; weights without a
    training record (saved from any model) add no chunk: the run's own chunk still names
    them by ``parent_sha256``.
    """
    if not all(key in meta for key in _CHUNK_KEYS):
        return []
    recorded = meta.get(LINEAGE_KEY)
    if recorded:
        chunks = [dict(c) for c in recorded["chunks"]]
    else:
        chunks = [chunk(meta)]
        started_from = meta.get("init_sha256") or meta.get("init_weights")
        chunks[0]["earlier_unrecorded"] = started_from is not None
    # Known once the parent was written: its digest, when, and how it was stored.
    chunks[-1].update(
        sha256=sha256, finished=meta.get("created_utc"), stored_as=meta.get("storage_dtype")
    )
    return chunks


def lineage(parents: Sequence[Mapping[str, Any]], own: Mapping[str, Any]) -> dict[str, Any]:
    """The lineage of a run: its parents' chunks, its own, and the totals over all of them."""
    chunks = [*map(dict, parents), dict(own)]
    return {"chunks": chunks, "total": totals(chunks)}


def totals(chunks: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Steps, patches and hours summed over ``chunks``, and the devices they ran on."""
    return {
        "chunks": len(chunks),
        "steps": sum(c["steps"] for c in chunks),
        "patches": sum(c["patches"] for c in chunks),
        "hours": round(sum(c["hours"] for c in chunks), 3),
        "devices": sorted({c["device"] for c in chunks}),
        "train_images": sorted({name for c in chunks for name in c.get("train_images", [])}),
    }
