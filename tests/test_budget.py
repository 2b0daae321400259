"""Budgets and continuation (issue 13): trainer.stop_at trains an exact prefix of the
trainer.epochs run and leaves a checkpoint; trainer.resume continues it in its folder, alone
(runner.task) or as a member of a vmapped group (vectorized.fit_group(resumes=...)), to the
numbers the uninterrupted run has."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from conftest import TINY, compose, task_config

from runner import rundir
from runner.config import ConfigError, validate

# cosine over trainer.epochs: a prefix that got its own schedule would show at once in lr
BASE = TINY + ["trainer.epochs=5", "schedule=cosine", "optimizer=momentum", "optimizer.lr=0.1"]
LR = 0.1
NUMBERS = ("lr", "lr_next", "train_loss", "train_acc", "val_loss", "val_acc", "grad_norm")


def _cfg(*overrides):
    return validate(compose(BASE + list(overrides)))


@pytest.fixture(scope="module")
def ds():
    from runner.data import load_dataset

    return load_dataset(_cfg().data)


@pytest.fixture(scope="module")
def full(ds):
    """The uninterrupted 5-epoch run, in-process."""
    from runner import app

    return app.fit(_cfg(), ds)


def _task(run_dir, *overrides):
    """`runner hydra.run.dir=RUN_DIR ...` in-process (runner.task.task): the run's metrics."""
    from runner.task import task

    task(task_config(BASE + list(overrides), run_dir, run_dir.parent))
    return rundir.read_metrics(run_dir).data


def _curves(run_dir) -> list[dict]:
    read = rundir.read_curves(run_dir)
    assert read.ok, read.error
    return read.data.rows


def _same_rows(got: list[dict], want: list[dict]) -> None:
    """curves.csv's rows (6 digits) against a run's history: the same numbers. (metrics.json's
    are compared at full precision: bit for bit on a CPU.)"""
    assert [r["epoch"] for r in got] == [r["epoch"] for r in want]
    for key in NUMBERS:
        assert [r[key] for r in got] == [float(f"{r[key]:.6g}") for r in want], key


def test_stop_at_trains_a_pruned_prefix_and_continues_to_the_full_run(tmp_path, full, capsys):
    run_dir = tmp_path / "run"
    m = _task(run_dir, "trainer.stop_at=2")
    assert (m["status"], m["pruned_at"], m["pruned_by"]) == ("pruned", 2, "trainer.stop_at")
    assert m["epochs"] == 5 and m["epochs_run"] == 2
    # trainer.checkpoint=0, yet the stop leaves the state to continue from
    from runner.checkpoint import read_checkpoint

    _, meta = read_checkpoint(run_dir / rundir.CHECKPOINT)
    assert meta["epoch"] == 2 and meta["config"]["trainer.stop_at"] == 2
    rows = _curves(run_dir)
    _same_rows(rows, full.history[:2])
    # the schedule spans the 5 epochs: after epoch 2 the rate is lr (1 + cos(2 pi / 5)) / 2
    assert rows[1]["lr_next"] == pytest.approx(LR * (1 + math.cos(math.pi * 2 / 5)) / 2, rel=1e-6)
    # `runner resume` (which keeps the saved stop_at) says how such a run goes on
    from runner import resume

    assert resume.main([str(run_dir)]) == 2
    assert capsys.readouterr().err == (
        f"runner: error: {run_dir}: status pruned at epoch 2 (by trainer.stop_at): continue it "
        f"with its command line plus trainer.resume=true hydra.run.dir={run_dir} and a later "
        "trainer.stop_at (0: to the end)\n"
    )

    # continued twice in the same folder: to a second budget, then to the end
    m = _task(run_dir, "trainer.resume=true", "trainer.stop_at=4")
    assert (m["status"], m["pruned_at"], m["resumed_from_epoch"]) == ("pruned", 4, 2)
    _same_rows(_curves(run_dir), full.history[:4])
    assert read_checkpoint(run_dir / rundir.CHECKPOINT)[1]["epoch"] == 4
    m = _task(run_dir, "trainer.resume=true")
    assert (m["status"], m["epochs_run"], m["resumed_from_epoch"]) == ("completed", 5, 4)
    assert "pruned_at" not in m
    _same_rows(_curves(run_dir), full.history)
    for key in (
        "best_epoch",
        "best_val_acc",
        "best_val_loss",
        "test_loss",
        "final_test_loss",
        "final_train_loss",
        "final_val_loss",
    ):
        assert m[key] == full.metrics[key], key
    # diagnostics.csv keeps the rows of every epoch, the untrained network's 0 included
    diag = rundir.read_diagnostics(run_dir)
    assert sorted({r["epoch"] for r in diag.data}) == [0, 1, 2, 3, 4, 5]
    # a finished run is not continued again, nor is a folder of another config
    with pytest.raises(ConfigError, match="holds a finished run \\(status completed\\)"):
        _task(run_dir, "trainer.resume=true")
    assert rundir.read_metrics(run_dir).data["status"] == "completed"  # left as it was


