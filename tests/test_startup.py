"""The run path's start-up and exit (docs/performance.md, start-up profile): Hydra composes the
config once where the command line settles hydra.mode (runner.cli.mode_is_unset), provenance's
git runs in a thread started with the command (runner.provenance.prefetch), the training state
is a pytree without flax, and the process's teardown skips the final garbage collections."""

from __future__ import annotations

import dataclasses
import pickle
import subprocess
import sys
import threading

import pytest
import yaml

from runner import cli, provenance
from runner.help import conf_dir


def _package(text: str, group: str) -> str:
    """Where a conf/ file's keys land: its `# @package` line, else its group (Hydra's default;
    the primary config.yaml's is "", global)."""
    for line in text.splitlines():
        if line.startswith("# @package"):
            package = line.split()[-1]
            return "" if package == "_global_" else package
        if not line.startswith("#"):
            break
    return group


def _keys(node, prefix: str):
    if isinstance(node, dict):
        for k, v in node.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            yield key
            yield from _keys(v, key)


def test_no_conf_file_sets_hydra_mode():
    """What lets mode_is_unset answer without composing: only the command line sets it."""
    root = conf_dir()
    files = sorted(root.rglob("*.yaml"))
    assert len(files) > 40

    def mode_keys(text: str, group: str) -> list[str]:
        keys = _keys(yaml.safe_load(text) or {}, _package(text, group))
        return [k for k in keys if k in ("hydra.mode", "hydra.searchpath")]

    found = [
        (str(f.relative_to(root)), key)
        for f in files
        for key in mode_keys(f.read_text(), ".".join(f.parent.relative_to(root).parts))
    ]
    assert found == []
    # the check finds such a key wherever a file would put one
    assert mode_keys("mode: MULTIRUN\n", "hydra") == ["hydra.mode"]
    assert mode_keys("# @package _global_\nhydra:\n  mode: RUN\n", "experiment") == ["hydra.mode"]
    assert mode_keys("# @package hydra\nsearchpath: []\n", "hydra/help") == ["hydra.searchpath"]
    assert mode_keys("mode: auto\n", "trainer") == []


@pytest.fixture()
def hydra_app():
    """The Hydra object `runner` builds (hydra/_internal/utils.py _run_hydra), counting the
    configs it composes."""
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_automatic_config_search_path
    from hydra.core.global_hydra import GlobalHydra

    from runner.help import register_resolver

    register_resolver(conf_dir())
    search = create_automatic_config_search_path(None, None, str(conf_dir()))
    app = Hydra.create_main_hydra2(task_name="runner", config_search_path=search)
    composed = []
    real = app.compose_config

    def counting(*args, **kwargs):
        composed.append(kwargs.get("overrides"))
        return real(*args, **kwargs)

    app.compose_config = counting
    app.composed = composed
    yield app
    GlobalHydra.instance().clear()


def test_mode_is_decided_without_composing_where_hydra_would_find_none(hydra_app):
    from hydra.types import RunMode

    unset = [
        [],
        ["model=cnn", "optimizer.lr=0.1,0.2", "experiment=learning_rate", "debug=tiny"],
        ["hydra.run.dir=/tmp/x", "hydra.sweep.dir=/tmp/y", "hydra/launcher=basic"],
    ]
    maybe = [
        ["hydra.mode=MULTIRUN"],
        ["+hydra.mode=RUN"],
        ["hydra={mode:MULTIRUN}"],
        ["experiment@_global_=learning_rate"],
        ["hydra.searchpath=[file:///tmp]"],
    ]
    for overrides in unset:
        assert cli.mode_is_unset(hydra_app, "config", overrides), overrides
    for overrides in maybe:
        assert not cli.mode_is_unset(hydra_app, "config", overrides), overrides
    assert not cli.mode_is_unset(hydra_app, "other", [])  # --config-name

    with cli._mode_from_command_line():
        for overrides in unset:
            assert hydra_app.get_mode(config_name="config", overrides=overrides) is None
        assert hydra_app.composed == []
        multirun = hydra_app.get_mode(config_name="config", overrides=["hydra.mode=MULTIRUN"])
        assert multirun == RunMode.MULTIRUN and len(hydra_app.composed) == 1
    # Hydra's own get_mode (which composes) agrees where the shortcut answered None
    for overrides in unset:
        assert hydra_app.get_mode(config_name="config", overrides=overrides) is None
    assert len(hydra_app.composed) == 1 + len(unset)


