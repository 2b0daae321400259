"""`runner compare` / `runner best` / `runner plot` on run directories built on disk with the
files the runner writes (.hydra/config.yaml and overrides.yaml as Hydra dumps them, metrics.json
and curves.csv through runner.rundir): table contents, sorting, filtering, grouping, export
formats parsed back, diff, best, half-written runs and bad input."""

from __future__ import annotations

import csv
import io
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import run_main
from omegaconf import OmegaConf

from runner import rundir
from runner.compare.render import sparkline
from runner.fastyaml import parse_config

BASE = {
    "optimizer,lr": {
        ("sgd", 0.01): 0.70,
        ("sgd", 0.1): 0.85,
        ("adam", 0.01): 0.90,
        ("adam", 0.1): 0.80,
    }
}


def config(optimizer="adam", lr=0.01, seed=0, width=128, epochs=5):
    opt = {"name": optimizer, "lr": lr}
    if optimizer == "adam":
        opt.update(b1=0.9, b2=0.999, eps=1e-08)
    return {
        "data": {"name": "iris", "task": "auto", "val_fraction": 0.15, "max_samples": None},
        "model": {"name": "mlp", "depth": 2, "width": width, "widths": None},
        "activation": {"name": "relu"},
        "optimizer": opt,
        "regularization": {
            "l2": 0.0,
            "dropout": 0.0,
            "batchnorm_eps": 1e-05,
            "clip_norm": None,
            "early_stopping": False,
        },
        "trainer": {"epochs": epochs, "batch_size": 64, "monitor": "auto"},
        "seed": seed,
        "name": "run",
    }


def curve_rows(acc: float, epochs: int) -> list[dict]:
    rows = []
    for ep in range(1, epochs + 1):
        a = acc * ep / epochs
        rows.append(
            {
                "epoch": ep,
                "step": 2 * ep,
                "lr": 0.01,
                "train_loss": 1.0 - a + 0.05,
                "train_acc": a + 0.01,
                "val_loss": 1.0 - a,
                "val_acc": a,
                "grad_norm": 1.0,
                "time": 0.01 * ep,
            }
        )
    return rows


def metrics_for(acc: float, epochs: int, wall: float) -> dict:
    return {
        "status": "completed",
        "task": "classification",
        "metric": "acc",
        "monitor": "val_acc",
        "mode": "max",
        "epochs": epochs,
        "epochs_run": epochs,
        "iterations": 2 * epochs,
        "steps_per_epoch": 2,
        "batch_size": 64,
        "n_train": 106,
        "n_val": 22,
        "n_test": 22,
        "best_epoch": epochs,
        "stopped_early": False,
        "diverged_epoch": None,
        "best_val_acc": acc,
        "best_val_loss": 1.0 - acc,
        "best_train_loss": 1.05 - acc,
        "best_train_acc": acc + 0.01,
        "final_train_loss": 1.05 - acc,
        "final_train_acc": acc + 0.01,
        "final_val_loss": 1.0 - acc,
        "final_val_acc": acc,
        "test_loss": 1.02 - acc,
        "test_acc": acc - 0.02,
        "eval_weights": "final",
        "params": 17539,
        "wall_time": wall,
        "train_time": wall / 2,
        "compile_time": wall / 2,
    }


