"""`runner compare --watch [PATH ...]`: the compare table kept up to date while runs train.

Every --interval seconds (default 1) it stats each run folder's metrics.json, curves.csv and
.hydra/config.yaml/overrides.yaml and re-reads only the folders where one of them changed (size
or modification time; a running run rewrites metrics.json and curves.csv after each epoch). A
folder that says running and has not changed is re-read every RECHECK_S all the same, so a run
whose process died turns stale. When nothing changed, nothing is redrawn.

In a terminal the table is a rich Live display, redrawn in place only when its text changed. Piped
(not a terminal) the output is plain text without control codes: the table once, then one line
per run that ends (completed, pruned, diverged, failed, interrupted) or turns stale or unreadable,
and the table again when the watch ends.

It ends when every PATH is a sweep folder (it has trials.json) and every one's summary.json says
the sweep is over (state finished, stopped or interrupted): exit code 0. Otherwise (single runs,
outputs/) it goes on until Ctrl-C, which leaves the last table on screen and exits with 130, as
every other Ctrl-C of runner does: 0 means the watch saw the end of the sweep."""

from __future__ import annotations

import io
import json
import os
import sys
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from runner import rundir
from runner.compare.render import fmt_number, render
from runner.compare.results import (
    Keys,
    NoRuns,
    ResultsError,
    Run,
    find_run_dirs,
    load_run,
    natural_key,
)

ENDED = ("finished", "stopped", "interrupted")  # summary.json "state" of a sweep that is over
PLAN, SUMMARY = "trials.json", "summary.json"  # what a sweep folder holds (runner.sweep)
WATCHED = (rundir.METRICS, rundir.CURVES, rundir.CONFIG, rundir.OVERRIDES)
RECHECK_S = 30.0
INTERRUPTED = 130
FORMATS = ("table", "markdown")
# What a piped line adds for these statuses (metrics.json keys; stale/unreadable: the reason).
WHY = {rundir.DIVERGED: "diverged_reason", rundir.FAILED: "error", rundir.PRUNED: "pruned_by"}
# Statuses worth a line when piped: the run ended, or something is wrong with it.
NEWS = (*rundir.FINAL, rundir.STALE, rundir.UNREADABLE)


def check(args) -> None:
    """--watch and --interval against the other options: one line for what does not fit."""
    if args.interval is not None and not args.watch:
        raise ResultsError("--interval: only with --watch")
    if args.interval is not None and not 0 < args.interval <= 3600:
        raise ResultsError(
            f"--interval: SECONDS must be more than 0 and at most 3600 (got {args.interval:g})"
        )
    if args.format not in FORMATS:
        raise ResultsError(
            f"--watch: --format {args.format} is not a table to keep up to date; "
            f"--watch shows {' or '.join(FORMATS)} (run without --watch for {args.format})"
        )
    others = (
        ("--diff", args.diff is not None),
        ("--plot", args.plot is not None),
        ("--importance", getattr(args, "importance", False)),
    )
    for option, given in others:
        if given:
            raise ResultsError(f"--watch: not with {option} (run it without --watch)")


def _signature(path, names) -> tuple:
    """(mtime, size) of each file, None where missing: what tells a changed file (the
    runner writes atomically, so a rewritten file also has a new mtime)."""
    sig = []
    base = os.fspath(path)
    for name in names:
        try:
            st = os.stat(os.path.join(base, name))  # strings: Path objects cost more than the stat
        except OSError:
            sig.append(None)
        else:
            sig.append((st.st_mtime_ns, st.st_size))
    return tuple(sig)


class Folders:
    """The runs under the PATHs, each folder re-read only when its files changed."""

    def __init__(self, paths, clock=time.time):
        self.paths = [Path(p) for p in paths]
        self.clock = clock
        self.runs: list[Run] = []
        self.reads = 0  # run folders read so far (tests: unchanged folders are not re-read)
        self._cache: dict = {}  # realpath -> (signature, time read, Run)
        self._real: dict = {}  # folder -> its realpath (two PATHs may hold the same run)
        self._summaries: dict = {}  # sweep folder -> (signature, state)

    def poll(self) -> bool:
        """Look again; True when a run appeared, went or changed since the last poll."""
        found, seen = [], set()
        for p in self.paths:
            for d in find_run_dirs(p):  # ResultsError if a PATH went away
                key = self._real.get(d)
                if key is None:
                    key = self._real[d] = os.path.realpath(d)
                if key not in seen:
                    seen.add(key)
                    found.append((key, d))
        now = self.clock()
        changed = seen != set(self._cache)
        cache = {}
        for key, d in found:
            sig = _signature(d, WATCHED)
            old = self._cache.get(key)
            # a running run is re-read now and then all the same: its process may be gone
            recheck = old and old[2].status == rundir.RUNNING and now - old[1] >= RECHECK_S
            if old and old[0] == sig and not recheck:
                cache[key] = old
                continue
            run = load_run(d, now)
            self.reads += 1
            changed = changed or old is None or old[0] != sig or old[2].status != run.status
            cache[key] = (sig, now, run)
        self._cache = cache
        if changed:
            self.runs = _with_ids([(d, cache[key][2]) for key, d in found])
        return changed

    def sweep_state(self) -> str | None:
        """None unless every PATH is a sweep folder; then "running" until every one's
        summary.json says it is over, then the end state ("finished", or e.g. "interrupted")."""
        states = []
        for p in self.paths:
            if not (p / PLAN).is_file():
                return None
            sig = _signature(p, (SUMMARY,))
            old = self._summaries.get(p)
            if old is None or old[0] != sig:
                old = (sig, _state(p / SUMMARY))
                self._summaries[p] = old
            states.append(old[1])
        if not states or any(s not in ENDED for s in states):
            return "running"
        return ", ".join(dict.fromkeys(states))


