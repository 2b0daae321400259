"""A sweep's plan: its options, stages and trials, checked before anything trains and kept in
<sweep_dir>/trials.json (written before the first launch, read back by hydra.sweeper.resume),
and the median rule's state (runner.sweep.pruning). The part of runner.sweep.run.Sweep that
decides what runs, as a mixin of Sweep (it uses the sweep's options, config, launcher and rows);
runner.sweep.run runs it."""

from __future__ import annotations

import json
import re
from pathlib import Path

from runner.rundir import write_json
from runner.sweep import pruning
from runner.sweep.report import sweep_mode
from runner.sweep.space import (
    Conditions,
    Param,
    SweepError,
    conditions,
    grid,
    import_optuna,
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
PRUNABLE = ("grid", "random", "tpe")  # the sweepers hydra.sweeper.prune=median works with


def _sweep_dir_override(folder: Path) -> str:
    """The override that puts a launch's jobs in the sweep's folder (Sweep._run_batch)."""
    return f"hydra.sweep.dir={_quote(str(folder))}"


def _quote(value: str) -> str:
    """A path as an override value in Hydra's grammar."""
    if re.fullmatch(r"[A-Za-z0-9_./\-]+", value):
        return value
    return "'" + value.replace("\\'", "\\\\'").replace("'", "\\'") + "'"


def _numeric(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


class Plan:
    """Sweep's planning methods (Sweep inherits them)."""

    def _int_opt(self, name: str, minimum: int, default=None) -> int:
        v = self.opts.get(name, default)
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise SweepError(f"hydra.sweeper.{name}={v}: expected an integer >= {minimum}")
        return v

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
        self._launch_as_before(path)

    def _launch_as_before(self, path: Path) -> None:
        """A resumed sweep launches as the sweep did (its multirun.yaml): the vmap launcher's
        max_members decides its groups, and a group's members agree with their runs alone
        only to float noise, which 30 epochs can grow into another last digit. So it is taken
        from the sweep unless the resume command sets it; another launcher than the sweep's
        is named in one line (a cluster's may be wanted)."""
        import sys

        from omegaconf import OmegaConf

        try:
            before = OmegaConf.load(path / "multirun.yaml").hydra
            was = before.runtime.choices.get("hydra/launcher")
            now = self.config.hydra.runtime.choices.get("hydra/launcher")
            given = list(self.config.hydra.overrides.hydra)
            members = before.launcher.get("max_members")
        except Exception:  # noqa: BLE001 - no readable multirun.yaml: launch as configured
            return
        if was != now:
            print(
                f"sweep: this resume launches with hydra/launcher={now}; the sweep ran with "
                f"hydra/launcher={was} (pass it again for the same groups)",
                file=sys.stderr,
            )
            return
        launcher = self.launcher
        if (
            members is not None
            and hasattr(launcher, "max_members")
            and launcher.max_members != members
            and not any(o.startswith("hydra.launcher.max_members=") for o in given)
        ):
            launcher.max_members = int(members)
            print(
                f"sweep: resuming with hydra.launcher.max_members={members}, as the sweep ran",
                file=sys.stderr,
            )

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
