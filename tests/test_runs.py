"""In-process training runs: every option of every config group trains one short epoch on tiny
data and writes its outputs; plus the properties of the training loop itself."""

from __future__ import annotations

import json
import math

import pytest
from conftest import run_inprocess

from runner import app
from runner.core import train
from runner.help import conf_dir

GROUPS = [
    "data",
    "model",
    "activation",
    "init",
    "optimizer",
    "schedule",
    "regularization",
    "trainer",
    # experiment: tests/test_presets.py's test_preset_runs_one_short_epoch runs every preset
    # the same way (one epoch, the same checks): once is enough for ~1 minute of compiling
]


def _options():
    for group in GROUPS:
        for path in sorted((conf_dir() / group).glob("*.yaml")):
            yield group, path.stem


@pytest.mark.parametrize("group,option", list(_options()))
def test_every_option_trains_and_writes_outputs(group, option, user_files, tmp_path):
    extra = list(user_files.get(option, [])) if group == "data" else []
    if group == "data" and option in ("mnist", "fashion_mnist"):
        extra = list(user_files["idx"])
    cfg, result = run_inprocess([f"{group}={option}", *extra, "trainer.epochs=1"])
    assert result.status == "completed", result.metrics
    assert result.metrics["epochs_run"] == 1
    assert math.isfinite(result.history[0]["train_loss"])
    assert math.isfinite(result.metrics["test_loss"])
    app.write_run(tmp_path, result, plot=False)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "completed"
    assert (tmp_path / "curves.csv").read_text().splitlines()[0].startswith("epoch,step,lr,")


def test_training_loss_goes_down():
    # lr 3e-3: init=auto's small head starts the loss at ln C, and Adam's default 1e-3 leaves
    # the logits small for most of 8 short epochs
    _, r = run_inprocess(
        ["trainer.epochs=8", "data.max_samples=400", "model.width=32", "optimizer.lr=0.003"]
    )
    losses = [row["train_loss"] for row in r.history]
    assert losses[-1] < 0.5 * losses[0]
    assert r.metrics["best_val_acc"] > 0.6


def test_same_seed_same_metrics(tmp_path):
    runs = []
    for i in range(2):
        _, r = run_inprocess(["trainer.epochs=2", "regularization.dropout=0.2", "seed=5"])
        (tmp_path / str(i)).mkdir()
        app.write_run(tmp_path / str(i), r, plot=False)
        m = json.loads((tmp_path / str(i) / "metrics.json").read_text())
        runs.append({k: v for k, v in m.items() if not k.endswith("_time")})
    assert runs[0] == runs[1]
    assert (tmp_path / "0" / "curves.csv").read_text().split("\n")[1].split(",")[:8] == (
        tmp_path / "1" / "curves.csv"
    ).read_text().split("\n")[1].split(",")[:8]
    _, other = run_inprocess(["trainer.epochs=2", "regularization.dropout=0.2", "seed=6"])
    assert other.metrics["final_train_loss"] != runs[0]["final_train_loss"]


def test_runs_differing_only_in_numbers_compile_once():
    base = [
        "optimizer=momentum",
        "schedule=time_based",
        "activation=leaky_relu",
        "regularization.dropout=0.1",
        "regularization.clip_norm=1.0",
        "regularization.l2=1e-4",
    ]
    run_inprocess(base + ["optimizer.lr=0.01"])
    before = train.PROGRAMS.stats.compiles
    _, r = run_inprocess(
        base
        + [
            "optimizer.lr=0.05",
            "optimizer.momentum=0.5",
            "schedule.k=0.3",
            "activation.negative_slope=0.2",
            "regularization.dropout=0.3",
            "regularization.l2=1e-3",
            "regularization.weight_decay=1e-4",
            "regularization.clip_norm=2",
            "init=he_uniform",
            "seed=9",
        ]
    )
    assert train.PROGRAMS.stats.compiles == before + 1  # only init_state: a new initializer
    run_inprocess(base + ["optimizer.lr=0.2", "seed=3"])
    assert train.PROGRAMS.stats.compiles == before + 1
    assert r.status == "completed"
    # whether a penalty exists at all is structure (a zero one is left out of the program)
    run_inprocess(base + ["regularization.l2=0"])
    assert train.PROGRAMS.stats.compiles > before + 1


def test_diverged_run_is_recorded_not_crashed(tmp_path):
    _, r = run_inprocess(
        ["optimizer=sgd", "optimizer.lr=1e6", "trainer.epochs=5", "init=normal", "init.std=3"]
    )
    assert r.status == "diverged"
    assert r.metrics["diverged_epoch"] == len(r.history) <= 5
    app.write_run(tmp_path, r, plot=True)
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["status"] == "diverged"
    assert (tmp_path / "curves.png").stat().st_size > 0
    assert len((tmp_path / "curves.csv").read_text().strip().splitlines()) == len(r.history) + 1


