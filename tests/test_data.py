import gzip
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from runner import datasets
from runner.config import ConfigError, DataConfig
from runner.data import load_dataset, preprocess, split_indices

ALL = ("x_train", "x_val", "x_test", "y_train", "y_val", "y_test")


def err(cfg, *fragments):
    with pytest.raises(ConfigError) as e:
        load_dataset(cfg)
    msg = str(e.value)
    assert "\n" not in msg, msg
    for f in fragments:
        assert f in msg, (f, msg)
    return msg


def xs(ds):
    return np.concatenate([ds.x_train, ds.x_val, ds.x_test])


def ys(ds):
    return np.concatenate([ds.y_train, ds.y_val, ds.y_test])


# ---------------------------------------------------------------------------------------------
# Built-in datasets


@pytest.mark.parametrize(
    "name,task,kind,n_classes,shape,n",
    [
        ("digits", "classification", "image", 10, (8, 8, 1), 1797),
        ("iris", "classification", "tabular", 3, (4,), 150),
        ("wine", "classification", "tabular", 3, (13,), 178),
        ("breast_cancer", "binary", "tabular", 2, (30,), 569),
        ("diabetes", "regression", "tabular", 0, (10,), 442),
        ("moons", "binary", "tabular", 2, (2,), 1000),
        ("circles", "binary", "tabular", 2, (2,), 1000),
        ("spirals", "classification", "tabular", 3, (2,), 1000),
        ("prices", "log_regression", "tabular", 0, (5,), 1000),
    ],
)
def test_builtin_shapes(name, task, kind, n_classes, shape, n):
    ds = load_dataset(DataConfig(name=name))
    assert (ds.name, ds.task, ds.kind, ds.n_classes, ds.input_shape) == (
        name,
        task,
        kind,
        n_classes,
        shape,
    )
    assert len(ys(ds)) == n
    assert len(ds.x_val) == round(0.15 * n) == len(ds.x_test)
    for k in ALL:
        a = getattr(ds, k)
        assert a.dtype == (np.float32 if k[0] == "x" or n_classes == 0 else np.int32), k
        assert len(a) == len(getattr(ds, "y" + k[1:]))
    if n_classes:
        assert set(np.unique(ys(ds))) == set(range(n_classes))
    if task == "log_regression" or name == "diabetes":
        assert ys(ds).min() > 0


def test_sklearn_files_match_sklearn_loaders():
    import sklearn.datasets as skd

    for name, loader in (
        ("iris", skd.load_iris),
        ("wine", skd.load_wine),
        ("breast_cancer", skd.load_breast_cancer),
    ):
        raw = datasets.load_sklearn(DataConfig(name=name))
        ref = loader()
        np.testing.assert_array_equal(raw.x, ref.data)
        np.testing.assert_array_equal(raw.y, ref.target)
    raw, ref = datasets.load_sklearn(DataConfig(name="digits")), skd.load_digits()
    np.testing.assert_array_equal(raw.x[..., 0], ref.images)
    np.testing.assert_array_equal(raw.y, ref.target)
    raw, ref = datasets.load_sklearn(DataConfig(name="diabetes")), skd.load_diabetes(scaled=False)
    np.testing.assert_array_equal(raw.x, ref.data)
    np.testing.assert_array_equal(raw.y, ref.target)


def test_toy_sets_follow_sklearn_formulas():
    import sklearn.datasets as skd

    for name, make in (("moons", skd.make_moons), ("circles", skd.make_circles)):
        raw = datasets.load_toy(DataConfig(name=name, n_samples=200, noise=0.0))
        ref_x, ref_y = make(n_samples=200, noise=0.0, shuffle=False)
        order = np.lexsort(raw.x.T)
        ref_order = np.lexsort(ref_x.T)
        np.testing.assert_allclose(raw.x[order], ref_x[ref_order], atol=1e-12)
        np.testing.assert_array_equal(raw.y[order], ref_y[ref_order])


