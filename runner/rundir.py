"""The run folder: the one module that knows what a run leaves on disk, how it is written, how it
is read back, what its status means and which way each metric is better. Every writer (the
training task, sweeps, plots, checkpoints) and every reader (`runner compare/best/plot`,
`runner ensemble`, `runner gradcheck --run`, the sweep's summary, scripts/lessons.py) goes
through it.

Files (names relative to the run folder):

    .hydra/config.yaml     CONFIG       the composed config (Hydra writes it)
    .hydra/overrides.yaml  OVERRIDES    the command-line overrides (Hydra writes it)
    metrics.json           METRICS      status and numbers; written first as "running" (with a
                                        heartbeat), last with a final status
    curves.csv             CURVES       one row per epoch (curve_fields(metric))
    curves.png             CURVES_PNG
    diagnostics.csv        DIAGNOSTICS  one row per layer and epoch
    diagnostics.png        DIAGNOSTICS_PNG
    best_params.npz        BEST_PARAMS  the best epoch's weights (runner.checkpoint's format)
    checkpoint.npz         CHECKPOINT   the whole training state of an interrupted run
    provenance.json        PROVENANCE   git commit and diff, versions, devices, host, command
                                        (runner.provenance writes it before the final metrics)

Writing: every file is written atomically (atomic_write: a temp file in the same folder, fsync,
os.replace), so a reader never sees half a file; metrics.json with a final status comes last.
A failed write raises OSError naming the target file (never the temp file).

Reading: read_metrics, read_curves, read_diagnostics, read_config, read_overrides, read_provenance
return a Read: the data, or `missing` (no such file), or `error`, one line naming the file and
what is wrong ("metrics.json: not UTF-8 (byte 0xff at 17)"). No damaged file makes them raise.
load_best returns the best weights or raises RunDirError (one line naming the file).

Status (LIFECYCLE below is the one place that lists and explains them): status_of(metrics) gives
a reader's view, which adds the derived statuses stale, unreadable and incomplete to those a run
writes.

Metric names: ALIASES (short names), canonical(name), higher_is_better(name) and better(name)
("max"/"min"/None): the one rule of which way a metric is better.

Imports only the standard library at import time (`runner compare` must stay fast and free of
jax, numpy, hydra and omegaconf); numpy and runner.checkpoint only inside load_best.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

# ---------------------------------------------------------------------------------------------
# file names

HYDRA_DIR = ".hydra"
CONFIG = ".hydra/config.yaml"
OVERRIDES = ".hydra/overrides.yaml"
HYDRA = ".hydra/hydra.yaml"
METRICS = "metrics.json"
CURVES = "curves.csv"
CURVES_PNG = "curves.png"
DIAGNOSTICS = "diagnostics.csv"
DIAGNOSTICS_PNG = "diagnostics.png"
BEST_PARAMS = "best_params.npz"
CHECKPOINT = "checkpoint.npz"
PROVENANCE = "provenance.json"

# lr is the rate of the epoch's first update (of every update in it when the schedule moves
# once per epoch), lr_next the rate after the epoch (the next epoch's lr): time_based lr0 0.2,
# k 1 gives epoch 1 lr 0.2, lr_next 0.1 (the notes' table: "epoch 1 -> 0.1", the rate after it).
# max_step_loss: the largest loss of one update's batch (runner.core.train.max_step_loss).
CURVE_FIELDS = (
    "epoch",
    "step",
    "lr",
    "lr_next",
    "train_loss",
    "train_{m}",
    "val_loss",
    "val_{m}",
    "max_step_loss",
    "grad_norm",
    "time",
)

# ---------------------------------------------------------------------------------------------
# status lifecycle

RUNNING = "running"
COMPLETED = "completed"
DIVERGED = "diverged"
FAILED = "failed"
INTERRUPTED = "interrupted"
PRUNED = "pruned"
STALE = "stale"
UNREADABLE = "unreadable"
INCOMPLETE = "incomplete"

# status -> (final, written by the run, meaning). Final: the run has ended and all its files are
# there. Written: a run puts it in metrics.json; the others are derived by readers and never
# written. Adding a status is one line here.
LIFECYCLE = {
    RUNNING: (
        False,
        True,
        "training: metrics.json has pid, host, heartbeat (the time of the "
        "last finished epoch or of the start), started and epochs_run; "
        "curves.csv has the epochs so far",
    ),
    COMPLETED: (True, True, "trained all its epochs (or stopped early): all files written"),
    DIVERGED: (
        True,
        True,
        "stopped at a NaN/inf loss, or a training (epoch mean or one step's) or "
        "validation loss over trainer.abort_factor x its initial value "
        "(diverged_reason says which); curves up to there",
    ),
    FAILED: (True, True, "an error stopped it (metrics.json's error says which)"),
    INTERRUPTED: (
        True,
        True,
        "stopped by Ctrl-C or SIGTERM: full final metrics, interrupted_by "
        "SIGINT or SIGTERM, and maybe checkpoint (the file to resume from)",
    ),
    PRUNED: (
        True,
        True,
        "stopped by the sweeper at a budget (pruned_at: the epoch; pruned_by: "
        "hyperband, sha, median or trainer.stop_at): full final metrics for the "
        "epochs it trained",
    ),
    STALE: (
        False,
        False,
        "metrics.json says running, but its process is gone (same host, no "
        "such pid) or its heartbeat (older runs: its files) is older than "
        "STALE_AFTER_S: killed without a chance to write a final status",
    ),
    UNREADABLE: (
        False,
        False,
        "a file of the run is damaged (not UTF-8, not valid JSON or YAML, "
        "cannot be read); the reason names it",
    ),
    INCOMPLETE: (
        False,
        False,
        "no metrics.json yet (not started, refused, killed before its "
        "first epoch) or one with an unknown status",
    ),
}
FINAL = tuple(s for s, (final, _, _) in LIFECYCLE.items() if final)
WRITTEN = tuple(s for s, (_, written, _) in LIFECYCLE.items() if written)
STATUSES = tuple(LIFECYCLE)

# A running run whose heartbeat (or, for runs without one, whose metrics.json and curves.csv)
# is older than this is stale.
STALE_AFTER_S = 30 * 60
# Bookkeeping keys of a running run's metrics.json (not metrics).
LIVE_KEYS = ("pid", "host", "heartbeat", "started")

# ---------------------------------------------------------------------------------------------
# metric names and direction

# Short names for metrics.json keys (compare's --sort/--where/--group-by/--keep, best's and
# ensemble's --metric accept both).
ALIASES = {
    "val_acc": "best_val_acc",
    "val_rmse": "best_val_rmse",
    "val_loss": "best_val_loss",
    "acc": "best_val_acc",
    "rmse": "best_val_rmse",
    "loss": "best_val_loss",
    "train_loss": "final_train_loss",
    "train_acc": "final_train_acc",
    "train_rmse": "final_train_rmse",
    "time": "wall_time",
    "wall": "wall_time",
    "budget": "epochs_run",  # what a pruned trial (hyperband, sha, median) received
}
HIGHER = frozenset({"acc", "accuracy", "auc", "f1", "precision", "recall", "r2"})
LOWER = frozenset({"loss", "rmse", "mse", "mae", "error", "err", "nll", "perplexity", "time"})


def canonical(name: str) -> str:
    """The metrics.json key a (short) name stands for: val_acc -> best_val_acc."""
    return ALIASES.get(name, name)


def higher_is_better(name: str) -> bool | None:
    """True for accuracy-like metrics (acc, accuracy, auc, f1, ...), False for losses, errors
    and times (loss, rmse, mse, wall_time, ...), None for the others (epochs, counts, cv_mean,
    settings). Decided by the words of the (canonical) name: best_val_acc, test_rmse,
    final_train_loss, val_acc, compile_time."""
    words = canonical(str(name)).lower().replace(".", "_").split("_")
    if any(w in HIGHER for w in words):
        return True
    if any(w in LOWER for w in words):
        return False
    return None


def better(name: str) -> str | None:
    """ "max", "min" or None: higher_is_better as a mode."""
    h = higher_is_better(name)
    return None if h is None else ("max" if h else "min")


# ---------------------------------------------------------------------------------------------
# writing

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: Path, data: bytes | str, *, durable: bool = True) -> None:
    """Write `data` (str: UTF-8) to `path` through a temp file in the same folder and
    os.replace: readers see the old file or the new one, never half of one. Any OSError
    (disk full, no such folder, permission) is raised again with `path` as its filename.

    durable: fsync the data before the rename, so that the new file survives a power loss
    too, and a filesystem that reports a full disk only at fsync fails here, not later. An
    fsync costs 3-8 ms on this project's machines, as much as a small epoch: files that are
    rewritten while a run goes on (its progress: the running metrics.json, curves.csv so far)
    pass durable=False. Their writes are still atomic, and a killed process loses nothing the
    page cache holds; the final files are written durably."""
    import tempfile  # only writers need it, and its import is not free (docs/performance.md)

    path = Path(path)
    blob = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            view = memoryview(blob)
            while view:
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        strerror = e.strerror or str(e)
        if isinstance(e, FileNotFoundError) and not path.parent.is_dir():
            strerror = f"the folder {path.parent} does not exist"
        raise OSError(e.errno, strerror, str(path)) from e
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _jsonable(v):
    """NaN and inf are not JSON: write them as null."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def write_json(path: Path, obj, *, durable: bool = True) -> None:
    text = json.dumps(_jsonable(obj), indent=2, allow_nan=False) + "\n"
    atomic_write(path, text, durable=durable)