def make_run(
    run_dir: Path,
    cfg: dict,
    overrides: list[str],
    metrics: dict | None = None,
    curves: list[dict] | None = None,
) -> Path:
    """The files a run leaves, written the way Hydra and runner.rundir write them."""
    hydra = run_dir / ".hydra"
    hydra.mkdir(parents=True)
    (hydra / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(cfg)))
    (hydra / "overrides.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(overrides)))
    (hydra / "hydra.yaml").write_text("hydra:\n  mode: MULTIRUN\n")
    if curves is not None:
        rundir.write_curves(run_dir / "curves.csv", curves, "acc")
    if metrics is not None:
        rundir.write_json(run_dir / "metrics.json", metrics)
    return run_dir


def expected_acc(opt, lr, seed):
    return BASE["optimizer,lr"][(opt, lr)] + 0.01 * seed


@pytest.fixture
def sweep(tmp_path):
    """outputs/multirun/DATE/TIME/{0..7}: optimizer sgd,adam x lr 0.01,0.1 x seed 0,1."""
    root = tmp_path / "outputs" / "multirun" / "2026-01-01" / "10-00-00"
    jobs = {}
    n = 0
    for opt in ("sgd", "adam"):
        for lr in (0.01, 0.1):
            for seed in (0, 1):
                acc = expected_acc(opt, lr, seed)
                make_run(
                    root / str(n),
                    config(opt, lr, seed),
                    [f"optimizer={opt}", f"optimizer.lr={lr}", f"seed={seed}"],
                    metrics_for(acc, 5, 1.0 + n),
                    curve_rows(acc, 5),
                )
                jobs[str(n)] = (opt, lr, seed, acc)
                n += 1
    (root / "multirun.yaml").write_text("hydra:\n  mode: MULTIRUN\n")
    return tmp_path, root, jobs


def as_csv(args, cwd=None) -> list[dict]:
    code, out, err = run_main(["compare", *args, "--format", "csv"], cwd)
    assert code == 0, err
    return list(csv.DictReader(io.StringIO(out)))


def ids(rows):
    return [r["id"] for r in rows]


# --- table contents ------------------------------------------------------------------------


def test_default_sort_is_the_monitor_descending(sweep):
    tmp, root, jobs = sweep
    rows = as_csv([], cwd=tmp)  # default PATH: outputs/
    want = sorted(jobs, key=lambda j: -jobs[j][3])
    assert [r["id"].rsplit("/", 1)[-1] for r in rows] == want
    assert float(rows[0]["best_val_acc"]) == pytest.approx(0.91)
    assert rows[0]["status"] == "completed"


def test_ids_are_relative_to_the_folder_holding_all_runs(sweep):
    tmp, root, jobs = sweep
    assert sorted(ids(as_csv([str(root)]))) == sorted(jobs)
    assert ids(as_csv([str(root / "3")])) == ["3"]
    make_run(
        tmp / "outputs" / "2026-01-01" / "09-00-00",
        config(),
        [],
        metrics_for(0.5, 5, 1.0),
        curve_rows(0.5, 5),
    )
    got = sorted(ids(as_csv([str(tmp / "outputs")])))
    assert got == ["2026-01-01/09-00-00"] + [
        f"multirun/2026-01-01/10-00-00/{j}" for j in sorted(jobs)
    ]
    # an id names the run for --diff (like a path suffix)
    code, out, err = run_main(
        ["compare", "--diff", "09-00-00", "10-00-00/5", "--format", "csv"], cwd=tmp
    )
    assert code == 0, err


def test_sort_keys_directions_and_top(sweep):
    tmp, root, jobs = sweep
    accs = [float(r["best_val_acc"]) for r in as_csv([str(root), "--sort", "val_acc:asc"])]
    assert accs == sorted(accs)
    losses = [float(r["best_val_loss"]) for r in as_csv([str(root), "--sort", "val_loss"])]
    assert losses == sorted(losses)  # loss: ascending by default
    rows = as_csv([str(root), "--sort", "optimizer,seed:desc,lr"])
    assert [(r["optimizer"], r["seed"], r["optimizer.lr"]) for r in rows] == [
        ("adam", "1", "0.01"),
        ("adam", "1", "0.1"),
        ("adam", "0", "0.01"),
        ("adam", "0", "0.1"),
        ("sgd", "1", "0.01"),
        ("sgd", "1", "0.1"),
        ("sgd", "0", "0.01"),
        ("sgd", "0", "0.1"),
    ]
    top = as_csv([str(root), "--top", "3", "--sort", "wall_time"])
    assert ids(top) == ["0", "1", "2"]
    assert "wall_time" in top[0]


@pytest.mark.parametrize(
    "expr,want",
    [
        ("optimizer=adam", {"4", "5", "6", "7"}),
        ("optimizer.name=adam and optimizer.lr<0.05", {"4", "5"}),
        ("optimizer=adam and lr<1e-1", {"4", "5"}),
        ("lr=1e-2", {"0", "1", "4", "5"}),
        ("optimizer.lr>=0.1 or seed=1", {"1", "2", "3", "5", "6", "7"}),
        ("not optimizer=adam and seed!=0", {"1", "3"}),
        ("(optimizer=sgd or lr>0.05) and not (seed=0)", {"1", "3", "7"}),
        ("status=completed and best_val_acc>0.85", {"3", "4", "5"}),
        ("val_acc<0.71 OR test_acc>0.889", {"0", "5"}),
        ("val_acc<=0.71", {"0", "1"}),
        ("id~'^[67]$' and optimizer!~sg", {"6", "7"}),
        (
            "optimizer = 'adam' and model.widths=null and regularization.early_stopping=false",
            {"4", "5", "6", "7"},
        ),
    ],
)
def test_where(sweep, expr, want):
    tmp, root, jobs = sweep
    assert set(ids(as_csv([str(root), "--where", expr]))) == want


def test_group_by_mean_std_and_count(sweep):
    tmp, root, jobs = sweep
    code, out, err = run_main(
        ["compare", str(root), "--group-by", "optimizer,optimizer.lr", "--format", "json"]
    )
    assert code == 0, err
    groups = json.loads(out)
    assert len(groups) == 4
    for g in groups:
        accs = [
            a for (o, lr, s, a) in jobs.values() if o == g["optimizer"] and lr == g["optimizer.lr"]
        ]
        assert g["n"] == 2
        assert g["best_val_acc_mean"] == pytest.approx(statistics.mean(accs))
        assert g["best_val_acc_std"] == pytest.approx(statistics.stdev(accs))
        assert g["test_acc_mean"] == pytest.approx(statistics.mean(accs) - 0.02)
        assert "seed" not in g
    assert [(g["optimizer"], g["optimizer.lr"]) for g in groups] == [
        ("adam", 0.01),
        ("sgd", 0.1),
        ("adam", 0.1),
        ("sgd", 0.01),
    ]  # by mean best_val_acc
    code, out, _ = run_main(["compare", str(root), "--group-by", "optimizer"])
    assert code == 0
    sgd = [a for (o, lr, s, a) in jobs.values() if o == "sgd"]
    row = next(line for line in out.splitlines() if line.startswith("sgd "))
    assert f"{statistics.mean(sgd):.4f} ± {statistics.stdev(sgd):.4f}" in row
    assert row.split()[1] == "4"
    assert "mean ± std (n-1) over optimizer.lr, seed" in out
    recs = json.loads(
        run_main(
            [
                "compare",
                str(root),
                "--group-by",
                "optimizer",
                "--keep",
                "^seed$",
                "--keep",
                "^data$",
                "--format",
                "json",
            ]
        )[1]
    )
    assert [(g["seed"], g["data"]) for g in recs] == [("*", "iris"), ("*", "iris")]


def test_only_changed_settings_by_default_and_all_keep_drop(sweep):
    tmp, root, jobs = sweep
    header = list(as_csv([str(root)])[0])
    assert header[:5] == ["id", "status", "optimizer", "optimizer.lr", "seed"]
    assert "data" not in header and "model.width" not in header
    assert "optimizer.b1" not in header  # adam-only key, the same wherever it exists
    assert {
        "best_val_acc",
        "final_val_acc",
        "test_acc",
        "best_val_loss",
        "best_epoch",
        "epochs_run",
        "wall_time",
    } <= set(header)
    full = list(as_csv([str(root), "--all"])[0])
    assert {"data", "model.width", "trainer.batch_size", "optimizer.b1", "name"} <= set(full)
    kept = list(as_csv([str(root), "--keep", "^model\\.width$", "--keep", "compile"])[0])
    assert "model.width" in kept and "compile_time" in kept
    dropped = list(as_csv([str(root), "--drop", "seed", "--drop", "wall"])[0])
    assert "seed" not in dropped and "wall_time" not in dropped and "optimizer" in dropped
    # the table shows the same columns; the caption says how many settings are hidden
    code, out, _ = run_main(["compare", str(root)])
    assert out.splitlines()[0].split()[:5] == ["id", "status", "optimizer", "optimizer.lr", "seed"]
    assert "settings equal in all rows hidden (--all shows them)" in out
    code, out, _ = run_main(["compare", str(root), "--drop", "curve"])
    assert "curve" not in out.splitlines()[0]


def test_changed_columns_follow_the_rows_shown(sweep):
    tmp, root, jobs = sweep
    header = list(as_csv([str(root), "--where", "optimizer=adam and seed=0"])[0])
    assert "optimizer.lr" in header and "optimizer" not in header and "seed" not in header


def test_table_has_sparklines_and_marks(sweep):
    tmp, root, jobs = sweep
    code, out, err = run_main(["compare", str(root)])
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split()[-1] == "curve" and set(lines[1]) == {"─"}
    row = next(line for line in lines if line.startswith("5 "))
    assert row.split()[-1] == sparkline([0.91 * e / 5 for e in range(1, 6)]) == "▁▃▅▆█"
    assert "8 runs (8 completed); sorted by best_val_acc desc" in out
    assert all(line == line.rstrip() for line in lines)


def test_sparkline():
    assert sparkline([1, 2, 3, 4, 5, 6, 7, 8]) == "▁▂▃▄▅▆▇█"
    assert sparkline([0.5, float("nan"), 0.5]) == "▄ ▄"
    assert len(sparkline(list(range(100)))) == 16
    assert sparkline([]) == ""


def test_regression_runs_next_to_classification(sweep):
    tmp, root, jobs = sweep
    m = metrics_for(0.0, 5, 1.0)
    m = {k.replace("_acc", "_rmse"): v for k, v in m.items()}
    m.update(
        metric="rmse",
        monitor="val_loss",
        mode="min",
        best_val_rmse=12.5,
        best_val_loss=150.0,
        test_rmse=13.0,
    )
    rows = [{k.replace("_acc", "_rmse"): v for k, v in r.items()} for r in curve_rows(0.5, 5)]
    run = make_run(root / "8", dict(config(), data={"name": "diabetes"}), ["data=diabetes"], m)
    rundir.write_curves(run / "curves.csv", rows, "rmse")
    recs = json.loads(run_main(["compare", str(root), "--format", "json"])[1])
    assert recs[0]["best_val_acc"] == pytest.approx(0.91)  # the most common monitor sorts
    assert recs[-1]["id"] == "8" and recs[-1]["best_val_rmse"] == 12.5
    assert recs[-1]["best_val_acc"] is None and recs[0]["best_val_rmse"] is None
    assert recs[-1]["data"] == "diabetes"
    recs = json.loads(run_main(["compare", str(root), "--format", "json", "--sort", "rmse"])[1])
    assert recs[0]["id"] == "8"
    code, out, err = run_main(["compare", str(root), "--where", "data=diabetes"])
    assert code == 0 and "best_val_rmse" in out and "best_val_acc" not in out


# --- export formats ------------------------------------------------------------------------


def test_formats_parse_back(sweep):
    tmp, root, jobs = sweep
    code, out, _ = run_main(["compare", str(root), "--format", "json"])
    recs = json.loads(out)
    assert len(recs) == 8 and isinstance(recs[0]["best_val_acc"], float)
    assert recs[0]["optimizer.lr"] == 0.01 and recs[0]["seed"] == 1  # raw types
    assert recs[0]["best_val_acc"] == pytest.approx(0.91)  # full precision
    rows = as_csv([str(root)])
    assert [r["id"] for r in rows] == [r["id"] for r in recs]
    assert float(rows[0]["best_val_acc"]) == recs[0]["best_val_acc"]
    code, out, _ = run_main(["compare", str(root), "--format", "markdown", "--precision", "2"])
    lines = out.strip().splitlines()
    assert len(lines) == 2 + 8 and all(x.startswith("|") and x.endswith("|") for x in lines)
    cells = [[c.strip() for c in x.strip("|").split("|")] for x in lines]
    assert cells[0][:5] == ["id", "status", "optimizer", "optimizer.lr", "seed"]
    assert set(cells[1][cells[0].index("best_val_acc")]) <= set("-:")
    col = cells[0].index("best_val_acc")
    assert [c[col] for c in cells[2:]][:2] == ["0.91", "0.90"]
    assert "[" not in out  # no rich markup
    code, out, _ = run_main(["compare", str(root), "--format", "csv", "--precision", "3"])
    assert list(csv.DictReader(io.StringIO(out)))[0]["wall_time"] == "6.0"


# --- diff, best, plot ----------------------------------------------------------------------


def test_diff(sweep):
    tmp, root, jobs = sweep
    code, out, err = run_main(["compare", str(root), "--diff", "0", "6", "--format", "json"])
    assert code == 0, err
    diff = {(r["kind"], r["key"]): (r["a"], r["b"]) for r in json.loads(out)}
    assert diff[("config", "optimizer")] == ("sgd", "adam")
    assert diff[("config", "optimizer.lr")] == (0.01, 0.1)
    assert diff[("config", "optimizer.b1")] == (None, 0.9)
    assert diff[("metrics", "best_val_acc")] == (pytest.approx(0.70), pytest.approx(0.80))
    assert ("config", "seed") not in diff and ("config", "data") not in diff
    code, out, _ = run_main(["compare", "--diff", str(root / "0"), str(root / "1")])
    assert code == 0 and "seed" in out and "optimizer.lr" not in out
    assert out.startswith(f"a: {root / '0'}\nb: {root / '1'}\n")
    code, out, _ = run_main(["compare", "--diff", str(root / "0"), str(root / "0")])
    assert "same config and metrics" in out


def test_best(sweep):
    tmp, root, jobs = sweep
    code, out, err = run_main(["best", str(root)])
    assert code == 0, err
    path, overrides = out.splitlines()
    assert Path(path) == root / "5"
    assert overrides == "optimizer=adam optimizer.lr=0.01 seed=1"
    assert "best_val_acc = 0.91" in err
    code, out, _ = run_main(["best", str(root), "--metric", "wall_time"])
    assert Path(out.splitlines()[0]) == root / "0"
    code, out, _ = run_main(["best", str(root), "--where", "optimizer=sgd"])
    assert Path(out.splitlines()[0]) == root / "3"
    code, out, _ = run_main(["best", str(root), "--metric", "val_loss:desc"])
    assert Path(out.splitlines()[0]) == root / "0"


def test_plot_and_overlay(sweep, tmp_path):
    tmp, root, jobs = sweep
    code, out, err = run_main(["plot", str(root / "2"), "--out", str(tmp_path / "c.png")])
    assert code == 0, err
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, out, err = run_main(
        [
            "compare",
            str(root),
            "--group-by",
            "optimizer",
            "--plot",
            str(tmp_path / "o.png"),
            "--format",
            "csv",
        ]
    )
    assert code == 0 and (tmp_path / "o.png").read_bytes()[:4] == b"\x89PNG"
    code, out, err = run_main(["plot", str(root / "2")])
    assert code == 0 and (root / "2" / "curves.png").exists()
    assert not (root / "2" / "diagnostics.png").exists()
    rows = [
        {
            "epoch": e,
            "layer": layer,
            "weight_norm": 1.0,
            "grad_norm": 0.1 * e,
            "update_ratio": 1e-3,
            "act_mean": 0.0,
            "act_std": 1.0,
            "dead_frac": 0.0,
            "saturated_frac": 0.0,
        }
        for e in (1, 2)
        for layer in ("layer0", "layer1", "head")
    ]
    rundir.write_rows(root / "2" / "diagnostics.csv", rows, list(rows[0]))
    code, out, err = run_main(["plot", str(root / "2")])
    assert code == 0, err
    assert out.split() == [str(root / "2" / "curves.png"), str(root / "2" / "diagnostics.png")]
    assert (root / "2" / "diagnostics.png").read_bytes()[:4] == b"\x89PNG"


# --- unfinished runs -----------------------------------------------------------------------


def test_running_interrupted_and_half_written_runs_are_listed(sweep):
    tmp, root, jobs = sweep
    cfg = config("adam", 0.01, 2)
    make_run(root / "8", cfg, ["seed=2"], {"status": "running"}, curve_rows(0.5, 2))
    make_run(root / "9", cfg, ["seed=3"], {"status": "running"})  # first epoch
    stale = make_run(root / "10", cfg, ["seed=4"], {"status": "running"}, curve_rows(0.4, 3))
    old = time.time() - 3 * 3600
    for f in ("metrics.json", "curves.csv"):
        os.utime(stale / f, (old, old))
    make_run(root / "11", cfg, ["seed=5"])  # no metrics.json
    half = make_run(root / "12", cfg, ["seed=6"], curves=curve_rows(0.6, 5))
    (half / "metrics.json").write_text('{"status": "completed", "task": "classi')
    bad = make_run(root / "13", cfg, ["seed=7"], metrics_for(0.5, 5, 1.0))
    (bad / ".hydra" / "config.yaml").write_text("data: [unclosed\n")
    make_run(root / "14", cfg, ["seed=8"], {"status": "failed", "error": "ConfigError: x"})
    code, out, err = run_main(["compare", str(root), "--format", "json"])
    assert code == 0
    by_id = {r["id"]: r for r in json.loads(out)}
    assert len(by_id) == 15
    assert by_id["8"]["status"] == "running" and by_id["8"]["epochs_run"] == 2
    assert by_id["8"]["best_val_acc"] == pytest.approx(0.5)  # from curves.csv so far
    assert by_id["9"]["status"] == "running" and by_id["9"]["best_val_acc"] is None
    # no pid/host/heartbeat (an older run): stale when its files are older than 30 min
    assert by_id["10"]["status"] == "stale"
    assert by_id["10"]["reason"] == "nothing written for 3.0 h"
    assert by_id["11"]["status"] == "incomplete"
    # damaged files (writes are atomic: a truncated file is damage, not a write in progress)
    assert by_id["12"]["status"] == "unreadable" and by_id["12"]["epochs_run"] == 5
    assert by_id["12"]["reason"].startswith("metrics.json: not valid JSON (")
    assert by_id["13"]["status"] == "unreadable"
    assert by_id["13"]["reason"].startswith(".hydra/config.yaml: not valid YAML (")
    assert by_id["14"]["status"] == "failed"
    assert "10: stale: says running, but nothing written for 3.0 h" in err
    assert "11: no metrics.json" in err
    assert "12: unreadable: metrics.json: not valid JSON (" in err
    assert "13: unreadable: .hydra/config.yaml: not valid YAML (" in err
    assert "8:" not in err and "14:" not in err and "Traceback" not in err
    assert [r["id"] for r in json.loads(out)][-3:] == ["9", "11", "14"]  # no value: last
    code, out, _ = run_main(["compare", str(root), "--where", "status=running", "--format", "csv"])
    assert {r["id"] for r in csv.DictReader(io.StringIO(out))} == {"8", "9"}
    code, out, _ = run_main(
        ["compare", str(root), "--where", "status=stale or status=unreadable", "--format", "csv"]
    )
    assert {r["id"] for r in csv.DictReader(io.StringIO(out))} == {"10", "12", "13"}
    code, out, _ = run_main(["compare", str(root), "--group-by", "status"])
    assert code == 0 and "running" in out


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args,code,needles",
    [
        (
            ["--sort", "val_accuracy"],
            2,
            ["unknown key 'val_accuracy'", "best_val_acc", "optimizer.lr", "did you mean"],
        ),
        (["--group-by", "optimiser"], 2, ["--group-by: unknown key 'optimiser'", "optimizer"]),
        (
            ["--where", "optimizer=adam and optimizer.lr< and seed=1"],
            2,
            [
                "expected a value after '<' at column 34",
                "after 'optimizer=adam and optimizer.lr< '",
            ],
        ),
        (["--where", "optimizer=adam and (lr<0.1"], 2, ["expected ')'", "column 27"]),
        (["--where", "lr<adam"], 2, ["'<' needs a number, got 'adam' at column 4"]),
        (
            ["--where", "bogus=1"],
            2,
            ["unknown key 'bogus' at column 1", "available:", "best_val_acc"],
        ),
        (["--where", "optimizer=adam seed=1"], 2, ["unexpected 'seed'", "column 16"]),
        (["--where", "optimizer='adam"], 2, ["unterminated string", "column 11"]),
        (["--where", "lr<0.1 and"], 2, ["expected a comparison", "column 11"]),
        (["--where", "optimizer=sgd and lr>5"], 1, ["no run matches --where"]),
        (["--keep", "nothing_like_this"], 2, ["--keep: 'nothing_like_this' matches no setting"]),
        (["--drop", "("], 2, ["--drop: bad regular expression"]),
        (["--sort", "val_acc:up"], 2, ["direction after ':' is asc or desc"]),
        (["--top", "0"], 2, ["--top: N must be at least 1"]),
        (["--format", "xml"], 2, ["invalid choice: 'xml'"]),
        (["--diff", "0", "99"], 2, ["99: no such run"]),
        (
            ["--plot", "/nonexistent/dir/x.png", "--format", "csv"],
            2,
            ["cannot write /nonexistent/dir/x.png: the folder /nonexistent/dir does not exist"],
        ),
    ],
)
def test_bad_input_one_line_and_exit_code(sweep, args, code, needles):
    tmp, root, jobs = sweep
    got, out, err = run_main(["compare", str(root), *args])
    assert got == code, err
    assert err.startswith("runner: error: ") and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err