def test_generated_sets_seeded_and_noisy():
    a = load_dataset(DataConfig(name="spirals", n_samples=300, noise=0.2))
    b = load_dataset(DataConfig(name="spirals", n_samples=300, noise=0.2))
    c = load_dataset(DataConfig(name="spirals", n_samples=300, noise=0.2, split_seed=1))
    assert len(ys(a)) == 300 and np.bincount(ys(a)).tolist() == [100, 100, 100]
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(xs(a), xs(c))
    quiet = datasets.load_toy(DataConfig(name="circles", n_samples=100, noise=0.0))
    loud = datasets.load_toy(DataConfig(name="circles", n_samples=100, noise=0.3))
    np.testing.assert_allclose(np.linalg.norm(quiet.x, axis=1)[quiet.y == 0], 1.0)
    assert np.std(np.linalg.norm(loud.x, axis=1)[loud.y == 0]) > 0.1
    p = datasets.load_prices(DataConfig(name="prices", n_samples=500))
    assert p.y.min() > 0 and 2e4 < np.median(p.y) < 5e5


def test_explicit_tasks():
    ds = load_dataset(DataConfig(name="digits", task="regression", preprocessing="none"))
    assert ds.task == "regression" and ds.n_classes == 0 and ds.y_train.dtype == np.float32
    ds = load_dataset(DataConfig(name="moons", task="classification"))
    assert ds.task == "classification" and ds.n_classes == 2
    ds = load_dataset(DataConfig(name="diabetes", task="log_regression"))
    assert ds.task == "log_regression"
    err(
        DataConfig(name="iris", task="binary"),
        "data.task=binary",
        "data=iris has 3 classes",
        "exactly 2",
    )
    err(DataConfig(name="prices", task="classification"), "data.task=classification", "not integer")


# ---------------------------------------------------------------------------------------------
# Splits


def test_split_indices_disjoint_cover_stratified():
    rng = np.random.default_rng(0)
    y = rng.choice(4, size=503, p=[0.1, 0.2, 0.3, 0.4])
    tr, va, te = split_indices(y, True, 0.2, 0.1, np.random.default_rng(1))
    allidx = np.concatenate([tr, va, te])
    assert len(allidx) == len(y) and len(np.unique(allidx)) == len(y)
    assert (len(va), len(te)) == (round(0.2 * 503), round(0.1 * 503))
    share = np.bincount(y) / len(y)
    for part in (tr, va, te):
        assert np.all(np.abs(np.bincount(y[part], minlength=4) - share * len(part)) <= 1.0)
    tr2, _, _ = split_indices(y, True, 0.2, 0.1, np.random.default_rng(1))
    np.testing.assert_array_equal(tr, tr2)


def test_stratified_order_keeps_class_shares_in_every_chunk():
    """The public order that subsets, splits and cross-validation folds are cut from: a
    permutation; for classes every prefix and every contiguous chunk holds each class in
    proportion (to within about one example); without classes a plain seeded permutation."""
    from runner.data import stratified_order

    y = np.random.default_rng(0).choice(3, size=301, p=[0.2, 0.3, 0.5])
    order = stratified_order(y, True, np.random.default_rng(1))
    assert sorted(order) == list(range(len(y)))
    share = np.bincount(y) / len(y)
    for chunk in np.array_split(order, 5):
        assert np.all(np.abs(np.bincount(y[chunk], minlength=3) - share * len(chunk)) <= 1.5)
    for n in (10, 50, 150):
        assert np.all(np.abs(np.bincount(y[order[:n]], minlength=3) - share * n) <= 1.5)
    plain = stratified_order(y, False, np.random.default_rng(1))
    np.testing.assert_array_equal(plain, np.random.default_rng(1).permutation(len(y)))


def test_a_dataset_is_the_hosts_type_with_its_arrays_by_name():
    from conftest import compose

    from runner.config import validate
    from runner.data import Dataset, overfit_subset

    ds = load_dataset(DataConfig(name="iris"))
    assert isinstance(ds, Dataset) and ds.input_shape == (4,)
    arrays = ds.arrays()
    assert list(arrays) == ["x_train", "x_val", "x_test", "y_train", "y_val", "y_test"]
    assert all(arrays[k] is getattr(ds, k) for k in arrays)
    cfg = validate(compose(["data=iris", "trainer.overfit_batches=2", "trainer.batch_size=8"]))
    sub = overfit_subset(cfg, ds)
    np.testing.assert_array_equal(sub.x_train, ds.x_train[:16])
    assert sub.x_val is ds.x_val and sub.y_test is ds.y_test