def test_resume_without_a_checkpoint_trains_from_the_start(tmp_path, full):
    run_dir = tmp_path / "fresh"
    m = _task(run_dir, "trainer.resume=true", "trainer.stop_at=3")
    assert (m["status"], m["pruned_at"], m.get("resumed_from_epoch")) == ("pruned", 3, None)
    _same_rows(_curves(run_dir), full.history[:3])
    # continuing with another learning rate would splice two runs: refused, naming the key
    from runner.runjob import continuation

    with pytest.raises(ConfigError) as e:
        _task(run_dir, "optimizer.lr=0.05", "trainer.resume=true")
    assert str(e.value) == (
        f"trainer.resume=true: {run_dir / rundir.CHECKPOINT} was saved by a run with "
        "optimizer.lr=0.1, not 0.05; use another folder or trainer.resume=false"
    )
    # the folder is left as it was, the config Hydra had written over its own put back
    assert rundir.read_config(run_dir).data["optimizer.lr"] == 0.1
    assert rundir.read_metrics(run_dir).data["status"] == "pruned"
    with pytest.raises(ConfigError) as e:  # it cannot go back to an earlier budget
        continuation(run_dir, _cfg("trainer.stop_at=2", "trainer.resume=true"))
    assert str(e.value) == (
        f"trainer.stop_at=2: {run_dir / rundir.CHECKPOINT} is already at epoch 3; expected a "
        "stop_at from 3 to trainer.epochs=5, or 0"
    )


def _checkpoint(tmp_path, ds, name, *overrides):
    """An app.Resume of a stop_at run's checkpoint, through the file as trainer.resume reads it."""
    from runner import app
    from runner.checkpoint import read_checkpoint, save_checkpoint

    path = tmp_path / name / rundir.CHECKPOINT
    path.parent.mkdir()
    app.fit(_cfg(*overrides), ds, on_checkpoint=lambda *saved: save_checkpoint(path, *saved))
    arrays, meta = read_checkpoint(path)
    return app.Resume(arrays=arrays, meta=meta, path=path)