def _state(path: Path) -> str:
    """summary.json's state; "running" when there is none yet or it cannot be read (it is
    written atomically, so that is no write in progress, but a damaged file must not end the
    watch)."""
    try:
        state = json.loads(path.read_text(encoding="utf-8")).get("state")
    except (OSError, ValueError, AttributeError):
        return "running"
    return state if isinstance(state, str) else "running"


def _with_ids(pairs) -> list[Run]:
    """The runs ordered by path with ids relative to the folder holding them all, as
    results.load_runs names them (a new run can change the common folder: ids are set again)."""
    pairs = sorted(pairs, key=lambda p: natural_key(str(p[0])))
    absolute = [os.path.abspath(d) for d, _ in pairs]
    if not absolute:
        return []
    common = os.path.commonpath(absolute)
    if len(absolute) == 1 or common in absolute:
        common = os.path.dirname(common)
    for a, (_, run) in zip(absolute, pairs):
        run.id = Path(os.path.relpath(a, common)).as_posix()
    return [run for _, run in pairs]


@dataclass
class Frame:
    """One state of the watched runs, as shown."""

    text: str  # the table as `runner compare` writes it (or a message: no runs yet, ...)
    is_table: bool
    counts: str  # "5 completed, 3 running"
    news: dict = field(default_factory=dict)  # run path -> (id, status, line) of the selected


def _tty_buffer() -> io.StringIO:
    class Buffer(io.StringIO):
        def isatty(self) -> bool:  # render_table styles (and fits to the width) for terminals
            return True

    return Buffer()


@contextmanager
def _columns(width: int | None):
    """render_table fits a terminal's table to the width its own rich Console finds; that is
    the terminal's unless told otherwise (COLUMNS), and the Live display's is what counts."""
    if width is None:
        yield
        return
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width)
    try:
        yield
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


def make_frame(args, runs: list[Run], table_fn, width: int | None, first: bool) -> Frame:
    """The table of the runs as `runner compare ARGS` shows it: styled for a terminal `width`
    wide, plain text when width is None (piped)."""
    counts = ", ".join(f"{n} {s}" for s, n in Counter(r.status for r in runs).most_common())
    if not runs:
        return Frame(f"no runs under {', '.join(map(str, args.paths))} yet", False, "no runs")
    try:
        t = table_fn(args, runs)
    except NoRuns as e:
        return Frame(str(e), False, counts)
    except ResultsError as e:
        # A key named in --sort/--where may only appear with the first epoch of a run still
        # starting: wait for it; with every run done it never will (bad input, exit 2).
        if first and not any(r.status in (rundir.RUNNING, rundir.INCOMPLETE) for r in runs):
            raise
        return Frame(f"runner: error: {e}", False, counts)
    buf = io.StringIO() if width is None else _tty_buffer()
    with _columns(width):
        render(args.format, t.columns, t.rows, args.precision, t.caption, file=buf)
    keys = [k for k, _ in t.sort_spec if k[0] == "m"][:1] or [("m", "epochs_run")]
    precision = 4 if args.precision is None else args.precision
    news = {}
    for r in t.selected:
        bits = [
            f"{Keys.label(k)} {fmt_number(r.get(k), precision)}"
            for k in keys
            if r.get(k) is not None
        ]
        if keys[0][1] != "epochs_run" and isinstance(r.get(("m", "epochs_run")), int):
            n = r.get(("m", "epochs_run"))
            bits.append(f"{n} epoch{'s' * (n != 1)}")
        why = r.reason or r.metrics.get(WHY.get(r.status, ""))
        if why:
            why = str(why).splitlines()[0]
            bits.append(f"by {why}" if r.status == rundir.PRUNED else why)
        news[str(r.path)] = (r.id, r.status, f"{r.id}  {r.status}  {', '.join(bits)}")
    return Frame(buf.getvalue(), True, counts, news)


