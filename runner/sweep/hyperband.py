"""Hyperband's bracket arithmetic (Li et al. 2018, "Hyperband: a novel bandit-based approach to
hyperparameter optimization", JMLR 18, algorithm 1), in epochs; successive halving (SHA) is its
one-bracket case. Pure: no I/O, no Hydra; runner.sweep.run does the launching.

R = max_epochs (the most a trial trains), r = min_epochs (the least), eta = the reduction factor.
s_max = floor(log_eta(R / r)). Bracket s (s_max, s_max - 1, ..., 0) samples
n = ceil((s_max + 1) / (s + 1) * eta^s) configurations and runs s + 1 rungs; rung i (0-based)
trains n_i = floor(n / eta^i) of them to r_i = R * eta^(i - s) epochs (rounded to whole epochs,
the last rung exactly R). After a rung the best floor(n_i / eta) go on to the next.

Li et al.'s table for R = 81, eta = 3 (r = 1), as `brackets(81, 1, 3)` gives it:

    s = 4: 81 x 1, 27 x 3, 9 x 9, 3 x 27, 1 x 81
    s = 3: 34 x 3, 11 x 9, 3 x 27, 1 x 81
    s = 2: 15 x 9, 5 x 27, 1 x 81
    s = 1: 8 x 27, 2 x 81
    s = 0: 5 x 81
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True)
class Bracket:
    s: int  # Li et al.'s index: the number of halvings (rungs - 1)
    n: tuple[int, ...]  # configurations in each rung (n[0]: sampled for this bracket)
    r: tuple[int, ...]  # epochs each rung trains to (cumulative budgets; r[-1] = max_epochs)

    @property
    def rungs(self) -> int:
        return len(self.n)

    def epochs(self) -> int:
        """Epochs this bracket trains in all when every promoted trial continues from its
        checkpoint (a rung adds r_i - r_{i-1} epochs to each of its trials)."""
        prev = (0,) + self.r[:-1]
        return sum(n * (r - p) for n, r, p in zip(self.n, self.r, prev))

    def to_json(self) -> dict:
        return {"s": self.s, "n": list(self.n), "r": list(self.r)}


def s_max(max_epochs: int, min_epochs: int, eta: int) -> int:
    """floor(log_eta(R / r)) in exact integer arithmetic (no float log at powers of eta)."""
    s = 0
    while min_epochs * eta ** (s + 1) <= max_epochs:
        s += 1
    return s


def budgets(max_epochs: int, min_epochs: int, eta: int, s: int) -> tuple[int, ...]:
    """The s + 1 rung budgets R * eta^(i - s), i = 0..s, in whole epochs: rounded half up, at
    least min_epochs, strictly increasing, the last exactly R."""
    out: list[int] = []
    for i in range(s + 1):
        exact = Fraction(max_epochs) * Fraction(eta) ** (i - s)
        r = max(min_epochs, math.floor(exact + Fraction(1, 2)), (out[-1] + 1) if out else 1)
        out.append(r)
    out[-1] = max_epochs
    return tuple(out)


def rung_sizes(n: int, eta: int, rungs: int) -> tuple[int, ...]:
    """n, then floor(previous / eta) at each rung, never below 1."""
    sizes = [n]
    for _ in range(rungs - 1):
        sizes.append(max(1, sizes[-1] // eta))
    return tuple(sizes)


def brackets(
    max_epochs: int, min_epochs: int = 1, eta: int = 3, n_trials: int | None = None
) -> list[Bracket]:
    """Hyperband's brackets, the most exploratory (s = s_max) first. n_trials, when given,
    sets the first bracket's n (Li et al.'s is eta^s_max) and scales the others in the same
    proportion: n_s = ceil(n_trials / eta^s_max * (s_max + 1) / (s + 1) * eta^s)."""
    check(max_epochs, min_epochs, eta, n_trials)
    top = s_max(max_epochs, min_epochs, eta)
    first = n_trials if n_trials is not None else eta**top
    out = []
    for s in range(top, -1, -1):
        n = math.ceil(Fraction(first * (top + 1) * eta**s, eta**top * (s + 1)))
        out.append(Bracket(s, rung_sizes(n, eta, s + 1), budgets(max_epochs, min_epochs, eta, s)))
    return out


def sha(max_epochs: int, min_epochs: int = 1, eta: int = 3, n_trials: int | None = None) -> Bracket:
    """Successive halving: Hyperband's most exploratory bracket alone, with n_trials
    configurations (default eta^s_max) from min_epochs up to max_epochs."""
    check(max_epochs, min_epochs, eta, n_trials)
    s = s_max(max_epochs, min_epochs, eta)
    n = n_trials if n_trials is not None else eta**s
    return Bracket(s, rung_sizes(n, eta, s + 1), budgets(max_epochs, min_epochs, eta, s))


def check(max_epochs, min_epochs, eta, n_trials) -> None:
    """ValueError naming the option and what is allowed (the sweep makes it a SweepError)."""
    for name, v, low in (
        ("max_epochs", max_epochs, 1),
        ("min_epochs", min_epochs, 1),
        ("eta", eta, 2),
    ):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ValueError(f"hydra.sweeper.{name}={v}: expected an integer >= {low}")
    if min_epochs > max_epochs:
        raise ValueError(
            f"hydra.sweeper.min_epochs={min_epochs}: expected at most max_epochs={max_epochs}"
        )
    if n_trials is not None and (
        isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1
    ):
        raise ValueError(f"hydra.sweeper.n_trials={n_trials}: expected an integer >= 1 or null")


def promote(candidates: list[tuple[int, float]], keep: int, mode: str) -> list[int]:
    """The jobs that go on after a rung: the best `keep` (the next rung's planned size,
    floor(n_i / eta)) of `candidates` (job, objective) by objective (`mode` max or min; ties: the
    lower job number), in job order. Failed, diverged and early-stopped trials are not
    candidates, so fewer may go on than planned."""
    sign = -1.0 if mode == "max" else 1.0
    order = sorted(candidates, key=lambda c: (sign * c[1], c[0]))
    return sorted(job for job, _ in order[: max(0, keep)])


def table(bs: list[Bracket]) -> list[str]:
    """One line per bracket: `bracket 1 (s=4): 81 x 1, 27 x 3, ...` (trials x epochs)."""
    return [
        f"bracket {k} (s={b.s}): " + ", ".join(f"{n} x {r}" for n, r in zip(b.n, b.r))
        for k, b in enumerate(bs, 1)
    ]
