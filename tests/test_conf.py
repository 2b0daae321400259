"""The Hydra config tree conf/: every option composes, validates and documents itself.

The options are enumerated from the folders, so a new YAML file is tested without being listed.
"""
from __future__ import annotations

import dataclasses
import functools
import re
import subprocess
import sys
import textwrap
import typing
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from runner.config import Config, RegularizationConfig, validate
from runner.help import conf_dir, groups, groups_help, header_lines, register_resolver

CONF = conf_dir()
GROUPS = [p.name for p in sorted(CONF.iterdir()) if p.is_dir() and p.name != "hydra"]
OPTIONS = [(g, f.stem) for g in GROUPS for f in sorted((CONF / g).glob("*.yaml"))]
YAMLS = sorted(CONF.rglob("*.yaml"))

# Options whose `name` is another option's: aliases and the datasets read through the idx loader.
ALIASES = {("init", "xavier_normal"): "glorot_normal", ("init", "xavier_uniform"): "glorot_uniform",
           ("init", "kaiming_normal"): "he_normal", ("init", "kaiming_uniform"): "he_uniform",
           ("data", "mnist"): "idx", ("data", "fashion_mnist"): "idx"}
# Validation needs a path (and a target column for csv); nothing is read here.
NEEDS = {"csv": ["data.path=my.csv", "data.target=price"], "npz": ["data.path=my.npz"],
         "idx": ["data.path=data/mnist"]}
# Keys every option of a group lists explicitly.
SHARED_KEYS = {
    "data": ["name", "task", "val_fraction", "test_fraction", "split_seed", "preprocessing",
             "max_samples"],
    "model": ["name", "depth", "width", "widths", "head"],
    "activation": ["name"],
    "init": ["name", "bias"],
    "optimizer": ["name", "lr"],
    "schedule": ["name", "unit", "warmup", "warmup_start"],
}
# Groups whose dataclass has no `name` field.
NAMELESS = {"regularization", "trainer"}


@pytest.fixture(scope="module")
def hydra_conf():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        yield


def make(overrides=(), hydra=False):
    return _make(tuple(overrides), hydra).copy()


@functools.lru_cache(maxsize=None)
def _make(overrides, hydra):
    # Each compose costs ~0.1 s; the tests ask for some configs several times.
    return compose("config", overrides=list(overrides), return_hydra_config=hydra)


def leaves(node: dict, prefix=""):
    for key, value in node.items():
        if isinstance(value, dict):
            yield from leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def body(path: Path) -> dict:
    """The keys a YAML file sets itself (its defaults list left out)."""
    node = OmegaConf.to_container(OmegaConf.load(path))
    node.pop("defaults", None)
    return node


def test_groups_are_the_expected_ones():
    assert set(GROUPS) == {"data", "model", "activation", "init", "optimizer", "schedule",
                           "regularization", "trainer", "experiment"}
    assert groups(CONF) == ["data", "model", "activation", "init", "optimizer", "schedule",
                            "regularization", "trainer", "experiment"]


def test_default_config_validates(hydra_conf):
    cfg = validate(make())
    assert (cfg.data.name, cfg.model.name, cfg.activation.name, cfg.init.name,
            cfg.optimizer.name, cfg.schedule.name) == ("digits", "mlp", "relu", "auto", "adam",
                                                       "constant")
    assert cfg.model.hidden == (128, 128)
    assert (cfg.seed, cfg.name) == (0, "run")


@pytest.mark.parametrize("group,option", [o for o in OPTIONS if o[0] != "experiment"])
def test_every_option_composes_and_validates(hydra_conf, group, option):
    raw = make([f"{group}={option}"])
    name = ALIASES.get((group, option), option)
    extra = NEEDS.get(raw.data.name, []) if group == "data" and raw.data.get("path") is None else []
    cfg = validate(make([f"{group}={option}", *extra]))
    if group not in NAMELESS:
        assert getattr(cfg, group).name == name
        assert body(CONF / group / f"{option}.yaml").get("name") == name, "sets name: explicitly"


