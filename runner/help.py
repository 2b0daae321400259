"""conf/: where it is, its files' comment headers, the config-group listing shown by
`runner --help`, and composing it in-process (compose()) as the `runner` command does.

Every YAML file under conf/<group>/ starts with a comment header: its first line is a one-line
description of the option, its second line `# run: runner ...` a command that uses it, then any
notes. Hydra's `# @package` directive, where a file needs one, has to come before them (Hydra
stops reading directives at the first other comment line), so directive lines are skipped here.
header() is the one parser of these headers (`runner --help`, scripts/lessons.py, the tests).

conf/hydra/help/runner.yaml puts `${runner_groups:}`, `${runner_commands:}` (runner.cli's
subcommands) and `${runner_plugins:}` (sweepers, launchers) in the help template;
register_resolver() must run before Hydra composes the config (runner.cli does it before
calling the hydra.main app; compose() does it too).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# The order of `runner --help`; any other group folder follows, alphabetically.
GROUP_ORDER = (
    "data",
    "model",
    "activation",
    "init",
    "optimizer",
    "schedule",
    "regularization",
    "trainer",
    "paths",
    "logger",
    "experiment",
    "debug",
)


def conf_dir() -> Path:
    """The package's own conf/ folder (runner/conf, shipped as package data; the repository's
    top-level conf is a link to it), so an installed wheel finds its configs from any folder."""
    return Path(__file__).resolve().parent / "conf"


def header_lines(path: Path) -> list[str]:
    """The leading comment lines of a YAML file, '# ' stripped, Hydra '# @' directives skipped."""
    lines = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        s = line.strip()
        if not s.startswith("#"):
            break
        if s.lstrip("#").strip().startswith("@"):
            continue
        lines.append(s[1:].strip())
    return lines


@dataclass
class Header:
    description: str  # line 1: what `runner --help` shows
    run: str | None  # line 2 after `run: `: a command that uses the file, if it has one
    notes: list[str]  # the lines after them


def header(path: Path) -> Header:
    """A conf file's comment header, split into its description, run command and notes."""
    lines = header_lines(path)
    run = (
        lines[1][len("run:") :].strip() if len(lines) > 1 and lines[1].startswith("run:") else None
    )
    return Header(lines[0] if lines else "", run, lines[2 if run is not None else 1 :])


def describe(path: Path) -> str:
    """The option's one-line description: the first line of its header."""
    return header(path).description


def groups(conf: Path) -> list[str]:
    """Config-group folders of conf/ in help order (hydra/ is Hydra's own, not listed)."""
    found = [
        p.name
        for p in Path(conf).iterdir()
        if p.is_dir()
        and p.name != "hydra"
        and not p.name.startswith((".", "_"))
        and any(p.glob("*.yaml"))
    ]
    known = [g for g in GROUP_ORDER if g in found]
    return known + sorted(set(found) - set(known))


def options(conf: Path, group: str) -> list[str]:
    return sorted(p.stem for p in (Path(conf) / group).glob("*.yaml"))


def defaults(conf: Path) -> dict[str, str | None]:
    """group -> default option, from the primary config's defaults list."""
    from omegaconf import OmegaConf

    out: dict[str, str | None] = {}
    primary = OmegaConf.to_container(OmegaConf.load(Path(conf) / "config.yaml"))
    for entry in primary.get("defaults", []):
        if not isinstance(entry, dict):
            continue  # _self_
        for key, value in entry.items():
            words = key.split()
            if "override" in words[:-1]:
                continue
            out[words[-1].lstrip("/")] = value
    return out


def groups_help(conf: Path) -> str:
    """One heading per group, `group (default: X)`, then `  option  description` lines (options
    aligned across groups, a blank line between groups)."""
    conf = Path(conf)
    chosen = defaults(conf)
    listing = [(g, options(conf, g)) for g in groups(conf)]
    width = max((len(o) for _, opts in listing for o in opts), default=0)
    out = []
    for group, opts in listing:
        default = chosen.get(group)
        if isinstance(default, list):  # a group of several at once: logger=[a,b]
            default = ",".join(map(str, default))
        if out:
            out.append("")
        out.append(f"{group} (default: {'null' if default is None else default})")
        for opt in opts:
            out.append(f"  {opt.ljust(width)}  {describe(conf / group / (opt + '.yaml'))}".rstrip())
    return "\n".join(out)


# hydra/sweeper and hydra/launcher options, for `runner --help`: name -> (one line, the module
# that must be importable for it to work, the install command when it is not). Hydra's own
# discovery of its plugins takes ~0.6 s, so these are listed here; tests/test_terminal.py checks
# the lists against what Hydra discovers.
SWEEPERS = {
    "runner": ("the default: Hydra's grid (a,b,c; range) plus logspace() and geomspace()", None),
    "random": ("n_trials random trials (seeded): interval, tag(log,...), choice, range", None),
    "coarse_to_fine": ("random search in stages: 16 trials of 3 epochs, then 8 of 15", None),
    "sha": (
        "successive halving: n_trials for min_epochs, the best 1/eta go on, to max_epochs",
        None,
    ),
    "hyperband": ("Hyperband (Li et al. 2018): brackets of successive halving", None),
    "tpe": (
        "Optuna's TPE, learning from finished trials",
        ("optuna", "pip install -e '.[optuna]'"),
    ),
    "basic": ("Hydra's own grid sweeper: no summary files, tables or best.yaml", None),
}
_CLUSTER = ("hydra_plugins.hydra_submitit_launcher", "pip install -e '.[cluster]'")
LAUNCHERS = {
    "vmap": ("the default: trials of one structure train as one jax.vmap-ed program", None),
    "basic": ("Hydra's own: one trial after another, each with its own progress line", None),
    "joblib": (
        "local processes, hydra.launcher.n_jobs at a time",
        ("hydra_plugins.hydra_joblib_launcher", "pip install -e '.[cluster]'"),
    ),
    "submitit_local": ("submitit jobs on this machine", _CLUSTER),
    "submitit_slurm": ("Hydra's SLURM launcher (submitit)", _CLUSTER),
    "slurm": ("a SLURM job array: submitit_slurm with conf/hydra/launcher/slurm.yaml", _CLUSTER),
}


