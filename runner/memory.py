"""Will the training state fit? A model too large for the machine is refused before anything is
allocated, with the key that makes it too large, instead of an out-of-memory error from XLA.

The count is pure Python, from the model config and the data's shape (runner.core.spec.make_spec):
nothing here imports JAX. tests/test_bad_input.py checks it against jax.eval_shape of the real
training state (runner.vectorized.state_bytes).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import pkgutil
import sys

from runner.config import Config, ConfigError, ModelConfig
from runner.core.spec import ModelSpec, make_spec
from runner.data import Dataset

FLOAT_BYTES = 4  # parameters, optimizer state and batch-norm statistics are float32

# Optimizer state per parameter, in parameter-sized buffers (optax's states as runner.core.optim
# builds them; rmsprop always carries its momentum buffer, centered adds the mean).
OPT_BUFFERS = {
    "sgd": 0,
    "momentum": 1,
    "nesterov": 1,
    "adagrad": 1,
    "adadelta": 2,
    "rmsprop": 2,
    "adam": 2,
    "nadam": 2,
    "adamw": 2,
}


def model_counts(m: ModelSpec, input_shape: tuple) -> tuple[int, int]:
    """(parameters, batch-norm statistics) of runner.core.nn.Net for this spec and per-example input
    shape, as Python ints (no overflow, however large)."""
    k = m.maxout_k if m.activation == "maxout" else 1
    params = stats = 0

    def layer(fan_in: int, width: int) -> None:  # Dense/Conv, [BN], activation
        nonlocal params, stats
        features = width * k
        params += fan_in * features + features
        if m.batchnorm:
            dim = features if m.bn_position == "before" else width
            params += 2 * dim  # scale, bias
            stats += 2 * dim  # running mean, variance
        if m.activation == "prelu":
            params += features if m.prelu_per_unit else 1

    shape = [int(d) for d in input_shape]
    if m.arch == "cnn":
        if m.conv_dim == 1:  # (L,) -> (L, 1); (H, W, C) -> (H, W*C), as nn._conv_input
            spatial, channels = shape[:1], math.prod(shape[1:]) if len(shape) > 1 else 1
        else:
            spatial, channels = shape[:2], shape[2] if len(shape) > 2 else 1
        for width in m.hidden:
            layer(m.kernel_size**m.conv_dim * channels, width)
            channels = width
            if m.pool > 1 and min(spatial) >= m.pool:
                spatial = [s // m.pool for s in spatial]
        features = math.prod(spatial) * channels
    else:
        features = math.prod(shape)
        for i, width in enumerate(m.hidden):
            if m.arch == "resmlp" and i and width != m.hidden[i - 1]:
                params += m.hidden[i - 1] * width  # the skip projection (no bias)
            layer(features, width)
            features = width
    params += features * m.n_out + m.n_out  # the head
    return params, stats


def state_bytes(m: ModelSpec, input_shape: tuple, optimizer: str, centered: bool = False) -> int:
    """Bytes of the training state: parameters, optimizer state and batch-norm statistics."""
    params, stats = model_counts(m, input_shape)
    buffers = OPT_BUFFERS[optimizer] + (optimizer == "rmsprop" and centered)
    return FLOAT_BYTES * (params * (1 + buffers) + stats)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 999.5 or unit == "PiB":  # 1000 GiB reads as 0.977 TiB, not 1e+03 GiB
            return f"{n:.3g} {unit}"
        n /= 1024


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


def host_available() -> int | None:
    """Bytes of memory this process can still use: MemAvailable (else free pages), capped by a
    container's cgroup limit."""
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            return None
    for limit, usage in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        cap, used = _read_int(limit), _read_int(usage)
        if cap is not None and used is not None and cap < 2**60:
            avail = min(avail, max(cap - used, 0))
    return avail