def test_group_members_continue_from_checkpoints_of_different_epochs(tmp_path, ds, full):
    """Two members continued (from epochs 2 and 3) and a fresh one stopped by its own stop_at:
    each ends where its run alone ends (test_vectorized's member tolerance)."""
    from runner import app, vectorized

    other = ("seed=1", "optimizer.lr=0.05")
    resumes = [
        _checkpoint(tmp_path, ds, "a", "trainer.stop_at=2"),
        _checkpoint(tmp_path, ds, "b", "trainer.stop_at=3", *other),
        None,
    ]
    cfgs = [_cfg(), _cfg(*other), _cfg("seed=2", "trainer.stop_at=4")]
    saved, steps = {}, []
    group = vectorized.fit_group(
        cfgs,
        ds,
        resumes=resumes,
        pad_to=vectorized.padded_size(3, 64),
        on_checkpoint=lambda i, state, best, meta: saved.setdefault(i, meta),
        on_epoch=lambda step, n_active, rows: steps.append(
            {i: r["epoch"] for i, r in rows.items()}
        ),
    )
    # one group epoch trains each member's own next epoch; the fresh one needs 4, the most
    assert steps == [{0: 3, 1: 4, 2: 1}, {0: 4, 1: 5, 2: 2}, {0: 5, 2: 3}, {2: 4}]
    alone = [full, app.fit(cfgs[1], ds), app.fit(cfgs[2], ds)]
    for i, (g, a) in enumerate(zip(group, alone)):
        assert g.metrics.get("resumed_from_epoch") == [2, 3, None][i]
        for key in ("status", "epochs_run", "best_epoch", "pruned_at"):
            assert g.metrics.get(key) == a.metrics.get(key), (i, key)
        for key in NUMBERS:
            np.testing.assert_allclose(
                [r[key] for r in g.history],
                [r[key] for r in a.history],
                rtol=2e-5,
                atol=1e-6,
                err_msg=f"member {i} {key}",
            )
        for key in ("best_val_loss", "test_loss", "final_test_loss"):
            assert g.metrics[key] == pytest.approx(a.metrics[key], rel=2e-5, abs=1e-6), (i, key)
    assert [g.status for g in group] == ["completed", "completed", "pruned"]
    # the stopped member leaves the checkpoint that continues it, as a run alone does
    assert list(saved) == [2] and saved[2]["epoch"] == 4
    assert saved[2]["config"]["trainer.stop_at"] == 4 and len(saved[2]["tracker"]["history"]) == 4


def _count_evaluations(monkeypatch) -> list:
    """Each call of a group's evaluation program (train.evaluate_members: one pass over
    train/val/test for every member) from now on appends to the returned list."""
    from runner.core import train

    calls, get = [], train.PROGRAMS.get

    def counted_get(fn, *args, **kwargs):
        exe, seconds = get(fn, *args, **kwargs)
        if fn is not train.evaluate_members:
            return exe, seconds
        return (lambda *a: calls.append(1) or exe(*a)), seconds

    monkeypatch.setattr(train.PROGRAMS, "get", counted_get)
    return calls


def test_a_group_evaluates_only_what_can_differ(tmp_path, ds, full, monkeypatch):
    """A group of continued members takes their initial numbers from the checkpoints, and one
    evaluation gives both best and final numbers when each member's best epoch is its last: 1
    evaluation. Fresh members need their untrained numbers too: 2. A member whose best epoch is
    an earlier one needs a pass over its best states: 3, the old path. A group of the same
    seeds and initial hyperparameters as one before takes that one's untrained numbers
    (vectorized._INITIAL): 2 again. The numbers are each run alone's, and bit for bit the old
    path's for the same training."""
    from runner import app, vectorized

    other = ("seed=1", "optimizer.lr=0.05")
    # min_delta 100: only epoch 1 improves; the training itself is the same as without it
    flat = (*other, "regularization.min_delta=100")
    resumes = [
        _checkpoint(tmp_path, ds, "a", "trainer.stop_at=2"),
        _checkpoint(tmp_path, ds, "b", "trainer.stop_at=3", *other),
    ]
    calls = _count_evaluations(monkeypatch)
    groups = {}
    for name, more, res, want, shared in [
        ("continued", other, resumes, 1, False),
        ("fresh", other, None, 2, False),
        ("old path", flat, None, 3, False),
        ("old path, initial numbers known", flat, None, 2, True),
    ]:
        calls.clear()
        if not shared:
            vectorized._INITIAL.clear()
        groups[name] = vectorized.fit_group([_cfg(), _cfg(*more)], ds, resumes=res, pad_to=4)
        assert len(calls) == want, name
    times = ("wall_time", "train_time", "compile_time", "vectorized")
    for a, b in zip(groups["old path"], groups["old path, initial numbers known"]):
        assert {k: v for k, v in a.metrics.items() if k not in times} == {
            k: v for k, v in b.metrics.items() if k not in times
        }
        assert [dict(r, time=0) for r in a.history] == [dict(r, time=0) for r in b.history]
    alone = [full, app.fit(_cfg(*other), ds)]
    assert [a.metrics["best_epoch"] for a in alone] == [5, 5]  # best == final: one pass
    for name in ("continued", "fresh"):
        for i, (g, a) in enumerate(zip(groups[name], alone)):
            assert g.metrics["best_epoch"] == g.metrics["epochs_run"] == 5, (name, i)
            assert g.metrics["test_loss"] == g.metrics["final_test_loss"], (name, i)
            for key in ("best_val_loss", "test_loss", "test_acc", "final_test_loss"):
                assert g.metrics[key] == pytest.approx(a.metrics[key], rel=2e-5, abs=1e-6), (
                    name,
                    i,
                    key,
                )
    # min_delta is the tracker's alone: "old path" trained exactly as "fresh" did
    fresh, old = groups["fresh"], groups["old path"]
    assert old[1].metrics["best_epoch"] == 1 and old[1].metrics["epochs_run"] == 5
    assert old[1].metrics["test_loss"] != old[1].metrics["final_test_loss"]
    same = lambda r: {k: v for k, v in r.items() if "time" not in k and k != "vectorized"}
    assert same(fresh[0].metrics) == same(old[0].metrics)
    for key in fresh[1].metrics:
        if key.startswith("final_") or key in ("initial_train_loss", "initial_val_loss"):
            assert fresh[1].metrics[key] == old[1].metrics[key], key
    for f, o in zip(fresh, old):
        assert [same(r) for r in f.history] == [same(r) for r in o.history]


