"""A sweep's job configs, composed the way Hydra's `config_loader.load_sweep_config` composes
them, at a fraction of the cost (`Composer`), and what the vmap launcher derives from each:
the task config the task function receives (`task_config`) and, where it can stand in for it,
the same as plain data (`as_plain`). runner.sweep.launcher uses them; docs/performance.md says
what each saves."""

from __future__ import annotations

import pickle

from runner.fastyaml import TemplateYaml


def as_plain(task_cfg):
    """The task config as plain data (OmegaConf.to_container, unresolved), when its only
    interpolations are whole paths.* values of the form ${oc.env:...} (conf/paths', which
    runner.config.validate resolves alone): validate gives the same Config from it, and
    config.yaml is its YAML, so one conversion serves both. None otherwise."""
    from omegaconf import OmegaConf

    from runner.config import ENV_PATH

    container = OmegaConf.to_container(task_cfg, resolve=False, enum_to_str=True)
    paths = container.get("paths")
    stack = [v for k, v in container.items() if k != "paths"]
    if isinstance(paths, dict):
        stack += [v for v in paths.values() if not (isinstance(v, str) and ENV_PATH.fullmatch(v))]
    else:
        stack.append(paths)
    while stack:
        v = stack.pop()
        if isinstance(v, str) and "${" in v:
            return None
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return container


def task_config(sweep_config):
    """The job's config without its hydra node: what the task function receives (struct, as
    Hydra's run_job gives it)."""
    from omegaconf import OmegaConf

    # masked_copy, not a deepcopy of the whole thing: the hydra node is most of a job's config
    task_cfg = OmegaConf.masked_copy(sweep_config, [k for k in sweep_config if k != "hydra"])
    OmegaConf.set_struct(task_cfg, bool(OmegaConf.is_struct(sweep_config)))
    return task_cfg


def _set_lines(parent, key: str, lines: list[str]) -> None:
    """parent[key] = lines; where parent[key] is a list as long already, only the elements
    that differ are set: assigning a list makes and checks a node per element (~90 us each),
    and a sweep's jobs of one template differ in their values' lines alone."""
    from omegaconf import ListConfig

    node = parent._get_node(key)
    if not isinstance(node, ListConfig) or len(node) != len(lines):
        parent[key] = lines
        return
    for i, line in enumerate(lines):
        if node._get_node(i)._value() != line:
            node[i] = line


HYDRA_VARYING = (
    ("hydra", "job", "id"),
    ("hydra", "job", "num"),
    ("hydra", "job", "override_dirname"),
    ("hydra", "overrides", "task"),
    ("hydra", "runtime", "output_dir"),
)


def composer_of(launcher) -> Composer:
    """The launcher's Composer, made on first use: one for all of a sweep's launches, and for
    the sweep's own check of its first trial (a hyperband rung's jobs derive from the template
    its first rung composed; ~0.2 s a full composition)."""
    composer = getattr(launcher, "_runner_composer", None)
    if composer is None or composer.master is not launcher.config:
        composer = launcher._runner_composer = Composer(launcher)
    return composer


