"""Hyperband and successive halving (hydra/sweeper=hyperband|sha): the bracket arithmetic against
Li et al.'s table, the promotions on a constructed objective (in-process, with a launcher that
'trains' instantly), resume after a kill, and one tiny end-to-end sha sweep with the vmap
launcher whose promoted trials equal the same configs trained alone."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY, compose

from runner import stop
from runner.sweep import hyperband
from runner.sweep.hyperband import Bracket, brackets, budgets, promote, s_max, sha
from runner.sweep.space import SweepError

# ---------------------------------------------------------------------------------------------
# the arithmetic


def test_li_et_al_table_for_r81_eta3():
    bs = brackets(81, 1, 3)
    assert [(b.s, b.n, b.r) for b in bs] == [
        (4, (81, 27, 9, 3, 1), (1, 3, 9, 27, 81)),
        (3, (34, 11, 3, 1), (3, 9, 27, 81)),
        (2, (15, 5, 1), (9, 27, 81)),
        (1, (8, 2), (27, 81)),
        (0, (5,), (81,)),
    ]
    # with checkpoints a rung adds r_i - r_(i-1) epochs to each trial it continues
    assert bs[0].epochs() == 81 * 1 + 27 * 2 + 9 * 6 + 3 * 18 + 1 * 54
    assert bs[4].epochs() == 5 * 81
    assert hyperband.table(bs)[1] == "bracket 2 (s=3): 34 x 3, 11 x 9, 3 x 27, 1 x 81"
    # n_trials = eta^s_max is Li et al.'s own choice; twice that doubles every bracket's n_0
    assert brackets(81, 1, 3, n_trials=81) == bs
    assert [b.n[0] for b in brackets(81, 1, 3, n_trials=162)] == [162, 68, 30, 15, 10]


def test_budgets_s_max_and_sha():
    assert [s_max(81, 1, 3), s_max(80, 1, 3), s_max(30, 1, 3), s_max(30, 2, 3), s_max(5, 5, 2)] == [
        4,
        3,
        3,
        2,
        0,
    ]
    # R = 30 is no power of 3: R * 3^(i - s) rounded half up, the last exactly R
    assert budgets(30, 1, 3, 3) == (1, 3, 10, 30)
    assert budgets(30, 2, 3, 2) == (3, 10, 30)
    assert budgets(4, 1, 2, 2) == (1, 2, 4)
    assert budgets(10, 3, 2, 1) == (5, 10)
    # rounding never repeats a budget or goes below min_epochs
    assert budgets(5, 1, 2, 2) == (1, 3, 5)  # 1.25 -> 1, 2.5 -> 3 (half up)
    assert budgets(3, 1, 3, 1) == (1, 3)
    assert budgets(4, 1, 9, 1) == (1, 4)  # 4/9 rounds to 0: min_epochs
    # successive halving with 64 configurations (the benchmark's): 64 -> 21 -> 7 -> 2
    b = sha(30, 1, 3, n_trials=64)
    assert b == Bracket(3, (64, 21, 7, 2), (1, 3, 10, 30))
    assert b.epochs() == 64 * 1 + 21 * 2 + 7 * 7 + 2 * 20  # 195, against 64 x 30 = 1920
    assert sha(9, 1, 3) == Bracket(2, (9, 3, 1), (1, 3, 9))
    for args, msg in (
        ((30, 1, 1), "hydra.sweeper.eta=1: expected an integer >= 2"),
        ((3, 5, 3), "hydra.sweeper.min_epochs=5: expected at most max_epochs=3"),
        ((0, 1, 3), "hydra.sweeper.max_epochs=0: expected an integer >= 1"),
        ((30, 1, 3, 0), "hydra.sweeper.n_trials=0: expected an integer >= 1 or null"),
    ):
        with pytest.raises(ValueError, match=msg):
            brackets(*args)


def test_promote_keeps_the_best_by_mode_ties_to_the_lower_job():
    cands = [(4, 0.5), (7, 0.9), (2, 0.5), (9, 0.1)]
    assert promote(cands, 2, "max") == [2, 7]  # 0.9, then 0.5 of job 2 before job 4
    assert promote(cands, 2, "min") == [2, 9]
    assert promote(cands, 9, "max") == [2, 4, 7, 9]  # fewer candidates than places
    assert promote([], 3, "max") == []


# ---------------------------------------------------------------------------------------------
# promotions, in-process with a constructed objective


def objective(lr: float, epochs: int) -> float:
    """The 'accuracy' a trial reaches after `epochs`: best where log10(lr) = -3 + epochs / 3,
    so that the ranking changes with the budget, as it does when a larger learning rate only
    pays off later."""
    return 1.0 - (math.log10(lr) + 3.0 - epochs / 3.0) ** 2 / 10.0


class Killed(BaseException):
    """A kill of the sweep's process in the middle of a launch (as SIGKILL would)."""