def test_a_rung_end_evaluates_while_its_checkpoints_are_written(ds, monkeypatch):
    """When trainer.stop_at stops a group's last members, fit_group dispatches the final (and
    best-state) evaluations before it writes their checkpoints. The numbers are bit for bit
    those of the evaluations after the loop (no checkpoints written), in as many calls; and
    the evaluations were running while the checkpoints were written."""
    from runner import vectorized

    # member 1's best epoch is its first (min_delta 100): the best states need their own pass
    cfgs = [
        _cfg("trainer.stop_at=3"),
        _cfg("seed=1", "optimizer.lr=0.05", "regularization.min_delta=100", "trainer.stop_at=3"),
    ]
    calls = _count_evaluations(monkeypatch)
    vectorized._INITIAL.clear()
    plain = vectorized.fit_group(cfgs, ds, pad_to=4)
    assert len(calls) == 3  # initial, final, best
    calls.clear()
    seen = []
    with_checkpoints = vectorized.fit_group(
        cfgs,
        ds,
        pad_to=4,
        on_checkpoint=lambda i, state, best, meta: seen.append((i, len(calls))),
    )
    assert len(calls) == 2  # the initial numbers are known; final and best as before
    assert seen == [(0, 2), (1, 2)]  # both dispatched before the first checkpoint
    times = ("wall_time", "train_time", "compile_time", "vectorized")
    for a, b in zip(plain, with_checkpoints):
        assert a.status == b.status == "pruned"
        assert {k: v for k, v in a.metrics.items() if k not in times} == {
            k: v for k, v in b.metrics.items() if k not in times
        }
    assert plain[1].metrics["best_epoch"] == 1 and plain[1].metrics["epochs_run"] == 3
    assert plain[1].metrics["test_loss"] != plain[1].metrics["final_test_loss"]


