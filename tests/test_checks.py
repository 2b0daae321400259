"""The notes' checks, made exact: the initial loss ~ln C, the 3x abort (per step and on the
validation loss), early stopping's patience and ties, and the learning rate a curve row names."""

from __future__ import annotations

import csv
import functools
import json
import math
from types import SimpleNamespace

import pytest
from conftest import compose, run_inprocess

from runner import app
from runner.config import validate
from runner.tracker import INITIAL_LOSS_TOLERANCE, Tracker, Warnings, check_initial_loss

LN10 = math.log(10)


# ---------------------------------------------------------------------------------------------
# Initial loss


def _initial_loss(overrides) -> float:
    """The untrained model's training loss of the default run (digits, 2x128 relu MLP)."""
    import jax

    from runner.core import train
    from runner.data import load_dataset
    from runner.datasets import cache_in

    cfg = validate(compose(list(overrides)))
    with cache_in(cfg.paths):
        ds = load_dataset(cfg.data)
    spec, hp, data = app.prepare(cfg, ds)
    key = jax.random.PRNGKey(cfg.seed)
    # the programs runner.app.fit compiles (init.head_scale is a number: one program for both)
    init, _ = train.PROGRAMS.get(train.init_state, spec, hp, key, data)
    state = init(hp, key, data)
    evaluate, _ = train.PROGRAMS.get(train.evaluate_splits, spec, state, data, hp)
    return float(evaluate(state, data, hp)["train_loss"])


def test_default_initial_loss_is_near_ln_c():
    loss = _initial_loss([])  # measured 2.342 for ln 10 = 2.303
    assert abs(loss - LN10) <= INITIAL_LOSS_TOLERANCE * LN10
    assert abs(loss - LN10) < 0.05 * LN10
    # the head at full He scale (what the default was) starts at 3.36, outside the band
    assert _initial_loss(["init.head_scale=1"]) > (1 + INITIAL_LOSS_TOLERANCE) * LN10


def _spec(head="softmax", n_out=10):
    return SimpleNamespace(model=SimpleNamespace(head=head, n_out=n_out), steps_per_epoch=1)


@pytest.mark.parametrize(
    ("head", "n_out", "loss", "warns"),
    [
        ("softmax", 10, 1.19 * LN10, False),
        ("softmax", 10, 1.21 * LN10, True),
        ("softmax", 10, 0.81 * LN10, False),
        ("softmax", 10, 0.79 * LN10, True),
        ("softmax", 10, 3.355, True),  # the old default's initial loss: 1.46 x ln 10
        ("sigmoid", 1, 1.1 * math.log(2), False),
        ("sigmoid", 1, 1.3 * math.log(2), True),
        ("linear", 1, 100.0, False),  # regression: no expected value
    ],
)
def test_initial_loss_warning_band(head, n_out, loss, warns):
    got = []
    check_initial_loss(_spec(head, n_out), {"train_loss": loss}, got.append)
    assert bool(got) is warns
    if warns:
        expected = math.log(n_out if head == "softmax" else 2)
        assert got[0].startswith(f"initial loss {loss:.3g} is {loss / expected:.2f}x the expected")


# ---------------------------------------------------------------------------------------------
# Tracker.update on constructed epoch metrics


@functools.cache
def _cfg(*overrides):
    return validate(compose(["trainer.epochs=50", *overrides]))


def _tracker(*overrides, initial=(2.3, 2.3), n_val=30):
    cfg = _cfg(*overrides)
    ds = SimpleNamespace(x_val=[0] * n_val, name="digits")
    init = {"train_loss": initial[0], "val_loss": initial[1]}
    return Tracker(cfg, _spec(), ds, init, [], Warnings())


def _m(train_loss=1.0, val_loss=1.0, val_acc=0.5, step=None):
    return {
        "lr": 0.1,
        "lr_next": 0.1,
        "train_loss": train_loss,
        "train_metric": 0.5,
        "val_loss": val_loss,
        "val_metric": val_acc,
        "max_step_loss": train_loss if step is None else step,
        "grad_norm": 1.0,
    }


