"""runner.progstore: compiled programs kept on disk across processes. A fresh Programs with the
same store loads what another compiled, without tracing; a change of structure, of runner (its
version or its traced sources), of JAX or of XLA's flags is a miss; a damaged entry is a miss
that gets rewritten; paths.jax_cache=off and RUNNER_PROGRAM_STORE=off turn it off; and a run
from loaded programs gives the numbers of one compiled afresh."""

from __future__ import annotations

import json
import threading
import types
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY, compose

from runner import progstore
from runner.core.programs import Programs

TRACES: list = []


@dataclass(frozen=True)
class _Spec:
    """A stand-in structure: _scaled's programs are keyed by it (draws_init: as is)."""

    power: int


def _scaled(spec: _Spec, x):
    TRACES.append(spec)  # runs only when JAX traces the function
    return x**spec.power + 1.0


def _no_options(fn, spec, args):
    return None  # XLA's defaults: the stand-in spec has none of a Spec's compile settings


@pytest.fixture
def store(tmp_path, monkeypatch):
    # Each test computes the process's fingerprint anew (it may patch what goes into it).
    monkeypatch.setattr(progstore, "_FINGERPRINT", None)
    TRACES.clear()
    return progstore.ProgramStore(tmp_path / "programs")


def _get(store, spec=_Spec(2), x=None):
    """(result, stats) of _scaled compiled through a fresh Programs (an empty memory cache)."""
    progs = Programs(draws_init=[_scaled])
    progs.options_for = _no_options
    progs.store = store
    x = jnp.arange(4.0) if x is None else x
    exe, _ = progs.get(_scaled, spec, x)
    return np.asarray(exe(x)), progs.stats


def _fresh_fingerprint(monkeypatch):
    monkeypatch.setattr(progstore, "_FINGERPRINT", None)


def test_a_stored_program_loads_in_another_programs_without_tracing(store):
    out, stats = _get(store)
    assert (stats.compiles, stats.loaded, len(TRACES)) == (1, 0, 1)
    assert len(list(store.folder.glob("*.prog"))) == 1
    out2, stats2 = _get(store)
    assert (stats2.compiles, stats2.loaded, len(TRACES)) == (0, 1, 1)  # not traced again
    # and run on the one device of the suite's two it was compiled for
    assert stats2.load_seconds > 0 and stats2.compile_seconds == 0
    np.testing.assert_array_equal(out2, np.arange(4.0) ** 2 + 1)
    np.testing.assert_array_equal(out, out2)


def test_another_structure_or_signature_is_a_miss(store):
    _get(store, _Spec(2))
    out, stats = _get(store, _Spec(3))  # another spec: another program
    assert (stats.compiles, stats.loaded) == (1, 0)
    np.testing.assert_array_equal(out, np.arange(4.0) ** 3 + 1)
    _, stats = _get(store, _Spec(2), jnp.arange(5.0))  # another shape
    assert (stats.compiles, stats.loaded) == (1, 0)
    _, stats = _get(store, _Spec(2), jnp.arange(4))  # another dtype
    assert (stats.compiles, stats.loaded) == (1, 0)
    assert len(list(store.folder.glob("*.prog"))) == 4
    _, stats = _get(store, _Spec(3))
    assert (stats.compiles, stats.loaded) == (0, 1)


@pytest.mark.parametrize(
    "change",
    ["runner version", "runner source", "jax version", "jaxlib version", "XLA_FLAGS"],
)
def test_a_new_runner_jax_or_xla_flags_is_a_miss(store, monkeypatch, change):
    _get(store)
    assert len(TRACES) == 1
    versions = dict(progstore.versions())
    if change == "runner source":  # an edited checkout: runner/core/*.py hashes differently
        source = progstore.source_hash()
        monkeypatch.setattr(progstore, "source_hash", lambda: "edited " + source)
    elif change == "XLA_FLAGS":
        monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=true")
    else:
        name = change.split()[0]
        versions[name] += ".post1"
        monkeypatch.setattr(progstore, "versions", lambda: tuple(versions.items()))
    _fresh_fingerprint(monkeypatch)
    _, stats = _get(store)
    assert (stats.compiles, stats.loaded, len(TRACES)) == (1, 0, 2)
    _, stats = _get(store)  # the new versions' own entry now
    assert (stats.compiles, stats.loaded, len(TRACES)) == (0, 1, 2)