def test_split_through_load_dataset():
    cfg = DataConfig(name="iris", preprocessing="none")
    ds = load_dataset(cfg)
    raw = datasets.load_sklearn(cfg)
    rows = np.c_[xs(ds), ys(ds)]
    ref = np.c_[raw.x, raw.y].astype(np.float32)
    np.testing.assert_array_equal(rows[np.lexsort(rows.T)], ref[np.lexsort(ref.T)])  # covers all
    for part in (ds.y_train, ds.y_val, ds.y_test):  # 50/50/50 classes: stratified
        assert np.all(np.abs(np.bincount(part, minlength=3) - len(part) / 3) <= 1)
    again = load_dataset(cfg)
    for k in ALL:
        np.testing.assert_array_equal(getattr(ds, k), getattr(again, k))
    other = load_dataset(DataConfig(name="iris", preprocessing="none", split_seed=3))
    assert not np.array_equal(ds.x_test, other.x_test)


def test_split_fractions_and_max_samples():
    ds = load_dataset(DataConfig(name="wine", val_fraction=0.0, test_fraction=0.2))
    assert ds.x_val.shape == (0, 13) and ds.y_val.shape == (0,) and len(ds.x_test) == 36
    ds = load_dataset(DataConfig(name="digits", max_samples=100))
    assert len(ys(ds)) == 100 and len(ds.x_val) == 15 and ds.x_val.shape[1:] == (8, 8, 1)
    assert np.bincount(ys(ds)).min() >= 9  # a stratified subset
    ds = load_dataset(
        DataConfig(name="iris", max_samples=10, val_fraction=0.01, test_fraction=0.01)
    )
    assert (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (8, 1, 1)
    err(
        DataConfig(name="iris", max_samples=10, val_fraction=0.5, test_fraction=0.4),
        "data.val_fraction=0.5",
        "data.test_fraction=0.4",
        "need at least 2",
    )
    err(DataConfig(name="iris", val_fraction=0.6, test_fraction=0.6), "data.val_fraction=0.6")


# ---------------------------------------------------------------------------------------------
# Preprocessing


def cov(a):
    a = a.reshape(len(a), -1).astype(np.float64)
    a = a - a.mean(0)
    return a.T @ a / len(a)


def test_preprocessing_formulas():
    ds = load_dataset(DataConfig(name="wine", preprocessing="standardize"))
    np.testing.assert_allclose(ds.x_train.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(ds.x_train.std(0), 1, atol=1e-4)
    assert np.abs(ds.x_val.mean(0)).max() > 1e-3 and np.abs(ds.x_val.std(0) - 1).max() > 1e-3
    raw = load_dataset(DataConfig(name="wine", preprocessing="none"))
    mu, sd = raw.x_train.mean(0, dtype=np.float64), raw.x_train.std(0, dtype=np.float64)
    np.testing.assert_allclose(ds.x_test, (raw.x_test - mu) / sd, rtol=1e-4, atol=1e-4)
    c = load_dataset(DataConfig(name="wine", preprocessing="center"))
    np.testing.assert_allclose(c.x_train.mean(0), 0, atol=1e-3)
    np.testing.assert_allclose(c.x_val, raw.x_val - mu, rtol=1e-5, atol=1e-3)

    p = load_dataset(DataConfig(name="wine", preprocessing="pca"))
    cp = cov(p.x_train)
    assert np.all(np.diff(np.diag(cp)) <= 0)  # largest variance first
    np.testing.assert_allclose(cp - np.diag(np.diag(cp)), 0, atol=1e-6 * cp.max())
    np.testing.assert_allclose(np.trace(cp), np.trace(cov(raw.x_train)), rtol=1e-4)

    w = load_dataset(DataConfig(name="wine", preprocessing="whiten"))
    np.testing.assert_allclose(cov(w.x_train), np.eye(13), atol=2e-3)
    assert np.abs(cov(w.x_val) - np.eye(13)).max() > 1e-2


def test_preprocessing_shapes_and_constant_features():
    ds = load_dataset(DataConfig(name="digits", preprocessing="standardize"))
    assert ds.x_train.shape[1:] == (8, 8, 1)
    flat = ds.x_train.reshape(len(ds.x_train), -1)
    const = flat.std(0) == 0
    assert const.any() and np.all(flat[:, const] == 0)  # std 0 -> divided by 1, exactly 0
    x = np.random.default_rng(0).normal(size=(50, 4, 3))
    tr, va = preprocess("whiten", x[:40], x[40:])
    assert tr.shape == (40, 4, 3) and va.shape == (10, 4, 3) and tr.dtype == np.float32
    np.testing.assert_allclose(cov(tr), np.eye(12), atol=1e-3)
    _, empty = preprocess("pca", x[:40], x[:0])
    assert empty.shape == (0, 4, 3) and empty.dtype == np.float32


def test_regression_targets_untransformed():
    ds = load_dataset(DataConfig(name="diabetes", preprocessing="whiten"))
    raw = datasets.load_sklearn(DataConfig(name="diabetes"))
    assert set(ys(ds).tolist()) == set(raw.y.astype(np.float32).tolist())


# ---------------------------------------------------------------------------------------------
# mnist1d


def test_mnist1d_generated_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNNER_CACHE_DIR", str(tmp_path))
    cfg = DataConfig(name="mnist1d", n_samples=123)  # n_samples is not used for mnist1d
    ds = load_dataset(cfg)
    assert (ds.task, ds.kind, ds.n_classes, ds.input_shape) == (
        "classification",
        "sequence",
        10,
        (40, 1),
    )
    assert len(ds.x_test) == 1000 and len(ds.x_train) + len(ds.x_val) == 4000
    assert len(ds.x_val) == 600
    files = [f for f in os.listdir(tmp_path) if f.endswith(".npz")]
    assert len(files) == 1 and os.listdir(tmp_path) == files  # no temp files left
    mtime = os.path.getmtime(tmp_path / files[0])

    def boom():
        raise AssertionError("regenerated instead of using the cache")

    monkeypatch.setattr(datasets, "_generate_mnist1d", boom)
    again = load_dataset(cfg)
    for k in ALL:
        np.testing.assert_array_equal(getattr(ds, k), getattr(again, k))
    assert os.path.getmtime(tmp_path / files[0]) == mtime
    small = load_dataset(DataConfig(name="mnist1d", max_samples=500))
    assert len(small.x_test) == 100 and len(small.x_train) + len(small.x_val) == 400


def test_a_runs_paths_cache_beats_the_environment(tmp_path, monkeypatch):
    """A run loads its data inside datasets.cache_in(cfg.paths): paths.cache (which defaults to
    RUNNER_CACHE_DIR through conf/paths) names the cache folder; outside it, with no run config,
    the environment does."""
    from runner.config import PathsConfig

    monkeypatch.setenv("RUNNER_CACHE_DIR", str(tmp_path / "env"))
    assert os.path.dirname(datasets.mnist1d_cache_path()) == str(tmp_path / "env")
    with datasets.cache_in(PathsConfig(cache=str(tmp_path / "cfg"))):
        assert os.path.dirname(datasets.mnist1d_cache_path()) == str(tmp_path / "cfg")
        with datasets.cache_in(PathsConfig(cache="~/c")):  # ~ is the home folder
            assert datasets.cache_dir() == os.path.expanduser("~/c")
        assert datasets.cache_dir() == str(tmp_path / "cfg")
    assert datasets.cache_dir() == str(tmp_path / "env")


# ---------------------------------------------------------------------------------------------
# csv


def write(path, text):
    path.write_text(text)
    return str(path)


def test_csv(tmp_path):
    rng = np.random.default_rng(0)
    lines = ["a,b,label,c"] + [
        f"{rng.normal():.4f},{i % 7},{[3, 5, 9][i % 3]},{rng.normal():.3f}" for i in range(60)
    ]
    p = write(tmp_path / "d.csv", "\n".join(lines) + "\n")
    ds = load_dataset(DataConfig(name="csv", path=p, target="label"))
    assert (ds.task, ds.kind, ds.n_classes, ds.input_shape) == (
        "classification",
        "tabular",
        3,
        (3,),
    )
    assert sorted(np.unique(ys(ds))) == [0, 1, 2]
    ds = load_dataset(DataConfig(name="csv", path=p, target="b", preprocessing="none"))
    assert ds.task == "classification" and ds.n_classes == 7  # 7 integer values
    ds = load_dataset(DataConfig(name="csv", path=p, target="a", preprocessing="none"))
    assert ds.task == "regression" and ds.y_train.dtype == np.float32
    assert np.isin(ds.x_train[:, 1], [3, 5, 9]).all()  # label column is now a feature
    two = write(tmp_path / "two.csv", "x,y\n" + "".join(f"{i},{i % 2 * 4}\n" for i in range(20)))
    assert load_dataset(DataConfig(name="csv", path=two, target="y")).task == "binary"


def test_csv_errors(tmp_path):
    good = "a,b,c\n" + "".join(f"{i},{i * 2},{i % 2}\n" for i in range(20))
    err(
        DataConfig(name="csv", path=str(tmp_path / "nope.csv"), target="c"),
        "data.path=",
        "nope.csv",
        "no such file",
    )
    p = write(tmp_path / "x.csv", good)
    err(
        DataConfig(name="csv", path=p, target="price"),
        "data.target='price'",
        "no such column in x.csv; columns: a, b, c",
    )
    bad = good.splitlines()
    bad[6] = "5,abc,1"
    p = write(tmp_path / "bad.csv", "\n".join(bad))
    err(
        DataConfig(name="csv", path=p, target="c"),
        "bad.csv",
        "row 7, column 'b'",
        "'abc' is not a number",
    )
    bad[6] = "5,,1"
    p = write(tmp_path / "miss.csv", "\n".join(bad))
    err(DataConfig(name="csv", path=p, target="c"), "row 7, column 'b'", "missing value")
    bad[6] = "5,NA,1"
    p = write(tmp_path / "na.csv", "\n".join(bad))
    err(DataConfig(name="csv", path=p, target="c"), "row 7, column 'b'", "missing value")
    bad[6] = "5,1"
    p = write(tmp_path / "short.csv", "\n".join(bad))
    err(DataConfig(name="csv", path=p, target="c"), "row 7 has 2 fields")
    p = write(tmp_path / "nohead.csv", "1,2,3\n4,5,6\n")
    err(DataConfig(name="csv", path=p, target="y"), "data.target='y'", "header")
    p = write(tmp_path / "neg.csv", "a,y\n" + "".join(f"{i},{i - 3.5}\n" for i in range(20)))
    err(
        DataConfig(name="csv", path=p, target="y", task="log_regression"),
        "data.task=log_regression",
        "must be positive (min -3.5)",
    )
    err(
        DataConfig(name="csv", path=p, target="y", task="classification"),
        "data.task=classification",
        "not integer",
    )
    p = write(tmp_path / "three.csv", "a,y\n" + "".join(f"{i},{i % 3}\n" for i in range(20)))
    err(
        DataConfig(name="csv", path=p, target="y", task="binary"),
        "data.task=binary",
        "has 3 classes",
    )
    err(DataConfig(name="csv", path=str(tmp_path), target="y"), "is a folder")
    err(DataConfig(name="csv", path=None, target="y"), "data.path=null")
    err(DataConfig(name="csv", path=p, target=None), "data.target=null")


# ---------------------------------------------------------------------------------------------
# npz


def test_npz(tmp_path):
    rng = np.random.default_rng(0)
    cases = [
        ((40, 5), "tabular", (5,)),
        ((40, 30, 2), "sequence", (30, 2)),
        ((40, 6, 7), "image", (6, 7, 1)),
        ((40, 6, 7, 3), "image", (6, 7, 3)),
    ]
    for shape, kind, input_shape in cases:
        p = str(tmp_path / f"{kind}{len(shape)}.npz")
        np.savez(p, x=rng.normal(size=shape), y=rng.integers(0, 4, 40))
        ds = load_dataset(DataConfig(name="npz", path=p))
        assert (ds.kind, ds.input_shape, ds.task, ds.n_classes) == (
            kind,
            input_shape,
            "classification",
            4,
        )
    p = str(tmp_path / "seq.npz")
    np.savez(p, x=rng.normal(size=(40, 12)), y=rng.normal(size=40) + 10, kind="sequence")
    ds = load_dataset(DataConfig(name="npz", path=p))
    assert (ds.kind, ds.input_shape, ds.task) == ("sequence", (12, 1), "regression")


def test_npz_errors(tmp_path):
    p = str(tmp_path / "noy.npz")
    np.savez(p, x=np.zeros((20, 2)), labels=np.zeros(20))
    err(DataConfig(name="npz", path=p), "data.path=", "no array 'y'", "arrays present: x, labels")
    p = str(tmp_path / "obj.npz")
    np.savez(p, x=np.zeros((20, 2)), y=np.array([{"a": 1}] * 20, dtype=object))
    err(DataConfig(name="npz", path=p), "obj.npz", "'y'", "pickled")
    p = str(tmp_path / "nan.npz")
    x = np.zeros((20, 2))
    x[3, 1] = np.nan
    np.savez(p, x=x, y=np.arange(20.0))
    err(DataConfig(name="npz", path=p), "nan.npz", "'x'", "non-finite")
    p = str(tmp_path / "len.npz")
    np.savez(p, x=np.zeros((20, 2)), y=np.zeros(19))
    err(DataConfig(name="npz", path=p), "len.npz", "20 rows but y has 19")
    p = write(tmp_path / "junk.npz", "not an archive")
    err(DataConfig(name="npz", path=p), "junk.npz", "not a readable .npz")
    err(DataConfig(name="npz", path=str(tmp_path / "none.npz")), "none.npz", "no such file")


# ---------------------------------------------------------------------------------------------
# idx


def idx_bytes(a, code=0x08):
    return (
        struct.pack(">BBBB", 0, 0, code, a.ndim)
        + struct.pack(f">{a.ndim}I", *a.shape)
        + a.astype(">u1").tobytes()
    )


def write_idx(folder, n_train=50, n_test=20, gz=(), hw=(28, 28)):
    rng = np.random.default_rng(0)
    folder.mkdir(exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, *hw), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, *hw), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) % 10).astype(np.uint8),
    }
    for name, a in arrays.items():
        if name in gz:
            with gzip.open(folder / (name + ".gz"), "wb") as f:
                f.write(idx_bytes(a))
        else:
            (folder / name).write_bytes(idx_bytes(a))
    return arrays


