"""Compiled programs, kept for reuse: `Programs.get(fn, spec, *args)` is the executable of
jax.jit(fn)(spec, *args), compiled on first use and reused while it stays in the cache.

A program is keyed by the function, the spec it is compiled for, its static keyword arguments
and the signature of its arguments (tree structure, shapes, dtypes and shardings: a vectorised
group's member axis may be split over devices). Numbers are never part of the key: runs that
differ only in hyperparameters and seeds share one program. Two rules refine the key:

- The spec: every function except those that draw initial weights (`draws_init`) is keyed and
  compiled with `spec.without_init()`, so runs that differ only in their initializer share
  their training and evaluation programs.
- Run-once programs (`run_once`: initial weights, evaluations before and after training) are
  compiled without LLVM's optimisations on CPU: most of their compile time, none of their run
  time matters (docs/performance.md).

The cache holds at most `max_programs` executables and evicts the least recently used one;
`stats` counts compiles, hits, evictions and seconds spent compiling.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from runner.core.spec import Spec

DEFAULT_MAX_PROGRAMS = 128
# XLA's options for a run-once program on CPU: no LLVM optimisations.
QUICK: jax.stages.CompilerOptions = {"xla_backend_optimization_level": "0"}


@dataclass
class ProgramStats:
    compiles: int = 0  # executables built
    hits: int = 0  # gets answered from the cache
    evictions: int = 0  # executables dropped to stay within max_programs
    compile_seconds: float = 0.0  # wall time spent lowering and compiling


def signature(args: tuple) -> Hashable:
    """What of the arguments a compiled program depends on: the tree structure and each leaf's
    shape, dtype and sharding (None for host arrays)."""
    leaves, tree = jax.tree_util.tree_flatten(args)
    return tree, tuple(
        (jnp.shape(a), jnp.result_type(a), getattr(a, "sharding", None)) for a in leaves
    )


class Programs:
    """A bounded, least-recently-used cache of compiled programs (see the module docstring)."""

    def __init__(
        self,
        max_programs: int = DEFAULT_MAX_PROGRAMS,
        *,
        run_once: Iterable[Callable] = (),
        draws_init: Iterable[Callable] = (),
    ):
        if max_programs < 1:
            raise ValueError(f"max_programs={max_programs}: must be at least 1")
        self.max_programs = max_programs
        self.run_once = frozenset(run_once)
        self.draws_init = frozenset(draws_init)
        self.stats = ProgramStats()
        # Which XLA options a program is compiled with (see compile_options); replaceable.
        self.options_for: Callable[..., jax.stages.CompilerOptions | None] = self.compile_options
        self._cache: OrderedDict[Hashable, jax.stages.Compiled] = OrderedDict()

    def __len__(self) -> int:
        return len(self._cache)

    def spec_for(self, fn: Callable, spec: Spec) -> Spec:
        """The spec fn is keyed and compiled with: spec itself for the functions that draw
        initial weights, spec.without_init() for every other one."""
        return spec if fn in self.draws_init else spec.without_init()

    def compile_options(
        self, fn: Callable, spec: Spec, args: tuple
    ) -> jax.stages.CompilerOptions | None:
        """XLA's options for jax.jit(fn)(spec, *args): QUICK for a run-once program on CPU, else
        None (XLA's defaults). `spec` is the one the program is keyed with (spec_for)."""
        del spec, args
        return QUICK if fn in self.run_once and jax.default_backend() == "cpu" else None

    def get(
        self, fn: Callable, spec: Spec, *args: Any, static: tuple[tuple[str, Hashable], ...] = ()
    ) -> tuple[jax.stages.Compiled, float]:
        """(executable, seconds spent compiling now: 0.0 on a hit) of
        jax.jit(fn)(spec, *args, **dict(static)); call it as executable(*args)."""
        spec = self.spec_for(fn, spec)
        key = (fn, spec, static, signature(args))
        exe = self._cache.get(key)
        if exe is not None:
            self._cache.move_to_end(key)
            self.stats.hits += 1
            return exe, 0.0
        t0 = time.perf_counter()
        jitted = jax.jit(partial(fn, spec, **dict(static)))
        exe = jitted.lower(*args).compile(self.options_for(fn, spec, args))
        dt = time.perf_counter() - t0
        self._cache[key] = exe
        self.stats.compiles += 1
        self.stats.compile_seconds += dt
        while len(self._cache) > self.max_programs:
            self._cache.popitem(last=False)
            self.stats.evictions += 1
        return exe, dt

    def clear(self) -> None:
        """Drop every program (the statistics stay)."""
        self._cache.clear()
