"""Activations, initializers and the flax.linen models (mlp, resmlp, cnn).

Every number a model reads comes from ``hp`` (runner.core.spec.make_hparams): float32 arrays that
may be
JAX tracers, because the model is built and initialized inside jax.jit. So nothing here converts an
hp value to a Python float or branches on one; everything that changes the program (names, sizes,
on/off switches) comes from the static ModelSpec.

Parameter names: weights are "kernel" (Dense/Conv, including the "head"), biases "bias", batch-norm
"scale"/"bias" under a "bn" submodule, the PReLU slope "prelu_slope". Hidden layer i is the
submodule "layer{i}" (with "dense" or "conv", "bn", "act" inside); resmlp's skip projections are
"skip{i}".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

from runner.core.spec import NO_INIT, ModelSpec

Array = jax.Array
Initializer = Callable[..., Array]

# ---------------------------------------------------------------------------------------------
# Activations


def _leaky(x, slope):
    return jnp.where(x >= 0, x, slope * x)


def _rrelu(x, hp, train, rng):
    lo, hi = hp["rrelu_lower"], hp["rrelu_upper"]
    if not train:
        return _leaky(x, (lo + hi) / 2)
    if rng is None:
        raise ValueError("rrelu in training needs an rng (the 'rrelu' stream)")
    slope = jax.random.uniform(rng, x.shape, x.dtype, minval=lo, maxval=hi)
    return _leaky(x, slope)


def maxout(x, k: int):
    """Max over consecutive groups of k features on the last axis: (..., w*k) -> (..., w)."""
    if x.shape[-1] % k:
        raise ValueError(f"maxout: {x.shape[-1]} features is not a multiple of k={k}")
    return jnp.max(x.reshape(x.shape[:-1] + (x.shape[-1] // k, k)), axis=-1)


# name -> f(x, hp, train, rng). prelu (learned slope) and maxout (changes the width) are below.
ACTIVATION_FNS: dict[str, Callable] = {
    "sigmoid": lambda x, hp, train, rng: jax.nn.sigmoid(x),
    "tanh": lambda x, hp, train, rng: jnp.tanh(x),
    "relu": lambda x, hp, train, rng: jax.nn.relu(x),  # relu'(0) = 0 (jax's custom jvp)
    "leaky_relu": lambda x, hp, train, rng: _leaky(x, hp["negative_slope"]),
    "rrelu": _rrelu,
    "elu": lambda x, hp, train, rng: jax.nn.elu(x, hp["elu_alpha"]),
    "selu": lambda x, hp, train, rng: jax.nn.selu(x),
    "gelu": lambda x, hp, train, rng: jax.nn.gelu(x, approximate=False),
    "swish": lambda x, hp, train, rng: jax.nn.silu(x),
    "silu": lambda x, hp, train, rng: jax.nn.silu(x),
    "softplus": lambda x, hp, train, rng: jax.nn.softplus(x),
    "identity": lambda x, hp, train, rng: x,
}
ACTIVATIONS = tuple(ACTIVATION_FNS) + ("prelu", "maxout")


def activation_fn(
    name: str, hp: dict, *, train: bool = False, rng=None, slope=None, k: int = 2
) -> Callable[[Array], Array]:
    """The activation `name` as a function of x, with its knobs read from hp.

    prelu: `slope` is the learned parameter (default: its initial value hp["negative_slope"]).
    rrelu: in training each element gets a slope ~ U[rrelu_lower, rrelu_upper) drawn from `rng`;
    in evaluation the slope is the mean (lower + upper) / 2. maxout: max over groups of `k`.
    """
    if name == "prelu":
        s = hp["negative_slope"] if slope is None else slope
        return lambda x: _leaky(x, s)
    if name == "maxout":
        return lambda x: maxout(x, k)
    if name not in ACTIVATION_FNS:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")
    f = ACTIVATION_FNS[name]
    return lambda x: f(x, hp, train, rng)


class Activation(nn.Module):
    """An activation as a module: owns prelu's learned slope and draws rrelu's 'rrelu' rng."""

    kind: str
    hp: Any
    per_unit: bool = True
    k: int = 2

    @nn.compact
    def __call__(self, x, train: bool = False):
        slope = None
        if self.kind == "prelu":
            init_value = self.hp["negative_slope"]
            shape = (x.shape[-1],) if self.per_unit else ()
            slope = self.param(
                "prelu_slope", lambda key, shape: jnp.full(shape, init_value, jnp.float32), shape
            )
        rng = self.make_rng("rrelu") if self.kind == "rrelu" and train else None
        return activation_fn(self.kind, self.hp, train=train, rng=rng, slope=slope, k=self.k)(x)


# ---------------------------------------------------------------------------------------------
# Initializers

INITIALIZERS = (
    "zeros",
    "constant",
    "normal",
    "uniform",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "lecun_normal",
    "lecun_uniform",
    "orthogonal",
)

# name -> jax.nn.initializers.variance_scaling's (scale, mode, distribution), as jax's
# glorot_*/he_*/lecun_* set them
_Mode = Literal["fan_in", "fan_avg"]
_Distribution = Literal["truncated_normal", "uniform"]
_VARIANCE_SCALING: dict[str, tuple[float, _Mode, _Distribution]] = {
    "glorot_normal": (1.0, "fan_avg", "truncated_normal"),
    "glorot_uniform": (1.0, "fan_avg", "uniform"),
    "he_normal": (2.0, "fan_in", "truncated_normal"),
    "he_uniform": (2.0, "fan_in", "uniform"),
    "lecun_normal": (1.0, "fan_in", "truncated_normal"),
    "lecun_uniform": (1.0, "fan_in", "uniform"),
}


def make_initializer(name: str, hp: dict, scale=1.0) -> Initializer:
    """A kernel initializer init(key, shape, dtype=float32) -> array, its draws times `scale`
    (the head's hp["init_head_scale"]; 1 for every other layer).

    The scale goes into the distribution's own scalar (std, limit, variance, gain), so that the
    draws are multiplied once: a second multiply rounds differently inside jax.jit than outside.

    fan_in and fan_out are the last two axes of the kernel shape times the receptive field (the
    product of the other axes, i.e. the kernel window of a Conv):

    - zeros: 0.   constant: hp["init_value"].
    - normal: N(0, hp["init_std"]^2), a plain (not truncated) normal.
    - uniform: U[-hp["init_limit"], +hp["init_limit"]), variance limit^2 / 3.
    - glorot_*: Var = 2 / (fan_in + fan_out).  he_*: Var = 2 / fan_in.  lecun_*: Var = 1 / fan_in.
      *_uniform samples U[-a, a) with a = sqrt(3 * Var). *_normal samples a normal TRUNCATED at
      +-2 standard deviations and rescaled (divided by 0.8796..., the std of a standard normal
      truncated to (-2, 2)) so that the variance is exactly Var: std = sqrt(Var) / 0.87962566
      before truncation (jax.nn.initializers.variance_scaling, distribution="truncated_normal").
    - orthogonal: hp["init_gain"] * Q with Q orthonormal columns (rows if the kernel, reshaped
      to (fan_in * receptive field, fan_out), is wide): W^T W = gain^2 I for tall W.
    - none (runner.core.spec.NO_INIT, a Spec.without_init() model): NaN, the right shape for
      flax's shape check of stored weights; never a run's initial weights.
    """
    if name == NO_INIT:  # a placeholder: flax checks stored weights' shapes against it
        return lambda key, shape, dtype=jnp.float32: jnp.full(shape, jnp.nan, dtype)
    if name == "zeros":
        return lambda key, shape, dtype=jnp.float32: jnp.zeros(shape, dtype)
    if name == "constant":
        return lambda key, shape, dtype=jnp.float32: jnp.full(
            shape, hp["init_value"] * scale, dtype
        )
    if name == "normal":
        return lambda key, shape, dtype=jnp.float32: (
            (hp["init_std"] * scale) * jax.random.normal(key, shape, dtype)
        ).astype(dtype)
    if name == "uniform":
        return lambda key, shape, dtype=jnp.float32: jax.random.uniform(
            key, shape, dtype, minval=-hp["init_limit"] * scale, maxval=hp["init_limit"] * scale
        )
    if name in _VARIANCE_SCALING:
        var_scale, mode, distribution = _VARIANCE_SCALING[name]
        return jax.nn.initializers.variance_scaling(var_scale * scale**2, mode, distribution)
    if name == "orthogonal":
        base = jax.nn.initializers.orthogonal(1.0)
        return lambda key, shape, dtype=jnp.float32: (
            (hp["init_gain"] * scale) * base(key, shape, dtype)
        ).astype(dtype)
    raise ValueError(f"unknown initializer {name!r}; choose one of {', '.join(INITIALIZERS)}")


def bias_initializer(hp: dict) -> Initializer:
    """Every bias starts at hp["init_bias"]."""
    return lambda key, shape, dtype=jnp.float32: jnp.full(shape, hp["init_bias"], dtype)


# ---------------------------------------------------------------------------------------------
# Layers


def inverted_dropout(x, rate, rng):
    """Keep each element with probability 1 - rate and scale the kept ones by 1 / (1 - rate).

    rate may be traced; rate 0 is exactly the identity (uniform draws in [0, 1) are all >= 0).
    """
    kept = jax.random.uniform(rng, x.shape) >= rate
    return jnp.where(kept, x / (1.0 - rate), jnp.zeros_like(x))


class Layer(nn.Module):
    """One hidden layer: Dense/Conv -> [BN before] -> activation -> [BN after] -> [max-pool]
    -> dropout with rate hp["dropout"][index]. Maxout layers have width * k outputs."""

    spec: ModelSpec
    hp: Any
    width: int
    index: int
    conv: bool = False

    @nn.compact
    def __call__(self, x, train: bool = False, mask=None):
        s, hp = self.spec, self.hp
        features = self.width * (s.maxout_k if s.activation == "maxout" else 1)
        kernel_init, bias_init = make_initializer(s.init, hp), bias_initializer(hp)
        if self.conv:
            x = nn.Conv(
                features,
                (s.kernel_size,) * s.conv_dim,
                padding="SAME",
                name="conv",
                kernel_init=kernel_init,
                bias_init=bias_init,
            )(x)
        else:
            x = nn.Dense(features, name="dense", kernel_init=kernel_init, bias_init=bias_init)(x)
        if s.batchnorm and s.bn_position == "before":
            x = self._bn(x, train, mask)
        x = Activation(s.activation, hp, s.prelu_per_unit, s.maxout_k, name="act")(x, train)
        # Kept only when the caller makes "intermediates" mutable (the per-epoch diagnostics
        # pass); a no-op in training steps.
        self.sow("intermediates", "activations", x)
        if s.batchnorm and s.bn_position == "after":
            x = self._bn(x, train, mask)
        if self.conv and s.pool > 1 and min(x.shape[1:-1]) >= s.pool:
            window = (s.pool,) * s.conv_dim
            x = nn.max_pool(x, window, strides=window, padding="VALID")
        if s.dropout and train:
            x = inverted_dropout(x, hp["dropout"][self.index], self.make_rng("dropout"))
        return x

    def _bn(self, x, train, mask):
        s = self.spec
        if mask is not None and train:
            mask = jnp.asarray(mask).reshape((-1,) + (1,) * (x.ndim - 1)) > 0
        else:
            mask = None
        return nn.BatchNorm(
            use_running_average=not train, momentum=s.bn_momentum, epsilon=s.bn_eps, name="bn"
        )(x, mask=mask)


class Net(nn.Module):
    """mlp, resmlp or cnn (spec.arch) with a Dense(spec.n_out) head that returns raw outputs."""

    spec: ModelSpec
    hp: Any

    @nn.compact
    def __call__(self, x, train: bool = False, mask=None):
        s, hp = self.spec, self.hp
        if s.arch == "cnn":
            x = _conv_input(x, s.conv_dim)
            for i, width in enumerate(s.hidden):
                x = Layer(s, hp, width, i, conv=True, name=f"layer{i}")(x, train, mask)
        elif s.arch == "mlp":
            x = x.reshape(x.shape[0], -1)
            for i, width in enumerate(s.hidden):
                x = Layer(s, hp, width, i, name=f"layer{i}")(x, train, mask)
        elif s.arch == "resmlp":
            x = x.reshape(x.shape[0], -1)
            x = Layer(s, hp, s.hidden[0], 0, name="layer0")(x, train, mask)
            # Each branch is scaled by 1/sqrt(blocks): with variance-preserving inits a plain
            # h + f(h) doubles the activation variance per block (2**depth at the head), while
            # this keeps the growth below e for any depth and leaves the identity path exact.
            branch_scale = 1.0 / max(len(s.hidden) - 1, 1) ** 0.5
            for i in range(1, len(s.hidden)):
                skip = x
                if s.hidden[i] != s.hidden[i - 1]:
                    skip = nn.Dense(
                        s.hidden[i],
                        use_bias=False,
                        name=f"skip{i}",
                        kernel_init=make_initializer(s.init, hp),
                    )(x)
                x = skip + branch_scale * Layer(s, hp, s.hidden[i], i, name=f"layer{i}")(
                    x, train, mask
                )
        else:
            raise ValueError(f"unknown arch {s.arch!r}; choose mlp, resmlp or cnn")
        x = x.reshape(x.shape[0], -1)
        return nn.Dense(
            s.n_out,
            name="head",
            # init.head_scale: a small last layer starts the logits near 0, the loss near ln C
            kernel_init=make_initializer(s.init, hp, hp["init_head_scale"]),
            bias_init=bias_initializer(hp),
        )(x)


def _conv_input(x, conv_dim):
    """(B, L, C) for 1-D and (B, H, W, C) for 2-D convolutions; adds a channel axis to (B, L) /
    (B, H, W) and treats an image's rows as a sequence of W*C channels for a 1-D cnn."""
    if conv_dim == 1:
        if x.ndim == 2:
            return x[..., None]
        if x.ndim == 4:
            return x.reshape(x.shape[0], x.shape[1], -1)
    elif conv_dim == 2 and x.ndim == 3:
        return x[..., None]
    return x


def build_model(spec: ModelSpec, hp: dict) -> nn.Module:
    """The flax module for spec. Use:

    variables = model.init({"params": k1, "dropout": k2, "rrelu": k3}, x, train=False)
    out, updates = model.apply(variables, x, train=True, mask=m, rngs={"dropout": k, "rrelu": k2},
                               mutable=["batch_stats"])   # mutable only when spec.batchnorm
    out = model.apply(variables, x, train=False)

    mask (optional, float [B] of 1/0) keeps padded rows out of the batch-norm statistics.
    """
    if spec.arch not in ("mlp", "resmlp", "cnn"):
        raise ValueError(f"unknown arch {spec.arch!r}; choose mlp, resmlp or cnn")
    if spec.activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {spec.activation!r}")
    if spec.init not in INITIALIZERS and spec.init != NO_INIT:
        raise ValueError(f"unknown initializer {spec.init!r}")
    if not spec.hidden:
        raise ValueError("spec.hidden is empty: need at least one hidden layer")
    if spec.arch == "cnn" and spec.conv_dim not in (1, 2):
        raise ValueError(f"cnn: conv_dim={spec.conv_dim}, expected 1 or 2")
    return Net(spec=spec, hp=hp)