def curve_fields(metric: str) -> list[str]:
    return [f.format(m=metric) for f in CURVE_FIELDS]


def write_rows(path: Path, rows: list[dict], fields, *, durable: bool = True) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fields), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write(path, buf.getvalue(), durable=durable)


def write_curves(path: Path, rows: list[dict], metric: str, *, durable: bool = True) -> None:
    write_rows(path, rows, curve_fields(metric), durable=durable)


# ---------------------------------------------------------------------------------------------
# reading


class RunDirError(Exception):
    """A run's file that a command needs is missing or damaged: one line naming the file, for
    the user (exit code 2)."""


@dataclass(frozen=True)
class Read:
    """What reading one file of a run gave: `data`, or why not."""

    data: object = None
    missing: bool = False  # no such file (not written yet)
    error: str | None = None  # "metrics.json: not UTF-8 (byte 0xff at 17)": damaged/unreadable
    notes: tuple = ()  # harmless oddities ("curves.csv: line 4 has 3 cells, not 9")

    @property
    def ok(self) -> bool:
        return not self.missing and self.error is None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _text(run_dir, name: str) -> tuple[str | None, Read | None]:
    """(the file's text, None) or (None, the Read saying why not)."""
    path = Path(run_dir) / name
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, Read(missing=True)
    except IsADirectoryError:
        return None, Read(error=f"{name}: is a folder, not a file")
    except OSError as e:
        return None, Read(error=f"{name}: cannot read ({e.strerror or _first_line(e)})")
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as e:
        return None, Read(error=f"{name}: not UTF-8 (byte 0x{raw[e.start]:02x} at {e.start})")


