"""Activations, initializers, dropout, batch norm and the models of runner.core.nn."""

from __future__ import annotations

import dataclasses
import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import erf

from runner.config import Config
from runner.core.nn import (
    ACTIVATIONS,
    Activation,
    Layer,
    activation_fn,
    build_model,
    inverted_dropout,
    make_initializer,
    maxout,
)
from runner.core.spec import ModelSpec, make_hparams, make_spec
from runner.data import Dataset

# rbg keys: same distributions, but XLA on CPU compiles them several times faster than threefry
# (test_with_make_hparams keeps the default implementation).
KEY = jax.random.key(0, impl="rbg")


def key(seed):
    return jax.random.key(seed, impl="rbg")


def make_hp(**over):
    hp = dict(
        negative_slope=0.1,
        elu_alpha=0.7,
        rrelu_lower=0.125,
        rrelu_upper=1 / 3,
        dropout=[0.0, 0.0, 0.0],
        init_std=0.05,
        init_limit=0.2,
        init_value=0.3,
        init_gain=2.0,
        init_bias=0.0,
        init_head_scale=1.0,
    )
    hp.update(over)
    return {k: np.asarray(v, np.float32) for k, v in hp.items()}


def make_spec_(**over):
    s = dict(
        arch="mlp",
        hidden=(8, 8),
        n_out=3,
        head="softmax",
        activation="relu",
        prelu_per_unit=True,
        maxout_k=2,
        init="he_normal",
        batchnorm=False,
        bn_position="before",
        bn_momentum=0.9,
        bn_eps=1e-5,
        dropout=False,
        conv_dim=0,
        kernel_size=3,
        pool=2,
    )
    s.update(over)
    return ModelSpec(**s)


def rngs(key):
    k1, k2, k3 = jax.random.split(key, 3)
    return {"params": k1, "dropout": k2, "rrelu": k3}


# ---------------------------------------------------------------------------------------------
# Activations


def _sig(x):
    return 1 / (1 + np.exp(-x))


def _phi(x):
    return 0.5 * (1 + np.asarray(erf(x / np.sqrt(2.0))))


SELU_L, SELU_A = 1.0507009873554805, 1.6732632423543772
# name -> (f(x), f'(x)) with hp = make_hp(): negative_slope 0.1, elu_alpha 0.7, rrelu mean slope
FORMULAS = {
    "sigmoid": (_sig, lambda x: _sig(x) * (1 - _sig(x))),
    "tanh": (np.tanh, lambda x: 1 - np.tanh(x) ** 2),
    "relu": (lambda x: np.maximum(x, 0), lambda x: (x > 0) * 1.0),
    "leaky_relu": (lambda x: np.where(x >= 0, x, 0.1 * x), lambda x: np.where(x >= 0, 1, 0.1)),
    "prelu": (lambda x: np.where(x >= 0, x, 0.1 * x), lambda x: np.where(x >= 0, 1, 0.1)),
    "rrelu": (
        lambda x: np.where(x >= 0, x, (1 / 8 + 1 / 3) / 2 * x),
        lambda x: np.where(x >= 0, 1, (1 / 8 + 1 / 3) / 2),
    ),
    "elu": (
        lambda x: np.where(x > 0, x, 0.7 * np.expm1(x)),
        lambda x: np.where(x > 0, 1, 0.7 * np.exp(x)),
    ),
    "selu": (
        lambda x: SELU_L * np.where(x > 0, x, SELU_A * np.expm1(x)),
        lambda x: SELU_L * np.where(x > 0, 1, SELU_A * np.exp(x)),
    ),
    "gelu": (
        lambda x: x * _phi(x),
        lambda x: _phi(x) + x * np.exp(-(x**2) / 2) / np.sqrt(2 * np.pi),
    ),
    "swish": (lambda x: x * _sig(x), lambda x: _sig(x) + x * _sig(x) * (1 - _sig(x))),
    "silu": (lambda x: x * _sig(x), lambda x: _sig(x) + x * _sig(x) * (1 - _sig(x))),
    "softplus": (lambda x: np.log1p(np.exp(x)), _sig),
    "identity": (lambda x: x, lambda x: np.ones_like(x)),
}


