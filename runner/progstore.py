"""Compiled programs kept on disk across processes, so that a structure seen before skips
tracing, lowering and compiling: runner.core.programs.Programs asks its `store` on a miss in
memory and hands it what it compiles (runtime.enable_compilation_cache installs one).

JAX's persistent compilation cache (paths.jax_cache) already skips XLA's compile on a repeated
command, but only after JAX has traced and lowered the program again to compute its key: ~1 s
of a warm default run (docs/performance.md). This store is keyed without tracing: by the text
Programs builds from what it knows (runner.core.programs.store_key: function, spec, static
arguments, argument signature, compile options) and by what the traced code depends on outside
that (`fingerprint`: the versions of runner, of its traced sources, of Python, JAX and the
libraries, the backend and its devices, XLA's and JAX's environment variables; `jax_settings`:
JAX's configuration). An entry is `jax.experimental.serialize_executable`'s serialization of the
compiled program, loaded back with deserialize_and_load.

The store lives in `<jax_cache>/runner-programs/` (off with paths.jax_cache=off, or alone with
RUNNER_PROGRAM_STORE=off). It is a cache: a missing, damaged or unloadable entry is a miss (the
program is compiled and the entry rewritten), never an error. Writers (joblib workers, parallel
tests) write a temporary file and os.replace it: readers see a whole entry or none. It is kept
under MAX_BYTES by dropping the least recently used entries (a load touches its file).

Entries are pickles that load executable code: like JAX's own cache, the folder must be
trusted (it is the user's own cache folder).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

SUBDIR = "runner-programs"
ENV = "RUNNER_PROGRAM_STORE"  # off / 0 / false / no: no store (JAX's cache stays on)
_OFF = ("0", "off", "false", "no", "none")
# Bumped when an entry's layout changes: entries of another layout are not even looked at.
FORMAT = 2
_MAGIC = b"runner-program\n"
_SUFFIX = ".prog"
# On a CPU a default run's three programs take ~1.2 MB, a small vmapped group's four ~1.4 MB:
# 256 MB keeps ~200 structures, more than a person cycles through, without growing without
# bound next to JAX's own cache. Pruning drops to PRUNE_TO of it, so that it runs rarely.
MAX_BYTES = 256 * 2**20
PRUNE_TO = 0.75
# Temporary files older than this are left over by a killed writer.
_STALE_TMP_SECONDS = 3600.0
# How many threads are inside ProgramStore.compiling, and JAX's cache setting before the first.
_COMPILING_LOCK = threading.Lock()
_COMPILING = 0
_CACHE_WAS = False

# The runner modules traced code reads (runner.core imports only core and runner.config), and
# this module (the layout of an entry): an edited checkout invalidates its entries.
_TRACED_SOURCES = ("core", "config.py", "progstore.py", "__init__.py")
# Environment variables that change what XLA or JAX build.
_ENV_PREFIXES = ("XLA_", "JAX_", "LIBTPU_", "TPU_", "CUDA_VISIBLE", "ROCR_", "HIP_VISIBLE")
# JAX settings (jax.config) named with these only say where files go or what is logged.
_IRRELEVANT_SETTINGS = ("cache", "log", "dump", "pprint", "traceback", "source_url", "timeout")


_LIBRARIES = ("jax", "jaxlib", "optax", "flax", "numpy", "ml_dtypes")


def _version(name: str) -> str:
    """A library's version without importing it: a run whose programs all load from the store
    never imports flax (~1 s). An imported module says it; else the name of its installed
    distribution's metadata folder next to the package (NAME-VERSION.dist-info) does."""
    module = sys.modules.get(name)
    if getattr(module, "__version__", None):
        return str(module.__version__)  # type: ignore[union-attr]
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None or not spec.origin:
        return "absent"
    parent = Path(spec.origin).resolve().parent.parent
    with contextlib.suppress(OSError):
        prefix = f"{name.replace('-', '_')}-"
        for entry in os.listdir(parent):
            if entry.startswith(prefix) and entry.endswith(".dist-info"):
                return entry[len(prefix) : -len(".dist-info")]
    # Installed another way (a source checkout on sys.path): ask the module itself.
    return str(getattr(importlib.import_module(name), "__version__", "unknown"))


