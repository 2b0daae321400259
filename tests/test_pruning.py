"""hydra.sweeper.prune=median (runner.sweep.pruning, Sweep's launches) and trainer.prune_curve
(runner.tracker.Tracker): the medians of a constructed set of curves, the epoch a run is pruned
at on a constructed objective (mode max and min, warm-up epochs, ties, the last epoch, before
early stopping), one real sweep whose bad trials are pruned in a vmapped group (summary,
table, `runner compare`, `runner best`), resume from disk, and bad input."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from conftest import compose, run_main

from runner.config import Config, ConfigError, TrainerConfig, validate
from runner.sweep import pruning
from runner.sweep.run import Sweep
from runner.sweep.space import SweepError
from runner.tracker import Tracker, Warnings

# ---------------------------------------------------------------------------------------------
# the medians


def test_median_curve_over_the_trials_that_reached_each_epoch():
    nan = math.nan
    curves = [[0.5, 0.6, 0.7], [0.3, 0.9], [0.4, nan, 0.8, 0.9], []]
    # epoch 2: 0.6 and 0.9 (NaN left out); epoch 3: 0.7 and 0.8; epoch 4: 0.9 alone
    assert pruning.median_curve(curves, 0) == [0.4, 0.75, 0.75, 0.9]
    assert pruning.median_curve(curves, 1) == [None, 0.75, 0.75, 0.9]
    assert pruning.median_curve(curves, 4) == []  # nothing left to check
    assert pruning.median_curve([], 1) == []
    assert pruning.median_curve([[1.0, nan], [2.0, nan]], 0) == [1.5]  # no trailing null
    assert pruning.override([None, 0.75, 1e-05]) == "trainer.prune_curve=[null,0.75,1e-05]"


# ---------------------------------------------------------------------------------------------
# the trial's verdict (Tracker) on a constructed objective


def tracker(curve, epochs=6, monitor="auto", **reg):
    cfg = Config(trainer=TrainerConfig(epochs=epochs, monitor=monitor, prune_curve=curve))
    if reg:
        from dataclasses import replace

        cfg = replace(cfg, regularization=replace(cfg.regularization, **reg))
    spec = SimpleNamespace(
        model=SimpleNamespace(head="softmax", n_out=3), steps_per_epoch=2, batch_size=8
    )
    ds = SimpleNamespace(
        name="constructed", task="classification", x_train=[0] * 16, x_val=[0] * 8, x_test=[0] * 8
    )
    initial = {"train_loss": 1.1, "val_loss": 1.1}
    return Tracker(cfg, spec, ds, initial, [], Warnings()), ds


def feed(tr, ds, accs=None, losses=None):
    """Epochs with these validation accuracies (or losses); returns (epoch it ended at, metrics)."""
    n = len(accs if accs is not None else losses)
    for ep in range(1, n + 1):
        m = {
            "lr": 0.1,
            "lr_next": 0.1,
            "train_loss": 1.0,
            "train_metric": 0.5,
            "val_loss": losses[ep - 1] if losses else 1.0 - accs[ep - 1],
            "val_metric": accs[ep - 1] if accs else 0.5,
            "max_step_loss": 1.0,
            "grad_norm": 1.0,
        }
        _, _, done = tr.update(ep, m, 0.1 * ep)
        if done:
            break
    return ep, tr.result(ds, {}, None, n_params=0, times={}).metrics


def test_tracker_prunes_after_the_first_epoch_worse_than_the_curve_mode_max():
    tr, ds = tracker([None, 0.7, 0.7, 0.7, 0.7])  # val_acc, max; epoch 1 is warm-up (null)
    ep, m = feed(tr, ds, accs=[0.1, 0.6, 0.95, 0.95, 0.95, 0.95])
    assert ep == 2 and m["status"] == "pruned" and m["pruned_at"] == 2 == m["epochs_run"]
    assert m["pruned_by"] == "median" and m["best_val_acc"] == 0.6 and not m["stopped_early"]
    # the best so far counts, not this epoch's value: 0.8 at epoch 1 carries the run
    tr, ds = tracker([None, 0.7, 0.7, 0.7, 0.7])
    ep, m = feed(tr, ds, accs=[0.8, 0.5, 0.5, 0.5, 0.5, 0.5])
    assert ep == 6 and m["status"] == "completed" and "pruned_at" not in m
    # a tie goes on, also when float32 holds 0.7 as 0.699999988 (curves.csv's 6 digits: 0.7)
    tr, ds = tracker([None, 0.7, 0.7])
    ep, m = feed(tr, ds, accs=[0.1, 0.7, 0.699999988079071, 0.1, 0.1, 0.1])
    assert ep == 6 and m["status"] == "completed"
    # the last epoch is never pruned: stopping there saves nothing
    tr, ds = tracker([None, 0.2, 0.2, 0.2, 0.2, 0.99])
    ep, m = feed(tr, ds, accs=[0.5] * 6)
    assert ep == 6 and m["status"] == "completed"


def test_tracker_prunes_in_mode_min_and_before_early_stopping():
    tr, ds = tracker([None, 0.95, 0.75], monitor="val_loss")  # min: worse is higher
    ep, m = feed(tr, ds, losses=[1.0, 0.9, 0.8, 0.1, 0.1, 0.1])
    assert ep == 3 and m["status"] == "pruned" and m["pruned_at"] == 3
    assert m["best_val_loss"] == 0.8 and m["monitor"] == "val_loss"
    tr, ds = tracker([0.5], monitor="val_loss")  # no warm-up: epoch 1 is checked
    ep, m = feed(tr, ds, losses=[0.6] * 6)
    assert ep == 1 and m["status"] == "pruned"
    # epoch 2 neither improves (patience 1 stops it) nor reaches the curve: pruned wins
    tr, ds = tracker([None, 0.9], early_stopping=True, patience=1)
    ep, m = feed(tr, ds, accs=[0.5, 0.5, 0.5])
    assert ep == 2 and m["status"] == "pruned" and not m["stopped_early"]


def test_prune_curve_is_validated():
    cfg = validate({"trainer": {"prune_curve": [None, 0.5, 1]}})
    assert cfg.trainer.prune_curve == [None, 0.5, 1]
    assert validate({}).trainer.prune_curve == []  # off
    with pytest.raises(ConfigError) as e:
        validate({"trainer": {"prune_curve": [0.5, "abc"]}})
    assert str(e.value) == "trainer.prune_curve[1]='abc': expected a number"
    with pytest.raises(ConfigError) as e:
        validate({"trainer": {"prune_curve": 0.5}})
    assert str(e.value) == "trainer.prune_curve=0.5: expected a list such as [1, 2]"
    with pytest.raises(ConfigError, match=r"^trainer.prune_curve: not with trainer.cv_folds=3"):
        validate({"trainer": {"prune_curve": [0.5], "cv_folds": 3}})
    # the YAML default composes (conf/trainer/default.yaml has the key)
    assert compose(["trainer.prune_curve=[null,0.5]"]).trainer.prune_curve == [None, 0.5]


def test_bad_prune_options_one_line_each():
    def check(**opts):
        with pytest.raises(SweepError) as e:
            Sweep(opts, [], config=None, hydra_context=None, launcher=None)._check_prune()
        return str(e.value)

    assert (
        check(kind="random", prune="foo")
        == "hydra.sweeper.prune=foo: unknown; choose one of median or null (off)"
    )
    assert check(kind="random", prune="median", prune_warmup_trials=-1) == (
        "hydra.sweeper.prune_warmup_trials=-1: expected an integer >= 0"
    )
    assert check(kind="hyperband", prune="median").startswith(
        "hydra.sweeper.prune=median: for the grid, random, coarse_to_fine and tpe sweepers"
    )
    Sweep({"kind": "grid"}, [], config=None, hydra_context=None, launcher=None)._check_prune()


# ---------------------------------------------------------------------------------------------
# a real sweep, its displays, and resume


def overrides_of(run: Path) -> list[str]:
    return yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text())


def curve_of(run: Path) -> list:
    line = next(o for o in overrides_of(run) if o.startswith("trainer.prune_curve="))
    return yaml.safe_load(line.split("=", 1)[1])


class Recorder:
    """A launcher that starts nothing: it records the jobs and overrides it was handed and
    answers None for each (a job not started, which stays pending)."""

    def __init__(self):
        self.launched = []

    def launch(self, job_overrides, initial_job_idx):
        self.launched += [(initial_job_idx + i, o) for i, o in enumerate(job_overrides)]
        return [None] * len(job_overrides)


def test_median_sweep_prunes_bad_trials_shows_them_and_resumes_from_disk(tmp_path):
    d = tmp_path / "sweep"
    # jobs 0-1 (lr 0.05, 0.1) are the warm-up; 2-3 (lr 1e-5, 2e-5) barely move from chance and
    # launch together with the median curve: a vmapped group whose members are pruned at 2
    p = subprocess.run(
        [sys.executable, "-m", "runner", "-m", "data=iris", "model.width=8", "trainer.epochs=4"]
        + ["trainer.progress=false", "trainer.plot=false", "optimizer.lr=0.05,0.1,1e-5,2e-5"]
        + ["hydra.sweeper.prune=median", "hydra.sweeper.prune_warmup_trials=2"]
        + ["hydra.sweeper.plot=false", f"hydra.sweep.dir={d}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert p.returncode == 0, p.stderr
    s = json.loads((d / "summary.json").read_text())
    rows = s["trials"]
    assert [r["status"] for r in rows] == ["completed", "completed", "pruned", "pruned"]
    assert [r["budget"] for r in rows] == [4, 4, 2, 2]
    assert [r.get("pruned_by") for r in rows] == [None, None, "median", "median"]
    assert s["counts"]["pruned"] == 2 and s["best"]["job"] in (0, 1)
    assert "4 trials: 2 completed, 2 pruned, 0 diverged, 0 failed" in p.stdout
    # the warm-up trials ran without a curve; the others got the medians of theirs, exactly
    assert not any(o.startswith("trainer.prune_curve") for o in overrides_of(d / "0"))
    medians = pruning.median_curve(
        [pruning.read_curve(d / str(j), "val_acc") for j in (0, 1)], warmup_epochs=1
    )
    assert len(medians) == 4 and medians[0] is None
    for j in (2, 3):
        assert curve_of(d / str(j)) == medians
        m = json.loads((d / str(j) / "metrics.json").read_text())
        assert m["pruned_at"] == 2 and m["best_val_acc"] < medians[1]
        assert len((d / str(j) / "curves.csv").read_text().splitlines()) == 1 + 2
    header, *lines = (d / "summary.csv").read_text().splitlines()
    cols = header.split(",")
    assert [ln.split(",")[cols.index("budget")] for ln in lines] == ["4", "4", "2", "2"]
    assert "trainer.prune_curve" not in (d / "best.yaml").read_text()

    code, out, _ = run_main(["compare", str(d)])
    assert code == 0 and "(2 completed, 2 pruned)" in out and "prune_curve" not in out
    code, out, err = run_main(["best", str(d)])
    assert code == 0 and "prune_curve" not in out
    assert "over 2 completed runs; not ranked: 2 pruned at 2 epochs)" in err

    # Resume: job 3 lost its metrics.json (killed); the pruned job 2 counts as done, and job 3's
    # medians are recomputed from the files of jobs 0-2 (the pruned one's 2 epochs included).
    (d / "3" / "metrics.json").unlink()
    launcher = Recorder()
    opts = {"resume": str(d), "progress": False, "plot": False}
    config = __import__("omegaconf").OmegaConf.create({"hydra": {"sweep": {"dir": ""}}})
    Sweep(opts, [], config=config, hydra_context=None, launcher=launcher).run()
    assert [job for job, _ in launcher.launched] == [3]
    again = pruning.median_curve(
        [pruning.read_curve(d / str(j), "val_acc") for j in (0, 1, 2)], warmup_epochs=1
    )
    assert again[1] != medians[1]  # job 2's epoch 2 moved the median
    assert pruning.override(again) in launcher.launched[0][1]
    s = json.loads((d / "summary.json").read_text())
    assert [r["status"] for r in s["trials"]] == ["completed", "completed", "pruned", "pending"]


@pytest.mark.skipif(
    __import__("importlib").util.find_spec("optuna") is None, reason="optuna not installed"
)
def test_tpe_is_told_a_pruned_trial_as_pruned_with_its_curve(tmp_path):
    """TPE ranks pruned trials by their intermediate values (so it learns to avoid them); a
    failed one teaches it nothing. Told as the sweep goes and when a resumed sweep adds them."""
    from runner import rundir
    from runner.sweep.space import TPE, parse_space

    space = parse_space(["optimizer.lr=tag(log,interval(1e-4,1e-1))"])
    tpe = TPE(space, seed=0, n_startup_trials=2)
    rows = [{"epoch": e, "val_loss": v} for e, v in ((1, 0.9), (2, 0.7))]
    rundir.write_rows(tmp_path / rundir.CURVES, rows, ["epoch", "val_loss"])
    pruned = {"status": "pruned", "objective": 0.7, "mode": "min", "monitor": "val_loss"}
    pruned["dir"] = str(tmp_path)
    failed = {"status": "failed", "objective": None, "mode": "min"}
    done = {"status": "completed", "objective": 0.5, "mode": "min", "monitor": "val_loss"}
    for row in (pruned, failed, done):
        trial, _ = tpe.ask()
        tpe.tell(trial, row)
    tpe.add({"optimizer.lr": 0.01}, pruned)
    state = tpe.optuna.trial.TrialState
    told = tpe.study.get_trials(deepcopy=False)
    assert [t.state for t in told] == [state.PRUNED, state.FAIL, state.COMPLETE, state.PRUNED]
    for t in (told[0], told[3]):  # min mode: the values negated, as the objective is
        assert t.intermediate_values == {1: -0.9, 2: -0.7}
    assert told[2].value == -0.5