@pytest.mark.parametrize(
    ("metrics", "reason"),
    [
        # epoch mean 2.0 < 6.9, but one step at 8.0: the per-step check fires alone
        (_m(train_loss=2.0, step=8.0), "step training loss 8 > 3 x initial 2.3"),
        # training fine, validation loss at 5x its start: the validation check fires alone
        (_m(val_loss=11.5), "validation loss 11.5 > 3 x initial 2.3"),
        (
            _m(train_loss=7.0, step=9.0),
            "training loss 7 > 3 x initial 2.3; step training loss 9 > 3 x initial 2.3",
        ),
        (_m(val_loss=math.inf), "non-finite validation loss"),
        (_m(train_loss=math.nan), "non-finite loss"),
        (_m(train_loss=6.8, val_loss=6.8, step=6.8), None),  # under 3 x 2.3 = 6.9
    ],
)
def test_abort_checks_step_and_validation_losses(metrics, reason):
    t = _tracker()
    _, _, done = t.update(1, metrics, 0.0)
    assert t.reason == reason
    assert done is (reason is not None)
    assert t.status == ("diverged" if reason else "completed")


def test_abort_factor_zero_and_no_validation_split():
    off = _tracker("trainer.abort_factor=0")
    assert off.update(1, _m(train_loss=50.0, step=500.0, val_loss=50.0), 0.0)[2] is False
    no_val = _tracker(n_val=0)
    assert no_val.update(1, _m(val_loss=math.nan), 0.0)[2] is False  # NaN: no split to score


def _es(*overrides):
    return _tracker("regularization=early_stopping", *overrides)


def test_patience_stops_after_exactly_patience_epochs_without_improvement():
    t = _es("regularization.patience=3")
    seq = [0.5, 0.6, 0.55, 0.58, 0.59, 0.7]  # best at epoch 2, then 3 epochs without gain
    done_at = None
    for ep, acc in enumerate(seq, 1):
        _, improved, done = t.update(ep, _m(val_acc=acc, val_loss=1.0), 0.0)
        assert improved is (ep <= 2)
        if done:
            done_at = ep
            break
    assert done_at == 5 and t.stopped_early and t.best_epoch == 2


@pytest.mark.parametrize("patience", [0, 1])
def test_patience_zero_and_one_stop_at_the_first_epoch_without_improvement(patience):
    t = _es(f"regularization.patience={patience}")
    assert t.update(1, _m(val_acc=0.5), 0.0)[2] is False
    assert t.update(2, _m(val_acc=0.4), 0.0)[2] is True


def test_val_acc_tie_is_broken_by_the_validation_loss():
    t = _es("regularization.patience=2")
    t.update(1, _m(val_acc=0.6, val_loss=1.0), 0.0)
    _, improved, _ = t.update(2, _m(val_acc=0.6, val_loss=0.8), 0.0)  # tie, lower loss
    assert improved and t.best_epoch == 2 and t.since_best == 0
    _, improved, _ = t.update(3, _m(val_acc=0.6, val_loss=0.9), 0.0)  # tie, higher loss
    assert not improved and t.best_epoch == 2
    _, improved, _ = t.update(4, _m(val_acc=0.6, val_loss=0.8), 0.0)  # equal loss: no
    assert not improved and t.best_epoch == 2 and t.stopped_early  # 2 epochs without
    # with min_delta > 0 only a gain over min_delta in val_acc counts
    strict = _es("regularization.min_delta=0.01")
    strict.update(1, _m(val_acc=0.6, val_loss=1.0), 0.0)
    assert strict.update(2, _m(val_acc=0.6, val_loss=0.5), 0.0)[1] is False


