"""What the jitted core sees: a static Spec (hashable, part of the compile key) and traced
hyperparameters (a flat dict of float32 arrays, so that runs differing only in numbers share one
compiled program and a future vmap can batch them).

A Spec depends on the data (input shape, classes, steps per epoch), so it is built after loading.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from runner.config import Config, ConfigError

if TYPE_CHECKING:  # the host's dataset type; the core never imports runner.data
    from runner.data import Dataset

# ModelSpec.init of a spec without an initializer (Spec.without_init): a model built from it
# applies as usual; initializing it gives NaN weights (runner.core.nn.make_initializer).
NO_INIT = "none"


@dataclass(frozen=True)
class ModelSpec:
    arch: str  # mlp | resmlp | cnn
    hidden: tuple  # widths of hidden layers (cnn: channels of conv layers)
    n_out: int
    head: str  # softmax | sigmoid | linear | log_linear
    activation: str
    prelu_per_unit: bool
    maxout_k: int
    init: str  # concrete: never auto, aliases mapped to glorot_/he_/lecun_
    batchnorm: bool
    bn_position: str  # before | after the nonlinearity
    bn_momentum: float
    bn_eps: float
    dropout: bool  # any dropout rate > 0
    conv_dim: int  # 0 for dense models, 1 or 2 for cnn
    kernel_size: int
    pool: int


@dataclass(frozen=True)
class OptimSpec:
    name: str
    centered: bool  # rmsprop
    clip_norm: bool
    clip_value: bool
    penalize_bias_and_norm: bool  # decay/penalties also on biases and norm params
    # Which loss penalties exist (rate > 0). Static, so that a run without them skips their
    # passes over the weights and their gradients (docs/performance.md).
    l1: bool = True
    l2: bool = True


@dataclass(frozen=True)
class SchedSpec:
    name: str
    unit: str  # epoch | iteration
    staircase: bool
    policy: str  # cyclic
    window: str  # cyclic
    n_boundaries: int  # piecewise
    steps_per_epoch: int
    total_steps: int
    warmup: bool


@dataclass(frozen=True)
class Spec:
    model: ModelSpec
    optim: OptimSpec
    sched: SchedSpec
    input_shape: tuple
    n_train: int
    batch_size: int
    steps_per_epoch: int  # iterations per epoch (the last may be partial: padded+masked)
    drop_last: bool
    diagnostics: bool = False  # per-layer numbers each epoch (runner.diagnostics)
    # trainer.compile: auto | fast | full, how hard XLA optimises the programs on a CPU
    # (runner.core.train.compile_options).
    compile: str = "auto"

    def without_init(self) -> Spec:
        """This spec with the initializer left out (model.init = NO_INIT). Only the programs
        that draw initial weights depend on the initializer: every other one is keyed and
        compiled with this spec (runner.core.programs), so runs that differ only in their
        initializer share them; a program that initialized from it would start from NaN
        weights (and diverge at once) rather than silently use another run's initializer."""
        return dataclasses.replace(self, model=dataclasses.replace(self.model, init=NO_INIT))


HEAD_OF_TASK = {
    "classification": "softmax",
    "binary": "sigmoid",
    "regression": "linear",
    "log_regression": "log_linear",
}
INIT_ALIASES = {
    "xavier_normal": "glorot_normal",
    "xavier_uniform": "glorot_uniform",
    "kaiming_normal": "he_normal",
    "kaiming_uniform": "he_uniform",
}


def auto_init(activation: str) -> str:
    """The notes' table: Glorot for none/tanh/logistic/softmax, He for ReLU and variants,
    LeCun for SELU."""
    if activation in ("identity", "tanh", "sigmoid"):
        return "glorot_normal"
    if activation == "selu":
        return "lecun_normal"
    return "he_normal"  # relu, leaky_relu, prelu, rrelu, elu, gelu, swish, silu, softplus, maxout


def steps_per_epoch(n_train: int, batch_size: int, drop_last: bool) -> int:
    return n_train // batch_size if drop_last else math.ceil(n_train / batch_size)


def batch_size_of(cfg: Config, n_train: int) -> int:
    bs = cfg.trainer.batch_size
    if isinstance(bs, str):  # "full", the one string runner.config lets through
        return n_train
    if bs > n_train:
        raise ConfigError(
            f"trainer.batch_size={bs}: larger than the {n_train} training examples "
            f"of data={cfg.data.name}; use 1..{n_train} or 'full'"
        )
    return bs


