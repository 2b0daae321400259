"""Datasets: load (runner.datasets), check the task against the labels, split, preprocess.

    load_dataset(cfg.data) -> Dataset

Order of work: raw arrays -> task resolved and labels remapped to 0..C-1 -> optional seeded
subset (data.max_samples) -> seeded train/val/test split, stratified by class for classification
-> preprocessing fitted on the training split only and applied to all three. The same DataConfig
always gives the same arrays. Bad user input raises ConfigError with a one-line message.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from runner.config import DATASETS, PREPROCESSING, TASKS, Config, ConfigError, DataConfig
from runner.datasets import LOADERS, Raw

CLASSIFY = ("classification", "binary")
MAX_AUTO_CLASSES = 20  # task=auto: integer targets with at most this many values are classes
WHITEN_EPS = 1e-5
_CHUNK = 8192  # rows per block when fitting/applying preprocessing (bounds memory)
SPLITS = ("train", "val", "test")


@dataclass
class Dataset:
    """Arrays in per-example shape: tabular (N, F); sequence (N, L, C); image (N, H, W, C).

    x is float32. y is int32 class ids 0..C-1 for classification and binary tasks, float32
    targets for regression and log_regression (raw, positive values for log_regression: the loss
    takes the log).
    """

    name: str
    task: str  # classification | binary | regression | log_regression
    kind: str  # tabular | sequence | image
    n_classes: int  # 0 for regression tasks
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def input_shape(self) -> tuple:
        return tuple(self.x_train.shape[1:])

    def arrays(self) -> dict[str, np.ndarray]:
        """The six arrays by name (x_train, x_val, x_test, y_train, y_val, y_test): what the
        compiled core takes as its data (runner.core.state.Data) once on the device."""
        return {f"{a}_{s}": getattr(self, f"{a}_{s}") for a in ("x", "y") for s in SPLITS}


def overfit_subset(cfg: Config, ds: Dataset) -> Dataset:
    """The first overfit_batches * batch_size training examples (the notes: make sure you can
    overfit a very small portion of the training data before training on all of it)."""
    bs = cfg.trainer.batch_size
    n = len(ds.x_train) if bs == "full" else min(len(ds.x_train), cfg.trainer.overfit_batches * bs)
    return dataclasses.replace(ds, x_train=ds.x_train[:n], y_train=ds.y_train[:n])


def load_dataset(cfg: DataConfig) -> Dataset:
    _check_cfg(cfg)
    raw = LOADERS[cfg.name](cfg)
    y_all = raw.y if raw.y_test is None else np.concatenate([raw.y, raw.y_test])
    task, classes = resolve_task(cfg, raw, y_all)

    def labels(y):
        if task in CLASSIFY:
            return np.searchsorted(classes, y).astype(np.int32)
        return np.asarray(y, np.float32)

    classify = task in CLASSIFY
    x, y = raw.x, labels(raw.y)
    rng_sub = np.random.default_rng([cfg.split_seed, 1])
    rng_split = np.random.default_rng([cfg.split_seed, 2])
    if raw.x_test is None:
        if cfg.max_samples is not None and cfg.max_samples < len(y):
            keep = np.sort(stratified_order(y, classify, rng_sub)[: cfg.max_samples])
            x, y = x[keep], y[keep]
        tr, va, te = split_indices(y, classify, cfg.val_fraction, cfg.test_fraction, rng_split, cfg)
        parts = [(x[i], y[i]) for i in (tr, va, te)]
    else:  # the dataset's own test split; val comes out of its training part
        xt, yt = raw.x_test, labels(raw.y_test)
        if cfg.max_samples is not None and cfg.max_samples < len(y) + len(yt):
            k_te = max(1, round(cfg.max_samples * len(yt) / (len(y) + len(yt))))
            keep = np.sort(stratified_order(y, classify, rng_sub)[: cfg.max_samples - k_te])
            keep_te = np.sort(stratified_order(yt, classify, rng_sub)[:k_te])
            x, y, xt, yt = x[keep], y[keep], xt[keep_te], yt[keep_te]
        tr, va, _ = split_indices(y, classify, cfg.val_fraction, 0.0, rng_split, cfg)
        parts = [(x[tr], y[tr]), (x[va], y[va]), (xt, yt)]
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = parts
    x_tr, x_va, x_te = preprocess(cfg.preprocessing, x_tr, x_va, x_te)
    return Dataset(
        name=cfg.name,
        task=task,
        kind=raw.kind,
        n_classes=len(classes) if classify else 0,
        x_train=x_tr,
        y_train=y_tr,
        x_val=x_va,
        y_val=y_va,
        x_test=x_te,
        y_test=y_te,
    )


def _check_cfg(cfg: DataConfig) -> None:
    """The checks runner.config.validate makes, for DataConfigs built directly."""
    for key, value, allowed in (
        ("name", cfg.name, DATASETS),
        ("task", cfg.task, TASKS),
        ("preprocessing", cfg.preprocessing, PREPROCESSING),
    ):
        if value not in allowed:
            raise ConfigError(f"data.{key}={value!r}: unknown; choose one of {', '.join(allowed)}")
    for key, value in (("val_fraction", cfg.val_fraction), ("test_fraction", cfg.test_fraction)):
        if not 0 <= value < 1:
            raise ConfigError(f"data.{key}={value}: out of range; expected a number >= 0 and < 1")
    if cfg.name in ("csv", "npz", "idx") and not cfg.path:
        raise ConfigError(f"data.path=null: data={cfg.name} needs a file or folder path")
    if cfg.name == "csv" and not cfg.target:
        raise ConfigError("data.target=null: data=csv needs the name of the target column")


# ---------------------------------------------------------------------------------------------
# Task


def resolve_task(cfg: DataConfig, raw: Raw, y: np.ndarray) -> tuple[str, np.ndarray]:
    """The task (data.task, or the dataset's own / inferred one for auto) checked against the
    targets, and the sorted class values (empty for regression tasks)."""
    y = np.asarray(y)
    src = raw.source
    # User files are named by their path (the key to fix), built-in sets by their name.
    where = f"data.path={cfg.path!r}" if cfg.name in ("csv", "npz", "idx") else f"data={cfg.name}"
    if y.dtype.kind not in "biuf":
        raise ConfigError(f"{where}: the targets have dtype {y.dtype}; expected numbers")
    if not np.isfinite(y).all():
        bad = y[~np.isfinite(y)]
        raise ConfigError(
            f"{where}: {len(bad)} targets are missing or not finite (e.g. "
            f"{bad[0]:g}); expected finite numbers"
        )
    integer = bool(np.all(y == np.round(y)))
    classes = np.unique(y)
    task = cfg.task
    if task == "auto":
        task = raw.task
        if task is None:  # csv/npz: classes if few integer values
            if integer and 2 <= len(classes) <= MAX_AUTO_CLASSES:
                task = "binary" if len(classes) == 2 else "classification"
            else:
                task = "regression"
    key = f"data.task={task}"
    if task in CLASSIFY:
        if not integer:
            bad = y[y != np.round(y)][0]
            if where.startswith("data.path="):
                raise ConfigError(
                    f"{where}: the targets are not integer class labels (e.g. "
                    f"{bad:g}); {key} needs integers; use data.task=regression or "
                    f"log_regression"
                )
            raise ConfigError(
                f"{key}: {src} targets are not integer class labels (e.g. {bad:g});"
                f" use regression or log_regression"
            )
        if task == "binary" and len(classes) != 2:
            raise ConfigError(f"{key}: {src} has {len(classes)} classes; binary needs exactly 2")
        if len(classes) < 2:
            raise ConfigError(
                f"{key}: {src} has only one class ({classes[0]:g}); classification needs at least 2"
            )
        return task, classes
    if task == "log_regression" and y.min() <= 0:
        raise ConfigError(
            f"{key}: {src} targets must be positive (min {y.min():g}); use regression"
        )
    return task, classes[:0]


# ---------------------------------------------------------------------------------------------
# Splitting


def stratified_order(y: np.ndarray, classify: bool, rng: np.random.Generator) -> np.ndarray:
    """A random permutation of the examples (indices into y), stratified for classes.

    Without classes (classify False) a plain permutation. With classes an interleaved one: the
    k-th member of class c (in random order) sits at key (k + u_c) / n_c, so every prefix of the
    order, and every contiguous chunk of it, holds each class in proportion to its size (to
    within about one example). Subsets (data.max_samples), the train/val/test split and k-fold
    cross-validation's folds (runner.app.folds: contiguous chunks) are cut from it."""
    n = len(y)
    if not classify:
        return rng.permutation(n)
    key = np.empty(n)
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        key[members] = (np.arange(len(members)) + rng.random()) / len(members)
    return np.lexsort((rng.random(n), key))


def _count(n: int, fraction: float) -> int:
    return 0 if fraction <= 0 else max(1, int(round(n * fraction)))


def split_indices(y, classify, val_fraction, test_fraction, rng, cfg=None):
    """(train, val, test) index arrays: test and val are the fractions of all examples
    (at least one each when the fraction is > 0), train the rest."""
    n = len(y)
    n_te, n_va = _count(n, test_fraction), _count(n, val_fraction)
    if n - n_te - n_va < 2:
        name = f" of data={cfg.name}" if cfg is not None else ""
        raise ConfigError(
            f"data.val_fraction={val_fraction:g}, data.test_fraction="
            f"{test_fraction:g}: leave {max(n - n_te - n_va, 0)} of the {n} "
            f"examples{name} for training; need at least 2"
        )
    order = stratified_order(y, classify, rng)
    return order[n_te + n_va :], order[n_te : n_te + n_va], order[:n_te]


# ---------------------------------------------------------------------------------------------
# Preprocessing


def _blocks(a: np.ndarray):
    for i in range(0, len(a), _CHUNK):
        yield a[i : i + _CHUNK].astype(np.float64)


def fit_preprocessing(method: str, x_train: np.ndarray):
    """A function mapping (n, D) float64 rows to transformed rows, fitted on x_train (n, D)."""
    if method == "none":
        return lambda a: a
    n, d = x_train.shape
    mu = x_train.mean(0, dtype=np.float64)
    const = np.all(x_train == x_train[:1], axis=0)  # exactly constant features: exactly 0
    mu[const] = x_train[0, const]
    if method == "center":
        return lambda a: a - mu
    if method == "standardize":
        var = sum(((b - mu) ** 2).sum(0) for b in _blocks(x_train))
        sd = np.sqrt(var / n)
        sd[const | (sd == 0)] = 1.0
        return lambda a: (a - mu) / sd
    cov = sum((b - mu).T @ (b - mu) for b in _blocks(x_train)) / n
    w, v = np.linalg.eigh(cov)
    w, v = np.maximum(w[::-1], 0.0), v[:, ::-1]  # largest variance first
    v = v * np.sign(v[np.argmax(np.abs(v), axis=0), np.arange(d)])  # fixed sign: deterministic
    if method == "whiten":
        v = v / np.sqrt(w + WHITEN_EPS)
    # The rotation in float32: faster (docs/performance.md), and the output is float32 anyway.
    v32 = v.astype(np.float32)
    return lambda a: (a - mu).astype(np.float32) @ v32


def preprocess(method: str, x_train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Fit on x_train (flattened to (n, D)), apply to x_train and others; float32, same shapes."""
    d = int(np.prod(x_train.shape[1:]))
    flat = [a.reshape(len(a), d) for a in (x_train, *others)]
    f = fit_preprocessing(method, flat[0])
    out = []
    for a, orig in zip(flat, (x_train, *others)):
        res = np.empty(a.shape, np.float32)
        for i, b in enumerate(_blocks(a)):
            res[i * _CHUNK : (i + 1) * _CHUNK] = f(b)
        out.append(res.reshape(orig.shape))
    return out