def _json_object(run_dir, name: str) -> Read:
    """A JSON file holding one object, as a dict."""
    text, bad = _text(run_dir, name)
    if bad:
        return bad
    try:
        m = json.loads(text)
    except json.JSONDecodeError as e:
        cut = e.pos >= len(text.rstrip()) or e.msg.startswith("Unterminated")
        what = (
            "empty"
            if not text.strip()
            else (
                f"not valid JSON ({e.msg}: line {e.lineno} column {e.colno}"
                + ("; truncated?)" if cut else ")")
            )
        )
        return Read(error=f"{name}: {what}")
    except (ValueError, RecursionError) as e:
        return Read(error=f"{name}: not valid JSON ({_first_line(e)})")
    if not isinstance(m, dict):
        return Read(error=f"{name}: not a JSON object (a {type(m).__name__})")
    return Read(m)


def read_provenance(run_dir) -> Read:
    """provenance.json as a dict (runner.provenance's layout)."""
    return _json_object(run_dir, PROVENANCE)


def read_metrics(run_dir) -> Read:
    """metrics.json as a dict."""
    got = _json_object(run_dir, METRICS)
    if not got.ok:
        return got
    m = got.data
    if m.get("status") is not None and not isinstance(m["status"], str):
        return Read(error=f"{METRICS}: status is {m['status']!r}, not a string")
    return Read(m)


class Curves:
    """curves.csv: `fields` (the header) and `rows` ({field: float}, NaN for empty or
    non-numeric cells), parsed when first asked for (`runner compare --format csv` needs only
    to know the file is readable); `notes`: lines left out."""

    def __init__(self, text: str = ""):
        self._text = text
        self._parsed = None

    def _parse(self) -> tuple:
        if self._parsed is None:
            self._parsed = _parse_csv(self._text, CURVES)
            self._text = None
        return self._parsed

    @property
    def fields(self) -> list:
        return self._parse()[0]

    @property
    def rows(self) -> list:
        return self._parse()[1]

    @property
    def notes(self) -> tuple:
        return self._parse()[2]

    def metric(self) -> str | None:
        """ "acc" or "rmse", from the header (val_acc / val_rmse)."""
        for name in self.fields:
            if name in ("val_acc", "val_rmse"):
                return name[4:]
        return None


def _cells(line: str) -> list | None:
    if '"' not in line:
        return line.split(",")
    try:
        return next(csv.reader([line]))
    except (csv.Error, StopIteration):
        return None


