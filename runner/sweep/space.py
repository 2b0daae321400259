"""The search space of a sweep, from Hydra's override grammar: parsing, grid products, random
samples, coarse-to-fine narrowing and the Optuna TPE wrapper (the log-spaced grid functions are in
runner.sweep.grammar).

A space is a list of Params, one per command-line override, in command-line order:
  fixed     key=value                    the same in every trial
  choice    a,b,c | choice(...) | range(...) | glob(...) | logspace(...) | geomspace(...)
  interval  interval(a,b) (uniform), tag(log,interval(a,b)) (log-uniform), int(interval(a,b))

A key under a group whose option is swept (optimizer.momentum with optimizer=sgd,momentum) is
conditional (Conditions): each trial keeps it only where its option has it, and trials made equal
collapse; every sweeper passes its trials through Conditions.apply (TPE asks such keys only of the
options that have them).

Only this module knows Hydra's parser; the rest of runner.sweep sees Params and override strings.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field

from runner import search
from runner.config import ConfigError
from runner.sweep.grammar import install_grammar


class SweepError(ConfigError):
    """A bad sweep or a failed one: the message is one line, which runner.shell prints as
    `runner: error: <message>` (exit code 2)."""


# ---------------------------------------------------------------------------------------------
# Params


@dataclass
class Param:
    key: str  # as on the command line, with its + / ++ / ~ prefix
    kind: str  # fixed | choice | interval
    values: list = field(default_factory=list)  # fixed: [value string]; choice: value strings
    low: float | None = None  # interval bounds (ints for int(interval(...)))
    high: float | None = None
    log: bool = False
    integer: bool = False

    @property
    def swept(self) -> bool:
        return self.kind != "fixed"

    @property
    def name(self) -> str:
        """The config key without its prefix (the column name in summaries)."""
        return self.key.lstrip("+~")

    def describe(self) -> str:
        if self.kind == "fixed":
            return f"{self.key}={self.values[0]}"
        if self.kind == "choice":
            return f"{self.key}: one of {', '.join(self.values)}"
        scale = "log-uniform" if self.log else "uniform"
        what = "integer" if self.integer else "float"
        return f"{self.key}: {scale} {what} in [{fmt(self.low)}, {fmt(self.high)}]"

    def to_json(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_json(d: dict) -> Param:
        return Param(**d)


def fmt(x) -> str:
    """A sampled number as an override value: ints as ints, floats to 6 significant digits and
    always readable as a float by Hydra's grammar (2.0, not 2)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x)
    if isinstance(x, int):
        return str(x)
    s = f"{x:.6g}"
    if not any(c in s for c in ".enai"):
        s += ".0"
    return s


native = search.native  # '0.01' -> 0.01, '3' -> 3, 'adam' -> 'adam'


def parse_space(arguments: list[str], config_loader=None) -> list[Param]:
    """Params of the sweep overrides (hydra.* overrides are not swept: Hydra refuses those)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import IntervalSweep

    install_grammar()
    parser = OverridesParser.create(config_loader=config_loader)
    space: list[Param] = []
    for ov in parser.parse_overrides(list(arguments)):
        before = len(space)
        key = ov.get_key_element()
        value = ov.value()
        tags = set(getattr(value, "tags", None) or ())
        if tags - {"log"}:
            raise SweepError(
                f"{ov.input_line}: unknown tag {sorted(tags - {'log'})[0]!r}; the "
                f"only tag runner knows is log, as in tag(log,interval(1e-5,1e-1))"
            )
        if not ov.is_sweep_override():
            space.append(Param(key, "fixed", [ov.get_value_string()]))  # as typed
        elif ov.is_interval_sweep():
            assert isinstance(value, IntervalSweep)
            integer = isinstance(value.start, int) and isinstance(value.end, int)
            low, high = value.start, value.end
            if not low < high:
                raise SweepError(f"{ov.input_line}: interval(a, b) needs a < b")
            if "log" in tags and low <= 0:
                raise SweepError(f"{ov.input_line}: a log interval needs a start > 0")
            space.append(
                Param(key, "interval", low=low, high=high, log="log" in tags, integer=integer)
            )
        else:
            if "log" in tags:
                raise SweepError(
                    f"{ov.input_line}: tag(log, ...) applies to interval(...); for a log-spaced "
                    f"grid write {ov.key_or_group}=logspace(-5,-1,9)"
                )
            values = list(ov.sweep_string_iterator())
            if not values:
                raise SweepError(f"{ov.input_line}: the sweep has no values")
            space.append(Param(key, "choice", values))
        # A key given twice: the later one wins, in the earlier one's place (as in Hydra's basic
        # sweeper).
        same = [i for i, p in enumerate(space[:before]) if p.name == space[-1].name]
        if same:
            space[same[0]] = space.pop()
    return space


def override(p: Param, value) -> str:
    return f"{p.key}={value if isinstance(value, str) else fmt(value)}"


# ---------------------------------------------------------------------------------------------
# Trials: a trial is (overrides, params): the override strings and the swept values


def grid(space: list[Param]) -> list[tuple[list[str], dict]]:
    """Hydra's cartesian product (the last key varies fastest, as in the basic sweeper)."""
    for p in space:
        if p.kind == "interval":
            raise SweepError(
                f"{p.key}=interval(...): a grid cannot enumerate an interval; use "
                f"hydra/sweeper=random (or tpe), or a grid such as {p.name}=logspace(-5,-1,9)"
            )
    options = [[(p, v) for v in (p.values)] for p in space]
    trials = []
    for combo in itertools.product(*options):
        trials.append(
            ([override(p, v) for p, v in combo], {p.name: native(v) for p, v in combo if p.swept})
        )
    return trials


