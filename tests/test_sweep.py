"""Sweeps (runner.sweep + the Hydra plugin in hydra_plugins/runner_sweeper): grids, log grids,
random search, coarse to fine, TPE, faults, resume after SIGKILL, dry runs, unique directories.

End-to-end tests run `python -m runner -m ...` in subprocesses on iris with one short epoch; the
rest call the pure functions in-process."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from runner.plots import wait_for_plots
from runner.sweep.grammar import geomspace, logspace
from runner.sweep.report import make_row, preset_text, seed_groups
from runner.sweep.run import claim_dir
from runner.sweep.space import Param, SweepError, grid, narrow, parse_space, rng_for, sample

RUNNER = [sys.executable, "-m", "runner", "-m"]
QUICK = [
    "data=iris",
    "trainer.epochs=1",
    "trainer.progress=false",
    "trainer.plot=false",
    "model.width=8",
]


def sweep(args, tmp_path, name="sweep", extra=(), timeout=240):
    d = tmp_path / name
    p = subprocess.run(
        RUNNER + list(args) + [f"hydra.sweep.dir={d}", *extra],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return p, d


def dry(args, tmp_path):
    p, d = sweep(list(args) + ["hydra.sweeper.dry_run=true"], tmp_path, name="dry")
    assert p.returncode == 0, p.stderr
    assert not d.exists(), "a dry run leaves no sweep directory"
    jobs = [
        line.split(": ", 1)[1].split() for line in p.stdout.splitlines() if line.startswith("job ")
    ]
    return jobs, p.stdout


def values(jobs, key):
    return [next(o.split("=", 1)[1] for o in job if o.split("=", 1)[0] == key) for job in jobs]


def load(d: Path, name="summary.json"):
    return json.loads((d / name).read_text())


# ---------------------------------------------------------------------------------------------
# grids


def test_grid_is_hydras_product_with_seed_aggregation_best_yaml_and_plot(tmp_path):
    p, d = sweep(["optimizer=sgd,adam", "optimizer.lr=0.01,0.1", "seed=range(2)", *QUICK], tmp_path)
    assert p.returncode == 0, p.stderr
    s = load(d)
    assert s["kind"] == "grid" and s["state"] == "finished" and s["n_trials"] == 8
    expected = [
        (o, lr, seed) for o in ("sgd", "adam") for lr in ("0.01", "0.1") for seed in ("0", "1")
    ]
    for job, (opt, lr, seed) in enumerate(expected):
        overrides = (d / str(job) / ".hydra" / "overrides.yaml").read_text()
        for o in (f"optimizer={opt}", f"optimizer.lr={lr}", f"seed={seed}", "data=iris"):
            assert f"- {o}\n" in overrides, (job, o)
        row = s["trials"][job]
        assert row["job"] == job and row["status"] == "completed"
        assert row["params"] == {"optimizer": opt, "optimizer.lr": float(lr), "seed": int(seed)}
        m = json.loads((d / str(job) / "metrics.json").read_text())
        assert row["objective"] == m["best_val_acc"] and row["epochs_run"] == 1
    # summary.csv: a header and one row per trial
    lines = (d / "summary.csv").read_text().splitlines()
    assert lines[0].startswith("job,stage,status,objective,monitor,optimizer,optimizer.lr,seed")
    assert len(lines) == 9
    # mean +- std (sample) and n over the seeds of each configuration
    assert len(s["groups"]) == 4
    for g in s["groups"]:
        objs = [
            json.loads((d / str(j) / "metrics.json").read_text())["best_val_acc"] for j in g["jobs"]
        ]
        assert len(g["jobs"]) == 2 and g["n"] == 2
        assert g["mean"] == pytest.approx(np.mean(objs), abs=1e-12)
        assert g["std"] == pytest.approx(np.std(objs, ddof=1), abs=1e-12)
        assert not any(o.startswith("seed=") for o in g["overrides"])
    means = [g["mean"] for g in s["groups"]]
    assert means == sorted(means, reverse=True)  # accuracy: best first
    assert "over seeds" in p.stdout and "sorted by val_acc (max)" in p.stdout
    assert "topk.png, search.png: drawing in the background)" in p.stdout
    assert wait_for_plots(d, timeout=120) is None  # drawn after the prompt came back
    assert (d / "topk.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # best.yaml: the best configuration over seeds, as an experiment preset that composes
    best = (d / "best.yaml").read_text()
    g = s["groups"][0]
    assert best.startswith("# @package _global_\n") and "over seeds" in best
    conf = tmp_path / "myconf" / "experiment"
    conf.mkdir(parents=True)
    shutil.copy(d / "best.yaml", conf / "best.yaml")
    q = subprocess.run(
        [
            sys.executable,
            "-m",
            "runner",
            "--config-dir",
            str(conf.parent),
            "experiment=best",
            "--cfg",
            "job",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert q.returncode == 0, q.stderr
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(q.stdout)
    assert cfg.optimizer.name == g["params"]["optimizer"]
    assert cfg.optimizer.lr == g["params"]["optimizer.lr"]
    assert cfg.data.name == "iris" and cfg.trainer.epochs == 1 and cfg.model.width == 8


def test_log_grid_values_exactly():
    want = [
        1e-05,
        3.16227766017e-05,
        0.0001,
        0.000316227766017,
        0.001,
        0.00316227766017,
        0.01,
        0.0316227766017,
        0.1,
    ]
    assert logspace(-5, -1, 9).list == want
    assert geomspace(1e-5, 1e-1, 9).list == want
    np.testing.assert_allclose(want, np.logspace(-5, -1, 9), rtol=1e-11)
    assert logspace(-3, -1, 3).list == [0.001, 0.01, 0.1]
    assert logspace(0, 0, 1).list == [1.0]


def test_log_grid_from_the_shell(tmp_path):
    jobs, out = dry(["optimizer.lr=logspace(-5,-1,9)", "optimizer=sgd,adam", *QUICK], tmp_path)
    assert len(jobs) == 18 and "18 trials" in out
    lrs = values(jobs, "optimizer.lr")
    assert sorted(set(map(float, lrs))) == logspace(-5, -1, 9).list
    assert lrs[0] == "1e-05" and lrs[-1] == "0.1" and "0.001" in lrs
    # geomspace takes the end points themselves; int() of it gives integer widths
    jobs, _ = dry(
        [
            "optimizer.lr=geomspace(1e-5,1e-1,9)",
            "model.width=int(geomspace(16,256,5))",
            "data=iris",
        ],
        tmp_path,
    )
    assert len(jobs) == 45
    assert values(jobs, "model.width")[:5] == ["16", "32", "64", "128", "256"]
    # a grid cannot enumerate an interval: one line, exit 2
    p, d = sweep(["optimizer.lr=tag(log,interval(1e-5,1e-1))", *QUICK], tmp_path)
    assert p.returncode == 2 and not d.exists()
    assert p.stderr.strip().splitlines()[-1].startswith("runner: error: optimizer.lr=interval")
    assert len(p.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------------------------------------
# random search

RANDOM = [
    "hydra/sweeper=random",
    "optimizer.lr=tag(log,interval(1e-5,1e-1))",
    "regularization.dropout=interval(0,0.5)",
    "model.width=choice(64,128,256)",
    "model.depth=int(interval(1,4))",
    "seed=range(3)",
    "optimizer=sgd,adam",
    "data=iris",
    "hydra.sweeper.n_trials=200",
]


def test_random_search_same_seed_same_trials_log_uniform(tmp_path):
    a, out = dry(RANDOM + ["hydra.sweeper.seed=0"], tmp_path)
    b, _ = dry(RANDOM + ["hydra.sweeper.seed=0"], tmp_path)
    c, _ = dry(RANDOM + ["hydra.sweeper.seed=1"], tmp_path)
    assert len(a) == 200 and "200 trials" in out and "log-uniform" in out
    assert a == b and a != c
    lr = np.log10(np.array(values(a, "optimizer.lr"), float))
    assert lr.min() >= -5 and lr.max() <= -1
    # log-uniform: each quarter of [-5, -1] in log10 gets about a quarter of the samples (a
    # sampler uniform in lr would put ~97% of them in the top quarter)
    counts = np.histogram(lr, bins=[-5, -4, -3, -2, -1])[0]
    assert all(30 <= n <= 70 for n in counts), counts
    dropout = np.array(values(a, "regularization.dropout"), float)
    assert dropout.min() >= 0 and dropout.max() < 0.5 and dropout.std() > 0.1
    assert set(values(a, "model.width")) == {"64", "128", "256"}
    assert set(values(a, "model.depth")) == {"1", "2", "3", "4"}
    assert set(values(a, "seed")) == {"0", "1", "2"}
    assert set(values(a, "optimizer")) == {"sgd", "adam"}
    assert all(v == "iris" for v in values(a, "data"))


def test_sampling_in_process():
    space = parse_space(
        [
            "a=tag(log,interval(1e-5,1e-1))",
            "b=interval(0,0.5)",
            "c=int(interval(1,4))",
            "d=choice(x,y)",
            "e=range(0,10,5)",
            "f=7",
        ]
    )
    kinds = [(p.name, p.kind, p.log, p.integer) for p in space]
    assert kinds == [
        ("a", "interval", True, False),
        ("b", "interval", False, False),
        ("c", "interval", False, True),
        ("d", "choice", False, False),
        ("e", "choice", False, False),
        ("f", "fixed", False, False),
    ]
    twice = parse_space(["a=1", "b=2", "a=choice(3,4)"])  # the later wins, in the first's place
    assert [(p.name, p.kind, p.values) for p in twice] == [
        ("a", "choice", ["3", "4"]),
        ("b", "fixed", ["2"]),
    ]
    t1 = sample(space, 500, rng_for(3, 1))
    assert t1 == sample(space, 500, rng_for(3, 1))
    assert all(o[-1] == "f=7" for o, _ in t1)
    a = np.log10([p["a"] for _, p in t1])
    assert abs(np.median(a) + 3) < 0.3  # the log10 median of log-uniform [1e-5, 1e-1] is -3
    assert {p["c"] for _, p in t1} == {1, 2, 3, 4} and {p["e"] for _, p in t1} == {0, 5}
    with pytest.raises(SweepError, match="log interval needs a start > 0"):
        parse_space(["a=tag(log,interval(0,1))"])
    with pytest.raises(SweepError, match="logspace"):
        parse_space(["a=tag(log,choice(1,2))"])
    with pytest.raises(SweepError, match="cannot enumerate an interval"):
        grid(parse_space(["a=interval(0,1)"]))


# ---------------------------------------------------------------------------------------------
# coarse to fine


def test_narrow_keeps_ranges_inside_and_around_the_top():
    space = parse_space(
        ["a=tag(log,interval(1e-5,1))", "w=choice(4,8,16)", "n=int(interval(1,9))", "x=1"]
    )
    top = [{"a": 1e-3, "w": 16, "n": 3}, {"a": 1e-2, "w": 4, "n": 5}]
    a, w, n, x = narrow(space, top)
    assert (a.low, a.high, a.log) == (1e-3, 1e-2, True)
    assert w.values == ["4", "16"] and (n.low, n.high, n.integer) == (3, 5, True)
    assert x == space[3]


def test_coarse_to_fine_two_stages(tmp_path):
    stages = "[{epochs:1,n_trials:5},{epochs:2,n_trials:3,top_k:2}]"
    p, d = sweep(
        [
            "hydra/sweeper=coarse_to_fine",
            "optimizer.lr=tag(log,interval(1e-3,0.3))",
            "regularization.dropout=interval(0,0.5)",
            *QUICK,
            "model.width=choice(4,8,16)",
            f"hydra.sweeper.stages={stages}",
            "hydra.sweeper.plot=false",
        ],
        tmp_path,
    )
    assert p.returncode == 0, p.stderr
    plan, s = load(d, "trials.json"), load(d)
    assert [t["stage"] for t in plan["trials"]] == [1] * 5 + [2] * 3
    assert [t["job"] for t in plan["trials"]] == list(range(8))  # numbers go on across stages
    assert all("trainer.epochs=1" in t["overrides"] for t in plan["trials"][:5])
    assert all("trainer.epochs=2" in t["overrides"] for t in plan["trials"][5:])
    assert [r["epochs"] for r in s["trials"]] == [1] * 5 + [2] * 3
    s1 = {q["key"]: q for q in plan["stages"][0]["space"]}
    s2 = {q["key"]: q for q in plan["stages"][1]["space"]}
    stage1 = [r for r in s["trials"] if r["stage"] == 1 and r["status"] == "completed"]
    top = sorted(stage1, key=lambda r: (-r["objective"], r["job"]))[:2]
    for key in ("optimizer.lr", "regularization.dropout"):
        assert s1[key]["low"] <= s2[key]["low"] <= s2[key]["high"] <= s1[key]["high"]
        for r in top:
            assert s2[key]["low"] <= r["params"][key] <= s2[key]["high"]
        assert s2[key]["log"] == s1[key]["log"]
    assert set(s2["model.width"]["values"]) == {str(r["params"]["model.width"]) for r in top}
    for t in plan["trials"][5:]:
        assert (
            s2["optimizer.lr"]["low"] <= t["params"]["optimizer.lr"] <= s2["optimizer.lr"]["high"]
        )
    assert "stage 2:" in p.stderr and "stage" in p.stdout


# ---------------------------------------------------------------------------------------------
# faults


def test_failed_and_diverged_trials_do_not_stop_the_sweep(tmp_path):
    p, d = sweep(
        [
            "optimizer=sgd",
            "optimizer.lr=-1,0.1,1e6",
            *QUICK,
            "trainer.epochs=3",
            "hydra.sweeper.plot=false",
        ],
        tmp_path,
    )
    assert p.returncode == 0, p.stderr
    rows = load(d)["trials"]
    assert [r["status"] for r in rows] == ["failed", "completed", "diverged"]
    assert rows[0]["error"].startswith("optimizer.lr=-1.0: out of range")
    assert json.loads((d / "0" / "metrics.json").read_text())["status"] == "failed"
    assert rows[2]["reason"] and rows[2]["epochs_run"] < 3
    assert "job 0 failed" in p.stderr and "job 2 diverged" in p.stderr
    assert "diverged" in p.stdout and "failed" in p.stdout
    assert "optimizer.lr=0.1" in (d / "best.yaml").read_text()


def test_all_failed_exits_non_zero_with_one_line(tmp_path):
    p, d = sweep(["optimizer.lr=-1,-2", *QUICK], tmp_path)
    assert p.returncode == 2
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "runner: error: sweep: all 2 trials failed; first error (job 0): optimizer.lr=-1.0"
    ), p.stderr
    assert [r["status"] for r in load(d)["trials"]] == ["failed", "failed"]
    assert not (d / "best.yaml").exists()


def test_bad_n_jobs_is_refused_before_the_sweep_folder_exists(tmp_path):
    p, d = sweep(["optimizer.lr=0.01,0.1", *QUICK, "hydra.sweeper.n_jobs=0"], tmp_path)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert lines == ["runner: error: hydra.sweeper.n_jobs=0: expected an integer >= 1"], p.stderr
    assert not d.exists()


def test_fail_fast_stops_at_the_first_failure(tmp_path):
    p, d = sweep(["optimizer.lr=-1,0.1", *QUICK, "hydra.sweeper.fail_fast=true"], tmp_path)
    assert p.returncode == 2
    assert "fail_fast" in p.stderr.strip().splitlines()[-1]
    s = load(d)
    assert s["state"] == "stopped" and [r["status"] for r in s["trials"]] == ["failed", "pending"]
    assert not (d / "1").exists()


def test_sweeps_started_together_get_their_own_directories(tmp_path):
    d = tmp_path / "same"
    cmd = RUNNER + [*QUICK, "hydra.sweeper.plot=false", f"hydra.sweep.dir={d}"]
    procs = [
        subprocess.Popen(
            cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=180) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    for folder in (d, tmp_path / "same-1"):
        assert load(folder)["counts"]["completed"] == 1
        assert (folder / "0" / "metrics.json").exists()
    assert sum("is taken" in err for _, err in outs) == 1


def test_claim_dir_skips_taken_and_non_empty_folders(tmp_path):
    base = tmp_path / "s"
    assert claim_dir(base) == base
    assert claim_dir(base) == tmp_path / "s-1"
    (tmp_path / "s-2").mkdir()
    (tmp_path / "s-2" / "x").write_text("someone's")
    (tmp_path / "s-3").mkdir()  # empty: usable
    assert claim_dir(base) == tmp_path / "s-3"


# ---------------------------------------------------------------------------------------------
# resume


def test_resume_after_sigkill_matches_an_uninterrupted_sweep(tmp_path):
    args = [
        "seed=range(6)",
        "data=iris",
        "trainer.epochs=40",
        "trainer.progress=false",
        "model.width=8",
        "hydra.sweeper.plot=false",
        # groups of 2: the resume, which does not repeat it, must group the trials it reruns
        # as the sweep did (a group's numbers agree with another's only to float noise)
        "hydra.launcher.max_members=2",
    ]
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        RUNNER + args + [f"hydra.sweep.dir={killed}"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def finished():
        n = 0
        for m in killed.glob("*/metrics.json"):
            with contextlib.suppress(OSError, ValueError, KeyError):
                n += json.loads(m.read_text())["status"] in ("completed", "diverged")
        return n

    deadline = time.time() + 180
    while finished() < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {
        m.parent.name: m.stat().st_mtime_ns
        for m in killed.glob("*/metrics.json")
        if json.loads(m.read_text())["status"] == "completed"
    }
    assert 2 <= len(done_before) < 6, "the sweep should have been killed halfway"

    p = subprocess.run(
        RUNNER + [f"hydra.sweeper.resume={killed}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert p.returncode == 0, p.stderr
    assert "resuming" in p.stderr
    assert "sweep: resuming with hydra.launcher.max_members=2, as the sweep ran" in p.stderr
    for job, mtime in done_before.items():  # finished trials were not rerun
        assert (killed / job / "metrics.json").stat().st_mtime_ns == mtime
    p, ref = sweep(args, tmp_path, name="reference")
    assert p.returncode == 0, p.stderr
    a, b = load(killed), load(ref)
    assert a["state"] == "finished" and a["counts"]["completed"] == 6
    assert [(r["job"], r["status"], r["overrides"]) for r in a["trials"]] == [
        (r["job"], r["status"], r["overrides"]) for r in b["trials"]
    ]
    for ra, rb in zip(a["trials"], b["trials"]):
        assert abs(ra["objective"] - rb["objective"]) <= 1e-9
        assert load(Path(ra["dir"]), "metrics.json")["vectorized"]["members"] == 2
        assert ra["dir"].endswith(f"/{ra['job']}")
        assert f"seed={ra['job']}" in (
            killed / str(ra["job"]) / ".hydra" / "overrides.yaml"
        ).read_text().replace("- ", "")
    # the overrides of a resumed sweep must be its own (or none)
    p = subprocess.run(
        RUNNER + ["seed=range(2)", f"hydra.sweeper.resume={killed}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2 and "differ" in p.stderr
    # another launcher than the sweep's may be wanted (a cluster's): named in one line
    p = subprocess.run(
        RUNNER
        + [f"hydra.sweeper.resume={killed}", "hydra/launcher=basic", "hydra.sweeper.dry_run=true"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert (
        "sweep: this resume launches with hydra/launcher=basic; the sweep ran with "
        "hydra/launcher=vmap (pass it again for the same groups)"
    ) in p.stderr


# ---------------------------------------------------------------------------------------------
# k-fold cross-validation in a sweep, TPE


def test_kfold_trials_report_cv_mean_and_std(tmp_path):
    p, d = sweep(
        ["optimizer.lr=0.01,0.1", *QUICK, "trainer.cv_folds=3", "hydra.sweeper.plot=false"],
        tmp_path,
    )
    assert p.returncode == 0, p.stderr
    for r in load(d)["trials"]:
        m = json.loads((Path(r["dir"]) / "metrics.json").read_text())
        assert r["cv_folds"] == 3 and r["objective"] == m["cv_mean"]
        assert r["cv_std"] == m["cv_std"]
    assert "(cv)" in p.stdout and "±" in p.stdout
    assert "cv_mean" in (d / "summary.csv").read_text().splitlines()[0]


def test_tpe_sweeper(tmp_path):
    args = [
        "hydra/sweeper=tpe",
        "optimizer.lr=tag(log,interval(1e-3,0.3))",
        *QUICK,
        "model.width=choice(4,8)",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.n_startup_trials=2",
        "hydra.sweeper.plot=false",
    ]
    if importlib.util.find_spec("optuna") is None:
        p, d = sweep(args, tmp_path)
        assert p.returncode == 2 and not d.exists()
        assert p.stderr.strip() == (
            "runner: error: hydra/sweeper=tpe needs optuna, an optional "
            "extra: pip install -e '.[optuna]' (or pip install optuna)"
        )
        return
    p, d = sweep(args, tmp_path)
    assert p.returncode == 0, p.stderr
    s = load(d)
    assert s["kind"] == "tpe" and len(s["trials"]) == 3
    for r in s["trials"]:
        assert 1e-3 <= r["params"]["optimizer.lr"] <= 0.3 and r["params"]["model.width"] in (4, 8)


# ---------------------------------------------------------------------------------------------
# summary pieces


def test_seed_groups_and_preset_text():
    rows = []
    for job, (lr, seed, obj, status) in enumerate(
        [
            (0.1, 0, 0.8, "completed"),
            (0.1, 1, 0.9, "completed"),
            (0.01, 0, 0.5, "completed"),
            (0.01, 1, None, "failed"),
        ]
    ):
        r = make_row(
            {
                "job": job,
                "overrides": [f"optimizer.lr={lr}", f"seed={seed}"],
                "params": {"optimizer.lr": lr, "seed": seed},
            },
            status=status,
        )
        r["objective"] = obj
        rows.append(r)
    g = seed_groups(rows, "max")
    assert [x["overrides"] for x in g] == [["optimizer.lr=0.1"], ["optimizer.lr=0.01"]]
    assert (
        g[0]["mean"] == pytest.approx(0.85)
        and g[0]["std"] == pytest.approx(math.sqrt(0.005))
        and g[0]["n"] == 2
    )
    assert (g[1]["mean"], g[1]["std"], g[1]["n"], g[1]["n_trials"]) == (0.5, 0.0, 1, 2)
    text = preset_text(
        ["optimizer=adam", "optimizer.lr=0.01", "+foo.bar=x", "~data.path", "model.widths=[64,32]"],
        {"optimizer", "data", "model"},
        ["hello"],
    )
    assert text.splitlines()[:2] == ["# @package _global_", "# hello"]
    assert "  - override /optimizer: adam" in text and "~data.path" in text
    from omegaconf import OmegaConf

    body = OmegaConf.create(text)
    assert body.optimizer.lr == 0.01 and body.foo.bar == "x" and body.model.widths == [64, 32]


def test_param_value_strings_stay_floats():
    from runner.sweep.space import fmt

    assert (
        fmt(2.0) == "2.0"
        and fmt(1e-5) == "1e-05"
        and fmt(3) == "3"
        and fmt(0.123456789) == "0.123457"
    )
    assert Param("x", "fixed", ["1"]).swept is False