def _accelerator_plugin() -> bool:
    """Whether JAX may train on an accelerator (a jax_plugins package such as CUDA's, or a TPU
    runtime, is installed and JAX_PLATFORMS does not say cpu): then host memory is not what
    bounds the state, and only the device's own check (after JAX starts) applies."""
    platforms = os.environ.get("JAX_PLATFORMS", "").strip().lower()
    if platforms and all(p.strip() == "cpu" for p in platforms.split(",")):
        return False
    try:
        spec = importlib.util.find_spec("jax_plugins")
        if (
            spec
            and spec.submodule_search_locations
            and any(pkgutil.iter_modules(list(spec.submodule_search_locations)))
        ):
            return True
        return importlib.util.find_spec("libtpu") is not None
    except (ImportError, ValueError):
        return False


def budget() -> tuple[int, str] | None:
    """(bytes available for training state, how to name them); None: unknown, no check.
    Before JAX is imported: host memory (unless an accelerator plugin is installed); after: the
    default device's memory if it is an accelerator, else host memory."""
    if "jax" in sys.modules:
        import jax

        try:
            dev = jax.local_devices()[0]
            if dev.platform != "cpu":
                stats = dev.memory_stats() or {}
                limit = stats.get("bytes_limit")
                if not limit:
                    return None
                return (
                    max(limit - stats.get("bytes_in_use", 0), 0),
                    f"the {dev.platform.upper()} ({dev.device_kind}) has",
                )
        except Exception:  # noqa: BLE001 - no device information: no check
            return None
    elif _accelerator_plugin():
        return None
    avail = host_available()
    return (avail, "this machine has") if avail is not None else None


def _culprit(cfg: Config, spec: ModelSpec, input_shape: tuple) -> tuple[str, object]:
    """The key that makes the model too large: model.widths when given, else whichever of
    model.width, model.depth (and, for a cnn, model.kernel_size) shrinks the model the most when
    set back to its default."""
    m = cfg.model
    if m.widths is not None:
        return "model.widths", list(m.widths)
    default = {f.name: f.default for f in dataclasses.fields(ModelConfig)}
    options = []
    if m.width > default["width"]:
        options.append(
            (
                "model.width",
                m.width,
                dataclasses.replace(spec, hidden=(default["width"],) * m.depth),
            )
        )
    if m.depth > default["depth"]:
        options.append(
            (
                "model.depth",
                m.depth,
                dataclasses.replace(spec, hidden=(m.width,) * default["depth"]),
            )
        )
    if spec.arch == "cnn" and m.kernel_size > default["kernel_size"]:
        options.append(
            (
                "model.kernel_size",
                m.kernel_size,
                dataclasses.replace(spec, kernel_size=default["kernel_size"]),
            )
        )
    if not options:
        return "model.width", m.width
    key, value, _ = min(options, key=lambda o: model_counts(o[2], input_shape)[0])
    return key, value


def check_memory(cfg: Config, ds: Dataset) -> None:
    """ConfigError when the training state (parameters, optimizer state, batch-norm statistics)
    plus the gradients would not fit in the memory available (see budget())."""
    try:
        spec = make_spec(cfg, ds)
    except ConfigError:
        return  # training reports what is wrong with the config
    room = budget()
    if room is None:
        return
    avail, where = room
    m, o = spec.model, cfg.optimizer
    params, _ = model_counts(m, spec.input_shape)
    state = state_bytes(m, spec.input_shape, o.name, o.centered)
    if state + FLOAT_BYTES * params <= avail:  # the gradients: one more parameter-sized copy
        return
    key, value = _culprit(cfg, m, spec.input_shape)
    per_param = FLOAT_BYTES * (2 + OPT_BUFFERS[o.name] + (o.name == "rmsprop" and o.centered))
    raise ConfigError(
        f"{key}={value}: the model would have {params:.2g} parameters "
        f"(~{_size(state)} of training state with optimizer={o.name}); {where} "
        f"{_size(avail)} of memory free, room for ~{avail / per_param:.2g} "
        f"parameters"
    )