def sample_value(p: Param, rng):
    if p.kind == "fixed":
        return p.values[0]
    if p.kind == "choice":
        return p.values[int(rng.integers(len(p.values)))]
    lo, hi = float(p.low), float(p.high)
    if p.integer:
        hi += 1.0  # inclusive: floor of a draw from [lo, hi + 1)
    u = rng.random()
    x = math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))) if p.log else lo + u * (hi - lo)
    if p.integer:
        return min(int(math.floor(x)), int(p.high))
    return float(f"{x:.6g}")


def sample(space: list[Param], n: int, rng) -> list[tuple[list[str], dict]]:
    trials = []
    for _ in range(n):
        values = [(p, sample_value(p, rng)) for p in space]
        trials.append(
            ([override(p, v) for p, v in values], {p.name: native(v) for p, v in values if p.swept})
        )
    return trials


def sample_trials(
    space: list[Param], n: int, seed: int, stage: int, cond
) -> tuple[list, str | None]:
    """n random trials of the space through cond (a Conditions: (trials, note) as its apply
    gives them). Where leaving out the keys an option lacks collapses trials into one, more are
    drawn from the same stream (its first n draws are sample(n)'s), doubling up to 16n draws,
    so that n trials run where the space has them; the note says so."""
    first, note = cond.apply(sample(space, n, rng_for(seed, stage)))
    if len(first) >= n or not cond:
        return first, note
    draws, planned = n, first
    while len(planned) < n and draws < 16 * n:
        draws *= 2
        planned, _ = cond.apply(sample(space, draws, rng_for(seed, stage)))
    planned = planned[:n]
    if len(planned) == n:
        more = f"; {n - len(first)} more drawn to run {n}"
    else:
        more = f"; {len(planned)} trials after {draws} draws"
    return planned, (note or "conditional") + more


def rng_for(seed: int, stage: int):
    import numpy as np

    return np.random.default_rng([int(seed), int(stage)])


def narrow(space: list[Param], top: list[dict]) -> list[Param]:
    """The space around the top trials (their params dicts): each interval becomes [min, max] of
    the top values (log-uniform stays log-uniform, so narrowed in log space), each choice the top
    values (in their original order); fixed keys stay."""
    out = []
    for p in space:
        if not p.swept or not top:
            out.append(p)
            continue
        vals = [t[p.name] for t in top if p.name in t]
        if not vals:
            out.append(p)
        elif p.kind == "interval":
            lo, hi = min(vals), max(vals)
            if p.integer:
                lo, hi = int(lo), int(hi)
            out.append(Param(p.key, "interval", low=lo, high=hi, log=p.log, integer=p.integer))
        else:
            keep = {str(native(v)) for v in vals}
            out.append(Param(p.key, "choice", [v for v in p.values if str(native(v)) in keep]))
    return out