def test_idx(tmp_path):
    arrays = write_idx(tmp_path / "m", gz=("train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"))
    ds = load_dataset(
        DataConfig(name="idx", path=str(tmp_path / "m"), preprocessing="none", val_fraction=0.2)
    )
    assert (ds.kind, ds.task, ds.n_classes, ds.input_shape) == (
        "image",
        "classification",
        10,
        (28, 28, 1),
    )
    assert (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (40, 10, 20)
    np.testing.assert_array_equal(
        ds.x_test[..., 0], (arrays["t10k-images-idx3-ubyte"] / 255.0).astype(np.float32)
    )
    np.testing.assert_array_equal(ds.y_test, arrays["t10k-labels-idx1-ubyte"])
    assert xs(ds).min() >= 0 and xs(ds).max() <= 1
    raw = datasets.read_idx(str(tmp_path / "m" / "train-images-idx3-ubyte.gz"), "k")
    np.testing.assert_array_equal(raw, arrays["train-images-idx3-ubyte"])
    small = load_dataset(DataConfig(name="idx", path=str(tmp_path / "m"), max_samples=35))
    assert len(small.x_test) == 10 and len(small.x_train) + len(small.x_val) == 25


def test_idx_errors(tmp_path):
    err(DataConfig(name="idx", path=str(tmp_path / "none")), "data.path=", "no such folder")
    folder = tmp_path / "m"
    write_idx(folder)
    os.remove(folder / "t10k-labels-idx1-ubyte")
    msg = err(
        DataConfig(name="idx", path=str(folder)),
        f"data.path={str(folder)!r}",
        "t10k-labels-idx1-ubyte",
    )
    assert "train-images-idx3-ubyte" in msg
    write_idx(folder)
    (folder / "train-labels-idx1-ubyte").write_bytes(b"\x01\x02\x08\x01" + b"\0" * 10)
    err(DataConfig(name="idx", path=str(folder)), "train-labels-idx1-ubyte", "magic")
    write_idx(folder)
    data = (folder / "train-images-idx3-ubyte").read_bytes()
    (folder / "train-images-idx3-ubyte").write_bytes(data[:-5])
    err(DataConfig(name="idx", path=str(folder)), "train-images-idx3-ubyte", "data bytes")
    write_idx(folder)
    (folder / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(7, np.uint8)))
    err(DataConfig(name="idx", path=str(folder)), "50 images but 7 labels")


