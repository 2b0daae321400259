"""conf/: where it is, its files' comment headers, the config-group listing shown by
`runner --help`, and composing it in-process (compose()) as the `runner` command does.

Every YAML file under conf/<group>/ starts with a comment header: its first line is a one-line
description of the option, its second line `# run: runner ...` a command that uses it, then any
notes. Hydra's `# @package` directive, where a file needs one, has to come before them (Hydra
stops reading directives at the first other comment line), so directive lines are skipped here.
header() is the one parser of these headers (`runner --help`, scripts/lessons.py, the tests).

conf/hydra/help/runner.yaml puts `${runner_groups:}` in the help template; register_resolver()
must run before Hydra composes the config (runner.cli does it before calling the hydra.main app;
compose() does it too).
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
        if out:
            out.append("")
        out.append(f"{group} (default: {'null' if default is None else default})")
        for opt in opts:
            out.append(f"  {opt.ljust(width)}  {describe(conf / group / (opt + '.yaml'))}".rstrip())
    return "\n".join(out)


def register_resolver(conf: Path | None = None) -> None:
    """Register the OmegaConf resolver `runner_groups` used by conf/hydra/help/runner.yaml."""
    from omegaconf import OmegaConf

    conf = Path(conf) if conf is not None else conf_dir()
    # Hydra feeds the resolved template to string.Template, where '$' starts a placeholder.
    OmegaConf.register_new_resolver(
        "runner_groups", lambda: groups_help(conf).replace("$", "$$"), replace=True
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
