"""Typed, validated experiment configuration.

Hydra composes plain YAML from conf/; this module turns the composed tree into frozen dataclasses,
checking every value's type and range and naming the key, the value and what is allowed when one
is wrong. We validate here rather than with ConfigStore schemas because each group's options have
different knobs and the error has to be a single readable line (Hydra's own is several lines
plus a hint). conf/<group>/ mirrors the dataclass of the same name below.

Numeric knobs that training reads are traced (see runner.core.spec); everything that changes
the shape of the program (names, sizes, on/off switches) is static.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
import typing
from dataclasses import dataclass, field
from typing import Optional, Union


class ConfigError(ValueError):
    """A bad setting: the message is one line naming the key, the value and what is allowed."""


def knob(default, *, gt=None, ge=None, lt=None, le=None, choices=None, doc=""):
    meta = dict(gt=gt, ge=ge, lt=lt, le=le, choices=choices, doc=doc)
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


DATASETS = (
    "digits",
    "iris",
    "wine",
    "breast_cancer",
    "diabetes",
    "mnist1d",
    "moons",
    "circles",
    "spirals",
    "prices",
    "csv",
    "npz",
    "idx",
)
TASKS = ("auto", "classification", "binary", "regression", "log_regression")
PREPROCESSING = ("none", "center", "standardize", "pca", "whiten")
ARCHS = ("mlp", "resmlp", "cnn")
HEADS = ("auto", "softmax", "sigmoid", "linear", "log_linear")
ACTIVATIONS = (
    "sigmoid",
    "tanh",
    "relu",
    "leaky_relu",
    "prelu",
    "rrelu",
    "elu",
    "selu",
    "gelu",
    "swish",
    "silu",
    "softplus",
    "maxout",
    "identity",
)
INITS = (
    "auto",
    "zeros",
    "constant",
    "normal",
    "uniform",
    "glorot_normal",
    "glorot_uniform",
    "xavier_normal",
    "xavier_uniform",
    "he_normal",
    "he_uniform",
    "kaiming_normal",
    "kaiming_uniform",
    "lecun_normal",
    "lecun_uniform",
    "orthogonal",
)
OPTIMIZERS = (
    "sgd",
    "momentum",
    "nesterov",
    "adagrad",
    "adadelta",
    "rmsprop",
    "adam",
    "nadam",
    "adamw",
)
SCHEDULES = ("constant", "step", "time_based", "exponential", "piecewise", "cyclic", "cosine")


@dataclass(frozen=True)
class DataConfig:
    name: str = knob("digits", choices=DATASETS)
    task: str = knob("auto", choices=TASKS, doc="auto: the dataset's own task")
    path: Optional[str] = knob(None, doc="file or folder for csv, npz and idx")
    target: Optional[str] = knob(None, doc="csv: name of the target column")
    n_samples: int = knob(1000, ge=10, doc="generated sets: examples to draw")
    noise: float = knob(0.1, ge=0, doc="generated sets: noise level")
    val_fraction: float = knob(0.15, ge=0, lt=1)
    test_fraction: float = knob(0.15, ge=0, lt=1)
    split_seed: int = knob(0, ge=0, doc="seed of the train/val/test split (fixed across seeds)")
    preprocessing: str = knob("standardize", choices=PREPROCESSING)
    max_samples: Optional[int] = knob(None, ge=10, doc="keep at most this many examples")


@dataclass(frozen=True)
class ModelConfig:
    name: str = knob("mlp", choices=ARCHS)
    depth: int = knob(2, ge=1, doc="hidden layers (cnn: convolution layers)")
    width: int = knob(128, ge=1, doc="units per hidden layer (cnn: channels)")
    widths: Optional[list] = knob(None, doc="per-layer widths, overrides depth and width")
    head: str = knob("auto", choices=HEADS, doc="auto: follows the dataset's task")
    kernel_size: int = knob(3, ge=1, doc="cnn: kernel size")
    pool: int = knob(2, ge=1, doc="cnn: max-pool window after each conv (1: none)")
    conv_dim: str = knob("auto", choices=("auto", "1", "2"), doc="cnn: 1-D or 2-D convolutions")

    @property
    def hidden(self) -> tuple:
        return tuple(self.widths) if self.widths is not None else (self.width,) * self.depth


@dataclass(frozen=True)
class ActivationConfig:
    name: str = knob("relu", choices=ACTIVATIONS)
    negative_slope: float = knob(0.01, ge=0, doc="leaky_relu slope; prelu initial slope")
    alpha: float = knob(1.0, gt=0, doc="elu alpha")
    per_unit: bool = knob(True, doc="prelu: one learned slope per unit (false: one shared)")
    lower: float = knob(1 / 8, ge=0, doc="rrelu: lower bound of the random slope")
    upper: float = knob(1 / 3, ge=0, doc="rrelu: upper bound of the random slope")
    k: int = knob(2, ge=2, doc="maxout: pieces per unit")


# init=auto's head scale: logits ~0.1x their variance-preserving size start a default net within
# a few per cent of ln C (digits' 2x128 relu MLP: 2.31 for ln 10 = 2.30, 3.36 at scale 1), and the
# gradient into the hidden layers still flows (it is 0 through an all-zero head at the first step).
HEAD_SCALE_AUTO = 0.1


@dataclass(frozen=True)
class InitConfig:
    name: str = knob("auto", choices=INITS)
    std: float = knob(0.01, gt=0, doc="normal: standard deviation")
    limit: float = knob(0.05, gt=0, doc="uniform: samples from [-limit, limit)")
    value: float = knob(0.0, doc="constant: the value")
    gain: float = knob(1.0, gt=0, doc="orthogonal: scale")
    bias: float = knob(0.0, doc="constant value for every bias")
    head_scale: Optional[float] = knob(
        None,
        gt=0,
        le=1,
        doc="multiplies the head's initial weights (null: HEAD_SCALE_AUTO with init=auto, "
        "so the logits start small and the initial loss near ln C; 1 with a named "
        "initializer, which then sets every layer as named)",
    )

    def head_weight_scale(self) -> float:
        """head_scale with its null resolved (see the knob's doc)."""
        if self.head_scale is not None:
            return self.head_scale
        return HEAD_SCALE_AUTO if self.name == "auto" else 1.0


@dataclass(frozen=True)
class OptimizerConfig:
    name: str = knob("adam", choices=OPTIMIZERS)
    lr: float = knob(1e-3, gt=0)
    momentum: float = knob(0.9, ge=0, lt=1, doc="momentum, nesterov, rmsprop")
    b1: float = knob(0.9, ge=0, lt=1)
    b2: float = knob(0.999, ge=0, lt=1)
    eps: float = knob(1e-8, gt=0)
    rho: float = knob(0.9, ge=0, lt=1, doc="adadelta decay")
    decay: float = knob(0.9, ge=0, lt=1, doc="rmsprop decay of the squared-gradient average")
    centered: bool = knob(False, doc="rmsprop: divide by the variance, not the raw 2nd moment")
    initial_accumulator_value: float = knob(0.1, ge=0, doc="adagrad")
    weight_decay: float = knob(1e-4, ge=0, doc="adamw decoupled weight decay")


@dataclass(frozen=True)
class ScheduleConfig:
    name: str = knob("constant", choices=SCHEDULES)
    unit: str = knob("epoch", choices=("epoch", "iteration"), doc="what t counts")
    staircase: bool = knob(True, doc="epoch unit: t = whole epochs done (false: fractional)")
    every: int = knob(10, ge=1, doc="step: decay every this many units")
    factor: float = knob(0.5, gt=0, le=1, doc="step: multiply by this at each decay")
    k: float = knob(0.1, ge=0, doc="time_based and exponential: decay constant")
    boundaries: list = knob([], doc="piecewise: units at which the factor changes")
    factors: list = knob([], doc="piecewise: lr multiplier from each boundary on")
    base_lr: Optional[float] = knob(None, gt=0, doc="cyclic: lower bound (default lr/10)")
    max_lr: Optional[float] = knob(None, gt=0, doc="cyclic: upper bound (default optimizer.lr)")
    step_size: float = knob(2.0, gt=0, doc="cyclic: units from one bound to the other")
    policy: str = knob("triangular", choices=("triangular", "triangular2", "exp_range"))
    window: str = knob("triangular", choices=("triangular", "welch", "hann"))
    gamma: float = knob(0.99994, gt=0, le=1, doc="cyclic exp_range: amplitude x gamma**iteration")
    decay_steps: Optional[float] = knob(
        None, gt=0, doc="cosine: units to decay over (default: the run)"
    )
    final_fraction: float = knob(0.0, ge=0, le=1, doc="cosine: final lr as a fraction of lr")
    warmup: float = knob(0.0, ge=0, doc="linear warmup length in units (0: none)")
    warmup_start: float = knob(0.0, ge=0, lt=1, doc="warmup starts at this fraction of the lr")


@dataclass(frozen=True)
class RegularizationConfig:
    l2: float = knob(0.0, ge=0, doc="penalty l2/2 * sum(w^2) added to the loss")
    l1: float = knob(
        0.0, ge=0, doc="penalty l1 * sum(|w|), by a proximal step: weights under lr*l1 become 0"
    )
    weight_decay: float = knob(0.0, ge=0, doc="decoupled: w -= lr * weight_decay * w each step")
    penalize_bias_and_norm: bool = knob(False, doc="also penalize biases and batch-norm params")
    dropout: float = knob(0.0, ge=0, lt=1, doc="inverted dropout rate after each hidden layer")
    dropout_layers: Optional[list] = knob(None, doc="per hidden layer rates, overrides dropout")
    batchnorm: bool = knob(False)
    batchnorm_position: str = knob(
        "before", choices=("before", "after"), doc="before or after the nonlinearity"
    )
    batchnorm_momentum: float = knob(0.99, ge=0, lt=1, doc="running-average momentum")
    batchnorm_eps: float = knob(1e-5, gt=0)
    clip_norm: Optional[float] = knob(None, gt=0, doc="clip gradients to this global norm")
    clip_value: Optional[float] = knob(None, gt=0, doc="clip each gradient entry to +-value")
    early_stopping: bool = knob(False)
    patience: int = knob(
        10, ge=0, doc="stop after this many epochs in a row without improvement (0 acts as 1)"
    )
    min_delta: float = knob(
        0.0,
        ge=0,
        doc="smallest gain in the monitored metric that counts as improvement (0: a tie "
        "counts when the validation loss is lower)",
    )


@dataclass(frozen=True)
class TrainerConfig:
    epochs: int = knob(20, ge=1)
    batch_size: Union[int, str] = knob(64, ge=1, doc="examples per update, or 'full'")
    drop_last: bool = knob(False, doc="drop the last partial batch of each epoch")
    monitor: str = knob(
        "auto",
        choices=("auto", "val_loss", "val_acc", "val_rmse"),
        doc="auto: val_acc for classification, val_loss otherwise",
    )
    mode: str = knob("auto", choices=("auto", "min", "max"))
    abort_factor: float = knob(
        3.0,
        ge=0,
        doc="stop as diverged when the epoch's mean training loss, one step's training "
        "loss or the validation loss exceeds this times its initial value (0: off)",
    )
    cv_folds: int = knob(0, ge=0, doc="k-fold cross-validation over train+val (0: off)")
    diagnostics: bool = knob(True, doc="per-layer norms, ratios, activation stats and warnings")
    overfit_batches: int = knob(0, ge=0, doc="train on this many fixed batches only (0: off)")
    checkpoint: int = knob(
        0,
        ge=0,
        doc="save the whole training state every N epochs for "
        "`runner resume RUN` (0: only when stopped by Ctrl-C/SIGTERM)",
    )
    stop_at: int = knob(
        0,
        ge=0,
        doc="train epochs 1..stop_at of the trainer.epochs run (schedules still span "
        "trainer.epochs), then stop as pruned, leaving checkpoint.npz (0: off)",
    )
    resume: bool = knob(
        False,
        doc="continue from the run folder's checkpoint.npz when its run's config differs "
        "only in trainer.stop_at/resume (no checkpoint: train from the start)",
    )
    progress: bool = knob(True, doc="show the live progress display")
    compile: str = knob(
        "auto",
        choices=("auto", "fast", "full"),
        doc="how hard XLA optimises the training program on a CPU: fast compiles in a third "
        "less time and trains 2-4x slower, full the opposite; auto picks fast for small "
        "mlp/resmlp runs, whose training would not pay for a full compile",
    )
    plot: Union[bool, str] = knob(
        "auto",
        doc="draw curves.png (auto: for a single run, not for "
        "sweep trials; `runner plot RUN` draws one later)",
    )
    plot_wait: Union[bool, str] = knob(
        "auto",
        doc="draw the PNGs before the run returns (auto: for sweep trials and logger=mlflow "
        "only; otherwise a detached process draws them just after, runner.plots.wait_for_plots "
        "waits for it)",
    )
    prune_curve: list = knob(
        [],
        doc="per-epoch thresholds of the monitored metric, entry e-1 for epoch e (null: no "
        "check then): the run ends as pruned after the first epoch, short of the last, whose "
        "best value so far is worse; hydra.sweeper.prune=median writes it",
    )


@dataclass(frozen=True)
class PathsConfig:
    """conf/paths/: where runs write and where caches live. None (a Config built in Python, or a
    run saved before the paths group existed): what conf/paths/default.yaml gives in this
    environment (runner.runtime.folder)."""

    outputs: Optional[str] = knob(
        None, doc="the folder of run folders (hydra.run.dir, hydra.sweep.dir)"
    )
    cache: Optional[str] = knob(None, doc="generated datasets (MNIST-1D)")
    jax_cache: Optional[str] = knob(None, doc="JAX's persistent compilation cache (off: none)")


# paths.jax_cache values that turn JAX's compilation cache off (those RUNNER_JAX_CACHE had).
JAX_CACHE_OFF = ("", "0", "off", "none")


# conf/logger/: where a run's results are also sent, besides its own folder (runner.export).
# csv is what every run writes anyway (curves.csv, diagnostics.csv); none chooses nothing more.
LOGGERS = ("none", "csv", "tensorboard", "mlflow")


@dataclass(frozen=True)
class TensorBoardLoggerConfig:
    dir: str = knob("tensorboard", doc="tensorboard: the event files' folder, in the run folder")


@dataclass(frozen=True)
class MlflowLoggerConfig:
    tracking_uri: Optional[str] = knob(
        None, doc="mlflow: the tracking store (null: sqlite:///<paths.outputs>/mlflow.db)"
    )
    experiment: Optional[str] = knob(None, doc="mlflow: the experiment (null: the config's name)")


@dataclass(frozen=True)
class LoggerConfig:
    """conf/logger/: logger=NAME or several, logger=[tensorboard,mlflow]; each chosen option
    adds its own node (logger.tensorboard, logger.mlflow), None when not chosen."""

    tensorboard: Optional[TensorBoardLoggerConfig] = None
    mlflow: Optional[MlflowLoggerConfig] = None
    csv: bool = False

    @property
    def backends(self) -> tuple:
        """The chosen loggers that send somewhere (csv is written by every run)."""
        return tuple(b for b in ("tensorboard", "mlflow") if getattr(self, b) is not None)


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    activation: ActivationConfig = field(default_factory=ActivationConfig)
    init: InitConfig = field(default_factory=InitConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    regularization: RegularizationConfig = field(default_factory=RegularizationConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    seed: int = knob(0, ge=0)
    name: str = knob("run", doc="a label for this experiment")


def record(cfg: Config) -> dict:
    """cfg as {dotted key: value}, JSON's types only: what a checkpoint keeps of its run's
    config, so that trainer.resume can tell whether a new config continues it."""
    import json

    def flat(node, prefix):
        for k, v in node.items():
            if isinstance(v, dict):
                yield from flat(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}", v

    return json.loads(json.dumps(dict(flat(dataclasses.asdict(cfg), ""))))


# ---------------------------------------------------------------------------------------------
# Validation: plain dict/DictConfig -> Config


def _fmt(v) -> str:
    return repr(v) if isinstance(v, str) else str(v)


def _describe(meta) -> str:
    parts = []
    for key, sym in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
        if meta.get(key) is not None:
            parts.append(f"{sym} {meta[key]:g}")
    return " and ".join(parts)


def _coerce(value, typ, meta, key):
    origin = typing.get_origin(typ)
    args = typing.get_args(typ)
    if origin is Union and type(None) in args:
        if value is None:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, meta, key)
    if origin is Union and bool in args:  # bool | 'auto': trainer.plot, trainer.plot_wait
        if isinstance(value, bool) or value == "auto":
            return value
        raise ConfigError(f"{key}={_fmt(value)}: expected true, false or auto")
    if origin is Union:  # int | str: only trainer.batch_size, which also takes 'full'
        if isinstance(value, str):
            if value == "full":
                return value
            raise ConfigError(
                f"{key}={_fmt(value)}: expected an integer {_describe(meta)} or 'full'"
            )
        return _coerce(value, int, meta, key)
    if typ is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}={_fmt(value)}: expected true or false")
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                rng = _describe(meta)
                raise ConfigError(
                    f"{key}={_fmt(value)}: expected an integer" + (f" {rng}" if rng else "")
                )
        return _check_range(value, meta, key, "an integer")
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            rng = _describe(meta)
            raise ConfigError(
                f"{key}={_fmt(value)}: expected a number" + (f" {rng}" if rng else "")
            )
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{key}={value}: expected a finite number")
        return _check_range(value, meta, key, "a number")
    if typ is str:
        if not isinstance(value, str):
            value = str(value)  # Hydra parses conv_dim=1 as an int
        choices = meta.get("choices")
        if choices and value not in choices:
            raise ConfigError(f"{key}={_fmt(value)}: unknown; choose one of {', '.join(choices)}")
        return value
    if typ is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}={_fmt(value)}: expected a list such as [1, 2]")
        return list(value)
    raise TypeError(f"unsupported type {typ} for {key}")