def _installed(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def plugins_help() -> str:
    """The sweepers and launchers, `hydra/sweeper=NAME  what it does`, those whose package is
    missing marked with the command that installs it."""
    out = []
    for group, listing, default in (
        ("hydra/sweeper", SWEEPERS, "runner"),
        ("hydra/launcher", LAUNCHERS, "vmap"),
    ):
        if out:
            out.append("")
        out.append(f"{group} (default: {default})")
        width = max(len(n) for n in listing)
        for name, (what, needs) in listing.items():
            if needs and not _installed(needs[0]):
                what += f" [not installed: {needs[1]}]"
            out.append(f"  {name.ljust(width)}  {what}")
    return "\n".join(out)


def _docstring_line(module: str) -> str:
    """The first line of a module's docstring, found and parsed without importing the module
    (its package's __init__ is imported), less a leading "`runner NAME ...`: "."""
    import ast
    import importlib.util
    import re

    try:
        spec = importlib.util.find_spec(module)
        source = Path(spec.origin).read_text(encoding="utf-8")
        doc = ast.get_docstring(ast.parse(source)) or ""
    except (ImportError, OSError, SyntaxError, AttributeError, ValueError):
        return ""
    first = doc.strip().splitlines()[0] if doc.strip() else ""
    return re.sub(r"^`runner [^`]*`:\s*", "", first)


def subcommands() -> tuple[dict[str, str], dict[str, str]]:
    """runner.cli's SUBCOMMANDS (name -> module) and SUBCOMMAND_HELP (name -> one line), read
    from its source: runner.cli is the entry point, which nothing imports (pyproject's import
    contracts), and both are plain dict literals."""
    import ast

    tree = ast.parse((Path(__file__).parent / "cli.py").read_text(encoding="utf-8"))
    found = {}
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if isinstance(t, ast.Name) and t.id in ("SUBCOMMANDS", "SUBCOMMAND_HELP"):
                    found[t.id] = ast.literal_eval(node.value)
    return found.get("SUBCOMMANDS", {}), found.get("SUBCOMMAND_HELP", {})


def command_descriptions(commands=None, described=None) -> dict[str, str]:
    """Subcommand -> one line, for every command of runner.cli.SUBCOMMANDS (or `commands`), in
    its order: its SUBCOMMAND_HELP line, else the first line of its module's docstring."""
    if commands is None:
        commands, described = subcommands()
    described = described or {}
    return {
        name: described.get(name) or _docstring_line(module) for name, module in commands.items()
    }


def commands_help(commands=None, described=None) -> str:
    """`  NAME  what it does` for every subcommand."""
    described = command_descriptions(commands, described)
    width = max(len(n) for n in described)
    return "\n".join(f"  {name.ljust(width)}  {what}".rstrip() for name, what in described.items())


def register_resolver(conf: Path | None = None) -> None:
    """Register the OmegaConf resolvers used by conf/hydra/help/runner.yaml: runner_groups,
    runner_commands and runner_plugins."""
    from omegaconf import OmegaConf

    conf = Path(conf) if conf is not None else conf_dir()
    groups: list[str] = []  # made once: Hydra resolves the template in every composition

    def runner_groups() -> str:
        if not groups:
            groups.append(groups_help(conf))
        return groups[0]

    # Hydra feeds the resolved template to string.Template, where '$' starts a placeholder.
    OmegaConf.register_new_resolver(
        "runner_groups", lambda: runner_groups().replace("$", "$$"), replace=True
    )
    OmegaConf.register_new_resolver(
        "runner_commands", lambda: commands_help().replace("$", "$$"), replace=True
    )
    OmegaConf.register_new_resolver(
        "runner_plugins", lambda: plugins_help().replace("$", "$$"), replace=True
    )


def compose(overrides=(), return_hydra_config: bool = False):
    """The config (a DictConfig) that `runner OVERRIDES` composes from conf/, composed in this
    process: the tests, `runner gradcheck` and scripts/lessons.py use it. A Hydra already set up
    in this process (a hydra.main app, an outer compose) is set aside meanwhile and put back.
    hydra.run.dir's unique_dir resolver is not registered: resolving it would claim a folder."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_resolver(conf_dir())
    outer = GlobalHydra.instance().hydra
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            return hydra_compose(
                "config", overrides=list(overrides), return_hydra_config=return_hydra_config
            )
    finally:
        GlobalHydra.instance().hydra = outer