def test_early_stopping_restores_best():
    _, r = run_inprocess(
        [
            "regularization=early_stopping",
            "regularization.patience=1",
            "regularization.min_delta=0.5",
            "trainer.epochs=10",
        ]
    )
    # min_delta 0.5 in accuracy can never be met after the first epoch: stop after 1 + patience
    assert r.metrics["stopped_early"] is True
    assert r.metrics["epochs_run"] == 2
    assert r.metrics["best_epoch"] == 1
    assert r.metrics["eval_weights"] == "best"


def test_batching_counts_iterations():
    _, keep = run_inprocess(
        [
            "trainer.batch_size=32",
            "data.max_samples=100",
            "data.val_fraction=0.2",
            "data.test_fraction=0.2",
        ]
    )
    assert keep.metrics["n_train"] == 60
    assert keep.metrics["steps_per_epoch"] == 2  # 32 + a partial batch of 28
    _, drop = run_inprocess(
        [
            "trainer.batch_size=32",
            "trainer.drop_last=true",
            "data.max_samples=100",
            "data.val_fraction=0.2",
            "data.test_fraction=0.2",
        ]
    )
    assert drop.metrics["steps_per_epoch"] == 1
    _, sgd = run_inprocess(["trainer.batch_size=1", "data.max_samples=40"])
    assert sgd.metrics["steps_per_epoch"] == sgd.metrics["n_train"]
    _, full = run_inprocess(["trainer.batch_size=full"])
    assert full.metrics["steps_per_epoch"] == 1
    assert full.metrics["batch_size"] == full.metrics["n_train"]


IRIS_SGD = ["optimizer=sgd", "trainer.epochs=4", "data=iris", "data.max_samples=150"]


def test_abort_when_loss_exceeds_3x_initial():
    _, r = run_inprocess(IRIS_SGD + ["optimizer.lr=4"])
    m = r.metrics
    assert r.status == "diverged" and m["diverged_epoch"] == 1
    assert r.history[0]["train_loss"] > 3 * m["initial_train_loss"]
    assert "> 3 x initial" in m["diverged_reason"]
    # the factor is configurable: lr=1.5 peaks at ~2.4x its initial loss (its largest step loss)
    _, ok = run_inprocess(IRIS_SGD + ["optimizer.lr=1.5"])
    assert ok.status == "completed"
    peak = max(h["max_step_loss"] for h in ok.history) / ok.metrics["initial_train_loss"]
    assert 2 < peak < 3
    _, strict = run_inprocess(IRIS_SGD + ["optimizer.lr=1.5", "trainer.abort_factor=2"])
    assert strict.status == "diverged" and "> 2 x initial" in strict.metrics["diverged_reason"]
    _, off = run_inprocess(IRIS_SGD + ["optimizer.lr=4", "trainer.abort_factor=0"])
    assert off.metrics["diverged_reason"] in (None, "non-finite loss")
    assert len(off.history) > 1 or off.metrics["diverged_reason"] == "non-finite loss"


def test_k_fold_cross_validation():
    from runner.app import folds
    from runner.data import load_dataset

    cfg, r = run_inprocess(
        ["data=iris", "data.max_samples=150", "trainer.cv_folds=3", "trainer.epochs=2"]
    )
    m = r.metrics
    assert m["cv_folds"] == 3 and len(m["cv_scores"]) == 3
    assert m["cv_mean"] == pytest.approx(sum(m["cv_scores"]) / 3)
    mean = m["cv_mean"]
    assert m["cv_std"] == pytest.approx((sum((s - mean) ** 2 for s in m["cv_scores"]) / 3) ** 0.5)
    assert r.objective == pytest.approx(mean)
    assert m["epochs_run"] == 6 and len(r.history) == 2
    ds = load_dataset(cfg.data)
    parts = folds(ds, 3, 0)
    vals = [tuple(map(tuple, f.x_val)) for f in parts]
    pooled = len(ds.x_train) + len(ds.x_val)
    assert sum(len(v) for v in vals) == pooled and len(set().union(*map(set, vals))) == pooled
    for f in parts:  # stratified: every class in every fold, in about equal numbers
        counts = [int((f.y_val == c).sum()) for c in range(3)]
        assert max(counts) - min(counts) <= 2
        assert len(f.x_train) + len(f.x_val) == pooled