def with_extra(overrides: list[str], extra: list[str]) -> list[str]:
    """overrides, minus the keys `extra` sets, plus `extra` (a stage's trainer.epochs=...)."""
    keys = {e.split("=", 1)[0].lstrip("+~") for e in extra}
    return [o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in keys] + list(extra)


# ---------------------------------------------------------------------------------------------
# Optuna TPE: a thin ask/tell wrapper (optuna is an optional extra: pip install 'runner[optuna]')


def import_optuna():
    try:
        import optuna
    except ImportError:
        raise SweepError(
            "hydra/sweeper=tpe needs optuna, an optional extra: pip install -e "
            "'.[optuna]' (or pip install optuna)"
        ) from None
    return optuna


class TPE:
    """Optuna's TPE sampler over the space; maximises sign * objective (sign -1 for min-mode
    metrics, read from each trial's metrics.json), failed and diverged trials told as failed,
    pruned ones as pruned with their curves (_steps)."""

    def __init__(
        self,
        space: list[Param],
        seed: int,
        n_startup_trials: int = 10,
        cond: Conditions | None = None,
    ):
        optuna = self.optuna = import_optuna()
        self.cond = cond or Conditions()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        self.space = space
        self.dists = {}
        for p in space:
            if p.kind == "choice":
                self.dists[p.name] = CategoricalDistribution(list(p.values))
            elif p.kind == "interval" and p.integer:
                self.dists[p.name] = IntDistribution(int(p.low), int(p.high), log=p.log)
            elif p.kind == "interval":
                self.dists[p.name] = FloatDistribution(float(p.low), float(p.high), log=p.log)
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials)
        self.study = optuna.create_study(direction="maximize", sampler=sampler)

    def ask(self):
        """Define-by-run: the group options first, then only the keys those options have, so
        that TPE models optimizer.momentum on the trials that used it."""
        trial = self.study.ask()
        late = set(self.cond.group_of)
        chosen: dict[str, object] = {}
        for p in sorted(self.space, key=lambda p: p.key in late):
            if p.key in late and not self.cond.applies(p.key, chosen):
                continue
            if not p.swept:
                chosen[p.key] = p.values[0]
                continue
            if p.kind == "choice":
                v = trial.suggest_categorical(p.name, list(p.values))
            elif p.integer:
                v = trial.suggest_int(p.name, int(p.low), int(p.high), log=p.log)
            else:
                v = trial.suggest_float(p.name, float(p.low), float(p.high), log=p.log)
            if p.kind == "choice":
                chosen[p.key] = v
            else:
                chosen[p.key] = int(v) if p.integer else float(f"{v:.6g}")
        values = [(p, chosen[p.key]) for p in self.space if p.key in chosen]
        return trial, (
            [override(p, v) for p, v in values],
            {p.name: native(v) for p, v in values if p.swept},
        )

    def _value(self, row: dict):
        obj = row.get("objective")
        if row.get("status") != "completed" or obj is None or not math.isfinite(obj):
            return None
        return obj if row.get("mode", "max") == "max" else -obj

    def _steps(self, row: dict) -> dict[int, float]:
        """A pruned trial's monitored metric per epoch, signed like _value ({} for any other
        trial): Optuna ranks pruned trials by these intermediate values, so TPE learns from
        them as from bad trials, where a failed trial teaches it nothing."""
        if row.get("status") != "pruned" or not row.get("dir") or not row.get("monitor"):
            return {}
        from runner.sweep.pruning import read_curve

        sign = 1.0 if row.get("mode", "max") == "max" else -1.0
        curve = read_curve(row["dir"], row["monitor"])
        return {e: sign * v for e, v in enumerate(curve, 1) if math.isfinite(v)}

    def tell(self, trial, row: dict) -> None:
        value = self._value(row)
        state = self.optuna.trial.TrialState
        steps = self._steps(row) if value is None else {}
        if value is not None:
            self.study.tell(trial, value)
        elif steps:
            for step, v in steps.items():
                trial.report(v, step)
            self.study.tell(trial, state=state.PRUNED)
        else:
            self.study.tell(trial, state=state.FAIL)

    def add(self, params: dict, row: dict) -> None:
        """A trial run before (a resumed sweep): into the study's history."""
        value = self._value(row)
        raw = {}
        for p in self.space:
            if p.swept and p.name in params:
                v = params[p.name]
                raw[p.name] = str(v) if p.kind == "choice" and not isinstance(v, str) else v
        optional = {p.name for p in self.space if p.key in self.cond.group_of}
        if p_missing := [n for n in self.dists if n not in raw and n not in optional]:
            raise SweepError(f"resume: trial params lack {p_missing[0]}")
        # choice values are kept as strings by the distributions
        for p in self.space:
            if p.kind == "choice" and p.name in raw and raw[p.name] not in p.values:
                raw[p.name] = next((v for v in p.values if native(v) == raw[p.name]), raw[p.name])
        state = self.optuna.trial.TrialState
        steps = self._steps(row) if value is None else {}
        trial = self.optuna.trial.create_trial(
            params=raw,
            distributions={n: d for n, d in self.dists.items() if n in raw},
            value=value,
            intermediate_values=steps or None,
            state=state.COMPLETE if value is not None else state.PRUNED if steps else state.FAIL,
        )
        self.study.add_trial(trial)