def test_a_config_folder_of_the_users_is_composed(hydra_app, tmp_path):
    """--config-dir adds a search path whose files may set hydra.mode: Hydra decides."""
    hydra_app.config_loader.get_search_path().append("command-line", f"file://{tmp_path}")
    assert not cli.mode_is_unset(hydra_app, "config", [])


def test_another_hydra_version_keeps_its_own_get_mode(monkeypatch):
    import hydra
    from hydra._internal.hydra import Hydra

    original = Hydra.__dict__["get_mode"]
    monkeypatch.setattr(hydra, "__version__", "1.4.0")
    with cli._mode_from_command_line():
        assert Hydra.__dict__["get_mode"] is original
    monkeypatch.setattr(hydra, "__version__", "1.3.2")
    with cli._mode_from_command_line():
        assert Hydra.__dict__["get_mode"] is not original
    assert Hydra.__dict__["get_mode"] is original


def test_teardown_freeze_is_registered_once(monkeypatch):
    import atexit
    import gc

    registered = []
    monkeypatch.setattr(atexit, "register", registered.append)
    monkeypatch.setattr(cli, "_FROZEN_AT_EXIT", [])
    cli._freeze_at_exit()
    cli._freeze_at_exit()
    assert len(registered) == 1
    monkeypatch.setattr(gc, "freeze", lambda: registered.append("frozen"))
    monkeypatch.setattr(gc, "disable", lambda: registered.append("disabled"))
    registered[0]()
    assert registered[1:] == ["disabled", "frozen"]


def test_prefetch_collects_in_a_thread_and_collect_waits(tmp_path, monkeypatch):
    provenance.clear_cache()
    release = threading.Event()
    calls = []

    def slow(cwd):
        calls.append(threading.current_thread().name)
        release.wait(10)
        return {"cwd": cwd, "git": None}

    monkeypatch.setattr(provenance, "_static", slow)
    provenance.prefetch(tmp_path)
    provenance.prefetch(tmp_path)  # already under way: not twice
    threading.Timer(0.2, release.set).start()
    got = provenance.collect(tmp_path)
    assert got["cwd"] == str(tmp_path) and "time" in got and "env" in got
    assert calls == ["runner-provenance"]
    provenance.collect(tmp_path)
    assert calls == ["runner-provenance"]  # cached
    provenance.clear_cache()


def test_a_failed_prefetch_is_collected_again(tmp_path, monkeypatch):
    provenance.clear_cache()
    calls = []

    def flaky(cwd):
        calls.append(threading.current_thread().name)
        if len(calls) == 1:
            raise OSError("no")
        return {"cwd": cwd}

    monkeypatch.setattr(provenance, "_static", flaky)
    provenance.prefetch(tmp_path)
    assert provenance.collect(tmp_path)["cwd"] == str(tmp_path)
    assert calls == ["runner-provenance", threading.current_thread().name]
    provenance.clear_cache()


def test_train_state_is_a_pytree_of_its_fields():
    import jax
    import jax.numpy as jnp

    from runner.core.state import TrainState

    state = TrainState(
        params={"dense": {"kernel": jnp.ones((2, 3))}},
        batch_stats={},
        opt_state=(jnp.zeros(()),),
        rng=jax.random.PRNGKey(0),
        step=jnp.zeros((), jnp.int32),
    )
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(state)]
    assert paths == [".params['dense']['kernel']", ".opt_state[0]", ".rng", ".step"]
    treedef = jax.tree_util.tree_structure(state)
    assert pickle.loads(pickle.dumps(treedef)) == treedef  # runner.progstore pickles it
    moved = jax.jit(lambda s: s.replace(step=s.step + 1))(state)
    assert isinstance(moved, TrainState) and int(moved.step) == 1 and int(state.step) == 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.step = moved.step  # type: ignore[misc]
    w = {"params": {"x": jnp.zeros(1)}, "batch_stats": {"y": jnp.ones(1)}}
    got = moved.with_weights(w)
    assert got.weights()["params"] is w["params"] and got.batch_stats is w["batch_stats"]
    assert got.opt_state is moved.opt_state and got.step is moved.step