def test_idx_empty_images_and_non_integer_labels(tmp_path):
    folder = tmp_path / "m"
    write_idx(folder, hw=(0, 0))  # was a ZeroDivisionError when the model was built
    err(
        DataConfig(name="idx", path=str(folder)),
        f"data.path={str(folder)!r}",
        "0x0 pixels",
        "at least 1x1",
    )

    def labels(values):  # float32 labels (IDX type 0x0D)
        a = np.asarray(values, ">f4")
        return struct.pack(">BBBBI", 0, 0, 0x0D, 1, len(a)) + a.tobytes()

    write_idx(folder)
    (folder / "train-labels-idx1-ubyte").write_bytes(labels(np.arange(50) % 3 + 0.7))
    # were truncated to 0, 1, 2 (and NaN became the one class -9.2e18)
    err(
        DataConfig(name="idx", path=str(folder)),
        f"data.path={str(folder)!r}",
        "train-labels-idx1-ubyte",
        "50 labels that are not integers (e.g. 0.7)",
    )
    (folder / "train-labels-idx1-ubyte").write_bytes(labels([np.nan] * 50))
    err(DataConfig(name="idx", path=str(folder)), "data.path=", "(e.g. nan)", "integers")
    (folder / "train-labels-idx1-ubyte").write_bytes(labels(np.arange(50) % 10))
    assert load_dataset(DataConfig(name="idx", path=str(folder))).n_classes == 10  # 3.0 is 3
    # regression takes real-valued labels as they are
    (folder / "train-labels-idx1-ubyte").write_bytes(labels(np.arange(50) % 3 + 0.7))
    ds = load_dataset(
        DataConfig(name="idx", path=str(folder), task="regression", preprocessing="none")
    )
    assert ds.task == "regression" and set(np.round(ds.y_train.astype(float), 4)) == {0.7, 1.7, 2.7}


