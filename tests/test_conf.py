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
from omegaconf import OmegaConf

from runner.config import Config, ConfigError, RegularizationConfig, validate
from runner.help import (
    compose,
    conf_dir,
    groups,
    groups_help,
    header,
    header_lines,
    register_resolver,
)

CONF = conf_dir()
GROUPS = [p.name for p in sorted(CONF.iterdir()) if p.is_dir() and p.name != "hydra"]
OPTIONS = [(g, f.stem) for g in GROUPS for f in sorted((CONF / g).glob("*.yaml"))]
YAMLS = sorted(CONF.rglob("*.yaml"))

# Options whose `name` is another option's: aliases and the datasets read through the idx loader.
ALIASES = {
    ("init", "xavier_normal"): "glorot_normal",
    ("init", "xavier_uniform"): "glorot_uniform",
    ("init", "kaiming_normal"): "he_normal",
    ("init", "kaiming_uniform"): "he_uniform",
    ("data", "mnist"): "idx",
    ("data", "fashion_mnist"): "idx",
}
# Validation needs a path (and a target column for csv); nothing is read here.
NEEDS = {
    "csv": ["data.path=my.csv", "data.target=price"],
    "npz": ["data.path=my.npz"],
    "idx": ["data.path=data/mnist"],
}
# Keys every option of a group lists explicitly.
SHARED_KEYS = {
    "data": [
        "name",
        "task",
        "val_fraction",
        "test_fraction",
        "split_seed",
        "preprocessing",
        "max_samples",
    ],
    "model": ["name", "depth", "width", "widths", "head"],
    "activation": ["name"],
    "init": ["name", "bias"],
    "optimizer": ["name", "lr"],
    "schedule": ["name", "unit", "warmup", "warmup_start"],
}
# Groups whose dataclass has no `name` field (logger: a node per chosen logger), and debug
# (`# @package _global_` settings).
NAMELESS = {"regularization", "trainer", "paths", "logger", "debug"}
# What conftest.TINY listed before conf/debug/tiny.yaml replaced it: debug=tiny must be the same.
TINY_LIST = [
    "trainer.epochs=1",
    "trainer.progress=false",
    "trainer.plot=false",
    "data.max_samples=120",
    "model.width=16",
    "trainer.batch_size=32",
]


def make(overrides=(), hydra=False):
    return _make(tuple(overrides), hydra).copy()


@functools.cache
def _make(overrides, hydra):
    # A compose is not free (docs/performance.md); the tests ask for some configs several times.
    return compose(overrides, return_hydra_config=hydra)


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
    assert set(GROUPS) == {
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
    }
    assert groups(CONF) == [
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
    ]


def test_default_config_validates():
    cfg = validate(make())
    assert (
        cfg.data.name,
        cfg.model.name,
        cfg.activation.name,
        cfg.init.name,
        cfg.optimizer.name,
        cfg.schedule.name,
    ) == ("digits", "mlp", "relu", "auto", "adam", "constant")
    assert cfg.model.hidden == (128, 128)
    assert (cfg.seed, cfg.name) == (0, "run")


@pytest.mark.parametrize("group,option", [o for o in OPTIONS if o[0] != "experiment"])
def test_every_option_composes_and_validates(group, option):
    raw = make([f"{group}={option}"])
    name = ALIASES.get((group, option), option)
    extra = NEEDS.get(raw.data.name, []) if group == "data" and raw.data.get("path") is None else []
    cfg = validate(make([f"{group}={option}", *extra]))
    if group not in NAMELESS:
        assert getattr(cfg, group).name == name
        assert body(CONF / group / f"{option}.yaml").get("name") == name, "sets name: explicitly"


@pytest.mark.parametrize(
    "group,option", [o for o in OPTIONS if o[0] not in NAMELESS | {"experiment"}]
)
def test_every_option_shows_its_knobs(group, option):
    """Hydra's struct mode rejects overrides of keys the chosen YAML lacks, so each option lists
    the knobs a user may want to change: those every option of its group shares, and each field
    whose doc in runner.config names the option (e.g. 'cyclic: ...',
    'momentum, nesterov, rmsprop')."""
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
    directives = [ln for ln in lines if ln.startswith("# @")]
    # Hydra reads `# @package` only before any other comment line.
    assert lines[: len(directives)] == directives
    head = header_lines(path)
    assert len(head) >= 2, "needs a description line and a run line"
    assert lines[len(directives)].startswith("# ") and head[0] and not head[0].startswith("run:")
    assert head[1].startswith("run: runner"), head[1]
    if path.parent.name in GROUPS:  # `runner --help` lines stay within 100 columns
        assert len(head[0]) <= 81, f"shorten the description to 81 characters: {head[0]}"