def _check_range(value, meta, key, what):
    ok = (
        (meta.get("gt") is None or value > meta["gt"])
        and (meta.get("ge") is None or value >= meta["ge"])
        and (meta.get("lt") is None or value < meta["lt"])
        and (meta.get("le") is None or value <= meta["le"])
    )
    if not ok:
        raise ConfigError(f"{key}={value}: out of range; expected {what} {_describe(meta)}")
    return value


@functools.cache
def _schema(cls) -> tuple[dict, dict]:
    """(type hints, fields by name) of a config dataclass: get_type_hints evaluates the
    annotations' text (this module's are strings) on every call, ~1.5 ms of each validate."""
    return typing.get_type_hints(cls), {f.name: f for f in dataclasses.fields(cls)}


def _build(cls, node, prefix):
    if not isinstance(node, dict):
        raise ConfigError(f"{prefix}={_fmt(node)}: expected a group of settings")
    hints, fields = _schema(cls)
    unknown = sorted(set(node) - set(fields))
    if unknown:
        raise ConfigError(
            f"{prefix}.{unknown[0]}: no such setting; {prefix} has " + ", ".join(sorted(fields))
        )
    kwargs = {}
    for name, f in fields.items():
        if name not in node:
            continue
        key = f"{prefix}.{name}" if prefix else name
        typ = hints[name]
        if dataclasses.is_dataclass(typ):
            kwargs[name] = _build(typ, node[name], key)
        else:
            kwargs[name] = _coerce(node[name], typ, f.metadata, key)
    return cls(**kwargs)


