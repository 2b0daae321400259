"""logspace() and geomspace(): a log-spaced grid in Hydra's override grammar (Hydra has none:
hydra issue 1944). The Hydra plugin calls install_grammar() when Hydra imports it, before the
multirun's primary config is composed, so `runner -m 'optimizer.lr=logspace(-5,-1,9)'` parses
everywhere (the result is an ordinary choice sweep: every sweeper, Hydra's basic one too, sees
the 9 values). Kept free of heavy imports: Hydra imports it on every start."""

from __future__ import annotations

import math
from typing import Any


def _clean(x: float) -> float:
    """12 significant digits: logspace(-5,-1,9) gives 1e-05, not 1.0000000000000001e-05."""
    return float(f"{x:.12g}")


def _call(name: str, *args) -> str:
    return f"{name}({','.join(str(a) for a in args)})"


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _check(name: str, start, stop, num) -> None:
    """Errors that say what is allowed (Hydra shows them after the override that failed)."""
    call = _call(name, start, stop, num)
    if not (_number(start) and _number(stop)):
        what = (
            "exponents of 10, as in logspace(-5,-1,9) for 1e-05 ... 0.1"
            if name == "logspace"
            else "numbers > 0, as in geomspace(1e-5,0.1,9)"
        )
        raise ValueError(f"{call}: start and stop must be {what}")
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise ValueError(f"{call}: the count must be an integer >= 1, as in {name}(start,stop,9)")
    if name == "geomspace" and not (start > 0 and stop > 0):
        raise ValueError(
            f"{call}: start and stop must be > 0; for exponents of 10 use "
            f"logspace(start,stop,count)"
        )


def logspace(start: int | float, stop: int | float, num: int = 9):
    """num values 10**start ... 10**stop, evenly spaced in log10 (numpy.logspace)."""
    from hydra.core.override_parser.types import ChoiceSweep

    _check("logspace", start, stop, num)
    if num == 1:
        return ChoiceSweep(list=[_clean(10.0**start)])
    step = (stop - start) / (num - 1)
    return ChoiceSweep(list=[_clean(10.0 ** (start + i * step)) for i in range(num)])


def geomspace(start: int | float, stop: int | float, num: int = 9):
    """num values from start to stop (both > 0), evenly spaced in log (numpy.geomspace)."""
    _check("geomspace", start, stop, num)
    return logspace(math.log10(start), math.log10(stop), num)


# Hydra checks argument types against the annotations, which must be types, not strings. Any:
# _check() does it, with a message that says what is allowed (Hydra's says "mismatch type").
for _f in (logspace, geomspace):
    _f.__annotations__ = {"start": Any, "stop": Any, "num": Any}


def install_grammar() -> None:
    """Register logspace() and geomspace() on every OverridesParser Hydra creates, including the
    one that composes the primary config of a multirun. Idempotent (Hydra's plugin scan may run
    the module that calls this more than once)."""
    from hydra.core.override_parser import overrides_parser as op

    if getattr(op.create_functions, "_runner_grammar", False):
        return
    original = op.create_functions

    def create_functions():
        functions = original()
        for name, func in (("logspace", logspace), ("geomspace", geomspace)):
            if name not in functions.definitions:
                functions.register(name=name, func=func)
        return functions

    create_functions._runner_grammar = True
    op.create_functions = create_functions
