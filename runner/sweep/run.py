"""Hyperparameter sweeps: the engine behind the Hydra sweeper plugin in
hydra_plugins/runner_sweeper (selected with hydra/sweeper=runner|random|coarse_to_fine|tpe).

A sweep plans its trials (runner.sweep.space), writes <sweep_dir>/trials.json before anything
trains, then launches the trials through Hydra's launcher in batches of hydra.sweeper.n_jobs
(one at a time with the basic launcher, a whole stage with the others) with their own job
numbers, and after each launch rewrites summary.json/summary.csv (runner.sweep.report). A trial that
fails or diverges is recorded and the sweep goes on (Hydra's basic sweeper stops at the first
failure: hydra issue 2284); the sweep fails (exit code 2) only when every trial failed, or at
the first failure with hydra.sweeper.fail_fast=true.

Options (hydra.sweeper.*): dry_run, fail_fast, resume=<sweep dir>, top_k, progress, plot, params
(Hydra's sweep params as a dict), plot_wait (true|false|auto), n_jobs, prune=median with
prune_warmup_trials and prune_warmup_epochs (grid, random, tpe: runner.sweep.pruning);
random/coarse_to_fine: n_trials, seed, stages; tpe: n_trials, seed, n_startup_trials;
hyperband/sha: n_trials, seed, max_epochs, min_epochs, eta
(rungs: runner.sweep.rungs, with runner.sweep.hyperband's arithmetic). See docs/sweeps.md.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

from runner import stop
from runner.rundir import atomic_write, write_json
from runner.sweep import pruning
from runner.sweep.report import (
    FINAL,
    best_row,
    finite,
    make_row,
    plot_search,
    plot_topk,
    print_report,
    ranked,
    read_metrics,
    summary,
    sweep_mode,
    write_best,
    write_summary,
)
from runner.sweep.rungs import Rungs
from runner.sweep.space import (
    TPE,
    Conditions,
    Param,
    SweepError,
    conditions,
    describe_space,
    grid,
    import_optuna,
    narrow,
    parse_space,
    plan_text,
    sample_trials,
    space_from_json,
    space_json,
    with_extra,
)

KINDS = ("grid", "random", "tpe", "hyperband", "sha")
RUNGED = ("hyperband", "sha")  # trials trained in rungs of growing budgets (runner.sweep.rungs)
STAGE_KEYS = {"epochs", "n_trials", "top_k", "overrides"}
# a resumed sweep skips these trials and reruns the others
DONE = ("completed", "diverged", "pruned")
PRUNABLE = ("grid", "random", "tpe")  # the sweepers hydra.sweeper.prune=median works with


def run_sweep(options: dict, arguments: list[str], *, config, hydra_context, launcher):
    """What the plugin's Sweeper.sweep does: returns the JobReturns, like Hydra's sweepers."""
    return Sweep(
        options, arguments, config=config, hydra_context=hydra_context, launcher=launcher
    ).run()


# ---------------------------------------------------------------------------------------------
# the sweep directory


def claim_dir(base: Path) -> Path:
    """A sweep directory of our own: `base`, or base-1, base-2, ... if another sweep (or anything
    else) is already there. Two sweeps started in the same second get different folders (hydra
    issue 1607): a folder is ours when we create its multirun.yaml with O_EXCL, and only in a
    folder that is new or empty."""
    base = Path(base)
    for i in range(10_000):
        cand = base if i == 0 else base.with_name(f"{base.name}-{i}")
        cand.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(cand)
        except FileExistsError:
            try:
                if not cand.is_dir() or any(cand.iterdir()):
                    continue
            except OSError:
                continue
        try:
            os.close(os.open(cand / "multirun.yaml", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            continue
        return cand
    raise SweepError(f"no free sweep directory next to {base}")


def _sweep_dir_override(folder: Path) -> str:
    """The override that puts a launch's jobs in the sweep's folder (Sweep._run_batch)."""
    return f"hydra.sweep.dir={_quote(str(folder))}"


def _quote(value: str) -> str:
    """A path as an override value in Hydra's grammar."""
    if re.fullmatch(r"[A-Za-z0-9_./\-]+", value):
        return value
    return "'" + value.replace("\\'", "\\\\'").replace("'", "\\'") + "'"


