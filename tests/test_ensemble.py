"""runner ensemble: the top-k trials of a sweep, their saved best weights, averaged probabilities.
Copies of one trial ensemble to that trial; different members average as computed by hand."""

from __future__ import annotations

import json
import shutil

import jax
import numpy as np
import pytest
from conftest import TINY, compose, run_inprocess
from omegaconf import OmegaConf

from runner import app
from runner.checkpoint import load_params
from runner.config import validate
from runner.core.nn import build_model
from runner.core.spec import make_hparams, make_spec
from runner.data import load_dataset
from runner.tools.ensemble import combine, ensemble, main, member_predictions, score


def make_run(folder, overrides):
    """A run directory as a sweep job leaves it (metrics.json, best_params.npz, config.yaml)."""
    _, result = run_inprocess(overrides)
    folder.mkdir(parents=True)
    app.write_run(folder, result, plot=False)
    (folder / ".hydra").mkdir()
    OmegaConf.save(compose(TINY + list(overrides)), folder / ".hydra" / "config.yaml")
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("runs")
    return {
        "a": make_run(base / "a", ["trainer.epochs=3", "seed=0"]),
        "b": make_run(base / "b", ["trainer.epochs=3", "seed=1", "activation=tanh"]),
        "c": make_run(
            base / "c",
            ["trainer.epochs=3", "seed=2", "model.depth=1", "regularization.batchnorm=true"],
        ),
        "other_split": make_run(base / "d", ["trainer.epochs=1", "data.split_seed=1"]),
        "regression": make_run(base / "r", ["trainer.epochs=2", "data=diabetes"]),
    }


def sweep_of(tmp_path, *dirs):
    sweep = tmp_path / "sweep"
    for i, d in enumerate(dirs):
        shutil.copytree(d, sweep / str(i))
    return sweep


def by_hand(run_dir, split="test"):
    """Softmax probabilities of a run's best weights, computed directly."""
    cfg = validate(OmegaConf.load(run_dir / ".hydra" / "config.yaml"))
    ds = load_dataset(cfg.data)
    spec = make_spec(cfg, ds)
    model = build_model(spec.model, make_hparams(cfg, spec))
    params, stats = load_params(run_dir / "best_params.npz")
    variables = {"params": params, **({"batch_stats": stats} if spec.model.batchnorm else {})}
    out = model.apply(variables, getattr(ds, f"x_{split}"), train=False)
    return np.asarray(jax.nn.softmax(out, axis=-1), np.float64), getattr(ds, f"y_{split}")


@pytest.mark.parametrize("which", ["a", "regression"])
def test_copies_of_one_trial_ensemble_to_that_trial(runs, tmp_path, which):
    sweep = sweep_of(tmp_path, *[runs[which]] * 3)
    r = ensemble([sweep], top=3)
    assert len(r.members) == 3
    assert r.ensemble_metric == pytest.approx(r.best_single.metric, abs=1e-12)
    assert r.ensemble_loss == pytest.approx(r.best_single.loss, rel=1e-9)
    assert r.improvement == pytest.approx(0, abs=1e-12)
    pred, y, head = member_predictions(r.members[0].trial)
    np.testing.assert_allclose(combine([pred] * 3, head), pred, rtol=1e-12)
    m = json.loads((runs[which] / "metrics.json").read_text())
    if m["eval_weights"] == "best" or m["best_epoch"] == m["epochs_run"]:
        # the run evaluated these same weights at the end of training (in float32)
        assert r.best_single.metric == pytest.approx(m[f"test_{r.metric_name}"], rel=1e-4)


def test_different_members_average_their_probabilities(runs, tmp_path):
    sweep = sweep_of(tmp_path, runs["a"], runs["b"], runs["c"])
    r = ensemble([sweep], top=3)
    hand = [by_hand(runs[k]) for k in "abc"]
    y = hand[0][1]
    mean = np.mean([p for p, _ in hand], axis=0)
    assert r.ensemble_metric == pytest.approx(float(np.mean(mean.argmax(-1) == y)))
    assert r.ensemble_loss == pytest.approx(
        float(-np.mean(np.log(mean[np.arange(len(y)), y]))), rel=1e-5
    )
    # each member's number is its own probabilities' accuracy; ranks follow best_val_acc
    own = {k: float(np.mean(p.argmax(-1) == y)) for k, (p, _) in zip("abc", hand)}
    assert sorted(mb.metric for mb in r.members) == pytest.approx(sorted(own.values()))
    vals = [json.loads((runs[k] / "metrics.json").read_text())["best_val_acc"] for k in "abc"]
    assert [mb.score for mb in r.members] == sorted(vals, reverse=True)
    # top 2: the two best by validation accuracy, averaged
    r2 = ensemble([sweep], top=2)
    names = {mb.trial.name for mb in r2.members}
    assert len(names) == 2 and r2.n_trials == 3
    pred = combine([member_predictions(mb.trial)[0] for mb in r2.members], "softmax")
    assert r2.ensemble_metric == pytest.approx(score(pred, y, "softmax")[0])