class FakeLauncher:
    """'Trains' each job at once: writes its metrics.json (pruned at trainer.stop_at, else
    completed) with objective(lr, epochs trained); records every launch. Trials with lr above
    `fail_above` fail, those below `diverge_below` diverge. kill_at: raise Killed at that
    launch (0-based), after the first of its jobs has started (metrics.json says running)."""

    def __init__(self, fail_above=1.0, diverge_below=0.0, kill_at=None):
        self.launches: list[list[dict]] = []
        self.fail_above, self.diverge_below, self.kill_at = fail_above, diverge_below, kill_at

    def launch(self, job_overrides, initial_job_idx):
        from hydra.core.utils import JobReturn, JobStatus

        from runner.rundir import write_json

        jobs, rets = [], []
        for i, overrides in enumerate(job_overrides):
            kv = dict(o.split("=", 1) for o in overrides)
            job = int(kv.get("hydra.sweep.subdir", initial_job_idx + i))
            d = Path(kv["hydra.sweep.dir"]) / str(job)
            d.mkdir(parents=True, exist_ok=True)
            lr, total = float(kv["optimizer.lr"]), int(kv["trainer.epochs"])
            stop_at = int(kv.get("trainer.stop_at", total))
            jobs.append(
                {"job": job, "stop_at": stop_at, "resume": kv.get("trainer.resume") == "true"}
            )
            if len(self.launches) == self.kill_at:
                write_json(d / "metrics.json", {"status": "running", "epochs_run": 0})
                self.launches.append(jobs)
                raise Killed
            ret = JobReturn()
            ret.status = JobStatus.COMPLETED
            m = {"monitor": "val_acc", "mode": "max", "epochs": total, "epochs_run": stop_at}
            if lr > self.fail_above:
                ret.status, ret._return_value = JobStatus.FAILED, ValueError("boom")
                m["status"], m["error"] = "failed", "ValueError: boom"
            elif lr < self.diverge_below:
                m.update(status="diverged", epochs_run=1, diverged_reason="loss is nan")
            elif stop_at < total:
                m.update(status="pruned", pruned_at=stop_at, pruned_by="trainer.stop_at")
            else:
                m["status"] = "completed"
            if m["status"] in ("pruned", "completed"):
                m["best_val_acc"] = objective(lr, stop_at)
                ret._return_value = m["best_val_acc"]
            write_json(d / "metrics.json", m)
            rets.append(ret)
        self.launches.append(jobs)
        return rets


def run_fake(tmp_path, kind="sha", launcher=None, resume=False, **opts):
    from omegaconf import open_dict

    from runner.sweep.run import run_sweep

    config = compose(TINY, return_hydra_config=True)
    with open_dict(config):
        config.hydra.sweep.dir = str(tmp_path / "sweep")
    launcher = launcher or FakeLauncher()
    options = {"kind": kind, "plot": False, "progress": False, "seed": 0, **opts}
    args = ["optimizer.lr=tag(log,interval(1e-4,1.0))", *TINY]
    if resume:
        options, args = {**options, "resume": str(tmp_path / "sweep")}, []
    run_sweep(options, args, config=config, hydra_context=None, launcher=launcher)
    d = tmp_path / "sweep"
    return (
        launcher,
        json.loads((d / "trials.json").read_text()),
        json.loads((d / "summary.json").read_text()),
    )