class PipeView:
    """Plain text for a pipe or a file: the table, one line per run that ends, the table again
    at the end (when it changed)."""

    def __init__(self, out, clock=time.time):
        self.out, self.clock = out, clock
        self.printed: Frame | None = None  # the last table printed
        self.last: Frame | None = None
        self.statuses: dict = {}  # run path -> status in the last table frame
        self.shown = 0  # frames that printed something

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def width(self) -> None:  # plain text: as wide as it needs
        return None

    def _write(self, text: str) -> None:
        self.out.write(text if text.endswith("\n") else text + "\n")
        self.out.flush()
        self.shown += 1

    def _news(self, frame: Frame) -> None:
        """One line for each run that ended (or turned stale/unreadable) since the last frame."""
        before, self.statuses = self.statuses, {p: n[1] for p, n in frame.news.items()}
        stamp = time.strftime("%H:%M:%S", time.localtime(self.clock()))
        lines = [
            f"{stamp}  {line}"
            for path, (_, status, line) in frame.news.items()
            if status in NEWS and before.get(path) != status
        ]
        if lines:
            self._write("\n".join(lines))

    def show(self, frame: Frame, header: str) -> None:
        if not frame.is_table:
            if self.last is None or self.last.text != frame.text:
                self._write(frame.text)
        elif self.printed is None:
            self._write(frame.text)
            self.printed = frame
            self.statuses = {p: n[1] for p, n in frame.news.items()}
        else:
            self._news(frame)
        self.last = frame

    def end(self, frame: Frame, footer: str) -> None:
        if frame.is_table:
            if self.printed is not None:
                self._news(frame)  # the runs that ended with the sweep get their line too
            if self.printed is None or self.printed.text != frame.text:
                self._write(frame.text)
        elif self.last is None or self.last.text != frame.text:
            self._write(frame.text)
        self._write(footer)


class LiveView:
    """A terminal: the header line and the table in a rich Live display, redrawn only when
    they changed (no refresh thread: nothing flickers while nothing happens)."""

    def __init__(self, console=None):
        from rich.console import Console

        self.console = console or Console(highlight=False)
        self.live = None
        self.key = None
        self.shown = 0

    def width(self) -> int:
        return self.console.width

    def __enter__(self):
        from rich.live import Live

        self.live = Live(
            console=self.console,
            auto_refresh=False,
            transient=False,
            vertical_overflow="ellipsis",  # taller than the terminal: the best rows stay
        )
        self.live.__enter__()
        return self

    def __exit__(self, *exc):
        return self.live.__exit__(*exc)  # draws the last table in full and ends its line

    def _draw(self, frame: Frame, header: str, style: str) -> None:
        from rich.console import Group
        from rich.text import Text

        body = Text.from_ansi(frame.text.rstrip("\n"))
        self.live.update(Group(Text(header, style=style), body), refresh=True)
        self.shown += 1

    def show(self, frame: Frame, header: str) -> None:
        key = (frame.text, frame.counts)  # not the clock in the header: it changes every time
        if key != self.key:
            self.key = key
            self._draw(frame, header, "dim")

    def end(self, frame: Frame, footer: str) -> None:
        self._draw(frame, footer, "bold")


def watch(
    args,
    table_fn,
    *,
    view=None,
    sleep=time.sleep,
    clock=time.time,
    warn=None,
) -> int:
    """The watch loop: poll, show a frame when something changed, stop when the sweep is over
    (0) or at Ctrl-C (KeyboardInterrupt, from `sleep` or anywhere: 130). `view`: PipeView or
    LiveView (default by whether stdout is a terminal); `warn(runs)`: the runs' warnings, once,
    when the watch ends by itself."""
    if view is None:
        view = LiveView() if sys.stdout.isatty() else PipeView(sys.stdout, clock)
    folders = Folders(args.paths, clock)
    interval = 1.0 if args.interval is None else args.interval
    where = ", ".join(map(str, args.paths))
    width = [None]

    def look(first: bool):
        # summary.json first: a sweep writes it after its trials' files, so the runs read
        # next are at least as new as the state that ends the watch
        state = folders.sweep_state()
        changed = folders.poll()
        over = state is not None and state != "running"
        now = view.width()  # a terminal that was resized gets the table laid out again
        if changed or first or now != width[0]:
            width[0] = now
            return state, over, make_frame(args, folders.runs, table_fn, now, first)
        return state, over, None

    try:
        state, over, frame = look(first=True)  # bad input: exit 2 before drawing anything
        with view:
            while True:
                if over:
                    if frame is None:
                        frame = make_frame(args, folders.runs, table_fn, width[0], False)
                    n = len(folders.runs)
                    view.end(frame, f"sweep {state}: {n} run{'s' * (n != 1)} ({frame.counts})")
                    break
                if frame is not None:
                    stamp = time.strftime("%H:%M:%S", time.localtime(clock()))
                    sweep = f"; sweep {state}" if state else ""
                    view.show(
                        frame,
                        f"{stamp} watching {where}: {frame.counts}{sweep} (Ctrl-C to stop)",
                    )
                sleep(interval)
                state, over, frame = look(first=False)
    except KeyboardInterrupt:
        try:
            sys.stdout.flush()
        except OSError:  # e.g. `| tee log` got the same Ctrl-C: silence the flush at exit
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return INTERRUPTED
    if warn:
        warn(folders.runs)
    return 0


def cmd_watch(args, table_fn) -> int:
    check(args)
    from runner.compare import search
    from runner.compare.main import _warn

    def warn(runs) -> None:  # as `runner compare` ends: the runs' warnings, then the edges
        _warn(runs)
        search.warn_edges(args.paths)

    return watch(args, table_fn, warn=warn)
