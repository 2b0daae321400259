"""Raw loaders: each returns a `Raw` (float64/int arrays, not yet checked against data.task, not
split, not preprocessed). runner.data turns a Raw into a runner.core.spec.Dataset.

Everything is offline. Nothing heavy is imported at module level: scikit-learn's bundled CSV files
are read directly with numpy (importing sklearn.datasets alone is slow: docs/performance.md), and
mnist1d is imported only when its arrays are not cached yet, in the folder paths.cache names
(cache_in()).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import importlib.util
import json
import math
import os
import struct
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from runner.config import ConfigError, DataConfig


@dataclass
class Raw:
    x: np.ndarray  # (N, ...) per-example shape of `kind`
    y: np.ndarray  # (N,)
    task: str | None  # the dataset's own task; None: infer from y
    kind: str  # tabular | sequence | image
    source: str  # how messages name the data: "data=iris", "x.csv"
    x_test: np.ndarray | None = None  # the dataset's own test split (mnist1d, idx)
    y_test: np.ndarray | None = None


def _path_key(cfg: DataConfig) -> str:
    return f"data.path={cfg.path!r}"


def _existing(cfg: DataConfig, want_dir: bool = False) -> str:
    path = os.path.expanduser(cfg.path or "")
    if not cfg.path or not os.path.exists(path):
        raise ConfigError(f"{_path_key(cfg)}: no such {'folder' if want_dir else 'file'}")
    if want_dir and not os.path.isdir(path):
        raise ConfigError(
            f"{_path_key(cfg)}: not a folder; data=idx needs the folder holding the IDX files"
        )
    if not want_dir and os.path.isdir(path):
        raise ConfigError(f"{_path_key(cfg)}: is a folder; data={cfg.name} needs a file")
    return path


# ---------------------------------------------------------------------------------------------
# scikit-learn's bundled files


def _sklearn_file(name: str) -> str:
    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "data: scikit-learn is not installed; it ships the digits, iris, wine, "
            "breast_cancer and diabetes files"
        )
    return os.path.join(list(spec.submodule_search_locations)[0], "datasets", "data", name)


def _sklearn_csv(name: str):
    """iris.csv, wine_data.csv, breast_cancer.csv: a line 'n,f,class names', then rows of
    features followed by the integer class (as sklearn.datasets._base.load_csv_data reads them)."""
    a = np.loadtxt(_sklearn_file(name), delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
    return a[:, :-1], a[:, -1].astype(np.int64)


def load_sklearn(cfg: DataConfig) -> Raw:
    src = f"data={cfg.name}"
    if cfg.name == "digits":
        a = np.loadtxt(_sklearn_file("digits.csv.gz"), delimiter=",", dtype=np.float64)
        return Raw(
            a[:, :-1].reshape(-1, 8, 8, 1),
            a[:, -1].astype(np.int64),
            "classification",
            "image",
            src,
        )
    if cfg.name == "diabetes":  # raw (unscaled) features, like load_diabetes(scaled=False)
        x = np.loadtxt(_sklearn_file("diabetes_data_raw.csv.gz"), dtype=np.float64)
        y = np.loadtxt(_sklearn_file("diabetes_target.csv.gz"), dtype=np.float64)
        return Raw(x, y, "regression", "tabular", src)
    fname, task = {
        "iris": ("iris.csv", "classification"),
        "wine": ("wine_data.csv", "classification"),
        "breast_cancer": ("breast_cancer.csv", "binary"),
    }[cfg.name]
    x, y = _sklearn_csv(fname)
    return Raw(x, y, task, "tabular", src)


# ---------------------------------------------------------------------------------------------
# MNIST-1D, generated locally and cached

# The package defaults (mnist1d.data.get_dataset_args()); they key the cache, so a hit needs no
# import of mnist1d at all. cfg.n_samples is deliberately not used: 5000 is the benchmark's size.
MNIST1D_ARGS = {
    "num_samples": 5000,
    "train_split": 0.8,
    "template_len": 12,
    "padding": [36, 60],
    "scale_coeff": 0.4,
    "max_translation": 48,
    "corr_noise_scale": 0.25,
    "iid_noise_scale": 2e-2,
    "shear_scale": 0.75,
    "shuffle_seq": False,
    "final_seq_length": 40,
    "seed": 42,
}


_CACHE_PATHS: list = []  # the paths of the config being loaded (cache_in), innermost last


@contextmanager
def cache_in(paths):
    """Loads inside use `paths.cache` (a run's cfg.paths) for generated datasets:
    `with cache_in(cfg.paths): ds = load_dataset(cfg.data)`."""
    _CACHE_PATHS.append(paths)
    try:
        yield
    finally:
        _CACHE_PATHS.pop()


def cache_dir() -> str:
    """The dataset cache folder: paths.cache of the config being loaded; outside cache_in() (a
    DataConfig loaded on its own, with no run config) what conf/paths/default.yaml gives in this
    environment (RUNNER_CACHE_DIR, else ~/.cache/runner)."""
    from runner.runtime import folder

    return folder(_CACHE_PATHS[-1] if _CACHE_PATHS else None, "cache")


def mnist1d_cache_path() -> str:
    try:
        from importlib.metadata import version

        ver = version("mnist1d")
    except Exception:  # noqa: BLE001 - not installed: generation below says so
        ver = "?"
    key = json.dumps({"args": MNIST1D_ARGS, "mnist1d": ver, "format": 1}, sort_keys=True)
    return os.path.join(cache_dir(), f"mnist1d-{hashlib.sha1(key.encode()).hexdigest()[:16]}.npz")


def _generate_mnist1d() -> dict:
    import random

    try:
        import mnist1d.data as m1d
    except ImportError:
        raise ConfigError(
            "data=mnist1d: the mnist1d package is not installed (pip install mnist1d)"
        ) from None
    args = m1d.get_dataset_args()
    for k, v in MNIST1D_ARGS.items():
        setattr(args, k, v)
    # make_dataset reseeds the global `random` and numpy RNGs; leave them as we found them
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        d = m1d.make_dataset(args)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return {k: np.asarray(d[k]) for k in ("x", "y", "x_test", "y_test")}


def load_mnist1d(cfg: DataConfig) -> Raw:
    path = mnist1d_cache_path()
    arrays = None
    if os.path.exists(path):
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {k: f[k] for k in ("x", "y", "x_test", "y_test")}
        except Exception:  # noqa: BLE001 - a damaged cache file is simply regenerated
            arrays = None
    if arrays is None:
        arrays = _generate_mnist1d()
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".npz.tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    np.savez(f, **arrays)
                os.replace(tmp, path)  # atomic: concurrent runs never see a partial file
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)
        except OSError:
            pass  # an unwritable cache only costs the regeneration next time
    return Raw(
        arrays["x"][..., None],
        arrays["y"],
        "classification",
        "sequence",
        "data=mnist1d",
        arrays["x_test"][..., None],
        arrays["y_test"],
    )


# ---------------------------------------------------------------------------------------------
# Generated 2-D toy sets and the synthetic prices set. moons/circles follow sklearn's
# make_moons/make_circles formulas, written out here so that loading them does not import sklearn.


def _gen_rng(cfg: DataConfig) -> np.random.Generator:
    return np.random.default_rng([cfg.split_seed, 7])


def load_toy(cfg: DataConfig) -> Raw:
    n, rng = cfg.n_samples, _gen_rng(cfg)
    if cfg.name in ("moons", "circles"):
        n_out = n // 2
        n_in = n - n_out
        if cfg.name == "moons":
            t_out, t_in = np.linspace(0, np.pi, n_out), np.linspace(0, np.pi, n_in)
            outer = np.c_[np.cos(t_out), np.sin(t_out)]
            inner = np.c_[1 - np.cos(t_in), 1 - np.sin(t_in) - 0.5]
        else:  # circles, factor 0.8 as sklearn's default
            t_out = np.linspace(0, 2 * np.pi, n_out, endpoint=False)
            t_in = np.linspace(0, 2 * np.pi, n_in, endpoint=False)
            outer = np.c_[np.cos(t_out), np.sin(t_out)]
            inner = 0.8 * np.c_[np.cos(t_in), np.sin(t_in)]
        x = np.vstack([outer, inner])
        y = np.r_[np.zeros(n_out, np.int64), np.ones(n_in, np.int64)]
        task = "binary"
    else:  # spirals: 3 arms of radius 0..1, each turning 4 radians
        xs, ys = [], []
        for arm in range(3):
            m = n // 3 + (arm < n % 3)
            r = np.linspace(0.0, 1.0, m)
            theta = 2 * np.pi * arm / 3 + 4.0 * r
            xs.append(np.c_[r * np.sin(theta), r * np.cos(theta)])
            ys.append(np.full(m, arm, np.int64))
        x, y = np.vstack(xs), np.concatenate(ys)
        task = "classification"
    perm = rng.permutation(n)
    x, y = x[perm], y[perm]
    x = x + rng.normal(scale=cfg.noise, size=x.shape)
    return Raw(x, y, task, "tabular", f"data={cfg.name}")


def load_prices(cfg: DataConfig) -> Raw:
    """House prices: area (m2), rooms, age (years), distance to centre (km), quality (1-5).
    log(price) is linear in the features plus cfg.noise gaussian noise, so price > 0."""
    n, rng = cfg.n_samples, _gen_rng(cfg)
    area = rng.lognormal(math.log(100.0), 0.35, n)
    rooms = np.clip(np.round(area / 30 + rng.normal(0, 0.7, n)), 1, 8)
    age = rng.uniform(0, 80, n)
    dist = rng.exponential(8.0, n)
    quality = rng.integers(1, 6, n).astype(np.float64)
    log_price = (
        math.log(100000.0)
        + 0.9 * np.log(area / 100)
        + 0.05 * (rooms - 3)
        - 0.004 * age
        - 0.03 * dist
        + 0.1 * (quality - 3)
        + rng.normal(0, cfg.noise, n)
    )
    x = np.c_[area, rooms, age, dist, quality]
    return Raw(x, np.exp(log_price), "log_regression", "tabular", "data=prices")


# ---------------------------------------------------------------------------------------------
# User files: csv, npz, idx

_MISSING = {"", "na", "nan", "n/a", "null", "none", "?", "-"}


def load_csv(cfg: DataConfig) -> Raw:
    path, key = _existing(cfg), _path_key(cfg)
    base = os.path.basename(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            lines = [(i, row) for i, row in enumerate(csv.reader(f), start=1) if row]
    except (UnicodeDecodeError, csv.Error) as e:
        raise ConfigError(f"{key}: not a readable CSV text file ({e})".replace("\n", " ")) from None
    if not lines:
        raise ConfigError(f"{key}: the file is empty; expected a header row and data rows")
    header = [h.strip() for h in lines[0][1]]
    if cfg.target not in header:
        hint = ""
        if all(_is_number(h) for h in header):
            hint = " (the first row must be a header naming the columns)"
        raise ConfigError(
            f"data.target={cfg.target!r}: no such column in {base}; columns: "
            f"{', '.join(header)}{hint}"
        )
    columns: dict[str, list[str]] = {}
    for i, h in enumerate(header, start=1):
        columns.setdefault(h, []).append(str(i))
    dups = {h: at for h, at in columns.items() if len(at) > 1}
    if dups:  # data.target would silently pick the first of two equally named columns
        where = ", ".join(f"{h!r} (columns {', '.join(at)})" for h, at in dups.items())
        raise ConfigError(
            f"{key}: duplicated column names in the header: {where}; every "
            f"column needs its own name"
        )
    if len(header) < 2:
        raise ConfigError(f"{key}: only the target column {cfg.target!r}; no feature columns")
    body = lines[1:]
    if not body:
        raise ConfigError(f"{key}: no data rows after the header")
    for lineno, row in body:
        if len(row) != len(header):
            raise ConfigError(
                f"{key}: row {lineno} has {len(row)} fields; the header has {len(header)}"
            )
    try:
        a = np.array([row for _, row in body], dtype=np.float64)
    except ValueError:
        a = None
    if a is None or not np.isfinite(a).all():  # find the first bad cell, for the message
        for lineno, row in body:
            for name, cell in zip(header, row):
                if cell.strip().lower() in _MISSING:
                    raise ConfigError(f"{key}: row {lineno}, column {name!r}: missing value")
                if not _is_number(cell):
                    raise ConfigError(
                        f"{key}: row {lineno}, column {name!r}: {cell!r} is not a number"
                    )
                if not math.isfinite(float(cell)):
                    raise ConfigError(
                        f"{key}: row {lineno}, column {name!r}: {cell!r} is not a finite number"
                    )
    t = header.index(cfg.target)
    return Raw(np.delete(a, t, axis=1), a[:, t], None, "tabular", base)


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def load_npz(cfg: DataConfig) -> Raw:
    path, key = _existing(cfg), _path_key(cfg)
    try:
        f = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's input
        raise ConfigError(
            f"{key}: not a readable .npz archive ({type(e).__name__}: {e})".replace("\n", " ")
        ) from None
    if not isinstance(f, np.lib.npyio.NpzFile):
        raise ConfigError(
            f"{key}: a single .npy array; expected an .npz archive with arrays "
            f"x and y (np.savez(path, x=..., y=...))"
        )
    with f:
        names = list(f.files)
        arrays = {}
        for name in ("x", "y", "kind"):
            if name not in names:
                if name == "kind":
                    continue
                raise ConfigError(
                    f"{key}: no array {name!r}; arrays present: "
                    f"{', '.join(names) or 'none'}; expected x and y"
                )
            try:
                arrays[name] = f[name]
            except ValueError:
                raise ConfigError(
                    f"{key}: array {name!r} is a pickled object array; save plain numeric arrays"
                ) from None
    x, y = arrays["x"], arrays["y"]
    for name, a in (("x", x), ("y", y)):
        if a.dtype.kind not in "biuf":
            raise ConfigError(f"{key}: array {name!r} has dtype {a.dtype}; expected numbers")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise ConfigError(
                f"{key}: array {name!r} has {int((~np.isfinite(a)).sum())} "
                f"missing or non-finite values"
            )
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ConfigError(f"{key}: y has shape {y.shape}; expected (N,) targets")
    if x.ndim < 2 or x.ndim > 4:
        raise ConfigError(
            f"{key}: x has shape {x.shape}; expected (N, F), (N, L, C), (N, H, W) or (N, H, W, C)"
        )
    if len(x) != len(y):
        raise ConfigError(f"{key}: x has {len(x)} rows but y has {len(y)}")
    if x.size == 0:
        raise ConfigError(
            f"{key}: x has shape {x.shape}: no "
            + ("examples" if len(x) == 0 else "features")
            + "; expected at least one example of at least one value"
        )
    # (N, F) is tabular, (N, H, W, C) an image; (N, A, B) is a sequence (N, L, C) when B <= 4 < A
    # (a few channels), else an image (N, H, W). An optional string array kind='tabular' |
    # 'sequence' | 'image' overrides the guess (e.g. kind='sequence' for (N, L) one-channel data).
    if "kind" in arrays:
        k = arrays["kind"]
        kind = str(k.reshape(-1)[0]) if k.size == 1 and k.dtype.kind in "US" else repr(k)
        allowed = {"tabular": (2,), "sequence": (2, 3), "image": (3, 4)}
        if kind not in allowed or x.ndim not in allowed[kind]:
            raise ConfigError(
                f"{key}: kind={kind!r} with x of shape {x.shape}; allowed: tabular "
                f"(N, F), sequence (N, L[, C]), image (N, H, W[, C])"
            )
    elif x.ndim == 2:
        kind = "tabular"
    elif x.ndim == 3:
        kind = "sequence" if x.shape[2] <= 4 < x.shape[1] else "image"
    else:
        kind = "image"
    if (kind == "sequence" and x.ndim == 2) or (kind == "image" and x.ndim == 3):
        x = x[..., None]
    return Raw(x.astype(np.float64), y.astype(np.float64), None, kind, os.path.basename(path))


IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str, key: str) -> np.ndarray:
    """Parse one IDX file (optionally gzipped): 2 zero bytes, a type byte, a dims byte, then
    the dims as big-endian uint32 and the data, big-endian, row-major."""
    name = os.path.basename(path)
    try:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rb") as f:
            buf = f.read()
    except (OSError, EOFError) as e:
        raise ConfigError(f"{key}: cannot read {name} ({e})".replace("\n", " ")) from None
    if len(buf) < 4 or buf[0] != 0 or buf[1] != 0 or buf[2] not in _IDX_TYPES:
        raise ConfigError(
            f"{key}: {name} is not an IDX file (bad magic number {buf[:4].hex() or 'none'})"
        )
    dtype, ndim = np.dtype(_IDX_TYPES[buf[2]]), buf[3]
    if len(buf) < 4 + 4 * ndim:
        raise ConfigError(f"{key}: {name} is truncated (header)")
    dims = struct.unpack(f">{ndim}I", buf[4 : 4 + 4 * ndim])
    size = math.prod(dims) * dtype.itemsize
    if len(buf) - 4 - 4 * ndim != size:
        raise ConfigError(
            f"{key}: {name} has {len(buf) - 4 - 4 * ndim} data bytes; its header {dims} says {size}"
        )
    return np.frombuffer(buf, dtype, offset=4 + 4 * ndim).reshape(dims)


def load_idx(cfg: DataConfig) -> Raw:
    folder, key = _existing(cfg, want_dir=True), _path_key(cfg)
    found = []
    for base in IDX_FILES:
        hits = [
            p
            for p in (os.path.join(folder, base), os.path.join(folder, base + ".gz"))
            if os.path.isfile(p)
        ]
        if not hits:
            raise ConfigError(
                f"{key}: no {base}[.gz] in this folder; data=idx needs "
                f"{', '.join(IDX_FILES)} (each optionally .gz)"
            )
        found.append(hits[0])
    xtr, ytr, xte, yte = (read_idx(p, key) for p in found)
    for (xs, ys), part in (((xtr, ytr), "train"), ((xte, yte), "t10k")):
        if xs.ndim != 3 or ys.ndim != 1:
            raise ConfigError(
                f"{key}: {part} images have shape {xs.shape} and labels "
                f"{ys.shape}; expected (N, H, W) and (N,)"
            )
        if len(xs) != len(ys):
            raise ConfigError(f"{key}: {part} has {len(xs)} images but {len(ys)} labels")
    if xtr.shape[1:] != xte.shape[1:]:
        raise ConfigError(f"{key}: train images are {xtr.shape[1:]} but t10k are {xte.shape[1:]}")
    if 0 in xtr.shape[1:]:
        raise ConfigError(
            f"{key}: the images are {xtr.shape[1]}x{xtr.shape[2]} pixels; expected "
            f"images of at least 1x1"
        )
    # Classes unless data.task asks for regression: then real-valued labels are targets.
    classify = cfg.task not in ("regression", "log_regression")
    if classify:
        for ys, part in ((ytr, "train"), (yte, "t10k")):
            _check_labels(ys, f"{key}: {part}-labels-idx1-ubyte")

    def scale(a):  # 8-bit pixels to [0, 1]
        return a.astype(np.float32)[..., None] / np.float32(255.0 if a.dtype == np.uint8 else 1.0)

    def labels(a):
        return a.astype(np.int64 if classify or a.dtype.kind != "f" else np.float64)

    return Raw(
        scale(xtr),
        labels(ytr),
        "classification",
        "image",
        os.path.basename(os.path.normpath(folder)),
        scale(xte),
        labels(yte),
    )


def _check_labels(y: np.ndarray, where: str) -> None:
    """Class labels must be finite integers: a cast to int would truncate 0.7 to 0 and turn NaN
    into -2**63."""
    if y.dtype.kind != "f":
        return
    bad = ~np.isfinite(y) | (y != np.round(y))
    if bad.any():
        raise ConfigError(
            f"{where} holds {int(bad.sum())} labels that are not integers (e.g. "
            f"{y[bad][0]:g}); class labels must be integers (data.task=regression "
            f"takes real-valued targets)"
        )


LOADERS = {
    "digits": load_sklearn,
    "iris": load_sklearn,
    "wine": load_sklearn,
    "breast_cancer": load_sklearn,
    "diabetes": load_sklearn,
    "mnist1d": load_mnist1d,
    "moons": load_toy,
    "circles": load_toy,
    "spirals": load_toy,
    "prices": load_prices,
    "csv": load_csv,
    "npz": load_npz,
    "idx": load_idx,
}