def space_json(space: list[Param]) -> list[dict]:
    return [p.to_json() for p in space]


def space_from_json(items: list[dict]) -> list[Param]:
    return [Param.from_json(d) for d in items]


def describe_space(space: list[Param]) -> list[str]:
    return [p.describe() for p in space if p.swept]


def plan_text(
    kind: str, seed, space: list[Param], stages: list[dict], trials: list[dict], done: set
) -> str:
    """What a dry run prints: the search space, then one `job N: overrides` line per trial."""
    staged = len(stages) > 1
    out = []
    if kind != "grid":
        out += [f"  {d}" for d in describe_space(space)]
    total = 0
    for st in stages:
        total += st["n_trials"]
        if staged:
            bits = [f"stage {st['stage']}: {st['n_trials']} trials"]
            if st.get("epochs"):
                bits.append(f"trainer.epochs={st['epochs']}")
            if st["stage"] > 1:
                bits.append(
                    f"ranges narrowed around the top {st['top_k']} of stage {st['stage'] - 1}"
                )
            out.append(", ".join(bits))
        if st.get("conditional"):
            out.append(st["conditional"])
        mine = [t for t in trials if t["stage"] == st["stage"]]
        for t in mine:
            mark = "  (done)" if t["job"] in done else ""
            out.append(f"job {t['job']}: {' '.join(t['overrides'])}{mark}")
        if not mine and kind == "tpe":
            out.append(f"{st['n_trials']} trials chosen one by one by TPE")
        elif not mine:
            out.append(f"(planned after stage {st['stage'] - 1})")
    desc = {"grid": "grid", "random": f"random (seed {seed})", "tpe": f"Optuna TPE (seed {seed})"}[
        kind
    ]
    out.insert(0, f"{desc} sweep of {total} trials" + (" over:" if kind != "grid" else ":"))
    out.append(f"{total} trials (dry run: nothing was trained)")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# Conditional keys: `optimizer=sgd,momentum optimizer.momentum=0.5,0.9` sweeps momentum where the
# chosen optimizer has it and leaves it out of the sgd trials. Every sweeper (grid, random, TPE,
# and any later one that draws trials from a space) goes through Conditions.


def _package(group: str) -> str:
    """The config path a group's options fill: model/block -> model.block (runner's groups use
    Hydra's default package)."""
    return group.lstrip("+").replace("/", ".")


def _node_keys(cfg, path: str) -> list[str] | None:
    """The keys of the config node at `path` (None: no node there)."""
    from omegaconf import DictConfig, OmegaConf

    node = OmegaConf.select(cfg, path, default=None) if path else cfg
    return sorted(str(k) for k in node) if isinstance(node, DictConfig) else None


def _typed(p: Param) -> str:
    """The override as the user wrote it, near enough for an error message."""
    if p.kind == "interval":
        inner = f"interval({fmt(p.low)},{fmt(p.high)})"
        inner = f"int({inner})" if p.integer else inner
        return f"{p.key}={f'tag(log,{inner})' if p.log else inner}"
    return f"{p.key}={','.join(p.values)}"