def test_the_vmap_launcher_keeps_and_continues_its_members_checkpoints(tmp_path, full):
    """hydra/launcher=vmap's group path: stop_at members leave their checkpoints in their job
    folders; with trainer.resume=true a later batch continues them (and starts a new job)."""
    from omegaconf import open_dict

    from runner.checkpoint import read_checkpoint
    from runner.core import train
    from runner.sweep.compose import task_config
    from runner.sweep.launcher import _plan, _train_group

    def jobs(seeds, *overrides):
        out = []
        for s in seeds:
            sc = compose(BASE + [f"seed={s}", *overrides], return_hydra_config=True)
            with open_dict(sc):
                sc.hydra.sweep.dir, sc.hydra.sweep.subdir = str(tmp_path), str(s)
                sc.hydra.job.num = sc.hydra.job.id = s
            out.append(sc)
        return out

    def train_group(group, configs):  # {job: Result}
        trained = _train_group(group, configs, [task_config(sc) for sc in configs])
        return {i: result for i, (_, result) in trained.items()}

    first = jobs([0, 1, 2], "trainer.stop_at=2")
    (group,) = _plan([task_config(sc) for sc in first], 64)
    assert group[3] == 4  # 3 budgeted members: padded to 4
    assert {i: r.status for i, r in train_group(group, first).items()} == dict.fromkeys(
        range(3), "pruned"
    )
    for s in (0, 1, 2):
        assert read_checkpoint(tmp_path / str(s) / rundir.CHECKPOINT)[1]["epoch"] == 2
    # survivors of another count (2 continued, 2 new) share the first group's programs
    compiles = train.PROGRAMS.stats.compiles
    later = jobs([0, 2, 7, 8], "trainer.stop_at=4", "trainer.resume=true")
    out = train_group(_plan([task_config(sc) for sc in later], 64)[0], later)
    assert train.PROGRAMS.stats.compiles == compiles
    assert [out[i].metrics.get("resumed_from_epoch") for i in range(4)] == [2, 2, None, None]
    assert [len(out[i].history) for i in range(4)] == [4, 4, 4, 4]
    for s in (0, 2, 7, 8):
        assert read_checkpoint(tmp_path / str(s) / rundir.CHECKPOINT)[1]["epoch"] == 4
    # job 0 (seed 0) stopped and continued in groups: the uninterrupted run's first 4 epochs
    for key in NUMBERS:
        np.testing.assert_allclose(
            [r[key] for r in out[0].history],
            [r[key] for r in full.history[:4]],
            rtol=2e-5,
            atol=1e-6,
            err_msg=key,
        )


def test_budgeted_groups_are_padded_to_powers_of_two():
    from runner.sweep.launcher import _plan
    from runner.vectorized import padded_size

    assert [padded_size(n, 64) for n in (2, 3, 5, 7, 8, 9)] == [2, 4, 8, 8, 8, 16]
    assert padded_size(5, 6) == 6  # never past the group size cap
    one = compose(BASE)

    def jobs(n, **trainer):  # n jobs that differ in their seed only, as a sweep's would
        out = []
        for s in range(n):
            c = copy.deepcopy(one)
            c.seed = s
            c.trainer.update(trainer)
            out.append(c)
        return out

    assert [(idx, pad) for idx, _, _, pad in _plan(jobs(5, stop_at=2), 64)] == [
        ([0, 1, 2, 3, 4], 8)
    ]
    assert [pad for *_, pad in _plan(jobs(3, resume=True), 64)] == [4]
    assert [pad for *_, pad in _plan(jobs(5), 64)] == [5]  # no budgets: as before


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["trainer.stop_at=6"],
            "trainer.stop_at=6: out of range; expected 0 (off) or an integer from 1 to "
            "trainer.epochs=5",
        ),
        (["trainer.stop_at=-1"], "trainer.stop_at=-1: out of range; expected an integer >= 0"),
        (["trainer.stop_at=two"], "trainer.stop_at='two': expected an integer >= 0"),
        (
            ["trainer.stop_at=2", "trainer.cv_folds=3"],
            "trainer.stop_at=2: not with trainer.cv_folds=3 (k-fold runs are not "
            "checkpointed); use trainer.cv_folds=0",
        ),
        (["trainer.resume=maybe"], "trainer.resume='maybe': expected true or false"),
    ],
)
def test_bad_budgets_are_one_line_naming_key_value_and_range(overrides, message):
    with pytest.raises(ConfigError) as e:
        _cfg(*overrides)
    assert str(e.value) == message
