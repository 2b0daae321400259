"""Bad input: one clear line naming the key, the value and what is allowed; a non-zero exit; no
traceback; no run directory that looks complete."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

RUNNER = [sys.executable, "-m", "runner"]
QUICK = ["trainer.epochs=1", "trainer.progress=false", "data.max_samples=100"]


def bad(args, tmp_path, env=None):
    run_dir = tmp_path / "run"
    e = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    e.update(env or {})
    p = subprocess.run(
        RUNNER + QUICK + list(args) + [f"hydra.run.dir={run_dir}"],
        capture_output=True,
        text=True,
        env=e,
        timeout=120,
    )
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert p.returncode != 0
    assert "Traceback" not in p.stderr
    assert len(lines) == 1, p.stderr
    assert not (run_dir / "metrics.json").exists()
    assert not run_dir.exists() or not any(run_dir.iterdir())
    return lines[0]


@pytest.mark.parametrize(
    "args,expect",
    [
        (["activation=foo"], ["activation=foo", "unknown option", "leaky_relu"]),
        (["optimizer=adamx"], ["optimizer=adamx", "adamw"]),
        (["trainer.epochs=abc"], ["trainer.epochs='abc'", "integer"]),
        (["trainer.epochs=2.5"], ["trainer.epochs=2.5", "integer"]),
        (["optimizer.lr=0"], ["optimizer.lr=0", "> 0"]),
        (["optimizer.lr=-0.1"], ["optimizer.lr=-0.1", "> 0"]),
        (["regularization.dropout=1.0"], ["regularization.dropout=1", "< 1"]),
        (["regularization.dropout=-0.1"], ["regularization.dropout=-0.1", ">= 0"]),
        (["trainer.batch_size=0"], ["trainer.batch_size=0", ">= 1"]),
        (["trainer.batch_size=big"], ["trainer.batch_size='big'", "'full'"]),
        (["model.depth=0"], ["model.depth=0", ">= 1"]),
        (["optimizer=momentum", "optimizer.momentum=1.0"], ["optimizer.momentum=1", "< 1"]),
        (
            ["regularization=early_stopping", "regularization.patience=-1"],
            ["regularization.patience=-1", ">= 0"],
        ),
        (["trainer.epoch=5"], ["trainer.epoch", "not a setting of trainer=default", "epochs"]),
        (["paths.output=x"], ["paths.output", "not a setting of paths=default", "outputs"]),
        (["activation.alpha=2"], ["activation.alpha", "activation=relu", "activation=elu"]),
        (["regularization.batchnorm=maybe"], ["regularization.batchnorm='maybe'", "true or false"]),
        (["trainer.plot=sometimes"], ["trainer.plot='sometimes'", "true, false or auto"]),
        (["model=cnn", "data=iris"], ["model=cnn", "data=iris", "tabular"]),
        (["trainer.batch_size=5000"], ["trainer.batch_size=5000", "training examples"]),
        (["data=iris", "data.task=binary"], ["data.task=binary", "3 classes"]),
        (["data=prices", "data.task=classification"], ["data.task=classification"]),
        (
            ["data=csv", "data.path=/no/such/file.csv", "data.target=y"],
            ["data.path='/no/such/file.csv'", "no such file"],
        ),
        (["data=csv", "data.path=/tmp"], ["data.target"]),
    ],
)
def test_bad_input_one_line(args, expect, tmp_path):
    line = bad(args, tmp_path)
    for word in expect:
        assert word in line, (word, line)


def _csv(tmp_path, text):
    p = tmp_path / "d.csv"
    p.write_text(text)
    return p


def test_csv_non_numeric(tmp_path):
    p = _csv(tmp_path, "a,b,y\n1,2,0\n3,abc,1\n" + "1,2,0\n" * 30)
    line = bad(["data=csv", f"data.path={p}", "data.target=y"], tmp_path)
    assert "'abc'" in line and "'b'" in line and "data.path" in line


def test_csv_missing_value(tmp_path):
    p = _csv(tmp_path, "a,b,y\n1,2,0\n3,,1\n" + "1,2,0\n" * 30)
    line = bad(["data=csv", f"data.path={p}", "data.target=y"], tmp_path)
    assert "missing" in line and "'b'" in line


def test_csv_no_such_target_column(tmp_path):
    p = _csv(tmp_path, "a,b,y\n" + "1,2,0\n" * 30)
    line = bad(["data=csv", f"data.path={p}", "data.target=price"], tmp_path)
    assert "data.target='price'" in line and "a, b, y" in line


def test_log_targets_must_be_positive(tmp_path):
    p = _csv(tmp_path, "a,y\n" + "".join(f"{i},{i - 10}.5\n" for i in range(40)))
    line = bad(
        ["data=csv", f"data.path={p}", "data.target=y", "data.task=log_regression"], tmp_path
    )
    assert "data.task=log_regression" in line and "positive" in line


def test_output_directory_not_writable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    p = subprocess.run(
        RUNNER + [f"hydra.run.dir={blocker}/run"] + QUICK,
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"},
    )
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert len(lines) == 1 and str(blocker) in lines[0] and "writable" in lines[0]


def test_hydra_full_error_shows_traceback(tmp_path):
    p = subprocess.run(
        RUNNER + ["optimizer.lr=0", f"hydra.run.dir={tmp_path / 'r'}"] + QUICK,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, HYDRA_FULL_ERROR="1"),
    )
    assert p.returncode != 0 and "Traceback" in p.stderr


# ---------------------------------------------------------------------------------------------
# Refused before anything is allocated or trained: these once crashed (ZeroDivisionError, out of
# memory) or dropped the reason, and left a failed run folder behind.


def _no_features(tmp_path):
    import numpy as np

    np.savez(tmp_path / "nof.npz", x=np.zeros((200, 0)), y=np.arange(200) % 2)
    return ["data=npz", f"data.path={tmp_path / 'nof.npz'}"]


@pytest.mark.parametrize(
    "make_args,expect",
    [
        (_no_features, ["data.path='", "nof.npz'", "shape (200, 0)", "no features"]),
        (
            lambda _: ["model.width=100000000"],
            [
                "model.width=100000000: the model would have 1e+16 parameters",
                "PiB of training state",
                "optimizer=adam",
                "room for",
            ],
        ),
        (
            lambda _: ["optimizer.lr=logspace(-5,-1,0)"],
            ["optimizer.lr=logspace(-5,-1,0): the count must be an integer >= 1"],
        ),
    ],
    ids=["npz_no_features", "huge_width", "logspace_count"],
)
def test_refused_before_training(make_args, expect, tmp_path):
    line = bad(make_args(tmp_path), tmp_path)
    assert line.startswith("runner: error: ")
    for word in expect:
        assert word in line, (word, line)


def _spec(overrides):
    from conftest import compose

    from runner.config import validate
    from runner.core.spec import make_spec
    from runner.data import load_dataset

    cfg = validate(compose(["data.max_samples=120", "model.width=16"] + list(overrides)))
    ds = load_dataset(cfg.data)
    return cfg, ds, make_spec(cfg, ds)


@pytest.mark.parametrize(
    "overrides",
    [
        ["optimizer=sgd"],
        [
            "model=resmlp",
            "model.widths=[8,12,12,6]",
            "optimizer=rmsprop",
            "optimizer.centered=true",
        ],
        ["model=cnn", "regularization.batchnorm=true", "activation=prelu", "optimizer=adadelta"],
        [
            "model=cnn",
            "model.conv_dim=1",
            "activation=maxout",
            "regularization.batchnorm=true",
            "regularization.batchnorm_position=after",
            "model.pool=1",
            "optimizer=momentum",
        ],
        ["data=breast_cancer", "activation=prelu", "activation.per_unit=false", "optimizer=adamw"],
    ],
)
def test_memory_estimate_matches_the_real_training_state(overrides):
    """runner.memory counts in pure Python what jax.eval_shape of train.init_state allocates
    (which adds only the RNG key, the step and the optimizer's step counts)."""
    from functools import partial

    import jax
    import numpy as np

    from runner import memory, vectorized
    from runner.core import train
    from runner.core.spec import make_hparams

    cfg, ds, spec = _spec(overrides)
    est = memory.state_bytes(
        spec.model, spec.input_shape, cfg.optimizer.name, cfg.optimizer.centered
    )
    sds = lambda a: jax.ShapeDtypeStruct(np.shape(a), np.asarray(a).dtype)
    state = jax.eval_shape(
        partial(train.init_state, spec),
        {k: sds(v) for k, v in make_hparams(cfg, spec).items()},
        jax.ShapeDtypeStruct((2,), np.uint32),
        {k: sds(v[:1]) for k, v in ds.arrays().items()},
    )
    real = sum(np.prod(a.shape) * a.dtype.itemsize for a in jax.tree_util.tree_leaves(state))
    assert 0 <= real - est <= 32
    assert vectorized.state_bytes(cfg, ds) == est  # what a sweep plans its groups with


@pytest.mark.parametrize(
    "overrides,key",
    [
        (["model.width=100000"], "model.width=100000:"),
        (["model.widths=[16,100000,100000]"], "model.widths=[16, 100000, 100000]:"),
        (["model.depth=5000", "model.width=2048"], "model.depth=5000:"),
        (["model=resmlp", "model.width=100000"], "model.width=100000:"),
        (["model=cnn", "model.kernel_size=5000"], "model.kernel_size=5000:"),
    ],
)
def test_too_large_for_memory_names_the_key(overrides, key, monkeypatch):
    from runner import memory
    from runner.config import ConfigError

    cfg, ds, _ = _spec(overrides)
    monkeypatch.setattr(memory, "budget", lambda: (8 * 2**30, "this machine has"))
    with pytest.raises(ConfigError) as e:
        memory.check_memory(cfg, ds)
    msg = str(e.value)
    assert msg.startswith(key) and "parameters" in msg and "8 GiB" in msg and "\n" not in msg
    memory.check_memory(_spec([])[0], ds)  # the default model fits


@pytest.mark.parametrize(
    "override,expect",
    [
        (
            "optimizer.lr=geomspace(-1,1,3)",
            "optimizer.lr=geomspace(-1,1,3): start and stop must be > 0",
        ),
        (
            "optimizer.lr=logspace(a,b,3)",
            "optimizer.lr=logspace(a,b,3): start and stop must be exponents of 10",
        ),
        (
            "optimizer.lr=logspace(1,2,2.5)",
            "optimizer.lr=logspace(1,2,2.5): the count must be an integer >= 1",
        ),
        ("optimizer.lr=range(a)", "optimizer.lr=range(a): mismatch type argument start"),
    ],
)
def test_override_parse_errors_keep_the_reason(override, expect):
    """Hydra's "Error parsing override" names the override; its reason is on the next line."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from runner.shell import describe
    from runner.sweep.grammar import install_grammar

    install_grammar()
    with pytest.raises(Exception) as e:
        OverridesParser.create().parse_overrides([override])
    assert describe(e.value) == describe(e.value).strip() and "\n" not in describe(e.value)
    assert describe(e.value).startswith(expect), describe(e.value)


def test_memory_budget_of_an_accelerator(monkeypatch):
    """Once JAX has started on a GPU, its own memory bounds the state (no GPU in CI: faked)."""
    import jax

    from runner import memory

    class Device:
        platform, device_kind = "gpu", "NVIDIA H200"

        def memory_stats(self):
            return {"bytes_limit": 140 * 2**30, "bytes_in_use": 4 * 2**30}

    monkeypatch.setattr(jax, "local_devices", lambda: [Device()])
    assert memory.budget() == (136 * 2**30, "the GPU (NVIDIA H200) has")
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    assert not memory._accelerator_plugin()