def test_regularization_presets_change_only_their_own_keys():
    none = OmegaConf.to_container(make(["regularization=none"]).regularization)
    assert none == {
        f.name: (f.default if f.default is not dataclasses.MISSING else f.default_factory())
        for f in dataclasses.fields(RegularizationConfig)
    }, "none lists every default"
    for path in sorted((CONF / "regularization").glob("*.yaml")):
        reg = OmegaConf.to_container(make([f"regularization={path.stem}"]).regularization)
        assert reg.keys() == none.keys(), path.stem
        own = body(path)
        changed = {k for k in none if reg[k] != none[k]}
        assert changed == set(own) or path.stem == "none", path.stem
        assert all(reg[k] == v for k, v in own.items())


def test_regularization_knobs_combine_from_the_shell():
    cfg = validate(
        make(
            [
                "regularization=l2",
                "regularization.dropout=0.3",
                "regularization.clip_norm=1.0",
                "regularization.dropout_layers=[0.1,0.2]",
            ]
        )
    )
    r = cfg.regularization
    assert (r.l2, r.dropout, r.clip_norm, r.dropout_layers) == (1e-4, 0.3, 1.0, [0.1, 0.2])


def test_trainer_quick_inherits_default():
    quick = make(["trainer=quick"]).trainer
    default = make().trainer
    assert quick.epochs == 3
    assert {k: v for k, v in quick.items() if k != "epochs"} == {
        k: v for k, v in default.items() if k != "epochs"
    }


@pytest.mark.parametrize("option", [o for g, o in OPTIONS if g == "experiment"])
def test_experiments_compose_and_override_groups(option):
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
    own = body(path)
    sweep = own.pop("hydra", {}).get("sweeper", {}).get("params")
    for key, value in leaves(own):
        assert OmegaConf.select(cfg, key) == value, key
    # a lesson's grid is its hydra.sweeper.params, which reach Hydra's sweeper config
    params = make([f"experiment={option}"], hydra=True).hydra.sweeper.params
    assert (OmegaConf.to_container(params) if params else None) == sweep
    assert make([f"experiment={option}", "optimizer.lr=0.123", "seed=7"]).optimizer.lr == 0.123


def test_example_experiment():
    cfg = validate(make(["experiment=example"]))
    assert (
        cfg.data.name,
        cfg.model.name,
        cfg.activation.name,
        cfg.optimizer.name,
        cfg.schedule.name,
        cfg.optimizer.lr,
        cfg.name,
    ) == ("mnist1d", "resmlp", "elu", "nesterov", "cyclic", 0.05, "example")


def test_unknown_option_fails_composition():
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException):
        make(["activation=foo"])


def test_groups_help_lists_every_option_with_its_description():
    text = groups_help(CONF)
    lines = text.splitlines()
    headings = [ln for ln in lines if ln and not ln.startswith(" ")]
    assert headings == [
        "data (default: digits)",
        "model (default: mlp)",
        "activation (default: relu)",
        "init (default: auto)",
        "optimizer (default: adam)",
        "schedule (default: constant)",
        "regularization (default: none)",
        "trainer (default: default)",
        "paths (default: default)",
        "logger (default: none)",
        "experiment (default: null)",
        "debug (default: null)",
    ]
    for group, option in OPTIONS:
        desc = header_lines(CONF / group / f"{option}.yaml")[0]
        i = lines.index(next(h for h in headings if h.startswith(group + " ")))
        section = lines[i + 1 :]
        section = section[: section.index("")] if "" in section else section
        assert any(ln.split()[0] == option and ln.endswith(desc) for ln in section), (group, option)
    # descriptions start in one column, two spaces after the longest option name
    width = max(len(o) for _, o in OPTIONS)
    for group, option in OPTIONS:
        desc = header_lines(CONF / group / f"{option}.yaml")[0]
        assert f"  {option.ljust(width)}  {desc}" in lines


