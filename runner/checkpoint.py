"""Compact, pickle-free parameter files: a run's best weights as one .npz of named arrays
("params/layer0/dense/kernel", "batch_stats/layer0/bn/mean", ...), written atomically."""

from __future__ import annotations

import dataclasses
import io
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

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


# ---------------------------------------------------------------------------------------------
# Checkpoints: a run's whole training state, to resume it bit for bit.
#
# One .npz per checkpoint, written atomically (temp file + rename), so a kill while saving leaves
# the previous checkpoint whole. Arrays are stored under their pytree paths ("state['params']
# ['layer0']['dense']['kernel']", "state['opt_state'][1][0].mu", ...); the fields of a dataclass
# at the top (runner.core.state.TrainState) are named like dict keys, "state['params']", as the
# dict that the training state was before it were, so older checkpoints restore unchanged. The
# host-side bookkeeping (epoch, curves so far, early-stopping counters, warnings) is JSON in the
# "__meta__" entry. No pickle: np.load(allow_pickle=False) reads it, and restoring maps the
# arrays by path onto the structure a fresh init builds, checking every shape and dtype. Why not
# orbax-checkpoint: a checkpoint here is a few MB at most and must land in one file whose
# appearance is atomic; orbax writes a directory of files (tensorstore, asynchronously) and adds
# its imports to every process (docs/performance.md), more than many of these runs train. An
# npz is one rename, and numpy alone reads it.

CHECKPOINT_VERSION = 1

# The checkpoints this process wrote, by path, while each file is still the one it wrote (same
# inode, size and modification time): a hyperband rung continues the checkpoints the rung
# before it saved, and reading one back parses its zip again (~3 ms for W1's ~40 arrays). The
# arrays are kept read-only; at most KEPT_BYTES of them, the oldest dropped first.
KEPT_BYTES = 128 * 2**20
_KEPT: OrderedDict[str, tuple[tuple, dict, str, int]] = OrderedDict()


def _file_id(path) -> tuple:
    st = os.stat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns


def _kept_bytes() -> int:
    return sum(entry[3] for entry in _KEPT.values())


def _keep(path: Path, arrays: dict, text: str) -> None:
    key = os.path.abspath(path)
    _KEPT.pop(key, None)
    size = sum(np.asarray(a).nbytes for a in arrays.values())
    if size > KEPT_BYTES // 8:
        return  # a large model's checkpoints are not worth holding twice
    kept = {}
    for name, a in arrays.items():
        a = np.array(a)  # its own copy: not a view that keeps a whole group's arrays alive
        a.flags.writeable = False
        kept[name] = a
    try:
        _KEPT[key] = (_file_id(path), kept, text, size)
    except OSError:
        return
    total = _kept_bytes()
    while total > KEPT_BYTES:
        total -= _KEPT.popitem(last=False)[1][3]


def forget_kept() -> None:
    """Drop the checkpoints kept in memory: the next reads parse their files."""
    _KEPT.clear()


