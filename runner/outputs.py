"""Files a run leaves, each written atomically (temp file in the same folder + os.replace), so a
reader never sees half a file: metrics.json, curves.csv, curves.png."""
from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from pathlib import Path

_UMASK = os.umask(0)
os.umask(_UMASK)

CURVE_FIELDS = ("epoch", "step", "lr", "train_loss", "train_{m}", "val_loss", "val_{m}",
                "grad_norm", "time")


def atomic_write(path: Path, data: bytes | str) -> None:
    path = Path(path)
    mode = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _jsonable(v):
    """NaN and inf are not JSON: write them as null."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def write_json(path: Path, obj) -> None:
    atomic_write(path, json.dumps(_jsonable(obj), indent=2, allow_nan=False) + "\n")


def curve_fields(metric: str) -> list[str]:
    return [f.format(m=metric) for f in CURVE_FIELDS]


def write_curves(path: Path, rows: list[dict], metric: str) -> None:
    write_rows(path, rows, curve_fields(metric))


def write_rows(path: Path, rows: list[dict], fields) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fields), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write(path, buf.getvalue())


def read_curves(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