def expected_rungs(plan, fail_above=1.0, diverge_below=0.0):
    """Each trial's last rung (1-based), computed here from objective() and the plan alone."""
    last = {}
    for b in plan["brackets"]:
        alive = [t for t in plan["trials"] if t["bracket"] == b["bracket"]]
        for i, budget in enumerate(b["r"], 1):
            for t in alive:
                last[t["job"]] = i
            if i == len(b["r"]):
                break
            lr = {t["job"]: t["params"]["optimizer.lr"] for t in alive}
            ok = [j for j in lr if diverge_below <= lr[j] <= fail_above]
            ok.sort(key=lambda j: (-objective(lr[j], budget), j))
            keep = set(ok[: b["n"][i]])
            alive = [t for t in alive if t["job"] in keep]
    return last


def test_sha_promotes_the_best_at_each_budget_and_prunes_the_rest(tmp_path):
    launcher, plan, summ = run_fake(
        tmp_path,
        max_epochs=9,
        eta=3,
        n_trials=12,
        seed=1,
        launcher=FakeLauncher(fail_above=0.3, diverge_below=3e-4),
    )
    assert plan["kind"] == "sha"
    assert plan["brackets"] == [{"bracket": 1, "s": 2, "n": [12, 4, 1], "r": [1, 3, 9]}]
    assert plan["options"]["max_epochs"] == 9 and plan["options"]["eta"] == 3
    trials = {t["job"]: t for t in plan["trials"]}
    lrs = {j: t["params"]["optimizer.lr"] for j, t in trials.items()}
    failed = {j for j, lr in lrs.items() if lr > 0.3}
    diverged = {j for j, lr in lrs.items() if lr < 3e-4}
    assert failed and diverged, lrs  # seed 1 samples both, so that both rules are exercised
    want = expected_rungs(plan, fail_above=0.3, diverge_below=3e-4)
    assert {j: t["rung"] for j, t in trials.items()} == want
    # three launches: rung 1 (all 12, fresh), rung 2 (4), rung 3 (1); budgets and resume
    assert [[j["job"] for j in launch] for launch in launcher.launches] == [
        list(range(12)),
        sorted(j for j, r in want.items() if r >= 2),
        [j for j, r in want.items() if r == 3],
    ]
    assert [{(j["stop_at"], j["resume"]) for j in launch} for launch in launcher.launches] == [
        {(1, True)},
        {(3, True)},
        {(9, True)},
    ]
    # the objective changes its ranking with the budget in this sample, so the equality above
    # shows that each rung ranked by the objective at its own budget
    ok = [j for j in lrs if j not in failed | diverged]
    by_final = sorted(ok, key=lambda j: (-objective(lrs[j], 9), j))[:4]
    assert sorted(by_final) != sorted(j for j, r in want.items() if r >= 2)
    rows = {r["job"]: r for r in summ["trials"]}
    for j, r in rows.items():
        assert r["bracket"] == 1 and r["rung"] == want[j]
        if j in failed:
            assert r["status"] == "failed" and r["error"].endswith("boom")
        elif j in diverged:
            assert r["status"] == "diverged"
        elif want[j] == 3:
            assert r["status"] == "completed" and r["epochs_run"] == 9
            assert r["objective"] == pytest.approx(objective(lrs[j], 9))
        else:
            budget = plan["brackets"][0]["r"][want[j] - 1]
            assert r["status"] == "pruned" and r["epochs_run"] == budget
            assert r["objective"] == pytest.approx(objective(lrs[j], budget))
            # who stopped it: the rung (in its own metrics.json too), not just its budget
            by = f"sha bracket 1 rung {want[j]} ({budget} epochs)"
            metrics = json.loads((Path(r["dir"]) / "metrics.json").read_text())
            assert r["pruned_by"] == metrics["pruned_by"] == by
        # the summary keeps the trial's own overrides: best.yaml reruns it to the end
        assert r["overrides"] == trials[j]["overrides"]
        assert "trainer.epochs=9" in r["overrides"]
        assert not any(o.startswith(("trainer.stop_at", "trainer.resume")) for o in r["overrides"])
    assert summ["best"]["job"] == next(j for j, r in want.items() if r == 3)
    assert summ["counts"]["failed"] == len(failed) and summ["state"] == "finished"
    csv = (tmp_path / "sweep" / "summary.csv").read_text().splitlines()
    assert csv[0].startswith("job,stage,bracket,rung,status,")


