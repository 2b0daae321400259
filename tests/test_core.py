"""The pure core: train() is a function jax.vmap can wrap, and a vmapped batch of runs equals
the same runs done one by one."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from conftest import TINY, compose

from runner import app
from runner.config import validate
from runner.core import train
from runner.data import load_dataset


def test_vmapped_runs_equal_sequential_runs():
    lrs = [0.01, 0.2]
    cfg = validate(
        compose(
            TINY
            + ["optimizer=momentum", "trainer.epochs=3", "regularization.dropout=0.2", "seed=4"]
        )
    )
    ds = load_dataset(cfg.data)
    spec, hp, data = app.prepare(cfg, ds)
    hps = jax.tree_util.tree_map(lambda v: jnp.stack([v] * len(lrs)), hp)
    hps["lr"] = jnp.asarray(lrs, jnp.float32)
    keys = jnp.stack([jax.random.PRNGKey(4)] * len(lrs))

    @jax.jit
    def run_all(hps, keys, data):
        states = jax.vmap(lambda h, k: train.init_state(spec, h, k, data))(hps, keys)
        return jax.vmap(lambda s, h: train.train(spec, s, data, h, 3))(states, hps)

    _, metrics = run_all(hps, keys, data)
    assert metrics["train_loss"].shape == (len(lrs), 3)
    for i, lr in enumerate(lrs):
        one = validate(
            compose(
                TINY
                + [
                    "optimizer=momentum",
                    "trainer.epochs=3",
                    "regularization.dropout=0.2",
                    "seed=4",
                    f"optimizer.lr={lr}",
                ]
            )
        )
        seq = app.fit(one, ds)
        np.testing.assert_allclose(
            metrics["train_loss"][i], [r["train_loss"] for r in seq.history], rtol=2e-5
        )
        np.testing.assert_allclose(
            metrics["val_metric"][i], [r["val_acc"] for r in seq.history], rtol=1e-6
        )
    assert not np.allclose(metrics["train_loss"][0], metrics["train_loss"][1])


# ---------------------------------------------------------------------------------------------
# The training state, the program cache, the core's imports


def _tiny(overrides=()):
    cfg = validate(compose(TINY + list(overrides)))
    ds = load_dataset(cfg.data)
    return (cfg, ds) + app.prepare(cfg, ds)


def test_the_training_state_is_one_typed_pytree():
    from runner.core.state import TrainState

    _, _, spec, hp, data = _tiny()
    key = jax.random.PRNGKey(0)
    init, _ = train.PROGRAMS.get(train.init_state, spec, hp, key, data)
    state = init(hp, key, data)
    assert isinstance(state, TrainState)
    assert set(state.weights()) == {"params", "batch_stats"}
    assert state.step.dtype == jnp.int32 and int(state.step) == 0
    moved = jax.tree_util.tree_map(lambda a: a + 1, state)  # one pytree: tree_map keeps the type
    assert isinstance(moved, TrainState) and int(moved.step) == 1
    # its rng is the run key of the one split of the seed key (gradcheck uses the same split)
    keys = train.init_keys(key)
    assert np.array_equal(state.rng, keys.run)
    params, batch_stats = train.init_variables(spec.model, hp, keys, data["x_train"][:1])
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(state.params)):
        np.testing.assert_array_equal(a, b)


def test_forward_and_evaluate_chunk_the_examples(monkeypatch):
    """Evaluation runs EVAL_CHUNK examples at a time (padding the last chunk); the outputs and
    the loss do not depend on the chunking."""
    from runner.core import losses

    _, _, spec, hp, data = _tiny()
    key = jax.random.PRNGKey(1)
    state = train.init_state(spec, hp, key, data)
    x, y = data["x_train"], data["y_train"]
    whole = train.forward(spec, state.params, state.batch_stats, x, hp)
    assert whole.shape == (len(x), spec.model.n_out)
    loss, acc = train.evaluate(spec, state, x, y, hp)
    monkeypatch.setattr(train, "EVAL_CHUNK", 11)  # len(x) is not a multiple of 11: padded
    assert len(x) % 11
    np.testing.assert_allclose(
        train.forward(spec, state.params, state.batch_stats, x, hp), whole, rtol=1e-6, atol=1e-6
    )
    chunked = train.evaluate(spec, state, x, y, hp)
    np.testing.assert_allclose(chunked, (loss, acc), rtol=1e-6)
    np.testing.assert_allclose(
        loss, np.mean(losses.per_example_loss("softmax", whole, y)), rtol=1e-6
    )
    assert train.forward(spec, state.params, state.batch_stats, x[:0], hp).shape == (0, 10)
    assert np.isnan(train.evaluate(spec, state, x[:0], y[:0], hp)[0])


def test_programs_other_than_init_are_shared_across_initializers():
    """Spec.without_init() keys every program but those that draw initial weights: runs that
    differ only in their initializer share the epoch program and each have an init program."""
    from runner.core import nn
    from runner.core.spec import NO_INIT

    progs = train.PROGRAMS
    key = jax.random.PRNGKey(0)
    got = []
    for init in ("he_uniform", "glorot_normal"):
        _, _, spec, hp, data = _tiny([f"init={init}"])
        init_exe, _ = progs.get(train.init_state, spec, hp, key, data)
        state = init_exe(hp, key, data)
        epoch_exe, _ = progs.get(train.epoch, spec, state, data, hp)
        got.append((spec, init_exe, epoch_exe, state))
    (spec_a, init_a, epoch_a, state_a), (spec_b, init_b, epoch_b, state_b) = got
    assert spec_a != spec_b and spec_a.without_init() == spec_b.without_init()
    assert spec_a.without_init().model.init == NO_INIT
    assert progs.spec_for(train.init_state, spec_a) is spec_a
    assert progs.spec_for(train.epoch, spec_a) == spec_a.without_init()
    assert epoch_a is epoch_b and init_a is not init_b
    assert not np.allclose(state_a.params["head"]["kernel"], state_b.params["head"]["kernel"])
    # a model built from the init-free spec applies, but initializing it gives no usable weights
    model = nn.build_model(spec_a.without_init().model, hp)
    params = model.init(
        {"params": key, "dropout": key, "rrelu": key}, data["x_train"][:1], train=False
    )["params"]
    assert np.isnan(params["head"]["kernel"]).all()
    np.testing.assert_array_equal(
        model.apply({"params": state_a.params}, data["x_train"][:4], train=False),
        nn.build_model(spec_a.model, hp).apply(
            {"params": state_a.params}, data["x_train"][:4], train=False
        ),
    )


def _scale(spec, x, *, k=2.0):
    return k * x


def _once(spec, x):
    return x + 1


def test_program_cache_is_a_bounded_lru_with_its_own_statistics(monkeypatch):
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    from runner.core.programs import QUICK, Programs

    _, _, spec, _, _ = _tiny()
    compile_options = []
    real_compile = jax.stages.Lowered.compile

    def spy(self, compiler_options=None, **kw):
        compile_options.append(compiler_options)
        return real_compile(self, compiler_options, **kw)

    monkeypatch.setattr(jax.stages.Lowered, "compile", spy)

    progs = Programs(max_programs=2, run_once=[_once])
    a, b, c = (np.ones(n, np.float32) for n in (3, 4, 5))
    exe_a, dt = progs.get(_scale, spec, a)
    assert dt > 0 and np.array_equal(exe_a(a), 2 * a)
    assert progs.get(_scale, spec, np.zeros(3, np.float32)) == (exe_a, 0.0)  # numbers: a hit
    progs.get(_scale, spec, b)
    progs.get(_scale, spec, a)  # a is now the most recently used
    progs.get(_scale, spec, c)  # over the bound: b, the least recently used, goes
    assert len(progs) == 2
    assert progs.get(_scale, spec, a)[0] is exe_a
    s = progs.stats
    assert (s.compiles, s.hits, s.evictions) == (3, 3, 1) and s.compile_seconds > 0
    progs.get(_scale, spec, b)
    assert (progs.stats.compiles, progs.stats.evictions) == (4, 2)
    # static arguments and shardings are part of the key
    exe3, _ = progs.get(_scale, spec, a, static=(("k", 3.0),))
    assert np.array_equal(exe3(a), 3 * a) and progs.stats.compiles == 5
    devices = jax.local_devices()
    on_one = jax.device_put(a, devices[0])
    everywhere = jax.device_put(a, NamedSharding(Mesh(np.array(devices), ("m",)), PartitionSpec()))
    progs.get(_scale, spec, on_one)
    progs.get(_scale, spec, everywhere)
    assert progs.stats.compiles == 7
    # run-once programs compile without LLVM's optimisations on CPU, the others fully
    compile_options.clear()
    progs.get(_once, spec, a)
    progs.get(_scale, spec, c)
    assert compile_options == [QUICK if jax.default_backend() == "cpu" else None, None]
    progs.clear()
    assert len(progs) == 0 and progs.stats.compiles == 9
    progs.get(_once, spec, a)
    assert progs.stats.compiles == 10


def test_the_core_imports_no_host_module():
    """runner/core/* imports only jax, optax, flax, numpy, the standard library, runner.core
    and runner.config (the host's types only under TYPE_CHECKING); runner.vectorized needs no
    runner.app."""
    import ast
    import sys
    from pathlib import Path

    import runner

    root = Path(runner.__file__).parent

    def imports(path):
        def visit(node):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.If) and ast.unparse(child.test) == "TYPE_CHECKING":
                    continue  # typing only: never imported at run time
                if isinstance(child, ast.Import):
                    yield from (a.name for a in child.names)
                elif isinstance(child, ast.ImportFrom):
                    yield from (f"{child.module}.{a.name}" for a in child.names)
                yield from visit(child)

        return set(visit(ast.parse(path.read_text())))

    allowed = {"jax", "optax", "flax", "numpy", "__future__"} | set(sys.stdlib_module_names)
    bad = [
        (p.name, m)
        for p in sorted((root / "core").glob("*.py"))
        for m in imports(p)
        if not (m.split(".")[0] in allowed or m.startswith(("runner.core.", "runner.config.")))
    ]
    assert bad == []
    assert not [m for m in imports(root / "vectorized.py") if m.startswith("runner.app")]
