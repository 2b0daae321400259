"""The config-group listing shown by `runner --help`.

Every YAML file under conf/<group>/ starts with a comment header: its first line is a one-line
description of the option, its second line `# run: runner ...` a command that uses it. Hydra's
`# @package` directive, where a file needs one, has to come before them (Hydra stops reading
directives at the first other comment line), so directive lines are skipped here.

conf/hydra/help/runner.yaml puts `${runner_groups:}` in the help template; register_resolver()
must run before Hydra composes the config (runner.cli does it before calling the hydra.main app).
"""
from __future__ import annotations

from pathlib import Path

# The order of `runner --help`; any other group folder follows, alphabetically.
GROUP_ORDER = ("data", "model", "activation", "init", "optimizer", "schedule", "regularization",
               "trainer", "experiment")


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


def describe(path: Path) -> str:
    """The option's one-line description: the first line of its header."""
    lines = header_lines(path)
    return lines[0] if lines else ""


def groups(conf: Path) -> list[str]:
    """Config-group folders of conf/ in help order (hydra/ is Hydra's own, not listed)."""
    found = [p.name for p in Path(conf).iterdir()
             if p.is_dir() and p.name != "hydra" and not p.name.startswith((".", "_"))
             and any(p.glob("*.yaml"))]
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
        "runner_groups", lambda: groups_help(conf).replace("$", "$$"), replace=True)
