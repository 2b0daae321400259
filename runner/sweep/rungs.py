"""Hyperband and successive halving in a sweep (hydra/sweeper=hyperband|sha): the part of
runner.sweep.run.Sweep that plans brackets and runs them rung by rung, as a mixin of Sweep (it
uses the sweep's plan, rows, launcher and summary). The arithmetic is runner.sweep.hyperband's;
docs/sweeps.md, "Hyperband and successive halving", says what a rung does."""

from __future__ import annotations

from runner import stop
from runner.sweep import hyperband
from runner.sweep.report import FINAL, sweep_mode
from runner.sweep.space import (
    SweepError,
    describe_space,
    sample_trials,
    space_json,
    with_extra,
)


class Rungs:
    """Sweep's hyperband/sha methods (Sweep inherits them)."""

    def _plan_brackets(self) -> None:
        """The brackets (sha: Hyperband's first alone) and all their trials, planned up front:
        bracket k samples its n_0 configurations with rng_for(seed, k), with consecutive job
        numbers; every trial starts at rung 1, and its "rung" grows as it is promoted."""
        for p in self.space:
            if p.name in ("trainer.stop_at", "trainer.resume") or (
                p.name == "trainer.epochs" and p.swept
            ):
                raise SweepError(
                    f"{p.key}: hydra/sweeper={self.kind} sets it in each rung; give the "
                    f"budgets as hydra.sweeper.max_epochs and hydra.sweeper.min_epochs"
                )
        top_k = self._int_opt("top_k", 1, 5)
        R = self.opts.get("max_epochs")
        if R is None:  # the config's own trainer.epochs (after the fixed overrides)
            R = self.config.trainer.epochs if self.config is not None else None
        r, eta, n = (
            self.opts.get("min_epochs", 1),
            self.opts.get("eta", 3),
            self.opts.get("n_trials"),
        )
        try:
            bs = (
                hyperband.brackets(R, r, eta, n)
                if self.kind == "hyperband"
                else [hyperband.sha(R, r, eta, n)]
            )
        except ValueError as e:
            raise SweepError(str(e)) from None
        self.opts.update(max_epochs=R, min_epochs=r, eta=eta)
        self.stages = [
            {
                "stage": 1,
                "n_trials": 0,
                "epochs": R,
                "top_k": top_k,
                "overrides": [],
                "space": space_json(self.space),
            }
        ]
        extra = [f"trainer.epochs={R}"]  # schedules are defined against the max budget
        notes = []
        for k, b in enumerate(bs, 1):
            planned, note = sample_trials(
                self.space, b.n[0], self.opts.get("seed", 0), k, self.cond
            )
            if note:
                notes.append(f"bracket {k}: {note}")
            self.brackets.append(
                {
                    "bracket": k,
                    "s": b.s,
                    "n": list(hyperband.rung_sizes(len(planned), eta, b.rungs)),
                    "r": list(b.r),
                }
            )
            new = [
                {
                    "job": len(self.trials) + i,
                    "stage": 1,
                    "bracket": k,
                    "rung": 1,
                    "overrides": with_extra(ov, extra),
                    "params": params,
                }
                for i, (ov, params) in enumerate(planned)
            ]
            self._check(new)
            self.trials += new
        self.stages[0]["n_trials"] = len(self.trials)
        if notes:
            self.stages[0]["conditional"] = "; ".join(notes)

    def _bracket_lines(self) -> list[str]:
        out = []
        for b in self.brackets:
            jobs = [t["job"] for t in self.trials if t["bracket"] == b["bracket"]]
            rungs = ", ".join(f"{n} x {r}" for n, r in zip(b["n"], b["r"]))
            where = f"jobs {jobs[0]}-{jobs[-1]}" if len(jobs) > 1 else f"job {jobs[0]}"
            out.append(f"bracket {b['bracket']} (s={b['s']}): {rungs} (trials x epochs; {where})")
        return out

    def _bracket_text(self, done: set[int]) -> str:
        """What a dry run prints: the budgets, the space, each bracket's rungs and trials."""
        R, eta = self.opts["max_epochs"], self.opts["eta"]
        most = sum(
            hyperband.Bracket(b["s"], tuple(b["n"]), tuple(b["r"])).epochs() for b in self.brackets
        )
        n = len(self.trials)
        out = [
            f"{self.kind} sweep (seed {self.opts.get('seed', 0)}, eta {eta}, "
            f"{self.opts['min_epochs']}..{R} epochs) of {n} trials over:",
            *[f"  {d}" for d in describe_space(self.space)],
        ]
        if self.stages and self.stages[0].get("conditional"):
            out.append(self.stages[0]["conditional"])
        lines = dict(zip((b["bracket"] for b in self.brackets), self._bracket_lines()))
        for b in self.brackets:
            out.append(lines[b["bracket"]])
            for t in self.trials:
                if t["bracket"] == b["bracket"]:
                    mark = "  (done)" if t["job"] in done else ""
                    out.append(f"job {t['job']}: {' '.join(t['overrides'])}{mark}")
        out.append(
            f"{n} trials, at most {most} epochs trained in all ({n} x {R} = {n * R} without "
            f"pruning) (dry run: nothing was trained)"
        )
        return "\n".join(out)

    def _mark_cut(self, entered: list[dict], b: dict, i: int, budget: int) -> None:
        """The trials of a decided rung that do not go on say who stopped them: their own run
        wrote pruned_by trainer.stop_at (the budget it was given); the sweep's rung did. In
        their metrics.json (written atomically) and in the summary's rows."""
        from pathlib import Path

        from runner import rundir

        if i == len(b["r"]):
            return  # the last rung cuts nobody
        by = f"{self.kind} bracket {b['bracket']} rung {i} ({budget} epochs)"
        for t in entered:
            row = self.rows.get(t["job"])
            if t["rung"] != i or row is None or row["status"] != "pruned":
                continue
            row["pruned_by"] = by
            read = rundir.read_metrics(Path(row["dir"]))
            if read.ok and read.data.get("pruned_by") != by:
                rundir.write_json(Path(row["dir"]) / rundir.METRICS, {**read.data, "pruned_by": by})

    def _settled(self, t: dict, budget: int) -> bool:
        """Whether trial t has finished the rung of `budget` epochs (or ended before it)."""
        row = self.rows.get(t["job"])
        if row is None:
            return False
        if row["status"] in ("completed", "diverged"):
            return True
        return row["status"] == "pruned" and (row.get("epochs_run") or 0) >= budget

    def _final_count(self) -> int:
        """Trials that will train no more: ended, or pruned at a rung already decided."""
        n = 0
        for t in self.trials:
            row = self.rows.get(t["job"])
            if row is None:
                continue
            if row["status"] != "pruned":
                n += row["status"] in FINAL
                continue
            b = self.brackets[t["bracket"] - 1]
            at = b["r"].index(row["epochs_run"]) + 1 if row.get("epochs_run") in b["r"] else 0
            n += (t["bracket"], at) in self._decided and t["rung"] <= at
        return n

    def _run_rung(self, todo: list[dict], extra: list[str], fresh: bool, progress, task):
        """Launch a rung's trials in batches of n_jobs (default: all at once, so that the vmap
        launcher groups them); returns the failed row that stops the sweep (fail_fast)."""
        if not todo:
            return None
        size = self._batch_size(len(todo))
        for at in range(0, len(todo), size):
            if stop.requested():
                return None
            batch = todo[at : at + size]
            by_job = {t["job"]: t for t in batch}
            launch = [dict(t, overrides=list(t["overrides"]) + extra) for t in batch]
            for row in self._run_batch(launch, fresh):
                # the trial's own overrides: best.yaml and the rerun line train it to the end
                row["overrides"] = list(by_job[row["job"]]["overrides"])
                self._record(row, progress, task)
            self._write_summary("running")
            progress.update(task, completed=self._final_count())
            failed = [
                self.rows[j]
                for j in by_job
                if j in self.rows and self.rows[j]["status"] == "failed"
            ]
            if failed and self.opts.get("fail_fast"):
                return failed[0]
        return None

    def _run_hyperband(self, progress, task):
        """Each bracket in turn, rung by rung. A rung launches its trials with
        trainer.stop_at=<its budget> (none at the last: R) and trainer.resume=true, so that each
        continues in its own folder from its checkpoint (with the vmap launcher: as vmapped
        groups); then the best floor(n_i / eta) by objective (report.objective at that budget)
        go on, and the others stay pruned. Promotions are saved in trials.json ("rung") before
        the next rung starts: a resumed sweep retrains nothing that finished and redoes no
        decision."""
        R = self.opts["max_epochs"]
        self._decided = {
            (b["bracket"], i)
            for b in self.brackets
            for i in range(1, len(b["r"]) + 1)
            if i == len(b["r"])
            or any(t["rung"] > i for t in self.trials if t["bracket"] == b["bracket"])
        }
        for line in self._bracket_lines():
            progress.console.print(f"sweep: {line}", highlight=False)
        progress.update(task, completed=self._final_count())
        for b in self.brackets:
            k = b["bracket"]
            mine = [t for t in self.trials if t["bracket"] == k]
            for i, budget in enumerate(b["r"], 1):
                entered = [t for t in mine if t["rung"] >= i]
                if not entered:
                    break
                if stop.requested():
                    return None
                todo = [t for t in entered if t["rung"] == i and not self._settled(t, budget)]
                extra = ["trainer.resume=true"]
                if budget < R:
                    extra.append(f"trainer.stop_at={budget}")
                stopped = self._run_rung(todo, extra, i == 1, progress, task)
                if stopped or stop.requested():
                    return stopped
                if (k, i) in self._decided:
                    self._mark_cut(entered, b, i, budget)  # again: a kill may have come between
                    continue
                rows = [self.rows[t["job"]] for t in entered if t["job"] in self.rows]
                _, mode = sweep_mode(rows)
                candidates = [
                    (r["job"], r["objective"])
                    for r in rows
                    if r["status"] == "pruned" and r["objective"] is not None
                ]
                up = set(hyperband.promote(candidates, b["n"][i], mode))
                for t in entered:
                    if t["job"] in up:
                        t["rung"] = i + 1
                self._decided.add((k, i))
                self._save_plan()
                self._mark_cut(entered, b, i, budget)
                self._write_summary("running")
                progress.update(task, completed=self._final_count())
                progress.console.print(
                    f"bracket {k}, rung {i} ({budget} epoch{'s' * (budget != 1)}): {len(up)} of "
                    f"{len(rows)} go on to {b['r'][i]} epochs"
                    + (
                        f" (job{'s' * (len(up) != 1)} {', '.join(map(str, sorted(up)))})"
                        if 0 < len(up) <= 8
                        else ""
                    ),
                    highlight=False,
                )
        return None
