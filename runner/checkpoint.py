"""Compact, pickle-free parameter files: a run's best weights as one .npz of named arrays
("params/layer0/dense/kernel", "batch_stats/layer0/bn/mean", ...), written atomically."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from runner.rundir import atomic_write

COLLECTIONS = ("params", "batch_stats")


def _flatten(tree, prefix=""):
    out = {}
    for key, value in tree.items():
        name = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, dict) or hasattr(value, "items"):
            out.update(_flatten(value, name))
        else:
            out[name] = np.asarray(value)
    return out


def save_params(path: Path, params, batch_stats=None) -> None:
    arrays = _flatten({"params": params, "batch_stats": batch_stats or {}})
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write(path, buf.getvalue())


def load_params(path: Path) -> tuple[dict, dict]:
    """(params, batch_stats) as nested dicts of numpy arrays, ready for model.apply."""
    trees = {c: {} for c in COLLECTIONS}
    with np.load(path, allow_pickle=False) as z:
        for name in z.files:
            parts = name.split("/")
            node = trees[parts[0]]
            for p in parts[1:-1]:
                node = node.setdefault(p, {})
            node[parts[-1]] = z[name]
    return trees["params"], trees["batch_stats"]