def test_command_line_writes_ensemble_json(runs, tmp_path, capsys):
    sweep = sweep_of(tmp_path, runs["a"], runs["b"], runs["c"])
    (sweep / "3").mkdir()  # an unfinished trial is skipped
    (sweep / "3" / "metrics.json").write_text('{"status": "running"}')
    assert main(["ensemble", str(sweep), "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert "ensemble (2)" in out and "best single trial" in out and "skipped" in out
    data = json.loads((sweep / "ensemble.json").read_text())
    assert data["top"] == 2 and len(data["members"]) == 2 and data["rank_by"] == "best_val_acc"
    assert data["skipped"] == {"status running": 1}
    assert set(data["ensemble"]) == {"test_acc", "test_loss"}
    assert data["improvement"] == pytest.approx(
        data["ensemble"]["test_acc"] - data["best_single"]["test_acc"]
    )
    assert (
        main(
            [
                "ensemble",
                str(sweep),
                "--top",
                "9",
                "--metric",
                "val_loss",
                "--split",
                "val",
                "--out",
                "-",
                "--json",
            ]
        )
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert data["rank_by"] == "best_val_loss" and data["mode"] == "min" and data["top"] == 3
    losses = [m["best_val_loss"] for m in data["members"]]
    assert losses == sorted(losses) and set(data["ensemble"]) == {"val_acc", "val_loss"}


def test_bad_input_is_one_line(runs, tmp_path, capsys):
    mixed = sweep_of(tmp_path, runs["a"], runs["other_split"])
    empty = tmp_path / "empty"
    empty.mkdir()
    for argv, start in (
        (
            [str(mixed), "--top", "2"],
            "runner: error: 1: data.split_seed=1 but 0 has data.split_seed=0",
        ),
        ([str(empty)], "runner: error: "),
        ([str(tmp_path / "missing")], "runner: error: "),
        ([str(mixed), "--top", "0"], "runner: error: --top 0"),
        ([str(mixed), "--metric", "nope"], "runner: error: --metric nope"),
        ([str(mixed), "--bogus"], "runner: error: runner ensemble: unrecognized"),
    ):
        assert main(["ensemble", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith(start) and err.count("\n") == 1, err
    # the top 1 alone needs no shared split
    assert main(["ensemble", str(mixed), "--top", "1", "--out", "-"]) == 0


def test_damaged_files_are_named_or_skipped(runs, tmp_path, capsys):
    sweep = sweep_of(tmp_path, runs["a"], runs["b"], runs["c"])
    bad = sweep / "2" / "metrics.json"
    bad.write_bytes(b"\xff" + bad.read_bytes()[1:])  # not UTF-8: skipped, counted
    npz = sweep / "0" / "best_params.npz"
    npz.write_bytes(b"not a zip" + npz.read_bytes()[9:])
    assert main(["ensemble", str(sweep), "--top", "2", "--out", "-"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith(f"runner: error: {npz}: damaged, not a parameter file")
        and err.count("\n") == 1
    ), err
    npz.unlink()  # no weights at all: skipped too
    assert main(["ensemble", str(sweep), "--top", "2", "--out", "-", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["skipped"] == {"unreadable metrics.json": 1, "no best_params.npz": 1}
    assert [m["trial"] for m in data["members"]] == ["1"]


def test_members_are_evaluated_by_the_cores_compiled_forward_pass(runs):
    """member_predictions runs runner.core.train.forward through the process's program cache:
    a second evaluation of the same structure compiles nothing; the outputs are the core's."""
    from runner.core import train
    from runner.tools import ensemble as ens

    assert not hasattr(ens, "EVAL_CHUNK")  # the core's chunking, not a second one
    trial = ens.find_trials([runs["a"]])[0][0]
    member_predictions(trial, "val")
    stats = train.PROGRAMS.stats
    compiles, hits = stats.compiles, stats.hits
    pred, y, head = member_predictions(trial, "val")
    assert (stats.compiles, stats.hits) == (compiles, hits + 1)
    cfg = validate(OmegaConf.load(runs["a"] / ".hydra" / "config.yaml"))
    ds = load_dataset(cfg.data)
    spec = make_spec(cfg, ds)
    params, batch_stats = load_params(runs["a"] / "best_params.npz")
    hp = {k: jax.numpy.asarray(v) for k, v in make_hparams(cfg, spec).items()}
    out = train.forward(spec, params, batch_stats, jax.numpy.asarray(ds.x_val), hp)
    np.testing.assert_allclose(
        pred, jax.nn.softmax(np.asarray(out, np.float64), axis=-1), rtol=1e-5, atol=1e-7
    )
    assert head == "softmax" and np.array_equal(y, ds.y_val)