def test_a_change_of_jax_settings_is_a_miss(store):
    _get(store)
    with jax.default_prng_impl("rbg"):  # a setting that changes what traced code builds
        _, stats = _get(store)
    assert (stats.compiles, stats.loaded) == (1, 0)


def test_an_edit_to_the_traced_sources_changes_the_source_hash(tmp_path, monkeypatch):
    """runner/core/*.py and runner/config.py (all that runner.core imports) are hashed: an
    edited checkout misses; an edit elsewhere in runner (never traced) does not."""
    import shutil
    from pathlib import Path

    real = Path(progstore.__file__).parent
    copy = tmp_path / "runner"
    shutil.copytree(real / "core", copy / "core", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("config.py", "progstore.py", "__init__.py", "plots.py"):
        shutil.copy(real / name, copy / name)
    monkeypatch.setattr(progstore, "__file__", str(copy / "progstore.py"))
    before = progstore.source_hash()
    assert before == progstore.source_hash() and len(before) == 64
    with open(copy / "plots.py", "a") as f:
        f.write("\n# not traced\n")
    assert progstore.source_hash() == before
    for edited in ("core/train.py", "core/nn.py", "config.py"):
        with open(copy / edited, "a") as f:
            f.write("\n# edited\n")
        after = progstore.source_hash()
        assert after != before, edited
        before = after


@pytest.mark.parametrize("damage", ["garbage", "truncated", "flipped byte", "empty"])
def test_a_damaged_entry_is_a_miss_and_is_rewritten(store, damage):
    out, _ = _get(store)
    (entry,) = store.folder.glob("*.prog")
    good = entry.read_bytes()
    bad = {
        "garbage": b"not a program",
        "truncated": good[: len(good) // 2],
        "flipped byte": good[:-10] + bytes([good[-10] ^ 1]) + good[-9:],
        "empty": b"",
    }[damage]
    entry.write_bytes(bad)
    out2, stats = _get(store)
    assert (stats.compiles, stats.loaded) == (1, 0)
    np.testing.assert_array_equal(out, out2)
    assert entry.read_bytes() != bad  # rewritten by the compile
    _, stats = _get(store)
    assert (stats.compiles, stats.loaded) == (0, 1)
    assert not list(store.folder.glob("*.tmp"))


def test_an_unwritable_folder_only_means_no_store(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out, stats = _get(progstore.ProgramStore(blocker / "programs"))
    assert stats.compiles == 1
    np.testing.assert_array_equal(out, np.arange(4.0) ** 2 + 1)


def test_programs_without_a_stable_name_are_not_stored(store):
    """A lambda or local function: two of them may share module and qualname."""
    double = lambda spec, x: x * 2
    progs = Programs(draws_init=[double])
    progs.options_for = _no_options
    progs.store = store
    exe, _ = progs.get(double, _Spec(1), jnp.ones(2))
    np.testing.assert_array_equal(exe(jnp.ones(2)), [2.0, 2.0])
    assert progs.stats.compiles == 1 and not store.folder.exists()


def test_prune_drops_the_least_recently_used_entries(store):
    import os

    for p in (2, 3, 4):
        _get(store, _Spec(p))
    entries = sorted(store.folder.glob("*.prog"))
    sizes = sum(e.stat().st_size for e in entries)
    for age, e in enumerate(entries):  # entries[0] used last, entries[-1] longest ago
        os.utime(e, (1e9 - age * 100, 1e9 - age * 100))
    (store.folder / ".x.prog.1.tmp").write_bytes(b"left by a killed writer")
    os.utime(store.folder / ".x.prog.1.tmp", (1e9, 1e9))
    store.max_bytes = sizes - 1  # over by one byte: prune to PRUNE_TO of it
    store.prune()
    left = sorted(store.folder.glob("*.prog"))
    assert left and entries[-1] not in left and entries[0] in left
    assert sum(e.stat().st_size for e in left) <= store.max_bytes * progstore.PRUNE_TO
    assert not (store.folder / ".x.prog.1.tmp").exists()


def test_off_means_no_store(tmp_path, monkeypatch):
    from runner.core import train
    from runner.runtime import enable_compilation_cache

    monkeypatch.setattr(train.PROGRAMS, "store", None)
    assert progstore.open_store(None) is None
    paths = types.SimpleNamespace(jax_cache=str(tmp_path / "jax"))
    monkeypatch.delenv(progstore.ENV, raising=False)
    enable_compilation_cache(paths)
    assert isinstance(train.PROGRAMS.store, progstore.ProgramStore)
    assert train.PROGRAMS.store.folder == tmp_path / "jax" / progstore.SUBDIR
    monkeypatch.setenv(progstore.ENV, "off")  # JAX's cache alone
    enable_compilation_cache(paths)
    assert train.PROGRAMS.store is None
    monkeypatch.delenv(progstore.ENV)
    enable_compilation_cache(paths)
    assert train.PROGRAMS.store is not None
    enable_compilation_cache(types.SimpleNamespace(jax_cache="off"))  # both off
    assert train.PROGRAMS.store is None


def test_a_run_from_loaded_programs_gives_the_numbers_of_a_compiled_one(tmp_path, monkeypatch):
    """app.fit twice, each with a fresh PROGRAMS on one store: the first compiles (and stores)
    init, epoch and evaluation, the second loads all three; every number is the same."""
    from runner import app
    from runner.config import validate
    from runner.core import train
    from runner.data import load_dataset

    monkeypatch.setattr(progstore, "_FINGERPRINT", None)
    store = progstore.ProgramStore(tmp_path / "programs")
    cfg = validate(compose(TINY + ["trainer.epochs=2", "trainer.diagnostics=false"]))
    ds = load_dataset(cfg.data)
    results = []
    for _ in range(2):
        progs = Programs(run_once=train.RUN_ONCE, draws_init=train.DRAWS_INIT)
        progs.store = store
        monkeypatch.setattr(train, "PROGRAMS", progs)
        results.append((app.fit(cfg, ds), progs.stats))
    (fresh, compiled), (again, loaded) = results
    assert (compiled.compiles, compiled.loaded) == (3, 0)
    assert (loaded.compiles, loaded.loaded) == (0, 3)
    text = lambda x: json.dumps(x, sort_keys=True)  # every float to the last bit, NaN == NaN
    drop = lambda rows: [{k: v for k, v in r.items() if k != "time"} for r in rows]
    assert text(drop(fresh.history)) == text(drop(again.history))
    assert text(fresh.diagnostics) == text(again.diagnostics)
    times = {"wall_time", "train_time", "compile_time"}
    assert text({k: v for k, v in fresh.metrics.items() if k not in times}) == text(
        {k: v for k, v in again.metrics.items() if k not in times}
    )
    for a, b in zip(
        jax.tree_util.tree_leaves(fresh.best_state),
        jax.tree_util.tree_leaves(again.best_state),
        strict=True,
    ):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


def test_what_the_store_keeps_is_compiled_without_jaxs_cache(store, tmp_path):
    """An executable JAX loaded from its persistent cache can serialize without its kernels
    (XLA:CPU with the older fusion emitters); so a program to be stored is compiled with JAX's
    cache off, which leaves that cache untouched, and the setting is restored after."""
    from jax.experimental.compilation_cache import compilation_cache

    jax_dir = tmp_path / "jax"
    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
    old = {n: getattr(jax.config, n) for n in names + ("jax_enable_compilation_cache",)}
    x = jnp.arange(4.0)  # before JAX's cache is on: the only program compiled there is _scaled's
    try:
        jax.config.update("jax_compilation_cache_dir", str(jax_dir))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        compilation_cache.reset_cache()
        _get(store, _Spec(5), x)
        assert len(list(store.folder.glob("*.prog"))) == 1
        assert not jax_dir.exists() or not any(jax_dir.iterdir())
        assert jax.config.jax_enable_compilation_cache == old["jax_enable_compilation_cache"]
        jax.jit(lambda x: x * 7.0)(jnp.arange(3.0))  # outside the store: JAX's cache as before
        assert any(jax_dir.iterdir())
    finally:
        for n, v in old.items():
            jax.config.update(n, v)
        compilation_cache.reset_cache()


def test_start_compiles_in_the_background_and_get_waits_for_it(store, monkeypatch):
    progs = Programs(draws_init=[_scaled])
    progs.options_for = _no_options
    progs.store = store
    threads = []
    compile_ = progs._compile

    def spy(*args):
        threads.append(threading.current_thread().name)
        return compile_(*args)

    monkeypatch.setattr(progs, "_compile", spy)
    x = jnp.arange(4.0)
    assert progs.start(_scaled, _Spec(2), x) > 0  # traced and lowered here
    assert len(TRACES) == 1 and progs.stats.compiles == 1
    assert progs.start(_scaled, _Spec(2), x) == 0.0  # begun already: nothing more
    exe, waited = progs.get(_scaled, _Spec(2), x)
    assert waited >= 0 and len(threads) == 1 and threads[0].startswith("runner-compile_")
    np.testing.assert_array_equal(exe(x), np.arange(4.0) ** 2 + 1)
    assert progs.get(_scaled, _Spec(2), x) == (exe, 0.0)  # then an ordinary hit
    assert (progs.stats.compiles, progs.stats.hits, len(TRACES)) == (1, 1, 1)
    assert len(list(store.folder.glob("*.prog"))) == 1  # the background compile was stored
    # another Programs: start() loads the stored executable at once, untraced
    again = Programs(draws_init=[_scaled])
    again.options_for, again.store = _no_options, store
    again.start(_scaled, _Spec(2), x)
    assert (again.stats.compiles, again.stats.loaded, len(TRACES)) == (0, 1, 1)
    assert np.array_equal(again.get(_scaled, _Spec(2), x)[0](x), np.arange(4.0) ** 2 + 1)


def test_a_background_compiles_error_is_raised_by_get(store, monkeypatch):
    progs = Programs(draws_init=[_scaled])
    progs.options_for = _no_options

    def fail(*args):
        raise RuntimeError("XLA said no")

    monkeypatch.setattr(progs, "_compile", fail)
    progs.start(_scaled, _Spec(5), jnp.arange(4.0))
    with pytest.raises(RuntimeError, match="XLA said no"):
        progs.get(_scaled, _Spec(5), jnp.arange(4.0))
    monkeypatch.undo()
    exe, _ = progs.get(_scaled, _Spec(5), jnp.arange(4.0))  # not kept: compiled anew
    assert np.array_equal(exe(jnp.arange(4.0)), np.arange(4.0) ** 5 + 1)


def test_overlapping_compiling_contexts_keep_jax_cache_off_until_the_last_leaves(store):
    was = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", True)
    try:
        first, second = store.compiling(), store.compiling()
        first.__enter__()
        second.__enter__()
        first.__exit__(None, None, None)  # another thread is still compiling for the store
        assert jax.config.jax_enable_compilation_cache is False
        second.__exit__(None, None, None)
        assert jax.config.jax_enable_compilation_cache is True
    finally:
        jax.config.update("jax_enable_compilation_cache", was)


def test_a_run_compiles_its_epoch_program_in_the_background(monkeypatch):
    from conftest import run_inprocess

    from runner.core import train

    where = {}
    compile_ = train.PROGRAMS._compile

    def spy(fn, *args):
        where[fn.__name__] = threading.current_thread().name
        return compile_(fn, *args)

    monkeypatch.setattr(train.PROGRAMS, "_compile", spy)
    train.PROGRAMS.clear()
    compiles = train.PROGRAMS.stats.compiles
    _, result = run_inprocess([*TINY, "model.width=7"])  # a structure no other test uses
    assert result.status == "completed"
    # the epoch program was begun from init's result shapes, and that one served the run
    assert train.PROGRAMS.stats.compiles - compiles == len(where) == 3
    assert where["epoch"].startswith("runner-compile")
    assert where["init_state"].startswith("runner-compile")
    assert where["evaluate_splits"] == "MainThread"


def test_result_shapes_are_those_of_the_result(store):
    progs = Programs(draws_init=[_scaled])
    progs.options_for = _no_options
    x = jax.device_put(jnp.arange(4.0), jax.local_devices()[1])
    assert progs.result_shapes(_scaled, _Spec(7), x) is None  # not begun
    progs.start(_scaled, _Spec(7), x)
    begun = progs.result_shapes(_scaled, _Spec(7), x)  # from the lowering, or the executable
    exe, _ = progs.get(_scaled, _Spec(7), x)
    out = exe(x)
    cached = progs.result_shapes(_scaled, _Spec(7), x)
    for s in (begun, cached):
        assert (s.shape, s.dtype, s.sharding) == (out.shape, out.dtype, out.sharding)
    # arguments split over two devices: known only from the executable (None before it is)
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    mesh = Mesh(np.array(jax.local_devices()[:2]), ("m",))
    z = jax.device_put(jnp.arange(4.0), NamedSharding(mesh, PartitionSpec("m")))
    progs.start(_scaled, _Spec(8), z)
    early = progs.result_shapes(_scaled, _Spec(8), z)
    out = progs.get(_scaled, _Spec(8), z)[0](z)
    assert early is None or early.sharding == out.sharding
    assert progs.result_shapes(_scaled, _Spec(8), z).sharding == out.sharding
