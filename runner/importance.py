"""How much of a sweep's objective each swept hyperparameter explains, estimated with
scikit-learn (a dependency already: it ships the small datasets): a RandomForestRegressor fitted
to the trials (objective from settings), then sklearn.inspection.permutation_importance: the drop
in the forest's R² when one setting's column is shuffled. A setting's share is its drop over the
sum of the drops (negative drops count as 0), so the shares add up to 100 % of what the forest
explains; the forest's out-of-bag R² says how much that is.

Inputs: the trials with an objective that counts (runner.search.SCORED: completed and diverged;
pruned trials trained fewer epochs). A log-scaled setting enters as log10 of its value, a
categorical one as its index in the grid (ordinal: a tree splits it into any two groups of
categories over a few splits, and one column per setting keeps the shuffle whole), a key a trial
lacks (conditional spaces) as a value below the range. Fewer than runner.search.MIN_TRIALS
such trials: no estimate, one line saying so (too_few).

`runner compare SWEEP_DIR --importance` runs this module in a child process,
`python -m runner.importance SWEEP_DIR` (JSON on stdout), so that runner.compare itself never
loads NumPy or scikit-learn (the import contracts; tests/test_compare.py checks it at run
time)."""

from __future__ import annotations

import json
import math
import sys

from runner.search import SearchError, Sweep, load_sweep, too_few

TREES = 100
REPEATS = 10


def estimator_name() -> str:
    import sklearn

    return (
        f"scikit-learn {sklearn.__version__} RandomForestRegressor ({TREES} trees) + "
        f"permutation_importance ({REPEATS} repeats)"
    )


def features(sweep: Sweep) -> tuple[list[list[float]], list[float]]:
    """The design matrix (one column per swept setting, module docstring) and the objectives."""
    trials = sweep.scored()
    cols = []
    for axis in sweep.axes:
        col = [axis.position(t.params.get(axis.name)) for t in trials]
        seen = [v for v in col if v is not None]
        below = (min(seen) - 1.0 - (max(seen) - min(seen))) if seen else 0.0
        cols.append([below if v is None else v for v in col])
    rows = [list(r) for r in zip(*cols)] if cols else [[] for _ in trials]
    return rows, [t.objective for t in trials]


def estimate(sweep: Sweep, seed: int = 0) -> dict:
    """{"estimator", "n", "oob_r2", "rows": [{param, share, best, range}]} with rows in the order
    of the shares, largest first; {"message": ...} with too few trials."""
    message = too_few(sweep)
    if message:
        return {"message": message, "n": len(sweep.scored())}
    import numpy as np
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.inspection import permutation_importance

    rows, y = features(sweep)
    X, y = np.asarray(rows, dtype=float), np.asarray(y, dtype=float)
    forest = RandomForestRegressor(
        n_estimators=TREES, oob_score=True, random_state=seed, n_jobs=1
    ).fit(X, y)
    drops = permutation_importance(forest, X, y, n_repeats=REPEATS, random_state=seed, n_jobs=1)
    drop = np.clip(drops.importances_mean, 0.0, None)
    total = float(drop.sum())
    shares = [float(d) / total if total > 0 else 0.0 for d in drop]
    best = sweep.best or {}
    out = [
        {
            "param": a.name,
            "share": s,
            "best": best.get(a.name),
            "range": a.describe_range(),
        }
        for a, s in zip(sweep.axes, shares)
    ]
    out.sort(key=lambda r: -r["share"])
    oob = float(forest.oob_score_)
    return {
        "estimator": estimator_name(),
        "n": len(y),
        "oob_r2": oob if math.isfinite(oob) else None,
        "rows": out,
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m runner.importance SWEEP_DIR", file=sys.stderr)
        return 2
    try:
        result = estimate(load_sweep(argv[0]))
    except SearchError as e:
        print(f"runner: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result, allow_nan=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
