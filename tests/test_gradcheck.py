"""runner gradcheck: the analytic gradient against centered finite differences in float64. It
passes on the models, fails on deliberately wrong gradients, and does not blame a ReLU kink."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY, compose, run_inprocess
from omegaconf import OmegaConf

from runner import app
from runner.config import validate
from runner.tools.gradcheck import THRESHOLD, check, main

SMALL = ["model.width=8", "data.max_samples=120"]


def _cfg(overrides):
    return validate(compose(SMALL + list(overrides)))


@pytest.mark.parametrize(
    "overrides",
    [
        # smooth activations, L1 + L2 penalties, residual skips, dropout (switched off), batch norm
        # before and after the nonlinearity, a 2-D cnn, the sigmoid (binary) and linear heads
        ["activation=tanh", "model.depth=3", "regularization.l2=0.01", "regularization.l1=0.001"],
        ["model=cnn", "activation=tanh", "regularization.batchnorm=true"],
        [
            "model=resmlp",
            "activation=elu",
            "model.depth=3",
            "regularization.dropout=0.3",
            "regularization.batchnorm=true",
            "regularization.batchnorm_position=after",
        ],
        ["activation=swish", "data=breast_cancer"],
        ["activation=prelu", "data=diabetes"],
    ],
    ids=["tanh-penalties", "cnn-bn", "resmlp-elu-bn", "binary", "regression"],
)
def test_passes_on_the_models(overrides):
    r = check(_cfg(overrides))
    assert r.passed, r.as_dict()
    assert r.max_rel_error < THRESHOLD
    names = [layer.name for layer in r.layers]
    assert names[0] == "layer0" and names[-1] == "head"
    assert all(len(layer.checked) > 0 for layer in r.layers)
    assert jnp.zeros(1).dtype == jnp.float32  # float64 stayed inside the check


def _scaled(factor):
    def grad_fn(f):
        g = jax.grad(f)
        return lambda p: jax.tree.map(lambda a: factor * a, g(p))

    return grad_fn


def test_fails_on_a_scaled_gradient():
    r = check(_cfg(["activation=tanh"]), grad_fn=_scaled(1.01))
    assert not r.passed
    assert all(not layer.passed(THRESHOLD) for layer in r.layers)
    # entries well above the floor: |1.01 a - a| / (1.01 |a| + |a|) = 0.01 / 2.01
    big = [e for e in r.entries if abs(e.numeric) > 1e-2]
    assert big and all(abs(e.rel_error - 0.01 / 2.01) < 1e-5 for e in big)


def test_finds_one_wrong_entry():
    def grad_fn(f):
        g = jax.grad(f)

        def wrong(p):
            out = g(p)
            head = dict(out["head"], bias=out["head"]["bias"].at[3].add(1e-3))
            return dict(out, head=head)

        return wrong

    r = check(_cfg(["activation=tanh"]), grad_fn=grad_fn)
    failed = [layer.name for layer in r.layers if not layer.passed(THRESHOLD)]
    assert failed == ["head"]
    worst = r.layers[-1].worst
    assert (worst.param, worst.index) == ("head/bias", (3,))
    assert worst.analytic - worst.numeric == pytest.approx(1e-3, rel=1e-4)


def test_fails_when_the_penalty_is_left_out():
    def grad_fn(f):  # the data loss's gradient only: forgets l2 * w on the kernels
        g = jax.grad(f)
        return lambda p: jax.tree_util.tree_map_with_path(
            lambda path, gi, w: gi - 0.1 * w if str(path[-1].key) == "kernel" else gi, g(p), p
        )

    cfg = _cfg(["activation=tanh", "regularization.l2=0.1"])
    assert check(cfg).passed
    r = check(cfg, grad_fn=grad_fn)
    assert not r.passed
    assert all(not e.kink for e in r.entries)


def test_a_difference_across_a_relu_kink_is_reported_not_failed():
    from runner.core import train
    from runner.data import load_dataset

    cfg = validate(
        compose(["activation=relu", "model.depth=1", "model.width=4", "data.max_samples=120"])
    )
    ds = load_dataset(cfg.data)
    spec, hp, data = app.prepare(cfg, ds)
    state = train.init_state(spec, hp, jax.random.PRNGKey(0), data)
    params = jax.tree.map(lambda a: np.array(a, np.float64), state.params)
    dense = params["layer0"]["dense"]
    # unit 0's pre-activation on example 0 is exactly 0: the ReLU's kink
    dense["bias"][0] = -(ds.x_train[0].reshape(-1).astype(np.float64) @ dense["kernel"][:, 0])
    r = check(cfg, ds, params=params, examples=1)
    e = next(e for e in r.entries if e.param == "layer0/dense/bias" and e.index == (0,))
    assert e.kink
    # without the kink rule this entry would fail: the difference quotient straddles x = 0
    assert abs(e.analytic - e.numeric) / (abs(e.analytic) + abs(e.numeric)) > 1e-3
    assert r.passed and r.layers[0].kinks >= 1


def test_command_line(capsys):
    assert main(["gradcheck", "activation=tanh", "model.width=8", "--entries", "3"]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "layer0" in out and "head" in out and "threshold 1e-06" in out
    # a threshold below float64 round-off: FAIL, exit code 1
    assert (
        main(
            [
                "gradcheck",
                "activation=tanh",
                "model.width=8",
                "--entries",
                "3",
                "--threshold",
                "1e-12",
            ]
        )
        == 1
    )
    assert "FAIL" in capsys.readouterr().out
    for argv, start in (
        (["activation=foo"], "runner: error: activation=foo: unknown option"),
        (["--examples", "0"], "runner: error: --examples=0"),
        (["optimizer.lr=-1"], "runner: error: optimizer.lr=-1"),
        (["--run", "/nonexistent"], "runner: error: --run /nonexistent"),
    ):
        assert main(["gradcheck", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith(start) and err.count("\n") == 1, err


def test_checks_a_finished_runs_best_weights(tmp_path, capsys):
    overrides = ["activation=tanh", "trainer.epochs=2"]
    _, result = run_inprocess(overrides)
    app.write_run(tmp_path, result, plot=False)
    (tmp_path / ".hydra").mkdir()
    OmegaConf.save(compose(TINY + overrides), tmp_path / ".hydra" / "config.yaml")
    assert main(["gradcheck", "--run", str(tmp_path), "--entries", "3"]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and str(tmp_path.name) in out


def test_checks_the_weights_a_run_starts_from():
    """Without --run, the checked weights are the run's initial weights: the core's one split
    of the seed key and its init (runner.core.train.init_keys, init_variables); the layers come
    in diagnostics.csv's order (runner.core.layerstats.network_order)."""
    from runner.core import train
    from runner.core.layerstats import network_order
    from runner.data import load_dataset
    from runner.tools import gradcheck

    cfg = _cfg(["activation=tanh", "seed=3"])
    ds = load_dataset(cfg.data)
    spec, hp, data = app.prepare(cfg, ds)
    state = train.init_state(spec, hp, jax.random.PRNGKey(3), data)
    own = check(cfg, ds, entries=2)
    given = check(cfg, ds, entries=2, params=jax.device_get(state.params))
    assert own.loss == given.loss
    assert [(e.param, e.index, e.analytic) for e in own.entries] == [
        (e.param, e.index, e.analytic) for e in given.entries
    ]
    names = [layer.name for layer in own.layers]
    assert names == network_order(names) and not hasattr(gradcheck, "_layer_order")