def test_bookkeeping_round_trip_decides_as_the_uninterrupted_tracker():
    seq = [(0.5, 1.0), (0.6, 0.9), (0.6, 0.8), (0.55, 0.85), (0.6, 0.8), (0.6, 0.79)]
    whole = _es("regularization.patience=2")
    first = _es("regularization.patience=2")
    for ep, (acc, loss) in enumerate(seq[:3], 1):
        first.update(ep, _m(val_acc=acc, val_loss=loss), 0.0)
    resumed = _es("regularization.patience=2")
    resumed.load(json.loads(json.dumps(first.bookkeeping())))
    out_whole, out_resumed = [], []
    for ep, (acc, loss) in enumerate(seq, 1):
        r = whole.update(ep, _m(val_acc=acc, val_loss=loss), 0.0)[1:]
        if ep > 3:
            out_whole.append(r)
            out_resumed.append(resumed.update(ep, _m(val_acc=acc, val_loss=loss), 0.0)[1:])
        if r[1]:
            break
    # epoch 3 (a tie in val_acc, lower loss) is the best; epochs 4 and 5 do not improve on it
    assert out_resumed == out_whole == [(False, False), (False, True)]
    assert resumed.best_epoch == whole.best_epoch == 3


# ---------------------------------------------------------------------------------------------
# A real run: the per-step and validation checks fire where the epoch mean would not


def test_real_run_diverges_on_step_and_validation_loss_not_epoch_mean():
    _, r = run_inprocess(
        [
            "optimizer=sgd",
            "optimizer.lr=2",
            "trainer.epochs=4",
            "trainer.diagnostics=false",
            "data=iris",
            "data.max_samples=150",
        ]
    )
    m, h = r.metrics, r.history[0]
    assert r.status == "diverged" and m["diverged_epoch"] == 1
    assert h["train_loss"] < 3 * m["initial_train_loss"]  # the old check alone: no abort
    assert h["max_step_loss"] > 3 * m["initial_train_loss"]
    assert h["val_loss"] > 3 * m["initial_val_loss"]
    assert m["diverged_reason"] == (
        f"step training loss {h['max_step_loss']:.4g} > 3 x initial "
        f"{m['initial_train_loss']:.4g}; validation loss {h['val_loss']:.4g} > 3 x initial "
        f"{m['initial_val_loss']:.4g}"
    )


# ---------------------------------------------------------------------------------------------
# The learning rate of a curve row: lr (used in the epoch) and lr_next (after it)


def test_time_based_and_step_decay_columns_match_the_notes_table(tmp_path):
    sgd = ["optimizer=sgd", "optimizer.lr=0.2", "trainer.epochs=4", "trainer.diagnostics=false"]
    _, tb = run_inprocess([*sgd, "schedule=time_based", "schedule.k=1"])
    # the notes' table (lr0 0.2, decay_rate 1): epoch 1 -> 0.1, 2 -> 0.067, 3 -> 0.05, 4 -> 0.04
    assert [h["lr_next"] for h in tb.history] == pytest.approx([0.1, 0.2 / 3, 0.05, 0.04])
    assert [h["lr"] for h in tb.history] == pytest.approx([0.2 / (1 + e) for e in range(4)])
    app.write_run(tmp_path, tb, plot=False)
    with open(tmp_path / "curves.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["lr_next"]) for r in rows] == pytest.approx([0.1, 0.0666667, 0.05, 0.04])
    assert [float(r["lr"]) for r in rows] == pytest.approx([0.2, 0.1, 0.0666667, 0.05])
    # step decay, lr0 * factor ** floor(epochs done / every), on the same clock: epoch e's lr
    # after e - 1 epochs' updates, its lr_next after e epochs' (the schedule alone: a run would
    # compile another epoch program for the same two lines of train_epoch)
    from runner.core.schedules import learning_rate
    from runner.core.spec import SchedSpec

    spe = tb.metrics["steps_per_epoch"]
    spec = SchedSpec("step", "epoch", True, "", "", 0, spe, 4 * spe, False)
    hp = {"lr": 0.2, "factor": 0.5, "every": 2.0}
    lr = [float(learning_rate((e - 1) * spe, spec, hp)) for e in range(1, 5)]
    lr_next = [float(learning_rate(e * spe, spec, hp)) for e in range(1, 5)]
    assert lr == pytest.approx([0.2, 0.2, 0.1, 0.1])
    assert lr_next == pytest.approx([0.2, 0.1, 0.1, 0.05])