def test_hyperband_brackets_run_in_turn_and_survivors_keep_their_job_numbers(tmp_path):
    launcher, plan, summ = run_fake(tmp_path, kind="hyperband", max_epochs=9, eta=3, seed=1)
    assert [(b["n"], b["r"]) for b in plan["brackets"]] == [
        ([9, 3, 1], [1, 3, 9]),
        ([5, 1], [3, 9]),
        ([3], [9]),
    ]
    assert [t["bracket"] for t in plan["trials"]] == [1] * 9 + [2] * 5 + [3] * 3
    want = expected_rungs(plan)
    assert {t["job"]: t["rung"] for t in plan["trials"]} == want
    assert [[j["job"] for j in launch] for launch in launcher.launches] == [
        list(range(9)),
        sorted(j for j in range(9) if want[j] >= 2),
        [j for j in range(9) if want[j] == 3],
        list(range(9, 14)),
        [j for j in range(9, 14) if want[j] == 2],
        [14, 15, 16],
    ]
    # bracket 3 (s=0) trains its trials straight to R: no stop_at
    assert [j["stop_at"] for j in launcher.launches[-1]] == [9, 9, 9]
    assert summ["counts"] == {
        "completed": 1 + 1 + 3,
        "pruned": 17 - 5,
        "diverged": 0,
        "failed": 0,
        "running": 0,
        "pending": 0,
    }


def test_resume_after_a_kill_in_a_rung_finishes_the_same_sweep(tmp_path, monkeypatch):
    monkeypatch.setattr(stop, "_requested", None)
    opts = {"max_epochs": 9, "eta": 3, "n_trials": 9, "seed": 2}
    _, plan_ref, ref = run_fake(tmp_path / "ref", **opts)
    killer = FakeLauncher(kill_at=1)  # during rung 2, after rung 1's promotions were saved
    with pytest.raises(Killed):
        run_fake(tmp_path, launcher=killer, **opts)
    d = tmp_path / "sweep"
    saved = json.loads((d / "trials.json").read_text())
    assert [t["rung"] for t in saved["trials"]] == [
        min(r, 2) for r in expected_rungs(plan_ref).values()
    ]
    monkeypatch.setattr(stop, "_requested", None)
    again, plan, summ = run_fake(tmp_path, launcher=FakeLauncher(), resume=True, **opts)
    # rung 1 is not retrained; rung 2 is rerun whole (its first job was cut), then rung 3
    assert [[j["job"] for j in launch] for launch in again.launches] == [
        [j["job"] for j in launch] for launch in sha_launches(plan_ref)[1:]
    ]
    assert plan["trials"] == plan_ref["trials"]
    keys = ("job", "status", "objective", "epochs_run", "rung", "bracket", "params")
    assert [{k: r[k] for k in keys} for r in summ["trials"]] == [
        {k: r[k] for k in keys} for r in ref["trials"]
    ]


def sha_launches(plan):
    """The launches (jobs) an uninterrupted sha sweep of this plan makes."""
    last = expected_rungs(plan)
    n = len(plan["brackets"][0]["r"])
    return [[{"job": j} for j in sorted(last) if last[j] >= i] for i in range(1, n + 1)]