@pytest.mark.parametrize("group,option", [o for o in OPTIONS if o[0] not in NAMELESS | {"experiment"}])
def test_every_option_shows_its_knobs(hydra_conf, group, option):
    """Hydra's struct mode rejects overrides of keys the chosen YAML lacks, so each option lists
    the knobs a user may want to change: those every option of its group shares, and each field
    whose doc in runner.config names the option (e.g. 'cyclic: ...', 'momentum, nesterov, rmsprop')."""
    node = make([f"{group}={option}"])[group]
    cls = typing.get_type_hints(Config)[group]
    wanted = set(SHARED_KEYS[group])
    for f in dataclasses.fields(cls):
        subject = f.metadata.get("doc", "").split(":")[0]  # 'time_based and exponential: ...'
        if re.search(rf"\b{re.escape(node.name)}\b", subject):
            wanted.add(f.name)
    assert wanted <= set(node), sorted(wanted - set(node))


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: str(p.relative_to(CONF)))
def test_every_yaml_starts_with_a_description_and_a_run_line(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    directives = [l for l in lines if l.startswith("# @")]
    # Hydra reads `# @package` only before any other comment line.
    assert lines[:len(directives)] == directives
    head = header_lines(path)
    assert len(head) >= 2, "needs a description line and a run line"
    assert lines[len(directives)].startswith("# ") and head[0] and not head[0].startswith("run:")
    assert head[1].startswith("run: runner"), head[1]
    if path.parent.name in GROUPS:  # `runner --help` lines stay within 100 columns
        assert len(head[0]) <= 81, f"shorten the description to 81 characters: {head[0]}"


def test_regularization_presets_change_only_their_own_keys(hydra_conf):
    none = OmegaConf.to_container(make(["regularization=none"]).regularization)
    assert none == {f.name: (f.default if f.default is not dataclasses.MISSING else f.default_factory())
                    for f in dataclasses.fields(RegularizationConfig)}, "none lists every default"
    for path in sorted((CONF / "regularization").glob("*.yaml")):
        reg = OmegaConf.to_container(make([f"regularization={path.stem}"]).regularization)
        assert reg.keys() == none.keys(), path.stem
        own = body(path)
        changed = {k for k in none if reg[k] != none[k]}
        assert changed == set(own) or path.stem == "none", path.stem
        assert all(reg[k] == v for k, v in own.items())


def test_regularization_knobs_combine_from_the_shell(hydra_conf):
    cfg = validate(make(["regularization=l2", "regularization.dropout=0.3",
                         "regularization.clip_norm=1.0", "regularization.dropout_layers=[0.1,0.2]"]))
    r = cfg.regularization
    assert (r.l2, r.dropout, r.clip_norm, r.dropout_layers) == (1e-4, 0.3, 1.0, [0.1, 0.2])


def test_trainer_quick_inherits_default(hydra_conf):
    quick = make(["trainer=quick"]).trainer
    default = make().trainer
    assert quick.epochs == 3
    assert {k: v for k, v in quick.items() if k != "epochs"} == \
        {k: v for k, v in default.items() if k != "epochs"}


@pytest.mark.parametrize("option", [o for g, o in OPTIONS if g == "experiment"])
def test_experiments_compose_and_override_groups(hydra_conf, option):
    path = CONF / "experiment" / f"{option}.yaml"
    assert path.read_text().startswith("# @package _global_\n")
    base = make()
    cfg = make([f"experiment={option}"])
    validate(cfg)
    picks = {}
    for entry in OmegaConf.to_container(OmegaConf.load(path)).get("defaults", []):
        if isinstance(entry, dict):
            for key, value in entry.items():
                assert key.startswith("override /"), key
                picks[key.split("/", 1)[1]] = value
    assert picks, "an experiment should pick options of some groups"
    for group, value in picks.items():
        plain = make([f"{group}={value}"])[group]
        assert cfg[group].get("name") == plain.get("name") != base[group].get("name")
    # the body's keys win over the groups it picked, and command-line overrides over both
    for key, value in leaves(body(path)):
        assert OmegaConf.select(cfg, key) == value, key
    assert make([f"experiment={option}", "optimizer.lr=0.123", "seed=7"]).optimizer.lr == 0.123


def test_example_experiment(hydra_conf):
    cfg = validate(make(["experiment=example"]))
    assert (cfg.data.name, cfg.model.name, cfg.activation.name, cfg.optimizer.name,
            cfg.schedule.name, cfg.optimizer.lr, cfg.name) == (
        "mnist1d", "resmlp", "elu", "nesterov", "cyclic", 0.05, "example")


def test_unknown_option_fails_composition(hydra_conf):
    from hydra.errors import MissingConfigException
    with pytest.raises(MissingConfigException):
        make(["activation=foo"])


def test_groups_help_lists_every_option_with_its_description():
    text = groups_help(CONF)
    lines = text.splitlines()
    headings = [l for l in lines if l and not l.startswith(" ")]
    assert headings == [
        "data (default: digits)", "model (default: mlp)", "activation (default: relu)",
        "init (default: auto)", "optimizer (default: adam)", "schedule (default: constant)",
        "regularization (default: none)", "trainer (default: default)",
        "experiment (default: null)"]
    for group, option in OPTIONS:
        desc = header_lines(CONF / group / f"{option}.yaml")[0]
        i = lines.index(next(h for h in headings if h.startswith(group + " ")))
        section = lines[i + 1:]
        section = section[:section.index("")] if "" in section else section
        assert any(l.split()[0] == option and l.endswith(desc) for l in section), (group, option)
    # descriptions start in one column, two spaces after the longest option name
    width = max(len(o) for _, o in OPTIONS)
    for group, option in OPTIONS:
        desc = header_lines(CONF / group / f"{option}.yaml")[0]
        assert f"  {option.ljust(width)}  {desc}" in lines


def test_help_template_resolves_with_the_resolver(hydra_conf):
    register_resolver(CONF)
    cfg = make(hydra=True)
    template = cfg.hydra.help.template
    assert "== Config groups ==" in template and "== Examples ==" in template
    assert groups_help(CONF) in template
    assert "runner -m optimizer=sgd,adam" in template and "runner --cfg job" in template


def test_runner_help_end_to_end(tmp_path):
    """`--help` of a hydra.main app on conf/ prints the groups, as runner --help will."""
    app = tmp_path / "app.py"
    app.write_text(textwrap.dedent(f"""
        import hydra
        from runner.help import register_resolver
        register_resolver()

        @hydra.main(version_base="1.3", config_path={str(CONF)!r}, config_name="config")
        def main(cfg):
            print("RAN")

        main()
        """))
    out = subprocess.run([sys.executable, str(app), "--help"], capture_output=True, text=True,
                         cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "RAN" not in out.stdout
    assert out.stdout.startswith("runner: ")
    assert groups_help(CONF) in out.stdout
    assert 'eval "$(runner --shell-completion install=bash)"' in out.stdout
    assert not (tmp_path / "outputs").exists()