def _list_of(values, key, typ, *, gt=None, ge=None, lt=None):
    meta = dict(gt=gt, ge=ge, lt=lt)
    return [_coerce(v, typ, meta, f"{key}[{i}]") for i, v in enumerate(values)]


def validate(node) -> Config:
    """Check a composed config (DictConfig or dict) and return the typed Config."""
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(node, DictConfig):
            node = OmegaConf.to_container(node, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    node = {k: v for k, v in node.items() if k != "hydra"}
    if isinstance(node.get("paths"), dict):
        node = {**node, "paths": _paths_node(node["paths"])}
    logger = _logger_config(node.pop("logger", None))
    cfg = dataclasses.replace(_build(Config, node, ""), logger=logger)
    _cross_checks(cfg)
    return cfg


def _logger_config(node) -> LoggerConfig:
    """logger.*: one node per chosen logger (Hydra merges each option's YAML into logger)."""
    if node is None:
        return LoggerConfig()
    if not isinstance(node, dict):
        raise ConfigError(
            f"logger={_fmt(node)}: expected options chosen with logger=NAME or "
            f"logger=[tensorboard,mlflow]; choose from {', '.join(LOGGERS)}"
        )
    unknown = sorted(set(node) - set(LOGGERS[1:]))
    if unknown:
        raise ConfigError(
            f"logger.{unknown[0]}: unknown logger; choose from {', '.join(LOGGERS)} "
            f"(several: logger=[tensorboard,mlflow])"
        )
    kinds = {"tensorboard": TensorBoardLoggerConfig, "mlflow": MlflowLoggerConfig}
    kwargs = {
        name: _build(kinds[name], sub or {}, f"logger.{name}")
        for name, sub in node.items()
        if name in kinds and sub is not False
    }
    return LoggerConfig(**kwargs, csv="csv" in node)


def _cross_checks(cfg: Config) -> None:
    d, m, r, s = cfg.data, cfg.model, cfg.regularization, cfg.schedule
    if d.val_fraction + d.test_fraction >= 1:
        raise ConfigError(
            f"data.val_fraction + data.test_fraction = "
            f"{d.val_fraction + d.test_fraction:g}: must be < 1"
        )
    if d.name in ("csv", "npz", "idx") and not d.path:
        raise ConfigError(f"data.path=null: data={d.name} needs a file or folder path")
    if d.name == "csv" and not d.target:
        raise ConfigError("data.target=null: data=csv needs the name of the target column")
    if m.widths is not None:
        if len(m.widths) == 0:
            raise ConfigError("model.widths=[]: expected a non-empty list of positive integers")
        _list_of(m.widths, "model.widths", int, ge=1)
    if r.dropout_layers is not None:
        _list_of(r.dropout_layers, "regularization.dropout_layers", float, ge=0, lt=1)
        if len(r.dropout_layers) != len(m.hidden):
            raise ConfigError(
                f"regularization.dropout_layers={r.dropout_layers}: needs one rate "
                f"per hidden layer ({len(m.hidden)})"
            )
    if s.name == "piecewise":
        b = _list_of(s.boundaries, "schedule.boundaries", float, gt=0)
        _list_of(s.factors, "schedule.factors", float, gt=0)
        if len(b) != len(s.factors):
            raise ConfigError(
                f"schedule.factors={s.factors}: needs one factor per boundary ({len(b)})"
            )
        if any(b2 <= b1 for b1, b2 in zip(b, b[1:])):
            raise ConfigError(f"schedule.boundaries={s.boundaries}: must increase")
    if s.name == "cyclic":
        hi = s.max_lr if s.max_lr is not None else cfg.optimizer.lr
        lo = s.base_lr if s.base_lr is not None else hi / 10
        if lo >= hi:
            raise ConfigError(f"schedule.base_lr={lo:g}: must be below max_lr={hi:g}")
    if cfg.trainer.cv_folds == 1:
        raise ConfigError("trainer.cv_folds=1: use 0 (off) or k >= 2 folds")
    t = cfg.trainer
    if t.stop_at > t.epochs:
        raise ConfigError(
            f"trainer.stop_at={t.stop_at}: out of range; expected 0 (off) or an integer "
            f"from 1 to trainer.epochs={t.epochs}"
        )
    if t.cv_folds >= 2 and (t.stop_at or t.resume):
        key, value = ("stop_at", t.stop_at) if t.stop_at else ("resume", "true")
        raise ConfigError(
            f"trainer.{key}={value}: not with trainer.cv_folds={t.cv_folds} (k-fold runs "
            f"are not checkpointed); use trainer.cv_folds=0"
        )
    for i, v in enumerate(cfg.trainer.prune_curve):
        if v is not None:
            _coerce(v, float, {}, f"trainer.prune_curve[{i}]")
    if cfg.trainer.prune_curve and cfg.trainer.cv_folds >= 2:
        raise ConfigError(
            f"trainer.prune_curve: not with trainer.cv_folds={cfg.trainer.cv_folds} (the "
            f"objective is the folds' mean, not one curve); use [] there"
        )
    _check_paths(cfg.paths)
    if cfg.activation.lower > cfg.activation.upper:
        raise ConfigError(
            f"activation.lower={cfg.activation.lower:g}: must be <= "
            f"activation.upper={cfg.activation.upper:g}"
        )


def _check_paths(p: PathsConfig) -> None:
    """Folders: not empty (outputs), not an existing file. Nothing is created here."""
    import os

    if p.outputs is not None and not p.outputs.strip():
        raise ConfigError(
            "paths.outputs='': expected a folder (relative to where runner starts, or absolute)"
        )
    for key in ("outputs", "cache", "jax_cache"):
        value = getattr(p, key)
        if not value or (key == "jax_cache" and value.lower() in JAX_CACHE_OFF):
            continue
        if os.path.isfile(os.path.expanduser(value)):
            raise ConfigError(
                f"paths.{key}={value!r}: is a file; expected a folder"
                + (" (or off)" if key == "jax_cache" else "")
            )


def _paths_node(paths: dict) -> dict:
    """paths.* as folder strings. A run's .hydra/config.yaml keeps conf/paths' ${oc.env:...}
    unresolved, and a reader without OmegaConf (runner.rundir's YAML reader) passes it on as
    text: it is resolved here, in this environment."""
    out = dict(paths)
    for key, value in paths.items():
        if isinstance(value, (bool, list, tuple, dict)):  # str() would make a folder name of it
            raise ConfigError(f"paths.{key}={_fmt(value)}: expected a folder path")
        if isinstance(value, str) and "${" in value:
            try:
                out[key] = _resolve_path(value)
            except Exception as e:  # noqa: BLE001 - any failure to resolve is the value's
                raise ConfigError(
                    f"paths.{key}={value!r}: cannot resolve it ({type(e).__name__})"
                ) from None
    return out


# A whole ${oc.env:NAME[,default]} paths.* value (conf/paths'): resolved alone, and kept
ENV_PATH = re.compile(r"\$\{oc\.env:([A-Za-z_][A-Za-z0-9_]*)(?:,[^${}]*)?\}")
_RESOLVED: dict[tuple, str] = {}


def _resolve_path(value: str):
    """OmegaConf's resolution of a paths.* value alone. A whole ${oc.env:NAME[,default]} is
    kept per value and NAME's value in the environment: a sweep validates every job's config
    (~2 ms an OmegaConf resolution, two paths a job)."""
    from omegaconf import OmegaConf

    m = ENV_PATH.fullmatch(value)
    key = (value, os.environ.get(m.group(1))) if m else None
    if key is not None and key in _RESOLVED:
        return _RESOLVED[key]
    resolved = OmegaConf.to_container(OmegaConf.create({"v": value}), resolve=True)["v"]
    if key is not None:
        _RESOLVED[key] = resolved
    return resolved
