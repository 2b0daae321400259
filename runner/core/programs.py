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
  time matters (docs/performance.md). spec.compile (trainer.compile) overrides this, and
  `options_for` can be replaced (runner.core.train installs one that also compiles a small
  model's epoch program that way).

The cache holds at most `max_programs` executables and evicts the least recently used one;
`stats` counts compiles, hits, loads, evictions and seconds spent compiling and loading.

An optional `store` (a ProgramStore: runner.progstore's, installed by
runner.runtime.enable_compilation_cache) keeps executables across processes: on a miss in
memory, get() asks it first and loads the executable without tracing; what it compiles it hands
to the store. The core names the program (store_key); the store adds what the program depends on
outside it (versions, sources, devices) and does the file I/O.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import jax
import jax.numpy as jnp

from runner.core.spec import Spec

DEFAULT_MAX_PROGRAMS = 128
# XLA's options for a run-once program on CPU: no LLVM optimisations, and XLA's older fusion
# emitters, whose code compiles in about half the time (docs/performance.md).
QUICK: jax.stages.CompilerOptions = {
    "xla_backend_optimization_level": "0",
    "xla_cpu_use_fusion_emitters": False,
}
# XLA's options for a per-epoch program compiled fast (trainer.compile): no LLVM optimisations,
# but the default fusion emitters: with the older ones a diverged vmapped member's garbage
# numbers drift from its run alone's by more than float tolerance.
FAST: jax.stages.CompilerOptions = {"xla_backend_optimization_level": "0"}
# XLA's options for a vectorised group's run-once programs on CPU (runner.core.train's rule):
# a sweep calls them once or more per group. LLVM's optimisations with the older fusion
# emitters: a W1 group's initial weights compile as fast as with QUICK and run ~6x faster
# (60-80 -> ~10 ms); its evaluation compiles ~0.5 s longer and runs ~40 % faster
# (docs/performance.md, 2026-12-05 evening). XLA's defaults would compile the weights ~4 s.
GROUP_ONCE: jax.stages.CompilerOptions = {
    "xla_backend_optimization_level": "2",
    "xla_cpu_use_fusion_emitters": False,
}


_BACKGROUND: ThreadPoolExecutor | None = None


@dataclass
class _Pending:
    """A program start() began: its executable to come, its lowering (None: loaded from the
    store), and the text of the arguments it was begun for (weak types included, which the
    cache key leaves out)."""

    future: Future
    lowered: Any
    text: str


def _background() -> ThreadPoolExecutor:
    """The threads Programs.start compiles in (made on first use): two, a run's initial-weights
    and epoch programs at once, next to the caller's own compile."""
    global _BACKGROUND
    if _BACKGROUND is None:
        _BACKGROUND = ThreadPoolExecutor(2, thread_name_prefix="runner-compile")
    return _BACKGROUND


@dataclass
class ProgramStats:
    compiles: int = 0  # executables built
    hits: int = 0  # gets answered from the cache
    evictions: int = 0  # executables dropped to stay within max_programs
    compile_seconds: float = 0.0  # wall time spent lowering, compiling (and storing)
    loaded: int = 0  # executables loaded from the store, without tracing
    load_seconds: float = 0.0  # wall time spent looking up and loading them


def signature(args: tuple) -> Hashable:
    """What of the arguments a compiled program depends on: the tree structure and each leaf's
    shape, dtype and sharding (None for host arrays)."""
    leaves, tree = jax.tree_util.tree_flatten(args)
    return tree, tuple(
        (jnp.shape(a), jnp.result_type(a), getattr(a, "sharding", None)) for a in leaves
    )


def _sharding_text(sharding: Any) -> str:
    if sharding is None:
        return "host"
    mesh = getattr(sharding, "mesh", None)
    ids = (
        mesh.device_ids.tolist() if mesh is not None else sorted(d.id for d in sharding.device_set)
    )
    return f"{sharding!r} on {ids}"


def signature_text(args: tuple) -> str:
    """signature(args) as text that is the same in every process: the tree structure, and each
    leaf's shape, dtype, weak type and sharding with the ids of its devices."""
    leaves, tree = jax.tree_util.tree_flatten(args)
    return "\n".join(
        [str(tree)]
        + [
            f"{jnp.shape(a)} {jnp.result_type(a)} weak={getattr(a, 'weak_type', False)} "
            + _sharding_text(getattr(a, "sharding", None))
            for a in leaves
        ]
    )


def store_key(
    fn: Callable,
    spec: Spec,
    static: tuple[tuple[str, Hashable], ...],
    args: tuple,
    options: jax.stages.CompilerOptions | None,
) -> str | None:
    """The text that names the program jax.jit(fn)(spec, *args, **dict(static)) compiled with
    `options` across processes, or None when it has no such name: a lambda or a local function
    (two of them may share a name), a spec or static argument whose text holds an address."""
    name = f"{getattr(fn, '__module__', None)}:{getattr(fn, '__qualname__', '<?>')}"
    key = "\n".join(
        (
            name,
            repr(spec),
            repr(static),
            repr(sorted(options.items())) if options else "default options",
            signature_text(args),
        )
    )
    return None if "<" in name or " at 0x" in key else key


class ProgramStore(Protocol):
    """Executables kept across processes (runner.progstore.ProgramStore). `key` is store_key's
    text; a store must answer None, never raise, for anything it cannot load."""

    def load(self, fn: Callable, key: str) -> jax.stages.Compiled | None: ...

    def save(self, fn: Callable, key: str, exe: jax.stages.Compiled) -> None: ...

    def compiling(self) -> AbstractContextManager[Any]:
        """The context a program to be saved is compiled in."""
        ...


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
        # Executables across processes (see the module docstring); None: compile each process.
        self.store: ProgramStore | None = None
        # Programs start() began: loaded, or compiling in a background thread.
        self._pending: dict[Hashable, _Pending] = {}

    def __len__(self) -> int:
        return len(self._cache)

    def spec_for(self, fn: Callable, spec: Spec) -> Spec:
        """The spec fn is keyed and compiled with: spec itself for the functions that draw
        initial weights, spec.without_init() for every other one."""
        return spec if fn in self.draws_init else spec.without_init()

    def compile_options(
        self, fn: Callable, spec: Spec, args: tuple
    ) -> jax.stages.CompilerOptions | None:
        """XLA's options for jax.jit(fn)(spec, *args) on CPU by spec.compile (trainer.compile):
        auto: QUICK for a run-once program, XLA's defaults (None) for the others; fast: QUICK
        for a run-once program, FAST for the others; full: None for every program. Other
        backends: None. `spec` is the one the program is keyed with (spec_for)."""
        del args
        if jax.default_backend() != "cpu" or spec.compile == "full":
            return None
        if fn in self.run_once:
            return QUICK
        return FAST if spec.compile == "fast" else None

    def get(
        self, fn: Callable, spec: Spec, *args: Any, static: tuple[tuple[str, Hashable], ...] = ()
    ) -> tuple[jax.stages.Compiled, float]:
        """(executable, seconds spent compiling or loading it now: 0.0 on a hit) of
        jax.jit(fn)(spec, *args, **dict(static)); call it as executable(*args). A program
        start() began is waited for: the seconds are those spent waiting."""
        spec = self.spec_for(fn, spec)
        key = (fn, spec, static, signature(args))
        exe = self._cache.get(key)
        if exe is not None:
            self._cache.move_to_end(key)
            self.stats.hits += 1
            return exe, 0.0
        t0 = time.perf_counter()
        pending = self._pending.pop(key, None)
        if pending is not None and pending.text != signature_text(args):
            pending = None  # begun for other weak types than these arguments have: not this one
        if pending is not None:
            exe = pending.future.result()  # the background compile's error is raised here
            dt = time.perf_counter() - t0
            self.stats.compile_seconds += dt
        else:
            options = self.options_for(fn, spec, args)
            text = self._store_text(fn, spec, static, args, options)
            exe = self._load(fn, text)
            if exe is None:
                exe = self._compile(fn, self._lower(fn, spec, static, args), options, text)
                dt = time.perf_counter() - t0
                self.stats.compiles += 1
                self.stats.compile_seconds += dt
            else:
                dt = time.perf_counter() - t0
                self.stats.loaded += 1
                self.stats.load_seconds += dt
        self._keep(key, exe)
        return exe, dt

    def start(
        self, fn: Callable, spec: Spec, *args: Any, static: tuple[tuple[str, Hashable], ...] = ()
    ) -> float:
        """Begin what get(fn, spec, *args) will need, and return the seconds spent here: a
        stored executable is loaded now; otherwise the program is traced and lowered now (in
        this thread: tracing runs Python) and compiled in a background thread while the caller
        goes on (XLA's compile releases the GIL: on two cores a run's other programs are traced,
        compiled and run meanwhile; docs/performance.md). Nothing for a program already cached
        or begun."""
        spec = self.spec_for(fn, spec)
        key = (fn, spec, static, signature(args))
        if key in self._cache or key in self._pending:
            return 0.0
        t0 = time.perf_counter()
        future: Future = Future()
        options = self.options_for(fn, spec, args)
        text = self._store_text(fn, spec, static, args, options)
        exe = self._load(fn, text)
        lowered = None
        if exe is not None:
            future.set_result(exe)
            dt = time.perf_counter() - t0
            self.stats.loaded += 1
            self.stats.load_seconds += dt
        else:
            lowered = self._lower(fn, spec, static, args)
            future = _background().submit(self._compile, fn, lowered, options, text)
            dt = time.perf_counter() - t0
            self.stats.compiles += 1
            self.stats.compile_seconds += dt
        self._pending[key] = _Pending(future, lowered, signature_text(args))
        return dt

    def result_shapes(
        self, fn: Callable, spec: Spec, *args: Any, static: tuple[tuple[str, Hashable], ...] = ()
    ) -> Any | None:
        """What jax.jit(fn)(spec, *args) returns, as jax.ShapeDtypeStructs placed where the
        program puts them, for a program start() began or the cache holds, without running it:
        enough to begin the programs that take its result (Programs.start). None where that is
        not known: a program not begun, or one whose arguments are not all on one device."""
        spec = self.spec_for(fn, spec)
        key = (fn, spec, static, signature(args))
        exe, pending = self._cache.get(key), self._pending.get(key)
        try:
            if exe is None and pending is not None and pending.future.done():
                exe = pending.future.result()
            if exe is not None:
                return exe.out_info  # with the shardings the executable gives its results
            if pending is None or pending.lowered is None:
                return None
            shardings = {getattr(a, "sharding", None) for a in jax.tree_util.tree_leaves(args)}
            if len(shardings) != 1 or None in shardings:
                return None
            (where,) = shardings
            if where is None or len(where.device_set) != 1:
                return None
            # A one-device program's results are on its arguments' device.
            return jax.tree_util.tree_map(
                lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=where),
                pending.lowered.out_info,
            )
        except Exception:  # noqa: BLE001 - not known here: the caller waits for the result
            return None

    def _store_text(self, fn, spec, static, args, options) -> str | None:
        """The store's name for the program (store_key); None without a store."""
        return None if self.store is None else store_key(fn, spec, static, args, options)

    def _load(self, fn: Callable, text: str | None) -> jax.stages.Compiled | None:
        store = self.store
        return store.load(fn, text) if store is not None and text is not None else None

    def _lower(self, fn, spec, static, args) -> jax.stages.Lowered:
        return jax.jit(partial(fn, spec, **dict(static))).lower(*args)

    def _compile(
        self,
        fn: Callable,
        lowered: jax.stages.Lowered,
        options: jax.stages.CompilerOptions | None,
        text: str | None,
    ) -> jax.stages.Compiled:
        """Compile a lowered program (and hand it to the store); touches nothing of self but
        the store, so that it can run in the background thread."""
        store = self.store
        # What the store keeps is compiled in its context (runner.progstore: fresh, not
        # loaded from JAX's persistent cache).
        with store.compiling() if store is not None and text is not None else nullcontext():
            exe = lowered.compile(options)
        if store is not None and text is not None:
            store.save(fn, text, exe)
        return exe

    def _keep(self, key: Hashable, exe: jax.stages.Compiled) -> None:
        self._cache[key] = exe
        while len(self._cache) > self.max_programs:
            self._cache.popitem(last=False)
            self.stats.evictions += 1

    def clear(self) -> None:
        """Drop every program, begun ones included (the statistics stay)."""
        self._cache.clear()
        self._pending.clear()