@partial(jax.jit, static_argnums=0)
def _value_and_grad(name, hp, x):
    f = activation_fn(name, hp, train=False)
    return f(x), jax.vmap(jax.grad(f))(x)


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_activation_values_and_derivatives(name):
    x = np.linspace(-4, 4, 80).astype(np.float32)  # no exact 0
    y, dy = _value_and_grad(name, make_hp(), x)
    f, df = FORMULAS[name]
    np.testing.assert_allclose(y, f(x.astype(np.float64)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dy, df(x.astype(np.float64)), rtol=1e-5, atol=1e-6)


def test_every_activation_is_listed():
    assert set(FORMULAS) | {"maxout"} == set(ACTIVATIONS)
    with pytest.raises(ValueError):
        activation_fn("nope", make_hp())


def test_relu_gradient_at_zero_is_zero():
    assert float(jax.grad(activation_fn("relu", make_hp()))(0.0)) == 0.0


def test_swish_is_silu():
    x = jnp.linspace(-5, 5, 11)
    np.testing.assert_array_equal(activation_fn("swish", {})(x), activation_fn("silu", {})(x))


@pytest.mark.parametrize("per_unit,shape", [(True, (5,)), (False, ())])
def test_prelu_slope_is_learned(per_unit, shape):
    hp = make_hp(negative_slope=0.25)
    act = Activation("prelu", hp, per_unit=per_unit)
    x = jnp.linspace(-2, 1, 20).reshape(4, 5)
    params = act.init(KEY, x)["params"]
    assert params["prelu_slope"].shape == shape
    np.testing.assert_allclose(params["prelu_slope"], 0.25)
    g = jax.grad(lambda p: act.apply({"params": p}, x).sum())(params)["prelu_slope"]
    assert g.shape == shape and np.all(np.asarray(g) < 0)  # d/d slope = sum of negative x
    np.testing.assert_allclose(np.sum(g), np.sum(np.minimum(x, 0)), rtol=1e-6)


def test_prelu_gets_a_gradient_in_a_model():
    spec = make_spec_(activation="prelu", prelu_per_unit=False)
    hp = make_hp()
    x = jax.random.normal(KEY, (16, 4))

    @jax.jit
    def grads(hp, x):
        model = build_model(spec, hp)
        params = model.init(rngs(KEY), x, train=False)["params"]
        return jax.grad(lambda p: jnp.sum(model.apply({"params": p}, x, train=False) ** 2))(params)

    g = grads(hp, x)
    for i in range(2):
        assert g[f"layer{i}"]["act"]["prelu_slope"].shape == ()
        assert float(jnp.abs(g[f"layer{i}"]["act"]["prelu_slope"])) > 0


@jax.jit
def _rrelu(hp, x, key):
    act = Activation("rrelu", hp)
    return (act.apply({}, x, True, rngs={"rrelu": key}), act.apply({}, x, False))


def test_rrelu_random_in_training_mean_slope_in_eval():
    hp = make_hp(rrelu_lower=0.1, rrelu_upper=0.4)
    x = -jnp.linspace(0.5, 2.0, 1000)
    y1, ev = _rrelu(hp, x, key(1))
    y2, _ = _rrelu(hp, x, key(2))
    s1, s2 = np.asarray(y1 / x), np.asarray(y2 / x)
    assert s1.min() >= 0.1 - 1e-6 and s1.max() <= 0.4 + 1e-6
    assert abs(s1.mean() - 0.25) < 0.02 and s1.std() > 0.05  # many different slopes
    assert not np.allclose(s1, s2)
    np.testing.assert_allclose(ev, 0.25 * x, rtol=1e-6)
    pos = jnp.linspace(0.1, 1, 10)
    np.testing.assert_array_equal(_rrelu(hp, pos, KEY)[0], pos)


def test_maxout_takes_max_over_groups():
    x = jax.random.normal(KEY, (7, 12))
    np.testing.assert_array_equal(maxout(x, 3), np.asarray(x).reshape(7, 4, 3).max(-1))
    np.testing.assert_array_equal(
        activation_fn("maxout", {}, k=4)(x), np.asarray(x).reshape(7, 3, 4).max(-1)
    )


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_maxout_layer_has_k_times_the_parameters(arch):
    conv = arch == "cnn"
    x = jnp.ones((2, 10, 3)) if conv else jnp.ones((2, 6))
    kw = dict(arch=arch, hidden=(5,), conv_dim=1 if conv else 0)

    def layer_params(**over):
        model = build_model(make_spec_(**kw, **over), make_hp())
        v = jax.eval_shape(lambda: model.init(rngs(KEY), x, train=False))
        p = v["params"]["layer0"]["conv" if conv else "dense"]
        out = jax.eval_shape(lambda v: model.apply(v, x), v)
        return sum(v.size for v in jax.tree.leaves(p)), out.shape, p

    n_relu, _, _ = layer_params(activation="relu")
    n_max, out_shape, p = layer_params(activation="maxout", maxout_k=3)
    assert n_max == 3 * n_relu and p["kernel"].shape[-1] == 15 and out_shape == (2, 3)


# ---------------------------------------------------------------------------------------------
# Initializers


@partial(jax.jit, static_argnums=(0, 1))
def _init(name, shape, hp, key):
    return make_initializer(name, hp)(key, shape, jnp.float32)


@pytest.mark.parametrize(
    "name,var",
    [
        ("he_normal", lambda i, o: 2 / i),
        ("he_uniform", lambda i, o: 2 / i),
        ("glorot_normal", lambda i, o: 2 / (i + o)),
        ("glorot_uniform", lambda i, o: 2 / (i + o)),
        ("lecun_normal", lambda i, o: 1 / i),
        ("lecun_uniform", lambda i, o: 1 / i),
    ],
)
@pytest.mark.parametrize("shape", [(400, 600), (3, 3, 40, 64)])
def test_variance_scaling(name, var, shape):
    fan_in, fan_out = math.prod(shape[:-1]), math.prod(shape[:-2]) * shape[-1]
    w = np.asarray(_init(name, shape, make_hp(), KEY), np.float64)
    v = var(fan_in, fan_out)
    assert w.shape == shape
    assert abs(w.mean()) < 0.01 * math.sqrt(v)
    assert abs(w.var() / v - 1) < 0.03
    if name.endswith("uniform"):
        assert np.abs(w).max() <= math.sqrt(3 * v) * (1 + 1e-6)
        assert np.abs(w).max() > 0.99 * math.sqrt(3 * v)
    else:  # truncated at 2 std of the underlying normal, std = sqrt(v) / 0.8796
        bound = 2 * math.sqrt(v) / 0.87962566103423978
        assert np.abs(w).max() <= bound * (1 + 1e-5) and np.abs(w).max() > 0.99 * bound


def test_normal_is_plain_not_truncated():
    w = np.asarray(_init("normal", (400, 600), make_hp(init_std=0.05), KEY), np.float64)
    assert abs(w.std() / 0.05 - 1) < 0.01
    assert np.abs(w).max() > 4 * 0.05  # a truncated normal would stop at 2 std


def test_uniform_is_symmetric():
    w = np.asarray(_init("uniform", (400, 600), make_hp(init_limit=0.2), KEY), np.float64)
    assert w.min() >= -0.2 and w.max() < 0.2 and w.min() < -0.199 and w.max() > 0.199
    assert abs(w.var() / (0.2**2 / 3) - 1) < 0.02 and abs(w.mean()) < 0.002


@pytest.mark.parametrize("shape", [(300, 120), (120, 300)])
def test_orthogonal(shape):
    w = np.asarray(_init("orthogonal", shape, make_hp(init_gain=2.0), KEY), np.float64)
    gram = w.T @ w if shape[0] >= shape[1] else w @ w.T
    np.testing.assert_allclose(gram, 4.0 * np.eye(min(shape)), atol=1e-4)


def test_zeros_and_constant():
    hp = make_hp(init_value=0.3)
    np.testing.assert_array_equal(_init("zeros", (4, 5), hp, KEY), np.zeros((4, 5)))
    np.testing.assert_allclose(_init("constant", (4, 5), hp, KEY), np.full((4, 5), 0.3))
    with pytest.raises(ValueError):
        make_initializer("auto", hp)


def test_model_uses_init_and_bias():
    spec = make_spec_(init="constant", hidden=(6,))
    params = build_model(spec, make_hp(init_value=0.3, init_bias=-0.5)).init(
        rngs(KEY), jnp.ones((2, 4)), train=False
    )["params"]
    for layer in (params["layer0"]["dense"], params["head"]):
        np.testing.assert_allclose(layer["kernel"], 0.3)
        np.testing.assert_allclose(layer["bias"], -0.5)


# ---------------------------------------------------------------------------------------------
# Dropout and batch norm


def test_inverted_dropout():
    x = jnp.ones((200_000,))
    y = np.asarray(jax.jit(inverted_dropout)(x, jnp.float32(0.3), KEY))
    assert abs(y.mean() - 1) < 0.01 and abs((y == 0).mean() - 0.3) < 0.01
    np.testing.assert_allclose(y[y != 0], 1 / 0.7, rtol=1e-6)
    z = jax.random.normal(KEY, (1000,))
    np.testing.assert_array_equal(inverted_dropout(z, jnp.float32(0.0), KEY), z)


@jax.jit
def _dropout_model(hp, x, key):
    spec = make_spec_(hidden=(64, 64), dropout=True)
    model = build_model(spec, hp)
    v = model.init(rngs(key), x, train=False)
    plain = build_model(dataclasses.replace(spec, dropout=False), hp)
    r = {"dropout": key}
    return (
        model.apply(v, x, train=True, rngs=r),
        model.apply(v, x, train=False),
        plain.apply(v, x, train=False),
    )


def test_dropout_in_model():
    x = jax.random.normal(KEY, (8, 4))
    tr, ev, plain = _dropout_model(make_hp(dropout=[0.0, 0.0]), x, KEY)
    np.testing.assert_array_equal(tr, plain)  # rate 0: exact identity
    np.testing.assert_array_equal(ev, plain)
    tr, ev, plain = _dropout_model(make_hp(dropout=[0.5, 0.0]), x, KEY)
    np.testing.assert_array_equal(ev, plain)  # eval: identity
    assert not np.allclose(tr, plain)


def _bn_layer(position="before", activation="identity"):
    spec = make_spec_(batchnorm=True, bn_position=position, activation=activation, bn_momentum=0.9)
    return Layer(spec, make_hp(), width=6, index=0)


@pytest.mark.parametrize("position,activation", [("before", "identity"), ("after", "relu")])
def test_batchnorm_train_uses_batch_stats(position, activation):
    layer = _bn_layer(position, activation)
    x = 3 * jax.random.normal(KEY, (256, 5)) + 2
    v = layer.init(KEY, x, False)
    y, upd = layer.apply(v, x, True, mutable=["batch_stats"])
    np.testing.assert_allclose(np.mean(y, 0), 0, atol=1e-4)
    np.testing.assert_allclose(np.var(y, 0), 1, atol=1e-3)
    # eval uses the running averages (initially mean 0, var 1), not the batch
    pre = layer.apply(v, x, True, mutable=["batch_stats"], capture_intermediates=True)
    h = pre[1]["intermediates"]["dense"]["__call__"][0]
    if activation == "relu":
        h = jax.nn.relu(h)
    np.testing.assert_allclose(
        layer.apply(v, x, False), h / np.sqrt(1 + 1e-5), rtol=1e-5, atol=1e-5
    )
    stats = upd["batch_stats"]["bn"]
    np.testing.assert_allclose(stats["mean"], 0.1 * np.mean(h, 0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(stats["var"], 0.9 + 0.1 * np.var(h, 0), rtol=1e-4)
    v2 = {"params": v["params"], **upd}
    y_eval = layer.apply(v2, x, False)
    np.testing.assert_allclose(
        y_eval, (h - stats["mean"]) / np.sqrt(stats["var"] + 1e-5), rtol=1e-4, atol=1e-4
    )


def test_batchnorm_mask_excludes_padded_rows():
    layer = _bn_layer()
    x = jax.random.normal(KEY, (20, 5))
    padded = jnp.concatenate([x, 1e3 * jnp.ones((12, 5))])
    mask = jnp.concatenate([jnp.ones(20), jnp.zeros(12)])
    v = layer.init(KEY, x, False)
    y, upd = layer.apply(v, x, True, mutable=["batch_stats"])
    yp, updp = layer.apply(v, padded, True, mask, mutable=["batch_stats"])
    np.testing.assert_allclose(yp[:20], y, rtol=1e-4, atol=1e-5)
    for k in ("mean", "var"):
        np.testing.assert_allclose(
            updp["batch_stats"]["bn"][k], upd["batch_stats"]["bn"][k], rtol=1e-5, atol=1e-6
        )


# ---------------------------------------------------------------------------------------------
# Models

N_TRACES = []


@partial(jax.jit, static_argnums=0)
def _run(spec, hp, x, key, mask):
    N_TRACES.append(spec)
    model = build_model(spec, hp)
    v = model.init(rngs(key), x, train=False)
    r = {"dropout": key, "rrelu": key}
    if spec.batchnorm:
        out, upd = model.apply(v, x, train=True, rngs=r, mask=mask, mutable=["batch_stats"])
        v = {**v, **upd}
    else:
        out = model.apply(v, x, train=True, rngs=r, mask=mask)
    return out, model.apply(v, x, train=False), v


ARCHS = {  # name -> spec overrides, input shape
    "mlp": (dict(arch="mlp", hidden=(8, 8), activation="prelu"), (6, 5)),
    "resmlp": (dict(arch="resmlp", hidden=(8, 8, 12), activation="rrelu"), (6, 2, 3)),
    "cnn1": (dict(arch="cnn", hidden=(4, 6), conv_dim=1, activation="maxout"), (6, 10, 2)),
    "cnn2": (dict(arch="cnn", hidden=(4, 6, 3), conv_dim=2, activation="elu"), (6, 7, 7, 1)),
}


@pytest.mark.parametrize("position", ["before", "after"])
@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_arch_shapes_and_jit(arch, position):
    over, shape = ARCHS[arch]
    spec = make_spec_(**over, batchnorm=True, bn_position=position, dropout=True, n_out=4)
    x = jax.random.normal(KEY, shape)
    mask = jnp.ones(shape[0]).at[-1].set(0)
    out, ev, v = _run(spec, make_hp(dropout=[0.2, 0.1, 0.0]), x, KEY, mask)
    assert out.shape == ev.shape == (shape[0], 4)
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(ev))
    assert "batch_stats" in v
    n = len(N_TRACES)
    _run(spec, make_hp(dropout=[0.5, 0.3, 0.3], negative_slope=0.2, elu_alpha=2.0), x, KEY, mask)
    assert len(N_TRACES) == n  # other hp values: same compiled program


def test_resmlp_skip_projection_and_depth():
    spec = make_spec_(arch="resmlp", hidden=(8, 8, 12))
    model = build_model(spec, make_hp())
    params = jax.eval_shape(lambda: model.init(rngs(KEY), jnp.ones((2, 3))))["params"]
    assert {"layer0", "layer1", "layer2", "skip2", "head"} == set(params)
    assert params["skip2"]["kernel"].shape == (8, 12)


def test_cnn_pool_skipped_when_too_small():
    spec = make_spec_(arch="cnn", hidden=(4, 4, 4), conv_dim=2, pool=3)
    model = build_model(spec, make_hp())
    params = jax.eval_shape(lambda: model.init(rngs(KEY), jnp.ones((2, 9, 9, 1))))["params"]
    assert params["head"]["kernel"].shape == (4, 3)  # 9 -> 3 -> 1 -> (1 < 3: no pool) 1


@jax.jit
def _all_activations(hp, x, key):
    out = {}
    for name in ACTIVATIONS:
        act = Activation(name, hp, k=2)
        v = act.init(rngs(key), x, False)
        out[name] = (act.apply(v, x, True, rngs={"rrelu": key}), act.apply(v, x, False))
    return out


def test_every_activation_module_jits_with_traced_hp():
    x = jax.random.normal(KEY, (3, 8))
    for name, (tr, ev) in _all_activations(make_hp(), x, KEY).items():
        width = 4 if name == "maxout" else 8
        assert tr.shape == ev.shape == (3, width), name
        if name != "rrelu":
            np.testing.assert_array_equal(tr, ev, err_msg=name)


def test_with_make_hparams():
    n = 100
    x, y = np.random.default_rng(0).normal(size=(n, 8, 1)).astype(np.float32), np.arange(n) % 3
    ds = Dataset("mnist1d", "classification", "sequence", 3, x, y, x, y, x, y)
    cfg = Config()
    cfg = dataclasses.replace(
        cfg,
        model=dataclasses.replace(cfg.model, name="cnn", width=4, depth=1),
        regularization=dataclasses.replace(cfg.regularization, batchnorm=True, dropout=0.1),
    )
    spec = make_spec(cfg, ds)
    hp = make_hparams(cfg, spec)
    # the default (threefry) key implementation
    out, ev, _ = _run(spec.model, hp, jnp.asarray(x[:5]), jax.random.key(0), jnp.ones(5))
    assert out.shape == (5, 3) and spec.model.conv_dim == 1


def test_deep_resmlp_keeps_activation_scale_bounded():
    """h + f(h)/sqrt(blocks): the output scale of a 24-block net stays within e of a 1-block
    one (a plain h + f(h) would grow it ~2**12 in std)."""
    x = jax.random.normal(key(1), (256, 32))
    stds = {}
    for depth in (2, 25):
        spec = make_spec_(
            arch="resmlp",
            hidden=(64,) * depth,
            n_out=64,
            activation="identity",
            init="glorot_normal",
        )
        model = build_model(spec, make_hp(dropout=[0.0] * depth))
        variables = model.init(rngs(key(2)), x)
        stds[depth] = float(jnp.std(model.apply(variables, x)))
    assert stds[25] / stds[2] < math.e