def _parse_csv(text: str, name: str, keep_text=()) -> tuple[list, list, tuple]:
    """(header, rows, notes): rows as {field: float} (text for the fields in keep_text); a
    line whose cell count differs from the header's is left out with a note."""
    lines = text.splitlines()
    if not lines:
        return [], [], ()
    fields = _cells(lines[0]) or lines[0].split(",")
    rows, bad = [], 0
    for line in lines[1:]:
        if not line.strip():
            continue
        cells = _cells(line)
        if cells is None or len(cells) != len(fields):
            bad += 1
            continue
        row = {}
        for f, c in zip(fields, cells):
            if f in keep_text:
                row[f] = c
                continue
            try:
                row[f] = float(c) if c else math.nan
            except ValueError:
                row[f] = math.nan
        rows.append(row)
    notes = (
        (
            f"{name}: {bad} malformed line{'s' if bad > 1 else ''} left out "
            f"(cells differ from the header's {len(fields)})",
        )
        if bad
        else ()
    )
    return fields, rows, notes


def read_curves(run_dir) -> Read:
    """curves.csv as Curves (fields, rows; parsed on first use, never raising)."""
    text, bad = _text(run_dir, CURVES)
    if bad:
        return bad
    return Read(Curves(text))


def read_diagnostics(run_dir) -> Read:
    """diagnostics.csv as a list of rows: layer (text) and numbers per layer and epoch."""
    text, bad = _text(run_dir, DIAGNOSTICS)
    if bad:
        return bad
    fields, rows, notes = _parse_csv(text, DIAGNOSTICS, keep_text=("layer",))
    if rows and not {"layer", "epoch"} <= set(fields):
        return Read(error=f"{DIAGNOSTICS}: no layer and epoch columns (has {', '.join(fields)})")
    return Read(rows, notes=notes)


def flatten(cfg, prefix: str = "") -> dict:
    """{"optimizer": {"lr": 0.1}} -> {"optimizer.lr": 0.1}; lists and empty maps are leaves."""
    out = {}
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def read_config(run_dir, flat: bool = True) -> Read:
    """.hydra/config.yaml: flattened to dotted keys (flat) or as nested dicts."""
    from runner.fastyaml import parse_config

    text, bad = _text(run_dir, CONFIG)
    if bad:
        return bad
    try:
        cfg = parse_config(text)
    except Exception as e:  # noqa: BLE001 - whatever the YAML parser says, one line
        return Read(error=f"{CONFIG}: not valid YAML ({_first_line(e)})")
    if not isinstance(cfg, dict):
        return Read(error=f"{CONFIG}: not a mapping of settings")
    return Read(flatten(cfg) if flat else cfg)


def read_overrides(run_dir) -> Read:
    """.hydra/overrides.yaml as a list of strings ("optimizer=adam", "seed=1")."""
    from runner.fastyaml import load_yaml

    text, bad = _text(run_dir, OVERRIDES)
    if bad:
        return bad
    try:
        ov = load_yaml(text)
    except Exception as e:  # noqa: BLE001 - whatever the YAML parser says, one line
        return Read(error=f"{OVERRIDES}: not valid YAML ({_first_line(e)})")
    if ov is None:
        return Read([])
    if not isinstance(ov, list):
        return Read(error=f"{OVERRIDES}: not a list of overrides")
    return Read([str(x) for x in ov])


def run_dirs_under(root) -> list[Path]:
    """Run folders (those with .hydra/) at or under `root`, in walk order; hidden folders and
    the inside of a run folder are not searched (runner compare and runner export)."""
    root = Path(root)
    if (root / HYDRA_DIR).is_dir():
        return [root]
    found = []
    for dirpath, dirnames, _ in os.walk(root):
        if HYDRA_DIR in dirnames:
            found.append(Path(dirpath))
            dirnames[:] = []
            continue
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
    return found


def has_best(run_dir) -> bool:
    """Whether the run has best weights for load_best: best_params.npz, or else the best epoch
    kept in checkpoint.npz (a run killed before it wrote its final files)."""
    return (Path(run_dir) / BEST_PARAMS).is_file() or (Path(run_dir) / CHECKPOINT).is_file()