class Composer:
    """Each job's config, as Hydra's `config_loader.load_sweep_config` composes it.

    Composing runs the defaults list over the YAML files every time. An override of a plain
    key (`optimizer.lr=0.1`, `seed=3`) cannot change the defaults list, so jobs that agree on
    everything else (config groups, hydra.* settings) share a template: their other overrides,
    composed by Hydra; each job is a copy of it with its values set by Hydra's own override
    code (as Hydra sets them after the defaults list) and its hydra.overrides /
    override_dirname rewritten. Jobs that add or delete keys (+key, ~key) share one only with
    jobs that set the same keys, in the same order. Anything else, or any error, goes to
    Hydra's full composition."""

    def __init__(self, launcher):
        from hydra.core.override_parser.overrides_parser import OverridesParser

        self.loader = launcher.hydra_context.config_loader
        self.master = launcher.config
        self.parser = OverridesParser.create()
        self.groups = set(self.master.hydra.runtime.choices.keys())
        # override signature -> (the pickled composed config, its task config); False: none
        self.templates: dict = {}
        self.parsed: dict = {}  # override line -> Hydra's Override
        self.last_template: tuple | None = None  # compose_job's last job's template
        # (template signature, keys of the values) -> a job of it with its values set (_start)
        self.with_values: dict = {}
        # hydra.yaml of jobs of one template: they differ at these paths alone (_derive and
        # the launcher set them; values never touch the hydra node: _is_value)
        self.hydra_yaml = TemplateYaml(HYDRA_VARYING)

    def _is_value(self, o) -> bool:
        from hydra.core.override_parser.types import OverrideType

        key = o.key_or_group
        return (
            o.type == OverrideType.CHANGE
            and o.package is None
            and not o.is_hydra_override()
            and "/" not in key
            and key not in self.groups
        )

    def _parse(self, overrides: list[str]) -> list:
        """Hydra's parse of each override, kept: a sweep's jobs repeat most of theirs."""
        out = []
        for line in overrides:
            o = self.parsed.get(line)
            if o is None:
                o = self.parsed[line] = self.parser.parse_overrides([line])[0]
            out.append(o)
        return out

    def compose(self, overrides: list[str]):
        return self.compose_job(overrides)[0]

    def compose_job(self, overrides: list[str]):
        """(the job's config, its task_config): a derived job's task config is derived from
        the template's too, not copied out of the job's config (masked_copy: ~2 ms a job).
        last_template names the template the job came from (None: composed in full by
        Hydra): jobs of one template differ only in their values and job-specific fields."""
        self.last_template = None
        sc, task_cfg, self.last_template = self._compose(overrides)
        return sc, task_cfg

    def _compose(self, overrides: list[str]):
        from hydra.core.override_parser.types import OverrideType
        from omegaconf import open_dict

        try:
            parsed = self._parse(overrides)
            values = [o for o in parsed if self._is_value(o)]
            others = [o for o in parsed if not self._is_value(o)]
            if all(o.type == OverrideType.CHANGE for o in others):
                # Hydra sets plain values after composing the defaults list, in order: the
                # template is composed without them (one for a hyperband sweep's every rung,
                # whose later rungs add trainer.stop_at and trainer.resume), and every job sets
                # its own
                sig: tuple = ("without values", *(o.input_line for o in others))
                base = [o.input_line for o in others]
            else:  # +key / ~key apply in order with the values: a template per key set
                sig = tuple((o.key_or_group if self._is_value(o) else o.input_line) for o in parsed)
                base = overrides
        except Exception:  # noqa: BLE001 - Hydra reports it
            return (*self._hydra(overrides), None)
        template = self.templates.get(sig)
        if template is None:
            sc, task_cfg = self._hydra(base)
            if any(k in sc.hydra.runtime.choices for k in (o.key_or_group for o in values)):
                self.templates[sig] = False  # a "value" that picks a config: no template
                return (*((sc, task_cfg) if base is overrides else self._hydra(overrides)), None)
            if base is not overrides:
                # the template's list of overrides as long as its jobs' (_set_lines); each
                # job sets its own
                app = [o.input_line for o in parsed if not o.is_hydra_override()]
                with open_dict(sc.hydra):
                    sc.hydra.overrides.task = app
            # pickled: unpickling copies a config ~3x faster than copy.deepcopy (flags, types
            # and all: OmegaConf pickles the whole node tree)
            template = self.templates[sig] = tuple(
                pickle.dumps(c, protocol=pickle.HIGHEST_PROTOCOL) for c in (sc, task_cfg)
            )
            if base is overrides:
                return sc, task_cfg, sig
        elif template is False:
            return (*self._hydra(overrides), None)
        try:
            return (*self._derive(sig, template, parsed, values), sig)
        except Exception:  # noqa: BLE001 - e.g. a value of the wrong type: Hydra's error
            return (*self._hydra(overrides), None)

    def _start(self, kept, template, values, last) -> tuple[tuple, list]:
        """(pickles to start from, the values to set on them); kept: with_values' entry for
        the job's template and keys, last: each key's last line. A sweep's jobs repeat most of
        their values (the fixed overrides) and change a few (the swept ones): each job of a
        template would set them all (~0.25 ms a value and config). The first job whose values
        set a given set of keys is kept with its values set (_keep_values); a later job with
        the same keys starts from it and sets only the keys whose value differs. That is what
        setting them all gives when no key is inside another (a=... with a.b=...), and every
        line it skips is either overwritten later in the job or one the first job set."""
        if kept is None:
            return template, values
        pickles, first_lines, first_last = kept
        if any(
            last[o.key_or_group] != o.input_line and o.input_line not in first_lines for o in values
        ):
            return template, values  # a line that is neither the last nor set before
        todo = [
            o
            for o in values
            if last[o.key_or_group] == o.input_line and first_last[o.key_or_group] != o.input_line
        ]
        return pickles, todo

    def _keep_values(self, key, values, last, sc, task_cfg) -> None:
        """Keep a job's configs with its values and its lines of overrides set, for _start."""
        if any(b.startswith(a + ".") for a in last for b in last):
            return  # a key inside another: every job sets all its values
        self.with_values[key] = (
            tuple(pickle.dumps(c, protocol=pickle.HIGHEST_PROTOCOL) for c in (sc, task_cfg)),
            {o.input_line for o in values},
            last,
        )

    def _hydra(self, overrides: list[str]):
        """(config, task config) by Hydra's full composition (which reports bad input)."""
        sc = self.loader.load_sweep_config(self.master, overrides)
        return sc, task_config(sc)

    def _derive(self, sig, template, parsed, values):
        from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
        from omegaconf import OmegaConf, open_dict

        last = {o.key_or_group: o.input_line for o in values}  # a repeated key: the last wins
        key = (sig, frozenset(last))
        kept = self.with_values.get(key)
        start, todo = self._start(kept, template, values, last)
        sc, task_cfg = (pickle.loads(t) for t in start)
        ConfigLoaderImpl._apply_overrides_to_config(todo, sc)
        ConfigLoaderImpl._apply_overrides_to_config(todo, task_cfg)
        app = [o for o in parsed if not o.is_hydra_override()]
        dirname = sc.hydra.job.config.override_dirname
        with open_dict(sc.hydra):
            _set_lines(sc.hydra.overrides, "task", [o.input_line for o in app])
            sc.hydra.job.override_dirname = get_overrides_dirname(
                overrides=app,
                kv_sep=dirname.kv_sep,
                item_sep=dirname.item_sep,
                exclude_keys=dirname.exclude_keys,
            )
        if kept is None:  # with its list of overrides: a later job's is as long (_set_lines)
            self._keep_values(key, values, last, sc, task_cfg)
        OmegaConf.copy_cache(from_config=self.master, to_config=sc)
        return sc, task_cfg
