"""Runs that keep their work: checkpoints and `runner resume` (in-process, bit for bit against
the uninterrupted run), and the run folder a stop leaves (Ctrl-C, SIGTERM: `interrupted`)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal

import jax
import numpy as np
import pytest
from conftest import TINY, compose

from runner import app, stop
from runner.checkpoint import (
    CheckpointError,
    forget_kept,
    read_checkpoint,
    restore_tree,
    save_checkpoint,
)
from runner.config import validate
from runner.data import load_dataset

BASE = TINY + ["trainer.epochs=6", "trainer.checkpoint=2"]


@pytest.fixture(autouse=True)
def _no_stop_left():
    stop.reset()
    yield
    stop.reset()


def _fit(overrides, *, stop_after=None, resume=None):
    """app.fit of a composed config; stop_after=k asks for a stop (as Ctrl-C does) during
    epoch k's callbacks. Returns (Result, [checkpoints as (state, best, meta)])."""
    cfg = validate(compose(BASE + list(overrides)))
    ds = load_dataset(cfg.data)
    saved = []

    def on_epoch(row):
        if stop_after is not None and row["epoch"] == stop_after:
            stop.request(signal.SIGINT)

    def on_checkpoint(state, best, meta):
        saved.append((jax.device_get(state), jax.device_get(best), json.loads(json.dumps(meta))))

    res = app.fit(cfg, ds, on_epoch=on_epoch, on_checkpoint=on_checkpoint, resume=resume)
    return res, saved


def _same(a, b) -> None:
    """Two Results with the same numbers: curves (time aside), metrics (times aside), best
    weights, diagnostics."""
    # as JSON text: every float to the last bit, and NaN (dead_frac of a tanh net) equal to NaN
    text = lambda x: json.dumps(x, sort_keys=True)
    drop = lambda rows: [{k: v for k, v in r.items() if k != "time"} for r in rows]
    assert text(drop(a.history)) == text(drop(b.history))
    assert text(a.diagnostics) == text(b.diagnostics)
    times = {"wall_time", "train_time", "compile_time"}
    ma = {k: v for k, v in a.metrics.items() if k not in times}
    mb = {k: v for k, v in b.metrics.items() if k not in times}
    assert text(ma) == text(mb)
    la, lb = jax.tree_util.tree_leaves(a.best_state), jax.tree_util.tree_leaves(b.best_state)
    assert len(la) == len(lb) and all(np.array_equal(x, y) for x, y in zip(la, lb))


def _resume_from(tmp_path, saved_entry):
    state, best, meta = saved_entry
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, state, best, meta)
    forget_kept()  # through the file, as `runner resume` (another process) reads it
    arrays, meta = read_checkpoint(path)
    return app.Resume(arrays=arrays, meta=meta, path=path)


CASES = {
    # momentum + batch norm + dropout: optimizer state, running statistics, dropout RNG
    "momentum_bn_dropout": [
        "optimizer=momentum",
        "optimizer.lr=0.05",
        "regularization.batchnorm=true",
        "regularization.dropout=0.2",
    ],
    # Adam + a schedule + early stopping's counters
    "adam_schedule_es": [
        "optimizer=adam",
        "optimizer.lr=0.01",
        "schedule=cosine",
        "regularization.early_stopping=true",
        "regularization.patience=3",
    ],
}


@pytest.mark.parametrize("case", list(CASES))
def test_stopped_then_resumed_equals_the_uninterrupted_run(tmp_path, case):
    full, full_ckpts = _fit(CASES[case])
    assert full.status in ("completed",) and full.metrics["epochs_run"] >= 3
    part, saved = _fit(CASES[case], stop_after=3)
    assert part.status == "interrupted" and part.metrics["interrupted_by"] == "SIGINT"
    assert part.metrics["epochs_run"] == 3 and len(part.history) == 3
    # every trainer.checkpoint=2 epochs, and once more at the stop (epoch 3)
    assert [m["epoch"] for _, _, m in saved] == [2, 3]
    stop.reset()
    resumed, _ = _fit(CASES[case], resume=_resume_from(tmp_path, saved[-1]))
    _same(resumed, full)
    # the periodic checkpoint (epoch 2) resumes to the same end as well
    again, _ = _fit(CASES[case], resume=_resume_from(tmp_path, saved[0]))
    _same(again, full)
    # checkpoints every 2 epochs and after the last: 2, 4, 6 (or fewer when it stopped early)
    epochs = [m["epoch"] for _, _, m in full_ckpts]
    assert epochs[:-1] == list(range(2, full.metrics["epochs_run"], 2))[: len(epochs) - 1]
    assert epochs[-1] == full.metrics["epochs_run"]