def load_best(run_dir) -> tuple[dict, dict]:
    """(params, batch_stats) of the run's best epoch, nested dicts of numpy arrays, from
    best_params.npz, or when there is none (killed, interrupted before the final files) from
    the best epoch that checkpoint.npz keeps. Raises RunDirError naming the file when it is
    missing or damaged."""
    path = Path(run_dir) / BEST_PARAMS
    from runner.checkpoint import CheckpointError, best_from_checkpoint, load_params

    if not path.is_file():
        ckpt = Path(run_dir) / CHECKPOINT
        if ckpt.is_file():
            try:
                best = best_from_checkpoint(ckpt)
            except CheckpointError as e:
                raise RunDirError(str(e)) from None
            if best is None:
                raise RunDirError(
                    f"{ckpt}: keeps no best weights yet (no epoch with finite numbers)"
                )
            return best
        raise RunDirError(
            f"{path}: no such file (the run has not finished an epoch with "
            f"finite numbers, or is not a run folder)"
        )
    try:
        return load_params(path)
    except Exception as e:  # a damaged file is one line naming it
        raise RunDirError(f"{path}: damaged, not a parameter file ({_first_line(e)})") from e


def claim(base) -> Path:
    """A new run folder: `base` if this call creates it, else the first of base-1, base-2, ...
    that it creates. os.mkdir either creates a folder or fails, so two runs started in the same
    second never share one (Hydra itself makes its folder with exist_ok=True)."""
    base = Path(base)
    base.parent.mkdir(parents=True, exist_ok=True)
    for i in range(100_000):
        cand = base if i == 0 else base.with_name(f"{base.name}-{i}")
        try:
            os.mkdir(cand)
        except FileExistsError:
            continue
        return cand
    raise OSError(f"no free run folder next to {base}")


# ---------------------------------------------------------------------------------------------
# status

_HOST: list = []


def hostname() -> str:
    if not _HOST:
        import socket

        _HOST.append(socket.gethostname())
    return _HOST[0]


def pid_alive(pid: int) -> bool | None:
    """Whether a process with this pid exists on this machine (None: cannot tell)."""
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    except (OSError, OverflowError, ValueError):
        return None
    return True


def process_started(pid: int) -> float | None:
    """When the process with this pid started (Unix time; Linux's /proc), None if unknown. A
    pid that started after the run did is another process that reuses the number."""
    try:
        with open(f"/proc/{int(pid)}/stat", "rb") as f:
            # the fields after the command name (which may hold spaces and parentheses)
            fields = f.read().rsplit(b")", 1)[1].split()
        ticks = int(fields[19])  # field 22 of proc(5): start time in clock ticks after boot
        with open("/proc/stat", "rb") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith(b"btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration, TypeError):
        return None


def _number(v) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def last_write(run_dir) -> float | None:
    """The newest modification time of metrics.json and curves.csv (None: neither exists)."""
    times = []
    for name in (METRICS, CURVES):
        with contextlib.suppress(OSError):
            times.append((Path(run_dir) / name).stat().st_mtime)
    return max(times) if times else None


def stale_reason(metrics: dict, now: float | None = None, mtime: float | None = None) -> str | None:
    """Why a metrics.json that says running belongs to a run that is not running any more, or
    None. Its process is gone (its host is this machine and no process has its pid), or its
    heartbeat is older than STALE_AFTER_S; a run without a heartbeat (written before heartbeats
    existed) is judged by `mtime`, its files' last modification."""
    now = time.time() if now is None else now
    pid, host = metrics.get("pid"), metrics.get("host")
    if isinstance(host, str) and host == hostname():
        alive = pid_alive(pid)
        if alive is False:
            return f"its process {pid} on {host} is gone"
        born = process_started(pid) if alive else None
        started = _number(metrics.get("started"))
        if born is not None and started is not None and born > started + 5:
            return f"its process {pid} on {host} is gone (the pid now belongs to another)"
    beat = _number(metrics.get("heartbeat"))
    if beat is None:
        beat = _number(metrics.get("started"))
    if beat is not None:
        idle = now - beat
        if idle > STALE_AFTER_S:
            return f"no heartbeat for {idle / 3600:.1f} h"
        return None
    if mtime is not None and now - mtime > STALE_AFTER_S:
        return f"nothing written for {(now - mtime) / 3600:.1f} h"
    return None


def status_of(metrics: dict | None, now: float | None = None, mtime: float | None = None) -> str:
    """A reader's status of a run from its metrics.json (None: there is none): the written final
    status; running or stale (stale_reason) for "running"; incomplete otherwise. (unreadable is
    for the caller that found a damaged file.)"""
    if not metrics:
        return INCOMPLETE
    status = metrics.get("status")
    if status in FINAL:
        return status
    if status == RUNNING:
        return STALE if stale_reason(metrics, now, mtime) else RUNNING
    return INCOMPLETE