def versions() -> tuple[tuple[str, str], ...]:
    """(name, version) of Python, runner and each library whose code ends up in a program."""
    import runner

    return (
        ("python", sys.version),
        ("runner", runner.__version__),
        *((name, _version(name)) for name in _LIBRARIES),
    )


def _hash_files(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(str(p.name).encode() + b"\0")
        try:
            h.update(p.read_bytes())
        except OSError:
            h.update(b"<unreadable>")
    return h.hexdigest()


def source_hash() -> str:
    """A hash of the runner sources that traced code reads (_TRACED_SOURCES)."""
    root = Path(__file__).resolve().parent
    files: list[Path] = []
    for name in _TRACED_SOURCES:
        p = root / name
        files += sorted(p.rglob("*.py")) if p.is_dir() else [p]
    return _hash_files(files)


def backend() -> tuple:
    """The platform, its version (a GPU plugin's included) and the devices programs run on."""
    import jax

    devices = jax.devices()
    return (
        jax.default_backend(),
        devices[0].client.platform_version,
        jax.process_count(),
        tuple((d.id, d.device_kind) for d in devices),
    )


def environment() -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES)))


_FINGERPRINT: str | None = None


def fingerprint() -> str:
    """What every program depends on outside its own key, computed once per process: versions,
    runner's traced sources, backend and devices, environment (~2 ms)."""
    global _FINGERPRINT
    if _FINGERPRINT is None:
        _FINGERPRINT = repr((FORMAT, versions(), source_hash(), backend(), environment()))
    return _FINGERPRINT


def jax_settings() -> str:
    """JAX's configuration (x64, PRNG implementation, matmul precision, partitioner, ...): read
    at each lookup, since a process may change it."""
    import jax

    values = getattr(jax.config, "values", {})
    return repr(
        sorted(
            (k, repr(v))
            for k, v in values.items()
            if not any(word in k for word in _IRRELEVANT_SETTINGS)
        )
    )


_MODULE_HASHES: dict[str, str] = {}


def module_hash(fn: Callable) -> str:
    """A hash of the source of fn's module when it is not one of runner's traced sources (a
    test's function, say): editing it invalidates its programs."""
    name = getattr(fn, "__module__", None) or ""
    if name.startswith("runner."):
        return ""  # covered by source_hash for runner.core; other runner code is never traced
    if name not in _MODULE_HASHES:
        file = getattr(sys.modules.get(name), "__file__", None)
        _MODULE_HASHES[name] = _hash_files([Path(file)]) if file else "?"
    return _MODULE_HASHES[name]