def _one_line(e: BaseException) -> str:
    from runner.shell import describe

    return describe(e).replace(" (rerun with --debug for the traceback)", "")


def _numeric(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------------


class Sweep(Rungs):
    def __init__(self, options: dict, arguments: list[str], *, config, hydra_context, launcher):
        self.opts = dict(options)
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = launcher
        params = self.opts.get("params") or {}
        self.arguments = [f"{k}={v}" for k, v in params.items()] + list(arguments)
        self.kind = self.opts.get("kind", "grid")
        self.stages: list[dict] = []
        self.trials: list[dict] = []
        self.space: list[Param] = []
        self.cond = Conditions()
        self.rows: dict[int, dict] = {}
        self.returns: list = []
        self._checked: set = set()
        self._checked_any = False
        self._curves: dict[int, list[float]] = {}  # job -> monitored metric per epoch (prune)
        self.sweep_dir: Path | None = None
        self.brackets: list[dict] = []  # hyperband/sha: {"s", "n", "r"} (hyperband.Bracket)
        self._decided: set[tuple[int, int]] = set()  # (bracket, rung) whose promotions are made
        self.created = time.strftime("%Y-%m-%dT%H:%M:%S")

    # -- options ----------------------------------------------------------------------------------
    def _int_opt(self, name: str, minimum: int, default=None) -> int:
        v = self.opts.get(name, default)
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise SweepError(f"hydra.sweeper.{name}={v}: expected an integer >= {minimum}")
        return v

    def _plots_later(self) -> bool:
        """Whether topk.png and search.png are drawn after the prompt came back, by a detached
        process (hydra.sweeper.plot_wait: true draws them before the sweep returns; false and
        auto after: a sweep's PNGs go to its folder only, so auto has no exception like a
        run's logger=mlflow, which uploads them)."""
        wait = self.opts.get("plot_wait", "auto")
        if not isinstance(wait, bool) and wait != "auto":
            raise SweepError(f"hydra.sweeper.plot_wait={wait}: expected true, false or auto")
        return bool(self.opts.get("plot", True)) and wait is not True

    def _draw_later(self, summ: dict) -> list[str] | None:
        """Start the process drawing the sweep's PNGs (runner.sweep.plotjob; PENDING is there
        since before summary.json's final write) and return their names, the ones the
        foreground would draw ([]: none, PENDING removed); None when no process could be
        started: drawn here then."""
        from runner import plots
        from runner.search import SEARCH_PNG

        names = (["topk.png"] if summ["best"] else []) + (
            [SEARCH_PNG] if any(r["objective"] is not None for r in summ["trials"]) else []
        )
        if not names:
            (self.sweep_dir / plots.PENDING).unlink(missing_ok=True)
            return []
        top_k = str(self._int_opt("top_k", 1, 5))
        try:
            plots.draw_in_background(self.sweep_dir, top_k, *names, child=plots.SWEEP_CHILD)
        except OSError:  # no process to spare (EAGAIN, ENOMEM): PENDING removed
            return None
        return names

    def _stage_list(self) -> list[dict]:
        raw = self.opts.get("stages")
        top_k = self._int_opt("top_k", 1, 5)
        if not raw:
            n = len(grid(self.space)) if self.kind == "grid" else self._int_opt("n_trials", 1, 20)
            return [
                {
                    "stage": 1,
                    "n_trials": n,
                    "epochs": None,
                    "top_k": top_k,
                    "overrides": [],
                    "space": None,
                }
            ]
        if self.kind != "random":
            raise SweepError(
                "hydra.sweeper.stages: coarse-to-fine stages need "
                "hydra/sweeper=random or coarse_to_fine"
            )
        if not isinstance(raw, list):
            raise SweepError(
                "hydra.sweeper.stages: expected a list like "
                "[{epochs: 3, n_trials: 16}, {epochs: 15, n_trials: 8, top_k: 4}]"
            )
        stages = []
        for i, s in enumerate(raw, 1):
            if not isinstance(s, dict) or set(s) - STAGE_KEYS or "n_trials" not in s:
                raise SweepError(
                    f"hydra.sweeper.stages[{i - 1}]={s}: expected a dict with "
                    f"n_trials and optionally epochs, top_k, overrides"
                )
            n, ep, k = s["n_trials"], s.get("epochs"), s.get("top_k", top_k)
            for name, v in (("n_trials", n), ("epochs", ep), ("top_k", k)):
                if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                    raise SweepError(
                        f"hydra.sweeper.stages[{i - 1}].{name}={v}: expected an integer >= 1"
                    )
            extra = s.get("overrides") or []
            if isinstance(extra, str):
                extra = [extra]
            stages.append(
                {
                    "stage": i,
                    "n_trials": n,
                    "epochs": ep,
                    "top_k": k,
                    "overrides": [str(o) for o in extra],
                    "space": None,
                }
            )
        return stages

    @staticmethod
    def _extra(stage: dict) -> list[str]:
        return ([f"trainer.epochs={stage['epochs']}"] if stage.get("epochs") else []) + list(
            stage.get("overrides") or []
        )

    # -- the plan ---------------------------------------------------------------------------------
    def _compose(self, overrides: list[str]):
        if self.hydra_context is None:
            from runner.help import compose

            return compose(overrides)
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        self._note_checked(overrides)  # _check need not compose these pairs again
        return cfg

    def _note_checked(self, overrides: list[str]) -> None:
        for o in overrides:
            k, _, v = o.partition("=")
            if not _numeric(v):
                self._checked.add((k, v))
        self._checked_any = True

    def _conditions(self, space: list[Param], strict: bool = True) -> Conditions:
        """Which swept keys belong to only some options of a swept group (runner.sweep.space)."""
        try:
            groups = set(self.config.hydra.runtime.choices)
        except Exception:  # noqa: BLE001 - a config made by hand: runner's own groups
            from runner.shell import GROUPS

            groups = set(GROUPS)
        return conditions(space, groups, self._compose, strict=strict)

    def _new_plan(self) -> None:
        if self.kind not in KINDS:
            raise SweepError(f"hydra.sweeper.kind={self.kind}: choose one of {', '.join(KINDS)}")
        loader = self.hydra_context.config_loader if self.hydra_context else None
        self.space = parse_space(self.arguments, loader)
        self.cond = self._conditions(self.space)
        if self.kind in ("random", "tpe", *RUNGED):
            self._int_opt("seed", 0, 0)
        if self.kind == "tpe":
            import_optuna()
            self._int_opt("n_startup_trials", 0, 10)
        if self.opts.get("n_jobs") is not None:  # refused before the sweep folder exists
            self._int_opt("n_jobs", 1)
        self._check_prune()
        if self.kind in RUNGED:
            self._plan_brackets()
            return
        self.stages = self._stage_list()
        self.stages[0]["space"] = space_json(self.space)
        if self.kind != "tpe":
            self._plan_stage(self.stages[0], self.space)

    def _plan_stage(self, stage: dict, space: list[Param]) -> None:
        stage["space"] = space_json(space)
        # a narrowed space may have kept only options that lack a key: no error then
        cond = self.cond if stage["stage"] == 1 else self._conditions(space, strict=False)
        if self.kind == "grid":
            planned, note = cond.apply(grid(space))
        else:  # trials that leaving out keys makes equal are drawn again
            seed = self.opts.get("seed", 0)
            planned, note = sample_trials(space, stage["n_trials"], seed, stage["stage"], cond)
        if note:
            stage["conditional"] = note
        stage["n_trials"] = len(planned)
        job = len(self.trials)
        extra = self._extra(stage)
        new = [
            {
                "job": job + i,
                "stage": stage["stage"],
                "overrides": with_extra(ov, extra),
                "params": params,
            }
            for i, (ov, params) in enumerate(planned)
        ]
        self._check(new)
        self.trials += new

    def _check(self, trials: list[dict]) -> None:
        """Compose the config of each trial that brings a new non-numeric key=value (a group
        option, a string): a typo fails here, in one line, before anything trains."""
        if self.hydra_context is None:
            return
        for t in trials:
            pairs = set()
            for o in t["overrides"]:
                k, _, v = o.partition("=")
                if not _numeric(v):
                    pairs.add((k, v))
            if pairs - self._checked or not self._checked_any:
                self._compose_trial(list(t["overrides"]))
                self._note_checked(t["overrides"])

    def _compose_trial(self, overrides: list[str]) -> None:
        """Compose a trial's config (Hydra's error for bad input). With the vmap launcher, as
        its launch will (through the launcher's Composer, with the sweep folder that
        _run_batch adds, as claim_dir will name it when it is free): the launches then derive
        their jobs from this template instead of composing it again (~0.2 s)."""
        launcher = self.launcher
        if type(launcher).__name__ == "VmapLauncher" and launcher.config is self.config:
            from runner.sweep.compose import composer_of

            wanted = Path(str(self.config.hydra.sweep.dir))
            composer_of(launcher).compose_job([*overrides, _sweep_dir_override(wanted)])
        else:
            self.hydra_context.config_loader.load_sweep_config(self.config, overrides)

    def _plan_json(self) -> dict:
        keep = ("n_trials", "seed", "top_k", "n_startup_trials")
        keep += ("prune", "prune_warmup_trials", "prune_warmup_epochs")
        keep += ("max_epochs", "min_epochs", "eta")
        return {
            "version": 1,
            "kind": self.kind,
            "created": self.created,
            "arguments": self.arguments,
            "options": {k: self.opts[k] for k in keep if k in self.opts},
            "stages": self.stages,
            **({"brackets": self.brackets} if self.kind in RUNGED else {}),
            "trials": self.trials,
        }

    def _save_plan(self) -> None:
        write_json(self.sweep_dir / "trials.json", self._plan_json())

    def _load_plan(self, path: Path) -> None:
        try:
            plan = json.loads((path / "trials.json").read_text())
        except FileNotFoundError:
            raise SweepError(
                f"hydra.sweeper.resume={path}: no trials.json there (not a sweep "
                f"directory of runner's)"
            ) from None
        except (OSError, ValueError) as e:
            raise SweepError(f"hydra.sweeper.resume={path}: cannot read trials.json: {e}") from None
        if self.arguments and self.arguments != plan["arguments"]:
            raise SweepError(
                f"hydra.sweeper.resume: the overrides differ from those of the sweep in {path} "
                f"({' '.join(plan['arguments'])}); give the same ones, or none"
            )
        self.kind = plan["kind"]
        self.arguments = plan["arguments"]
        for k, v in plan.get("options", {}).items():
            if k != "top_k":
                self.opts[k] = v
        self.created = plan.get("created", self.created)
        self.stages = plan["stages"]
        self.brackets = plan.get("brackets", [])
        self.trials = plan["trials"]
        self.space = space_from_json(self.stages[0]["space"])
        if self.kind == "tpe":
            import_optuna()
            self.cond = self._conditions(self.space)

    # -- the median rule (runner.sweep.pruning) ---------------------------------------------------
    def _check_prune(self) -> None:
        prune = self.opts.get("prune")
        if prune is None:
            return
        if prune not in pruning.PRUNERS:
            raise SweepError(
                f"hydra.sweeper.prune={prune}: unknown; choose one of "
                f"{', '.join(pruning.PRUNERS)} or null (off)"
            )
        if self.kind not in PRUNABLE:
            raise SweepError(
                f"hydra.sweeper.prune={prune}: for the grid, random, coarse_to_fine and tpe "
                f"sweepers; hydra/sweeper={self.kind} prunes by its own rule"
            )
        self._int_opt("prune_warmup_trials", 0, 5)
        self._int_opt("prune_warmup_epochs", 0, 1)

    def _warmup_left(self, trials: list[dict]) -> int:
        """How many of `trials` (one stage's) run before the median rule has its warm-up trials
        (0: the rule is off or already has them)."""
        if self.opts.get("prune") is None or not trials:
            return 0
        stage = trials[0].get("stage", 1)
        fed = sum(r["stage"] == stage and r["status"] in pruning.FEEDS for r in self.rows.values())
        return max(0, self.opts.get("prune_warmup_trials", 5) - fed)

    def _prune_override(self, stage: int) -> list[str]:
        """[trainer.prune_curve=[...]] for the next launch of `stage`: the median curve of its
        finished trials (pruning.median_curve); [] when the rule is off, before
        prune_warmup_trials of them finished, with k-fold trials, or with nothing to check."""
        if self.opts.get("prune") is None:
            return []
        fed = [
            r
            for r in self.rows.values()
            if r["stage"] == stage and r["status"] in pruning.FEEDS and r.get("dir")
        ]
        if len(fed) < self.opts.get("prune_warmup_trials", 5) or any(
            r.get("cv_folds") for r in fed
        ):
            return []
        monitor, _ = sweep_mode(fed)
        curves = []
        for r in fed:
            if monitor and r.get("monitor") == monitor:
                if r["job"] not in self._curves:  # a finished trial's curve does not change
                    self._curves[r["job"]] = pruning.read_curve(r["dir"], monitor)
                curves.append(self._curves[r["job"]])
        curve = pruning.median_curve(curves, self.opts.get("prune_warmup_epochs", 1))
        return [pruning.override(curve)] if curve else []

    # -- dry run ----------------------------------------------------------------------------------
    def _print_plan(self, done: set[int]) -> None:
        if self.kind in RUNGED:
            print(self._bracket_text(done), flush=True)
            return
        print(
            plan_text(
                self.kind, self.opts.get("seed", 0), self.space, self.stages, self.trials, done
            ),
            flush=True,
        )

    # -- running ----------------------------------------------------------------------------------
    def _job_dir(self, job: int) -> Path:
        return self.sweep_dir / str(job)

    def _row_of_done(self, trial: dict, dirs: dict) -> dict | None:
        run_dir = Path(dirs.get(trial["job"]) or self._job_dir(trial["job"]))
        m = read_metrics(run_dir)
        if m and m.get("status") in DONE:
            return make_row(trial, run_dir, m)
        return None

    def _batch_size(self, pending: int) -> int:
        """How many trials to hand the launcher at once (hydra.sweeper.n_jobs)."""
        n = self.opts.get("n_jobs")
        if n is not None:
            return self._int_opt("n_jobs", 1)
        # fail_fast promises that nothing runs after the first failure: one trial at a time.
        if type(self.launcher).__name__ == "BasicLauncher" or self.opts.get("fail_fast"):
            return 1
        # TPE and the median rule learn from finished trials: a whole stage at once would be
        # a random search, or prune nothing.
        learns = self.kind == "tpe" or self.opts.get("prune") is not None
        return min(pending, 8) if learns else max(pending, 1)

    def _run_batch(self, trials: list[dict], fresh: bool = True) -> list[dict]:
        """Launch trials with consecutive job numbers in one call; returns their rows. If the
        launcher fails on the batch as a whole (a trial whose config does not compose), the
        trials are launched one by one so that only the bad one is recorded as failed.
        fresh=False (a hyperband rung after the first): the trials continue in their folders,
        whose job numbers need not be consecutive (hydra.sweep.subdir)."""
        for t in trials if fresh else ():
            stale = self._job_dir(t["job"])
            if stale.is_dir():  # a trial cut short before (resume): start it afresh
                shutil.rmtree(stale, ignore_errors=True)
        sweep_dir = _sweep_dir_override(self.sweep_dir)
        # not in the trial's overrides: the summary, best.yaml and the rerun line leave it out
        prune = self._prune_override(trials[0].get("stage", 1))
        # Hydra numbers a launch's jobs from initial_job_idx on; the survivors of a rung are
        # not consecutive, so each names its own folder (runner's vmap launcher also takes its
        # job number from it; with Hydra's basic launcher each batch holds one trial anyway).
        jobs = [t["job"] for t in trials]
        own = jobs != list(range(jobs[0], jobs[0] + len(jobs)))
        t0 = time.perf_counter()
        try:
            rets = self.launcher.launch(
                [
                    list(t["overrides"])
                    + prune
                    + [sweep_dir]
                    + ([f"hydra.sweep.subdir={t['job']}"] if own else [])
                    for t in trials
                ],
                initial_job_idx=trials[0]["job"],
            )
        except Exception as e:  # noqa: BLE001 - composing a trial failed: record it, go on
            if len(trials) > 1:
                return [row for t in trials for row in self._run_batch([t], fresh)]
            return [
                make_row(
                    trials[0],
                    None,
                    None,
                    status="failed",
                    error=_one_line(e),
                    wall_time=time.perf_counter() - t0,
                )
            ]
        # None: a job the launcher did not start because of a stop (runner.stop); it stays
        # pending, and resume runs it.
        ran = [(t, ret) for t, ret in zip(trials, rets) if ret is not None]
        wall = (time.perf_counter() - t0) / max(1, len(ran))
        self.returns.append([ret for _, ret in ran])
        return [self._row_of(t, ret, wall) for t, ret in ran]

    def _row_of(self, trial: dict, ret, wall: float) -> dict:
        from hydra.core.utils import JobStatus

        try:
            run_dir = Path(ret.hydra_cfg.hydra.runtime.output_dir)
        except Exception:  # noqa: BLE001 - a launcher's JobReturn without it: the usual folder
            run_dir = self._job_dir(trial["job"])
        metrics = read_metrics(run_dir)
        if ret.status == JobStatus.COMPLETED:  # never touch ret.return_value (issue 2284)
            row = make_row(trial, run_dir, metrics, status="completed", wall_time=wall)
            if metrics is None and finite(ret._return_value):
                row["objective"] = float(ret._return_value)
        else:
            err = ret._return_value
            msg = _one_line(err) if isinstance(err, BaseException) else str(err)
            row = make_row(trial, run_dir, metrics, status="failed", error=msg, wall_time=wall)
        return row

    def _run_trials(self, trials: list[dict], progress, task) -> dict | None:
        """Run trials in launcher batches of consecutive job numbers, recording each; returns
        the failed row that stops the sweep (fail_fast), if any."""
        size = self._batch_size(len(trials))
        todo = list(trials)
        while todo:
            if stop.requested():
                return None
            # Until the median rule has its warm-up trials, a launch holds only as many as it
            # lacks (fewer finish than ran when some diverge): the medians come from them.
            cap = min(size, self._warmup_left(todo) or size)
            batch = [todo.pop(0)]
            while todo and len(batch) < cap and batch[-1]["job"] + 1 == todo[0]["job"]:
                batch.append(todo.pop(0))
            for row in self._run_batch(batch):
                self._record(row, progress, task)
            self._write_summary("running")  # once per launch: its trials finished together
            failed = [
                r
                for r in (self.rows[t["job"]] for t in batch if t["job"] in self.rows)
                if r["status"] == "failed"
            ]
            if failed and self.opts.get("fail_fast"):
                return failed[0]
        return None

    def _stats(self) -> str:
        rows = list(self.rows.values())
        _, mode = sweep_mode(rows)
        best = best_row(rows, mode)
        bits = [f"best {best['objective']:.4g} (job {best['job']})" if best else "best -"]
        for st in ("failed", "diverged", "pruned"):
            n = sum(r["status"] == st for r in rows)
            if n:
                bits.append(f"{n} {st}")
        return " | ".join(bits)

    def _write_summary(self, state: str) -> dict:
        rows = [self.rows.get(t["job"]) or make_row(t) for t in self.trials]
        summ = summary(
            rows,
            sweep_dir=self.sweep_dir,
            kind=self.kind,
            state=state,
            stages=[dict(s) for s in self.stages],
        )
        write_summary(self.sweep_dir, summ)
        return summ

    def _record(self, row: dict, progress, task) -> None:
        self.rows[row["job"]] = row
        if row["status"] == "failed":
            progress.console.print(
                f"[red]job {row['job']} failed:[/] {row['error']}", highlight=False
            )
        elif row["status"] == "diverged":
            progress.console.print(
                f"[yellow]job {row['job']} diverged[/] at epoch "
                f"{row.get('epochs_run')}: {row.get('reason')}",
                highlight=False,
            )
        progress.update(task, advance=1, stats=self._stats())

    def _next_stage_space(self, stage: dict) -> list[Param] | None:
        prev = [
            self.rows[t["job"]]
            for t in self.trials
            if t["stage"] == stage["stage"] - 1 and t["job"] in self.rows
        ]
        _, mode = sweep_mode(prev)
        top = [
            r
            for r in ranked(prev, mode)
            if r["status"] == "completed" and r["objective"] is not None
        ][: stage["top_k"]]
        if not top:
            return None
        prev_space = space_from_json(self.stages[stage["stage"] - 2]["space"])
        return narrow(prev_space, [r["params"] for r in top])

    def run(self):
        self._plots_later()  # a bad hydra.sweeper.plot_wait refused before anything runs
        resume = self.opts.get("resume")
        dirs: dict = {}
        if resume:
            self.sweep_dir = Path(str(resume))
            self._load_plan(self.sweep_dir)
            try:
                prev = json.loads((self.sweep_dir / "summary.json").read_text())
                dirs = {r["job"]: r.get("dir") for r in prev.get("trials", [])}
            except (OSError, ValueError):
                dirs = {}
            done = {t["job"]: r for t in self.trials if (r := self._row_of_done(t, dirs))}
            self._check_prune()
        else:
            self._new_plan()
            done = {}
        if self.opts.get("dry_run"):
            self._print_plan(set(done))
            return []

        from omegaconf import OmegaConf, open_dict

        if not resume:
            wanted = Path(str(self.config.hydra.sweep.dir))
            self.sweep_dir = claim_dir(wanted)
            atomic_write(self.sweep_dir / "multirun.yaml", OmegaConf.to_yaml(self.config))
            if self.sweep_dir != wanted:
                print(
                    f"sweep: {wanted} is taken; this sweep writes to {self.sweep_dir}",
                    file=sys.stderr,
                )
        with open_dict(self.config):
            self.config.hydra.sweep.dir = str(self.sweep_dir)  # the launcher's mkdir
        self._save_plan()
        self.rows.update(done)
        return self._execute(bool(resume))

    def _execute(self, resumed: bool):
        from rich.console import Console
        from rich.progress import Progress

        from runner import progress as shared

        total = sum(s["n_trials"] for s in self.stages)
        # The ETA from the mean speed since the start (rich's default looks at the last 30 s
        # only, which shows no ETA at all when each trial takes longer than that).
        progress = Progress(
            *shared.columns(),
            console=Console(stderr=True),
            disable=not self.opts.get("progress", True),
            transient=False,
            speed_estimate_period=7 * 24 * 3600,
        )
        verb = "resuming" if resumed else "running"
        progress.console.print(
            f"sweep: {verb} {total} trials ({self.kind}) in [bold]{self.sweep_dir}[/]",
            highlight=False,
        )
        for st in self.stages:
            if st.get("conditional"):
                progress.console.print(
                    f"sweep: {st['conditional']}", highlight=False, soft_wrap=True
                )
        task = progress.add_task(
            "sweep", total=total, unit="trial", stats=self._stats(), completed=len(self.rows)
        )
        stopped = None
        state = "interrupted"
        progress.start()
        shared.share(progress)
        try:
            if self.kind == "tpe":
                stopped = self._run_tpe(progress, task)
            elif self.kind in RUNGED:
                stopped = self._run_hyperband(progress, task)
            else:
                stopped = self._run_stages(progress, task)
            state = "stopped" if stopped else "interrupted" if stop.requested() else "finished"
        except KeyboardInterrupt:  # a second Ctrl-C: what finished is kept all the same
            stop.note_interrupt()
        finally:
            shared.share(None)
            progress.stop()
            if state != "interrupted" and self._plots_later():
                from runner import plots

                # before summary.json says the sweep ended: no reader sees a finished sweep
                # whose PNGs are coming but not announced (_finish starts their drawing)
                plots.mark_pending(self.sweep_dir)
            summ = self._write_summary(state)
        if state == "interrupted":
            self._interrupted(summ)
            return self.returns
        self._finish(summ, stopped)
        return self.returns

    def _interrupted(self, summ: dict) -> None:
        """One line instead of the closing table: what was kept and how to go on."""
        rows = summ["trials"]
        done = sum(r["status"] in DONE for r in rows)
        print(
            f"sweep: interrupted ({stop.signal_name() or 'SIGINT'}) with {done} of "
            f"{len(rows)} trials done; kept in {self.sweep_dir}; resume with: runner -m "
            f"hydra.sweeper.resume={_quote(str(self.sweep_dir))}",
            file=sys.stderr,
            flush=True,
        )

    def _run_stages(self, progress, task):
        for stage in self.stages:
            if stop.requested():
                return None
            if not any(t["stage"] == stage["stage"] for t in self.trials):
                space = self._next_stage_space(stage)
                if space is None:
                    progress.console.print(
                        f"[yellow]stage {stage['stage']} skipped:[/] no trial of stage "
                        f"{stage['stage'] - 1} completed",
                        highlight=False,
                    )
                    stage["skipped"] = True
                    self._save_plan()
                    progress.update(task, total=len(self.trials))
                    break
                self._plan_stage(stage, space)
                self._save_plan()
                progress.console.print(
                    f"stage {stage['stage']}: " + "; ".join(describe_space(space)), highlight=False
                )
                if stage.get("conditional"):
                    progress.console.print(
                        f"sweep: {stage['conditional']}", highlight=False, soft_wrap=True
                    )
                progress.update(task, total=sum(s["n_trials"] for s in self.stages))
            pending = [
                t for t in self.trials if t["stage"] == stage["stage"] and t["job"] not in self.rows
            ]
            stopped = self._run_trials(pending, progress, task)
            if stopped:
                return stopped
        return None

    def _run_tpe(self, progress, task):
        n_total = self._int_opt("n_trials", 1, 20)
        tpe = TPE(
            self.space,
            seed=self.opts.get("seed", 0),
            n_startup_trials=self.opts.get("n_startup_trials", 10),
            cond=self.cond,
        )
        # A resumed sweep: its trials so far, rerun where unfinished.
        stopped = self._run_trials(
            [t for t in self.trials if t["job"] not in self.rows], progress, task
        )
        if stopped or stop.requested():
            return stopped
        for t in self.trials:
            tpe.add(t["params"], self.rows[t["job"]])
        while len(self.trials) < n_total and not stop.requested():
            batch = []
            for _ in range(
                min(self._batch_size(n_total - len(self.trials)), n_total - len(self.trials))
            ):
                trial, (overrides, params) = tpe.ask()
                t = {"job": len(self.trials), "stage": 1, "overrides": overrides, "params": params}
                self._check([t])
                self.trials.append(t)
                batch.append((trial, t))
            self._save_plan()
            stopped = self._run_trials([t for _, t in batch], progress, task)
            if stop.requested():
                return None
            for trial, t in batch:
                tpe.tell(trial, self.rows[t["job"]])
            if stopped:
                return stopped
        return None

    # -- the end ----------------------------------------------------------------------------------
    def _finish(self, summ: dict, stopped: dict | None) -> None:
        from rich.console import Console

        console = Console()
        try:
            groups = set(self.config.hydra.runtime.choices)
        except Exception:  # noqa: BLE001 - no hydra.runtime.choices (a config made by hand)
            groups = set()
        groups.add("logger")  # several at once (logger=[a,b]): Hydra lists no choice for it
        best = write_best(self.sweep_dir, summ, groups)
        drawing = self._draw_later(summ) if self._plots_later() else None
        plot = self.opts.get("plot", True) and drawing is None
        plotted = False
        if plot and summ["best"]:
            try:
                plotted = plot_topk(self.sweep_dir, summ, self._int_opt("top_k", 1, 5))
            except Exception as e:  # noqa: BLE001 - a plot must not fail the sweep
                print(f"sweep: topk.png not drawn: {_one_line(e)}", file=sys.stderr)
        searched = False
        if plot:
            try:
                searched = plot_search(self.sweep_dir, summ)
            except Exception as e:  # noqa: BLE001 - a plot must not fail the sweep
                print(f"sweep: search.png not drawn: {_one_line(e)}", file=sys.stderr)
        print_report(
            console, summ, self.sweep_dir, best, plotted, searched=searched, drawing=drawing or ()
        )
        rows = summ["trials"]
        if stopped:
            raise SweepError(
                f"sweep stopped at job {stopped['job']} (hydra.sweeper.fail_fast): "
                f"{stopped['error']}"
            )
        ran = [r for r in rows if r["status"] in FINAL]
        if ran and all(r["status"] == "failed" for r in ran):
            first = min(ran, key=lambda r: r["job"])
            raise SweepError(
                f"sweep: all {len(ran)} trials failed; first error (job "
                f"{first['job']}): {first['error']}"
            )