def test_the_core_imports_flax_only_to_trace():
    """A run whose programs all load from runner.progstore never needs flax (~0.1 s)."""
    code = (
        "import sys, runner.core.train, runner.core.state, runner.app; print('flax' in sys.modules)"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "False"


def test_a_single_run_is_told_from_its_command_line():
    assert cli.single_run([])
    assert cli.single_run(["model=cnn", "optimizer.lr=0.1", "hydra.run.dir=/tmp/r"])
    for argv in (
        ["-m", "optimizer=sgd,adam"],
        ["--multirun"],
        ["--cfg", "job"],
        ["--config-dir=/tmp/c"],
        ["hydra.mode=MULTIRUN"],
        ["experiment@_global_=learning_rate"],
    ):
        assert not cli.single_run(argv), argv


def test_the_collector_paused_for_start_up_resumes_frozen(monkeypatch):
    import gc

    from runner import runtime

    calls = []
    state = {"enabled": True}
    monkeypatch.setattr(gc, "isenabled", lambda: state["enabled"])
    monkeypatch.setattr(gc, "disable", lambda: (calls.append("disable"), state.update(enabled=0)))
    monkeypatch.setattr(gc, "enable", lambda: (calls.append("enable"), state.update(enabled=1)))
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    monkeypatch.setattr(runtime, "_GC_PAUSED", [])
    runtime.resume_gc()  # nothing paused it: a no-op
    assert calls == []
    runtime.pause_gc()
    runtime.pause_gc()
    assert calls == ["disable"] and not state["enabled"]
    runtime.resume_gc()
    runtime.resume_gc()
    assert calls == ["disable", "freeze", "enable"] and state["enabled"]
    state["enabled"] = False  # disabled by someone else: not ours to turn on
    runtime.pause_gc()
    runtime.resume_gc()
    assert calls == ["disable", "freeze", "enable"]


def test_a_sweep_freezes_what_start_up_holds_once(monkeypatch):
    """runtime.freeze_startup (the vmap launcher's first launch, before it composes any job):
    gc.freeze once a process, never again (a later launch's configs are cyclic garbage)."""
    import gc

    from runner import runtime

    calls = []
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    monkeypatch.setattr(runtime, "_FROZEN", [])
    runtime.freeze_startup()
    runtime.freeze_startup()
    assert calls == ["freeze"]


def test_a_runs_arrays_and_key_go_to_the_device_without_compiling(caplog):
    """app.prepare and app.prng_key give what jnp.asarray and jax.random.PRNGKey give, without
    the small program each of those traces and looks up for a new shape (0.1-0.2 s a run)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from conftest import TINY, compose

    from runner import app
    from runner.config import validate
    from runner.core.spec import make_hparams
    from runner.data import load_dataset

    cfg = validate(compose([*TINY, "data.max_samples=117"]))  # shapes no other test has
    ds = load_dataset(cfg.data)
    with jax.log_compiles(), caplog.at_level("DEBUG"):
        spec, hp, data = app.prepare(cfg, ds)
        keys = [app.prng_key(s) for s in (0, 1, 12345, 2**31 - 1)]
    assert not [r for r in caplog.records if "Compiling" in r.getMessage()]
    eager = {**make_hparams(cfg, spec), **ds.arrays()}
    for k, v in {**hp, **data}.items():
        e = jnp.asarray(eager[k])
        assert (v.dtype, v.shape, v.weak_type, v.sharding) == (
            e.dtype,
            e.shape,
            e.weak_type,
            e.sharding,
        ), k
        np.testing.assert_array_equal(np.asarray(v), np.asarray(e))
    for s, k in zip((0, 1, 12345, 2**31 - 1), keys):
        ref = jax.random.PRNGKey(s)
        assert (k.dtype, k.shape, k.weak_type) == (ref.dtype, ref.shape, ref.weak_type)
        np.testing.assert_array_equal(np.asarray(k), np.asarray(ref))
    assert (
        np.asarray(app.prng_key(2**40)).tolist() == np.asarray(jax.random.PRNGKey(2**40)).tolist()
    )