class ProgramStore:
    """Serialized executables in `folder`, one file per digest (see the module docstring)."""

    def __init__(self, folder: str | os.PathLike, max_bytes: int = MAX_BYTES):
        self.folder = Path(folder)
        self.max_bytes = max_bytes

    def text(self, fn: Callable, key: str) -> str:
        """Everything the executable of (fn, key) depends on, as text."""
        return "\n".join((fingerprint(), module_hash(fn), jax_settings(), key))

    def path(self, text: str) -> Path:
        return self.folder / (hashlib.sha256(text.encode()).hexdigest() + _SUFFIX)

    def load(self, fn: Callable, key: str) -> Any:
        """The executable stored for (fn, key), or None: absent, damaged, written by another
        layout, or not loadable here."""
        text = self.text(fn, key)
        path = self.path(text)
        try:
            blob = path.read_bytes()
        except OSError:
            return None
        try:
            n = len(_MAGIC)
            if blob[:n] != _MAGIC or hashlib.sha256(blob[n + 32 :]).digest() != blob[n : n + 32]:
                return None
            stored_text, payload = pickle.loads(blob[n + 32 :])
            if stored_text != text:
                return None  # a digest collision: never load another program
            import jax
            from jax.experimental.serialize_executable import deserialize_and_load

            serialized, in_tree, out_tree, device_ids = payload
            by_id = {d.id: d for d in jax.devices()}
            # On the devices it was compiled for: deserialize_and_load's default (all of them)
            # breaks a one-device program in a process with several (runtime.host_devices).
            exe = deserialize_and_load(
                serialized, in_tree, out_tree, execution_devices=[by_id[i] for i in device_ids]
            )
        except Exception:  # noqa: BLE001 - unloadable: compiled again and rewritten
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used: kept longest by prune
        return exe

    @contextlib.contextmanager
    def compiling(self) -> Iterator[None]:
        """The context a program to be saved is compiled in: without JAX's persistent cache.
        An executable JAX loaded from its cache can serialize without its kernels (XLA:CPU
        with xla_cpu_use_fusion_emitters=False: "Function ..._kernel not found" when the entry
        runs), so what the store keeps is always freshly compiled. JAX decides whether to use
        its cache once per process: reset_cache makes it decide again, before and after.
        Threads may overlap in it (Programs.start compiles in the background): the first in
        turns JAX's cache off, the last out turns it back on."""
        import jax
        from jax.experimental.compilation_cache import compilation_cache

        global _COMPILING, _CACHE_WAS
        with _COMPILING_LOCK:
            if _COMPILING == 0:
                _CACHE_WAS = jax.config.jax_enable_compilation_cache  # type: ignore[attr-defined]
                jax.config.update("jax_enable_compilation_cache", False)
                compilation_cache.reset_cache()
            _COMPILING += 1
        try:
            yield
        finally:
            with _COMPILING_LOCK:
                _COMPILING -= 1
                if _COMPILING == 0:
                    jax.config.update("jax_enable_compilation_cache", _CACHE_WAS)
                    compilation_cache.reset_cache()

    def save(self, fn: Callable, key: str, exe: Any) -> None:
        """Store exe for (fn, key); quietly nothing if it cannot be serialized or written."""
        try:
            from jax.experimental.serialize_executable import serialize

            text = self.text(fn, key)
            payload = (*serialize(exe), _device_ids(exe))
            body = pickle.dumps((text, payload), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # noqa: BLE001 - not serializable (closed-over constants): not kept
            return
        blob = _MAGIC + hashlib.sha256(body).digest() + body
        path = self.path(text)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            # No fsync: a file cut short by a crash fails its checksum and is a miss.
            tmp.write_bytes(blob)
            os.replace(tmp, path)
        except OSError:
            _remove(tmp)
            return
        self.prune()

    def prune(self) -> None:
        """Keep the folder under max_bytes: drop the least recently used entries (oldest mtime)
        down to PRUNE_TO of it, and temporary files a killed writer left. Entries another
        process removes meanwhile are skipped."""
        entries, total, now = [], 0, time.time()
        try:
            with os.scandir(self.folder) as it:
                for e in it:
                    try:
                        st = e.stat()
                    except OSError:
                        continue
                    if e.name.endswith(".tmp"):
                        if now - st.st_mtime > _STALE_TMP_SECONDS:
                            _remove(e.path)
                    elif e.name.endswith(_SUFFIX):
                        entries.append((st.st_mtime, st.st_size, e.path))
                        total += st.st_size
        except OSError:
            return
        if total <= self.max_bytes:
            return
        for _, size, p in sorted(entries):
            if total <= self.max_bytes * PRUNE_TO:
                break
            _remove(p)
            total -= size


def _device_ids(exe: Any) -> list[int]:
    """The ids of the devices exe runs on, in its device assignment's order (JAX keeps them
    where serialize_executable reads the executable from)."""
    return [d.id for d in exe._executable._unloaded_executable.device_list]


def _remove(path: str | os.PathLike) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)


_OPEN: dict[str, ProgramStore] = {}


def open_store(jax_cache: str | None) -> ProgramStore | None:
    """The store under JAX's cache folder `jax_cache` (None: off), or None when
    RUNNER_PROGRAM_STORE turns it off. One object per folder for the process."""
    if jax_cache is None or os.environ.get(ENV, "").strip().lower() in _OFF:
        return None
    folder = os.path.join(jax_cache, SUBDIR)
    if folder not in _OPEN:
        _OPEN[folder] = ProgramStore(folder)
    return _OPEN[folder]