@dataclass
class Conditions:
    """The keys of a space that live under a config group whose option varies between trials
    (optimizer.momentum under optimizer=sgd,momentum), and which of the group's options have
    each key. A trial leaves out the keys its chosen option lacks; trials that become equal
    then collapse into one."""

    group_of: dict[str, str] = field(default_factory=dict)  # key (as typed) -> group key
    has: dict[str, list[str]] = field(default_factory=dict)  # key -> the options that have it
    options: dict[str, list[str]] = field(default_factory=dict)  # group key -> its options

    def __bool__(self) -> bool:
        return bool(self.group_of)

    def applies(self, key: str, chosen: dict[str, str]) -> bool:
        """Whether `key` belongs to the options in `chosen` ({group key: option})."""
        group = self.group_of.get(key)
        return group is None or chosen.get(group) in self.has[key]

    def apply(self, trials: list[tuple[list[str], dict]]) -> tuple[list, str | None]:
        """The trials without the keys their options lack, duplicates collapsed (the first
        kept), and one line saying what was left out (None when nothing was)."""
        out, seen = [], set()
        lacking: dict[str, list[str]] = {}  # key -> the chosen options that lack it, in order
        touched = 0
        for overrides, params in trials:
            chosen = {}
            for o in overrides:
                k, _, v = o.partition("=")
                if k in self.group_of.values():
                    chosen[k] = v
            gone = [
                o.partition("=")[0]
                for o in overrides
                if not self.applies(o.partition("=")[0], chosen)
            ]
            if not gone:
                out.append((overrides, params))
                continue
            touched += 1
            for k in gone:
                opt = chosen[self.group_of[k]]
                if opt not in lacking.setdefault(k, []):
                    lacking[k].append(opt)
            kept = [o for o in overrides if o.partition("=")[0] not in gone]
            if tuple(kept) in seen:
                continue
            seen.add(tuple(kept))
            names = {k.lstrip("+~") for k in gone}
            out.append((kept, {k: v for k, v in params.items() if k not in names}))
        if not lacking:
            return out, None
        parts = []
        for k, opts in lacking.items():
            g = self.group_of[k]
            opts = [o for o in self.options[g] if o in opts]
            parts.append(f"{k} left out where {g.lstrip('+')}={'|'.join(opts)}")
        n_in, n_out = len(trials), len(out)
        if n_out < n_in:
            end = f": {n_in} trials collapse into {n_out}"
        else:
            end = f" ({touched} of {n_in} trials)"
        return out, "conditional: " + "; ".join(parts) + end


def conditions(space: list[Param], groups, compose, strict: bool = True) -> Conditions:
    """The Conditions of a space. `groups`: the config groups (hydra.runtime.choices' keys);
    `compose(overrides)`: the composed config of a list of overrides (the sweep's config
    loader; runner.help.compose in tests). Each option of a swept group is composed once, with
    the space's fixed overrides that do not depend on it. strict: a key that no option of its
    group has is an error (one line: the key, the options and the keys each has); else (a
    narrowed coarse-to-fine space) it is left out of every trial."""
    swept = {
        _package(p.key): p
        for p in space
        if p.kind == "choice" and p.name in groups and not p.key.startswith("~")
    }
    if not swept:
        return Conditions()
    cond = Conditions()
    for p in space:
        if p.key != p.name or p.name in groups:  # +key / ++key / ~key: not a setting to check
            continue
        owners = [pkg for pkg in swept if p.name.startswith(pkg + ".")]
        if owners:
            cond.group_of[p.key] = swept[max(owners, key=len)].key
    if not cond:
        return cond
    base = [
        override(p, p.values[0])
        for p in space
        if p.kind == "fixed" and p.key not in cond.group_of and _package(p.key) not in swept
    ]
    composed: dict[tuple[str, str], object] = {}
    for key, gkey in cond.group_of.items():
        options = cond.options[gkey] = swept[_package(gkey)].values
        parent, _, leaf = key.rpartition(".")
        keys = {}
        for opt in options:
            if (gkey, opt) not in composed:
                composed[(gkey, opt)] = compose(base + [f"{gkey}={opt}"])
            keys[opt] = _node_keys(composed[(gkey, opt)], parent) or []
        cond.has[key] = [o for o in options if leaf in keys[o]]
        if strict and not cond.has[key]:
            g = gkey.lstrip("+")
            what = "; ".join(f"{g}={o} has {', '.join(keys[o]) or 'none'}" for o in options)
            raise SweepError(
                f"{_typed(next(p for p in space if p.key == key))}: not a setting of any "
                f"option swept ({g}={','.join(options)}): {what}"
            )
    return cond