def make_spec(cfg: Config, ds: Dataset) -> Spec:
    m, a, r = cfg.model, cfg.activation, cfg.regularization
    head = HEAD_OF_TASK[ds.task] if m.head == "auto" else m.head
    n_out = ds.n_classes if head == "softmax" else 1
    conv_dim = 0
    if m.name == "cnn":
        natural = {"sequence": 1, "image": 2}.get(ds.kind)
        if natural is None:
            raise ConfigError(
                f"model=cnn: data={ds.name} is tabular (shape {ds.input_shape}); "
                f"a cnn needs sequence or image data (mnist1d, digits, idx)"
            )
        conv_dim = natural if m.conv_dim == "auto" else int(m.conv_dim)
        if conv_dim == 2 and ds.kind != "image":
            raise ConfigError(f"model.conv_dim=2: data={ds.name} is a sequence; use 1 or auto")
    init = cfg.init.name
    init = auto_init(a.name) if init == "auto" else INIT_ALIASES.get(init, init)
    rates = r.dropout_layers if r.dropout_layers is not None else [r.dropout]
    n_train = len(ds.x_train)
    bs = batch_size_of(cfg, n_train)
    spe = steps_per_epoch(n_train, bs, cfg.trainer.drop_last)
    model = ModelSpec(
        arch=m.name,
        hidden=m.hidden,
        n_out=n_out,
        head=head,
        activation=a.name,
        prelu_per_unit=a.per_unit,
        maxout_k=a.k,
        init=init,
        batchnorm=r.batchnorm,
        bn_position=r.batchnorm_position,
        bn_momentum=r.batchnorm_momentum,
        bn_eps=r.batchnorm_eps,
        dropout=any(x > 0 for x in rates),
        conv_dim=conv_dim,
        kernel_size=m.kernel_size,
        pool=m.pool,
    )
    optim = OptimSpec(
        name=cfg.optimizer.name,
        centered=cfg.optimizer.centered,
        clip_norm=r.clip_norm is not None,
        clip_value=r.clip_value is not None,
        penalize_bias_and_norm=r.penalize_bias_and_norm,
        l1=r.l1 > 0,
        l2=r.l2 > 0,
    )
    s = cfg.schedule
    sched = SchedSpec(
        name=s.name,
        unit=s.unit,
        staircase=s.staircase,
        policy=s.policy,
        window=s.window,
        n_boundaries=len(s.boundaries) if s.name == "piecewise" else 0,
        steps_per_epoch=spe,
        total_steps=spe * cfg.trainer.epochs,
        warmup=s.warmup > 0,
    )
    return Spec(
        model=model,
        optim=optim,
        sched=sched,
        input_shape=ds.input_shape,
        n_train=n_train,
        batch_size=bs,
        steps_per_epoch=spe,
        drop_last=cfg.trainer.drop_last,
        diagnostics=cfg.trainer.diagnostics,
        compile=cfg.trainer.compile,
    )


# make_hparams' keys that neither the initial weights nor an evaluation read: only the updates
# do (optimizer, schedule, clipping, weight decay and loss penalties). Runs that differ in these
# alone start from the same weights and score the same before training (runner.vectorized
# shares their initial evaluation; tests/test_vectorized.py checks the claim key by key).
TRAINING_ONLY = frozenset(
    {
        "lr", "momentum", "b1", "b2", "eps", "rho", "decay", "initial_accumulator_value",
        "adamw_weight_decay", "weight_decay", "clip_norm", "clip_value", "l1", "l2",
        "k", "factor", "every", "boundaries", "factors", "base_lr", "max_lr", "step_size",
        "gamma", "decay_steps", "final_fraction", "warmup", "warmup_start",
    }
)  # fmt: skip


def make_hparams(cfg: Config, spec: Spec) -> dict:
    """Every number the jitted core reads, as float32 arrays (scalars unless noted)."""
    a, i, o, s, r = cfg.activation, cfg.init, cfg.optimizer, cfg.schedule, cfg.regularization
    n_hidden = len(spec.model.hidden)
    rates = r.dropout_layers if r.dropout_layers is not None else [r.dropout] * n_hidden
    max_lr = s.max_lr if s.max_lr is not None else o.lr
    base_lr = s.base_lr if s.base_lr is not None else max_lr / 10
    total_units = cfg.trainer.epochs if s.unit == "epoch" else spec.sched.total_steps
    hp = dict(
        # model
        negative_slope=a.negative_slope,
        elu_alpha=a.alpha,
        rrelu_lower=a.lower,
        rrelu_upper=a.upper,
        dropout=np.asarray(rates, np.float32),
        init_std=i.std,
        init_limit=i.limit,
        init_value=i.value,
        init_gain=i.gain,
        init_bias=i.bias,
        init_head_scale=i.head_weight_scale(),
        # optimizer
        lr=o.lr,
        momentum=o.momentum,
        b1=o.b1,
        b2=o.b2,
        eps=o.eps,
        rho=o.rho,
        decay=o.decay,
        initial_accumulator_value=o.initial_accumulator_value,
        adamw_weight_decay=o.weight_decay if o.name == "adamw" else 0.0,
        weight_decay=r.weight_decay,
        clip_norm=r.clip_norm if r.clip_norm is not None else np.inf,
        clip_value=r.clip_value if r.clip_value is not None else np.inf,
        # loss penalties
        l1=r.l1,
        l2=r.l2,
        # schedule (lengths in the schedule's unit)
        k=s.k,
        factor=s.factor,
        every=s.every,
        boundaries=np.asarray(s.boundaries if s.name == "piecewise" else [], np.float32),
        factors=np.asarray(s.factors if s.name == "piecewise" else [], np.float32),
        base_lr=base_lr,
        max_lr=max_lr,
        step_size=s.step_size,
        gamma=s.gamma,
        decay_steps=s.decay_steps if s.decay_steps is not None else total_units,
        final_fraction=s.final_fraction,
        warmup=s.warmup,
        warmup_start=s.warmup_start,
    )
    return {k: np.asarray(v, np.float32) for k, v in hp.items()}
