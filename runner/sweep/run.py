"""Hyperparameter sweeps: the engine behind the Hydra sweeper plugin in
hydra_plugins/runner_sweeper (selected with hydra/sweeper=runner|random|coarse_to_fine|tpe).

A sweep plans its trials (runner.sweep.plan, with runner.sweep.space's spaces), writes
<sweep_dir>/trials.json before anything trains, then launches the trials through Hydra's
launcher in batches of hydra.sweeper.n_jobs (one at a time with the basic launcher, a whole
stage with the others) with their own job numbers, and after each launch rewrites
summary.json/summary.csv (runner.sweep.report). A trial that fails or diverges is recorded and
the sweep goes on (Hydra's basic sweeper stops at the first failure: hydra issue 2284); the
sweep fails (exit code 2) only when every trial failed, or at the first failure with
hydra.sweeper.fail_fast=true.

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
import shutil
import sys
import time
from pathlib import Path

from runner import stop
from runner.rundir import atomic_write
from runner.sweep.plan import RUNGED, Plan, _quote, _sweep_dir_override
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
    describe_space,
    narrow,
    space_from_json,
)

DONE = ("completed", "diverged", "pruned")


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


def _one_line(e: BaseException) -> str:
    from runner.shell import describe

    return describe(e).replace(" (rerun with --debug for the traceback)", "")


# ---------------------------------------------------------------------------------------------


class Sweep(Plan, Rungs):
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

    # -- plots ------------------------------------------------------------------------------------
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