def test_user_files_non_integer_classes_name_the_path(tmp_path):
    p = str(tmp_path / "f.npz")
    np.savez(p, x=np.zeros((30, 2)), y=np.arange(30) % 3 + 0.5)
    assert load_dataset(DataConfig(name="npz", path=p)).task == "regression"  # auto: allowed
    err(
        DataConfig(name="npz", path=p, task="classification"),
        f"data.path={p!r}",
        "not integer class labels (e.g. 0.5)",
        "data.task=classification",
    )
    c = write(tmp_path / "f.csv", "a,y\n" + "".join(f"{i},{i % 3 + 0.25}\n" for i in range(30)))
    err(
        DataConfig(name="csv", path=c, target="y", task="binary"),
        f"data.path={c!r}",
        "(e.g. 0.25)",
        "data.task=binary",
    )


def test_npz_without_features_or_examples(tmp_path):
    p = str(tmp_path / "nof.npz")
    np.savez(p, x=np.zeros((30, 0)), y=np.arange(30) % 2)
    err(DataConfig(name="npz", path=p), f"data.path={p!r}", "shape (30, 0)", "no features")
    np.savez(p, x=np.zeros((30, 4, 0)), y=np.arange(30) % 2)
    err(DataConfig(name="npz", path=p), "shape (30, 4, 0)", "no features")
    np.savez(p, x=np.zeros((0, 3)), y=np.zeros(0))
    err(DataConfig(name="npz", path=p), "shape (0, 3)", "no examples")


def test_csv_duplicated_column_names(tmp_path):
    p = write(tmp_path / "dup.csv", "a,a,label,b,b\n" + "1,2,0,3,4\n" * 30)
    # was: data.target=a silently took the first of the two
    err(
        DataConfig(name="csv", path=p, target="a"),
        f"data.path={p!r}",
        "'a' (columns 1, 2), 'b' (columns 4, 5)",
        "own name",
    )


# ---------------------------------------------------------------------------------------------


def test_import_is_light():
    code = (
        "import sys, runner.data; bad = [m for m in ('sklearn', 'mnist1d', 'matplotlib', "
        "'jax') if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_name():
    err(DataConfig(name="cifar"), "data.name='cifar'", "choose one of")