def test_help_template_resolves_with_the_resolver():
    register_resolver(CONF)
    cfg = make(hydra=True)
    template = cfg.hydra.help.template
    assert "== Config groups ==" in template and "== Examples ==" in template
    assert groups_help(CONF) in template
    assert "runner -m optimizer=sgd,adam" in template and "runner --cfg job" in template


def test_runner_help_end_to_end(tmp_path):
    """`--help` of a hydra.main app on conf/ prints the groups, as runner --help will."""
    app = tmp_path / "app.py"
    app.write_text(
        textwrap.dedent(f"""
        import hydra
        from runner.help import register_resolver
        register_resolver()

        @hydra.main(version_base="1.3", config_path={str(CONF)!r}, config_name="config")
        def main(cfg):
            print("RAN")

        main()
        """)
    )
    out = subprocess.run(
        [sys.executable, str(app), "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "RAN" not in out.stdout
    assert out.stdout.startswith("runner: ")
    assert groups_help(CONF) in out.stdout
    assert 'eval "$(runner --completion bash)"' in out.stdout
    assert not (tmp_path / "outputs").exists()


# ---------------------------------------------------------------------------------------------
# debug and paths


@pytest.mark.parametrize(
    "base",
    [
        [],
        ["experiment=init"],
        ["trainer=quick"],
        ["model=cnn"],
        ["data=mnist1d", "model=resmlp"],
        ["trainer.epochs=5"],
    ],
    ids=lambda b: " ".join(b) or "defaults",
)
def test_debug_tiny_is_the_list_the_tests_used(base):
    """conftest.TINY is now debug=tiny: every setting the old command-line list gave, and
    nothing else, also under a preset or a group whose keys it overrides; keys given on the
    command line after it still win."""
    tiny = OmegaConf.to_container(make(["debug=tiny", *base]), resolve=True)
    listed = OmegaConf.to_container(make([*base, *TINY_LIST]), resolve=True)
    assert tiny == listed or base == ["trainer.epochs=5"]
    if base == ["trainer.epochs=5"]:  # a command-line key beats the debug preset, as it beat TINY
        assert tiny["trainer"]["epochs"] == 5
        assert tiny == {**listed, "trainer": {**listed["trainer"], "epochs": 5}}


def test_debug_presets_set_what_their_headers_say():
    overfit = validate(make(["debug=overfit", "regularization=dropout"]))
    t, r = overfit.trainer, overfit.regularization
    assert (t.overfit_batches, t.epochs) == (2, 100)
    assert (r.dropout, r.l1, r.l2, r.weight_decay, r.early_stopping) == (0, 0, 0, 0, False)
    fast = validate(make(["debug=fast", "data=mnist1d"]))
    assert (fast.trainer.epochs, fast.trainer.plot, fast.data.max_samples) == (3, False, 500)
    assert fast.data.name == "mnist1d" and fast.model == validate(make()).model
    for option in ("tiny", "overfit", "fast"):
        head = header(CONF / "debug" / f"{option}.yaml")
        assert head.run.startswith(f"runner debug={option}")
        assert any(line.startswith("Should show:") for line in head.notes), option


def test_paths_come_from_the_environment_unless_given(monkeypatch, tmp_path):
    from runner.runtime import folder

    monkeypatch.setenv("RUNNER_CACHE_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("RUNNER_JAX_CACHE", str(tmp_path / "jax"))
    p = validate(compose([])).paths  # not cached: the environment is read when resolving
    assert (p.outputs, p.cache, p.jax_cache) == (
        "outputs",
        str(tmp_path / "data"),
        str(tmp_path / "jax"),
    )
    p = validate(compose(["paths.cache=/elsewhere", "paths.jax_cache=off"])).paths
    assert (folder(p, "cache"), folder(p, "jax_cache")) == ("/elsewhere", None)
    monkeypatch.setenv("RUNNER_JAX_CACHE", "OFF")
    assert folder(validate(compose([])).paths, "jax_cache") is None
    monkeypatch.delenv("RUNNER_CACHE_DIR")
    monkeypatch.delenv("RUNNER_JAX_CACHE")
    p = validate(compose([])).paths
    home = str(Path("~").expanduser())
    assert (folder(p, "cache"), folder(p, "jax_cache")) == (
        f"{home}/.cache/runner",
        f"{home}/.cache/runner/jax",
    )
    # no config at all (a Config built in Python): the same file, read in this environment
    monkeypatch.setenv("RUNNER_CACHE_DIR", "")  # set but empty: the default, as it always was
    monkeypatch.setenv("RUNNER_JAX_CACHE", str(tmp_path / "j2"))
    assert (folder(None, "cache"), folder(None, "jax_cache")) == (
        f"{home}/.cache/runner",
        str(tmp_path / "j2"),
    )
    assert folder(Config().paths, "jax_cache") == str(tmp_path / "j2")


def test_run_and_sweep_folders_are_under_paths_outputs():
    cfg = compose(["paths.outputs=/data/runs"], return_hydra_config=True)
    assert cfg.hydra.sweep.dir.startswith("/data/runs/multirun/")
    run_dir = OmegaConf.to_container(cfg.hydra.run)["dir"]  # resolving it would claim a folder
    assert run_dir.startswith("${unique_dir:${paths.outputs}/")


@pytest.mark.parametrize(
    "override,message",
    [
        (
            "paths.outputs=''",
            "paths.outputs='': expected a folder (relative to where runner starts, or absolute)",
        ),
        ("paths.cache=[a,b]", "paths.cache=['a', 'b']: expected a folder path"),
        ("paths.jax_cache=true", "paths.jax_cache=True: expected a folder path"),
        ("paths.cache={FILE}", "paths.cache='{FILE}': is a file; expected a folder"),
        (
            "paths.jax_cache={FILE}",
            "paths.jax_cache='{FILE}': is a file; expected a folder (or off)",
        ),
    ],
)
def test_bad_paths_are_one_line(tmp_path, override, message):
    f = tmp_path / "a-file"
    f.write_text("x")
    with pytest.raises(ConfigError) as e:
        validate(make([override.replace("{FILE}", str(f))]))
    assert str(e.value) == message.replace("{FILE}", str(f))


def test_compose_sets_an_outer_hydra_aside():
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        outer = GlobalHydra.instance().hydra
        assert compose(["optimizer=sgd"]).optimizer.name == "sgd"
        assert GlobalHydra.instance().hydra is outer
        assert hydra_compose("config").optimizer.name == "adam"
    assert not GlobalHydra.instance().is_initialized()


def test_header_splits_description_run_and_notes(tmp_path):
    f = tmp_path / "x.yaml"
    f.write_text(
        "# @package _global_\n# What it is\n# run: runner x=1   (then y)\n# Claim: a\n"
        "#   b\nkey: 1\n# not a header line\n"
    )
    h = header(f)
    assert (h.description, h.run, h.notes) == (
        "What it is",
        "runner x=1   (then y)",
        ["Claim: a", "b"],
    )
    f.write_text("# Only a description\n# more\n")
    assert (header(f).run, header(f).notes) == (None, ["more"])


def test_a_saved_config_read_as_text_resolves_its_paths(tmp_path, monkeypatch):
    """.hydra/config.yaml keeps ${oc.env:...}; runner.rundir reads it as plain text values:
    validate resolves them in this environment."""
    from runner import rundir

    monkeypatch.setenv("RUNNER_JAX_CACHE", str(tmp_path / "jax"))
    (tmp_path / ".hydra").mkdir()
    OmegaConf.save(compose(["paths.cache=/c"]), tmp_path / ".hydra" / "config.yaml")
    node = rundir.read_config(tmp_path, flat=False).data
    assert node["paths"]["jax_cache"].startswith("${oc.env:RUNNER_JAX_CACHE,")
    assert validate(node).paths == validate(compose(["paths.cache=/c"])).paths
    assert validate(node).paths.jax_cache == str(tmp_path / "jax")
    with pytest.raises(ConfigError, match=r"^paths.cache='\$\{nope:x\}': cannot resolve it"):
        validate({"paths": {"cache": "${nope:x}"}})
    # resolutions are kept per value and the variable's value: a changed environment counts
    value = node["paths"]["jax_cache"]
    monkeypatch.setenv("RUNNER_JAX_CACHE", str(tmp_path / "other"))
    assert validate({"paths": {"jax_cache": value}}).paths.jax_cache == str(tmp_path / "other")
    monkeypatch.delenv("RUNNER_JAX_CACHE")
    default = OmegaConf.to_container(OmegaConf.create({"v": value}), resolve=True)["v"]
    assert validate({"paths": {"jax_cache": value}}).paths.jax_cache == default
    assert "$" not in default