def _kept(path: Path) -> tuple[dict, dict] | None:
    """(arrays, meta) of a checkpoint this process wrote at `path`, if the file is still it."""
    key = os.path.abspath(path)
    entry = _KEPT.get(key)
    if entry is None:
        return None
    try:
        same = _file_id(path) == entry[0]
    except OSError:
        same = False
    if not same:
        del _KEPT[key]
        return None
    import json

    return dict(entry[1]), json.loads(entry[2])


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the run's model: one line, naming the
    file."""


def _by_name(tree: Any) -> Any:
    """A dataclass (the TrainState) as the dict of its fields, so that its arrays are named
    "state['params']..." as when the state was a dict; any other tree as it is."""
    if dataclasses.is_dataclass(tree) and not isinstance(tree, type):
        return {f.name: getattr(tree, f.name) for f in dataclasses.fields(tree)}
    return tree


def _leaves(tree, prefix: str) -> dict:
    import jax

    flat, _ = jax.tree_util.tree_flatten_with_path(_by_name(tree))
    return {prefix + jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in flat}


def save_checkpoint(path: Path, state, best, meta: dict) -> None:
    """state: the whole training state (a TrainState, or any pytree); best: the best epoch's
    {"params", "batch_stats"} (TrainState.weights(), or None); meta: JSON-able bookkeeping."""
    import json

    import jax

    arrays = _leaves(jax.device_get(state), "state")
    if best is not None:
        arrays.update(_leaves(jax.device_get(best), "best"))
    text = json.dumps({"version": CHECKPOINT_VERSION, **meta}, allow_nan=True)
    arrays["__meta__"] = np.frombuffer(text.encode("utf-8"), np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write(path, buf.getvalue())
    del arrays["__meta__"]
    _keep(path, arrays, text)


def read_checkpoint(path: Path) -> tuple[dict, dict]:
    """(arrays by name, meta) of a checkpoint file; CheckpointError naming the file if it is
    missing, damaged or of another version."""
    import json
    import zipfile

    kept = _kept(path)
    if kept is not None:
        return kept
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"PK\x03\x04":  # an .npz is a zip file
                raise CheckpointError(f"{path}: not a readable checkpoint (not an .npz file)")
        with np.load(path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
        meta = json.loads(arrays.pop("__meta__").tobytes().decode("utf-8"))
    except CheckpointError:
        raise
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({type(e).__name__}: {e})"
        ) from None
    if meta.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {meta.get('version')!r}; this runner "
            f"reads version {CHECKPOINT_VERSION}"
        )
    return arrays, meta


def restore_tree(arrays: dict, prefix: str, template, path: Path):
    """The template pytree (a TrainState, or any pytree) with its leaves replaced by the stored
    arrays of the same paths."""
    import jax

    named = _by_name(template)
    flat, treedef = jax.tree_util.tree_flatten_with_path(named)
    leaves = []
    for p, leaf in flat:
        name = prefix + jax.tree_util.keystr(p)
        if name not in arrays:
            raise CheckpointError(f"{path}: has no {name} (saved by another model or config?)")
        a = arrays[name]
        if a.shape != np.shape(leaf) or a.dtype != np.dtype(leaf.dtype):
            raise CheckpointError(
                f"{path}: {name} is {a.dtype}{list(a.shape)}, the model needs "
                f"{np.dtype(leaf.dtype)}{list(np.shape(leaf))}"
            )
        leaves.append(a)
    restored = jax.tree_util.tree_unflatten(treedef, leaves)
    return restored if named is template else dataclasses.replace(template, **restored)


def restore_state(arrays: dict, path: Path, template, place: bool = True):
    """(state, best state) from a checkpoint's arrays, on the structure and devices of
    `template` (a freshly initialised TrainState). The best state's other fields are the
    restored state's: only its params and batch_stats are ever evaluated. Shared by a run
    alone (runner.app) and a vmapped group's members (runner.vectorized, which stacks them on
    the host first: place=False leaves them there, as numpy arrays)."""
    import jax

    put = jax.device_put if place else (lambda tree: tree)
    state = put(restore_tree(arrays, "state", template, path))
    if not any(k.startswith("best[") for k in arrays):
        return state, state  # no epoch had finite numbers yet
    best = restore_tree(arrays, "best", state.weights(), path)
    return state, state.with_weights(put(best))


def best_from_checkpoint(path: Path) -> tuple[dict, dict] | None:
    """(params, batch_stats) of the best epoch a checkpoint keeps, as nested dicts like
    load_params gives (None: it keeps none, no epoch had finite numbers yet)."""
    import re

    arrays, _ = read_checkpoint(path)
    trees = {c: {} for c in COLLECTIONS}
    found = False
    for name, a in arrays.items():
        if not name.startswith("best["):
            continue
        keys = re.findall(r"\['([^']*)'\]", name)
        if (
            not keys
            or "".join(f"['{k}']" for k in keys) != name[len("best") :]
            or keys[0] not in trees
        ):
            raise CheckpointError(f"{path}: unexpected entry {name}")
        node = trees[keys[0]]
        for k in keys[1:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = a
        found = True
    return (trees["params"], trees["batch_stats"]) if found else None