def test_paths_without_runs(tmp_path):
    (tmp_path / "empty").mkdir()
    code, out, err = run_main(["compare", str(tmp_path / "empty")])
    assert code == 1 and "no runs found under" in err and out == ""
    code, out, err = run_main(["compare"], cwd=tmp_path)  # no outputs/ here
    assert code == 2 and "outputs: no such file or directory" in err
    code, out, err = run_main(["best", str(tmp_path / "empty")])
    assert code == 1 and "no runs found" in err
    code, out, err = run_main(["plot", str(tmp_path / "nowhere")])
    assert (
        code == 2 and err == f"runner: error: {tmp_path / 'nowhere'}: no such file or directory\n"
    )


def test_best_and_plot_without_results(tmp_path):
    make_run(tmp_path / "r", config(), [], {"status": "running"})
    code, out, err = run_main(["best", str(tmp_path)])
    assert code == 1 and "no completed run" in err
    code, out, err = run_main(["plot", str(tmp_path / "r")])
    assert code == 1 and "no curves.csv yet" in err


def test_help_exits_zero():
    code, out, err = run_main(["compare", "--help"])
    assert code == 0 and "--group-by" in out and "--where" in out


# --- reading -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        OmegaConf.to_yaml(OmegaConf.create(config())),
        OmegaConf.to_yaml(
            OmegaConf.create(
                {
                    "a": {
                        "b": {},
                        "c": [],
                        "d": "yes",
                        "e": "1e-3",
                        "f": "x: y",
                        "g": "2026-01-01",
                        "h": None,
                        "i": 1e-5,
                        "j": -3,
                        "k": "o'k",
                        "l": "",
                    }
                }
            )
        ),
        OmegaConf.to_yaml(OmegaConf.create({"model": {"widths": [64, 32]}, "x": 1})),
        "a:\n  b:\nc: 1\n",
        "a: yes\nb: 1.0e-05\nc: 1e-05\nd: 010\ne: 0x1\nf: 'x'\ng: \"y\"\n",
        "a:\n   b: 1\n  c: 2\n",
        "a: 1\n b: 2\n",
        "x: .5\ny: +4.\nw: 1_000\nn: ~\nk: NO\n",
        "# comment\na: 1  # trailing\n",
        "a: b\na: c\n",
    ],
)
def test_fast_config_parser_agrees_with_pyyaml(text):
    try:
        want = yaml.safe_load(text)
    except yaml.YAMLError as e:
        want = type(e)
    try:
        got = parse_config(text)
    except yaml.YAMLError as e:
        got = type(e)
    assert got == want


def test_import_does_not_load_jax_hydra_or_matplotlib(sweep):
    tmp, root, jobs = sweep
    code = (
        "import sys, io, contextlib\n"
        "from runner.compare.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert main(['compare', {str(root)!r}]) == 0\n"
        "    assert main(['compare', '--format', 'json', {0!r}]) == 0\n".format(str(root))
        + "heavy = [m for m in ('jax', 'hydra', 'omegaconf', 'matplotlib', 'numpy') "
        "if m in sys.modules]\n"
        "print(heavy)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"


def test_runner_compare_from_the_shell(sweep):
    """Through the installed command (runner.cli dispatches before importing hydra/jax)."""
    tmp, root, jobs = sweep
    p = subprocess.run(
        [sys.executable, "-m", "runner", "compare", str(root), "--format", "csv", "--top", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    assert list(csv.DictReader(io.StringIO(p.stdout)))[0]["id"] == "5"
    p = subprocess.run(
        [sys.executable, "-m", "runner", "compare", str(root), "--sort", "x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 2 and p.stderr.startswith("runner: error: --sort: unknown key 'x'")