def test_a_stop_before_the_first_epoch_keeps_an_honest_empty_run():
    stop.request(signal.SIGTERM)
    res, saved = _fit(CASES["adam_schedule_es"])
    assert res.status == "interrupted" and res.metrics["interrupted_by"] == "SIGTERM"
    assert res.history == [] and res.metrics["epochs_run"] == 0
    assert res.best_state is None and saved == []  # nothing to resume from
    assert res.metrics["test_loss"] is None


def test_checkpoint_of_another_model_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(
        path, {"params": {"head": {"kernel": np.zeros((16, 10), np.float32)}}}, None, {"epoch": 1}
    )
    arrays, _ = read_checkpoint(path)
    template = {"params": {"head": {"kernel": np.zeros((8, 10), np.float32)}}}
    with pytest.raises(
        CheckpointError,
        match=r"checkpoint\.npz: state\['params'\]\['head'\]"
        r"\['kernel'\] is float32\[16, 10\], the model "
        r"needs float32\[8, 10\]",
    ):
        restore_tree(arrays, "state", template, path)
    with pytest.raises(CheckpointError, match=r"has no state\['params'\]\['tail'\]"):
        restore_tree(arrays, "state", {"params": {"tail": np.zeros(1, np.float32)}}, path)


def test_damaged_checkpoint_is_one_clear_error(tmp_path):
    bad = tmp_path / "checkpoint.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CheckpointError, match="checkpoint.npz: not a readable checkpoint"):
        read_checkpoint(bad)
    bad.write_text("garbage")
    with pytest.raises(
        CheckpointError,
        match=r"checkpoint.npz: not a readable checkpoint "
        r"\(not an .npz file\)$",
    ):
        read_checkpoint(bad)
    with pytest.raises(CheckpointError, match="no such file"):
        read_checkpoint(tmp_path / "missing.npz")


def test_a_checkpoint_this_process_wrote_is_read_back_from_memory_while_the_file_is_it(tmp_path):
    """A hyperband rung continues the checkpoints the rung before it saved: read_checkpoint
    gives this process's own copy (read-only, the same arrays and meta as the file's) while
    the file is the one it wrote, and the file again once it changed or went."""
    from runner import checkpoint

    path = tmp_path / "checkpoint.npz"
    tree = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.zeros(3, np.float32)}
    save_checkpoint(path, tree, {"params": {"w": tree["w"]}}, {"epoch": 3, "tracker": {"h": [1]}})
    kept, kept_meta = read_checkpoint(path)
    assert all(not a.flags.writeable for a in kept.values())
    with pytest.raises(ValueError):
        kept["state['w']"][0, 0] = 7.0
    kept_meta["epoch"] = 99  # the caller's own meta: the next read is not changed by it
    forget_kept()
    disk, disk_meta = read_checkpoint(path)
    assert disk_meta == {"version": 1, "epoch": 3, "tracker": {"h": [1]}}
    assert read_checkpoint(path)[1] == disk_meta and set(kept) == set(disk)
    assert all(np.array_equal(kept[k], disk[k]) and kept[k].dtype == disk[k].dtype for k in disk)
    # kept again by the next save; another writer's file (a new inode) is read from disk
    save_checkpoint(path, tree, None, {"epoch": 4})
    assert read_checkpoint(path)[1]["epoch"] == 4 and os.path.abspath(path) in checkpoint._KEPT
    other = tmp_path / "other.npz"
    save_checkpoint(other, {"w": np.ones(2, np.float32)}, None, {"epoch": 8})
    os.replace(other, path)
    assert read_checkpoint(path)[1]["epoch"] == 8
    assert read_checkpoint(path)[0]["state['w']"].tolist() == [1.0, 1.0]
    path.write_bytes(b"PK\x03\x04 damaged")  # damaged after it was written: the file's error
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        read_checkpoint(path)
    path.unlink()
    with pytest.raises(CheckpointError, match="no such file"):
        read_checkpoint(path)