def test_bad_options_are_one_line_before_anything_runs(tmp_path):
    for opts, args, msg in (
        ({"eta": 1}, [], "hydra.sweeper.eta=1: expected an integer >= 2"),
        ({"min_epochs": 4, "max_epochs": 3}, [], "min_epochs=4: expected at most max_epochs=3"),
        (
            {},
            ["trainer.epochs=3,9"],
            "trainer.epochs: hydra/sweeper=sha sets it in each rung; give the budgets as "
            "hydra.sweeper.max_epochs and hydra.sweeper.min_epochs",
        ),
    ):
        from omegaconf import open_dict

        from runner.sweep.run import run_sweep

        config = compose(TINY, return_hydra_config=True)
        with open_dict(config):
            config.hydra.sweep.dir = str(tmp_path / "sweep")
        options = {"kind": "sha", "plot": False, "progress": False, **opts}
        with pytest.raises(SweepError, match=msg.replace("(", r"\(")):
            run_sweep(
                options,
                ["optimizer.lr=tag(log,interval(1e-4,1.0))", *args, *TINY],
                config=config,
                hydra_context=None,
                launcher=FakeLauncher(),
            )
        assert not (tmp_path / "sweep").exists()


# ---------------------------------------------------------------------------------------------
# end to end: a tiny sha sweep with the vmap launcher

IRIS = ["data=iris", "model.width=8"]  # the cheapest vmapped groups to compile (test_vectorized's)


def test_sha_with_vmap_groups_promoted_trials_equal_their_runs_alone(tmp_path):
    from conftest import run_inprocess

    d = tmp_path / "sweep"
    p = subprocess.run(
        [sys.executable, "-m", "runner", "-m", "hydra/launcher=vmap", "hydra/sweeper=sha"]
        + TINY
        + [
            *IRIS,
            "optimizer.lr=tag(log,interval(1e-3,0.3))",
            "hydra.sweeper.n_trials=4",
            "hydra.sweeper.eta=2",
            "hydra.sweeper.max_epochs=2",
            "hydra.sweeper.plot=false",
            f"hydra.sweep.dir={d}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert p.returncode == 0, p.stderr
    plan = json.loads((d / "trials.json").read_text())
    summ = json.loads((d / "summary.json").read_text())
    rows = {r["job"]: r for r in summ["trials"]}
    up = [t["job"] for t in plan["trials"] if t["rung"] == 2]
    assert len(up) == 2 and up[1] != up[0] + 1, up  # not consecutive: hydra.sweep.subdir
    assert "bracket 1, rung 1 (1 epoch): 2 of 4 go on to 2 epochs (jobs " in p.stderr
    for j, r in rows.items():
        m = json.loads((d / str(j) / "metrics.json").read_text())
        curves = (d / str(j) / "curves.csv").read_text().splitlines()
        assert len(curves) == 1 + m["epochs_run"]  # a pruned trial keeps its curve
        hydra_yaml = (d / str(j) / ".hydra" / "hydra.yaml").read_text()
        assert f"num: {j}\n" in hydra_yaml  # its own job number in every rung
        if j in up:
            assert r["status"] == m["status"] == "completed" and m["epochs_run"] == 2
            assert m["vectorized"]["members"] == 2  # the survivors as one vmapped group
        elif r["status"] != "diverged":
            assert r["status"] == m["status"] == "pruned"
            assert m["pruned_at"] == 1 and m["epochs_run"] == 1
    # the best survivor against the same config trained alone for the full 2 epochs
    best = summ["best"]["job"]
    _, alone = run_inprocess(
        [*IRIS, f"optimizer.lr={rows[best]['params']['optimizer.lr']}", "trainer.epochs=2"]
    )
    import csv

    got = list(csv.DictReader((d / str(best) / "curves.csv").read_text().splitlines()))
    assert len(got) == len(alone.history) == 2
    for mine, ref in zip(got, alone.history):
        for key in ("train_loss", "val_loss", "val_acc"):
            assert float(mine[key]) == pytest.approx(ref[key], rel=2e-5, abs=1e-6), key