def test_restore_maps_arrays_by_path_not_by_order(tmp_path):
    tree = {"b": np.arange(3, dtype=np.float32), "a": {"x": np.ones((2, 2), np.int32)}}
    save_checkpoint(tmp_path / "c.npz", tree, None, {"epoch": 1})
    arrays, meta = read_checkpoint(tmp_path / "c.npz")
    assert meta == {"version": 1, "epoch": 1}
    back = restore_tree(
        arrays, "state", jax.tree_util.tree_map(np.zeros_like, tree), tmp_path / "c.npz"
    )
    assert np.array_equal(back["b"], tree["b"]) and np.array_equal(back["a"]["x"], tree["a"]["x"])
    assert not list(tmp_path.glob(".*.tmp"))


def test_cv_runs_stop_between_folds():
    cfg = validate(compose(TINY + ["trainer.cv_folds=3", "trainer.epochs=2"]))
    ds = load_dataset(cfg.data)
    seen = []

    def on_epoch(row):
        seen.append(row["epoch"])
        if len(seen) == 3:  # during the second fold
            stop.request(signal.SIGINT)

    res = app.run(dataclasses.replace(cfg), ds, on_epoch=on_epoch)
    assert res.status == "interrupted"
    assert res.metrics["cv_scores"][0] is not None and len(res.metrics["cv_scores"]) == 2
    assert res.metrics["cv_mean"] is None  # not every fold ran: no mean over the folds


def test_best_weights_come_from_the_checkpoint_when_the_final_files_are_missing(tmp_path):
    """gradcheck --run and ensemble read weights through rundir.load_best: a run killed after a
    checkpoint (no best_params.npz yet) still has its best epoch's weights."""
    from runner import rundir

    res, saved = _fit(CASES["adam_schedule_es"], stop_after=2)
    state, best, meta = saved[-1]
    save_checkpoint(tmp_path / rundir.CHECKPOINT, state, best, meta)
    assert rundir.has_best(tmp_path) and not (tmp_path / rundir.BEST_PARAMS).exists()
    params, batch_stats = rundir.load_best(tmp_path)
    got = jax.tree_util.tree_leaves(params)
    want = jax.tree_util.tree_leaves(jax.device_get(res.best_state.params))
    assert len(got) == len(want) and all(np.array_equal(a, b) for a, b in zip(got, want))
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(
        {k: dict(v) for k, v in jax.device_get(res.best_state.params).items()}
    )
    # a checkpoint from before any finite epoch keeps no best weights: one line naming it
    save_checkpoint(tmp_path / rundir.CHECKPOINT, state, None, meta)
    with pytest.raises(rundir.RunDirError, match="checkpoint.npz: keeps no best weights"):
        rundir.load_best(tmp_path)


def test_a_checkpoint_written_when_the_state_was_a_dict_still_resumes(tmp_path):
    """Before the state became a TrainState it was a dict, and its arrays were stored as
    "state['params']...", "state['opt_state']...", "state['rng']", "state['step']". A file
    written that way (by hand here, as that code wrote it) resumes to the uninterrupted run's
    numbers, and a new checkpoint names its arrays exactly the same way."""
    case = CASES["momentum_bn_dropout"]
    full, _ = _fit(case)
    _, saved = _fit(case, stop_after=2)
    state, best, meta = saved[-1]
    old_state = {
        "params": state.params,
        "batch_stats": state.batch_stats,
        "opt_state": state.opt_state,
        "rng": state.rng,
        "step": state.step,
    }
    arrays = {}
    for prefix, tree in (("state", old_state), ("best", best)):
        flat, _ = jax.tree_util.tree_flatten_with_path(tree)
        arrays.update({prefix + jax.tree_util.keystr(p): np.asarray(a) for p, a in flat})
    assert {
        "state['rng']",
        "state['step']",
        "state['params']['head']['kernel']",
        "state['batch_stats']['layer0']['bn']['mean']",
        "best['params']['head']['kernel']",
    } <= set(arrays)
    assert any(k.startswith("state['opt_state'][") for k in arrays)
    old = tmp_path / "old.npz"
    np.savez(
        old, __meta__=np.frombuffer(json.dumps({"version": 1, **meta}).encode(), np.uint8), **arrays
    )
    new = tmp_path / "new.npz"
    save_checkpoint(new, state, best, meta)
    assert set(read_checkpoint(new)[0]) == set(arrays)
    stop.reset()
    got, got_meta = read_checkpoint(old)
    resumed, _ = _fit(case, resume=app.Resume(arrays=got, meta=got_meta, path=old))
    _same(resumed, full)
