"""Fast reading of the config.yaml files Hydra writes in each run (.hydra/config.yaml): a
tabulated sweep reads one per run, and PyYAML, even its C loader, is several times slower per
file than parse_config below (docs/performance.md). And fast writing of them (dump_yaml): the
vmap launcher writes three per trial."""

from __future__ import annotations

import re
from enum import Enum


def load_yaml(text: str):
    import yaml  # PyYAML (comes with omegaconf): slower per config (docs/performance.md)

    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*\Z")
_INT = re.compile(r"[-+]?(?:0|[1-9][0-9]*)\Z")
_FLOAT = re.compile(r"[-+]?[0-9]+\.[0-9]*(?:[eE][-+][0-9]+)?\Z")
_WORDS = {"null": None, "Null": None, "NULL": None, "~": None, "": None}
_WORDS.update(dict.fromkeys(("true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"), True))
_WORDS.update(
    dict.fromkeys(("false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"), False)
)
_FALLBACK = object()


def _scalar(s: str):
    """A plain YAML 1.1 scalar as PyYAML's safe loader reads it, or _FALLBACK when unsure."""
    if s in _WORDS:
        return _WORDS[s]
    if _INT.match(s):
        return int(s)
    if _FLOAT.match(s):
        return float(s)
    c = s[0]
    if c == "'":
        inner = s[1:-1]
        if len(s) > 1 and s.endswith("'") and "'" not in inner.replace("''", ""):
            return inner.replace("''", "'")
        return _FALLBACK
    if c in '0123456789+-.[]{}&*!|>%@`"#<=?:,' or ": " in s or " #" in s or s.endswith(":"):
        return _FALLBACK
    return s


def parse_config(text: str):
    """The config.yaml Hydra writes (block mappings of plain scalars), parsed faster than
    PyYAML's loaders (docs/performance.md); anything else (lists, quotes, flow style,
    comments...) goes to yaml.safe_load, so the result is always what safe_load gives."""
    root: dict = {}
    # open mappings: [indent of the "key:" line, indent of its children (None: none yet),
    # the mapping, its parent, its key]
    stack = [[-1, 0, root, None, None]]
    for line in text.split("\n"):
        body = line.lstrip(" ")
        if not body:
            continue
        indent = len(line) - len(body)
        if body[0] in "#-\t" or body.startswith("---"):
            return load_yaml(text)
        top = stack[-1]
        if top[1] is None:  # the line after "key:"
            if indent > top[0]:
                top[1] = indent
            else:  # nothing under "key:": null
                stack.pop()
                top[3][top[4]] = None
        while indent < stack[-1][1]:
            stack.pop()
        if indent != stack[-1][1]:
            return load_yaml(text)
        key, _, rest = body.partition(":")
        if not _KEY.match(key) or key in _WORDS or (rest and not rest.startswith(" ")):
            return load_yaml(text)
        rest = rest.strip()
        parent = stack[-1][2]
        if key in parent:
            return load_yaml(text)
        if not rest:
            child: dict = {}
            parent[key] = child
            stack.append([indent, None, child, parent, key])
        elif rest in ("{}", "[]"):
            parent[key] = {} if rest == "{}" else []
        else:
            value = _scalar(rest)
            if value is _FALLBACK:
                return load_yaml(text)
            parent[key] = value
    if stack[-1][1] is None:
        stack[-1][3][stack[-1][4]] = None
    return root


_DUMPER = None


def dump_yaml(cfg) -> str:
    """OmegaConf.to_yaml(cfg) emitted by libyaml where PyYAML has it: the same document (the same
    representers; tested to load back equal), ~4x faster for a job's hydra.yaml, which PyYAML's
    Python emitter takes ~12 ms to write. libyaml folds long quoted strings at other places."""
    from omegaconf import OmegaConf

    return dump_container(OmegaConf.to_container(cfg, resolve=False, enum_to_str=True))


def _dumper_class():
    import yaml

    global _DUMPER
    if _DUMPER is None:
        from omegaconf._utils import get_omega_conf_dumper

        base = get_omega_conf_dumper()
        if not hasattr(yaml, "CDumper"):
            _DUMPER = base
        else:
            _DUMPER = type("FastOmegaConfDumper", (yaml.CDumper,), {})
            _DUMPER.add_representer(str, base.str_representer)
    return _DUMPER


_OPTIONS = {"default_flow_style": False, "allow_unicode": True, "sort_keys": False}


def dump_container(container) -> str:
    """dump_yaml of what OmegaConf.to_container(cfg, resolve=False, enum_to_str=True) gave."""
    import yaml

    return yaml.dump(container, Dumper=_dumper_class(), **_OPTIONS)


def _emit(node) -> str:
    """YAML of a representer's node graph, as yaml.dump emits it."""
    import io

    stream = io.StringIO()
    dumper = _dumper_class()(stream, **_OPTIONS)
    try:
        dumper.open()
        dumper.serialize(node)
        dumper.close()
    finally:
        dumper.dispose()
    return stream.getvalue()


def _representer():
    """A dumper to represent data with (its options decide the nodes' flow style)."""
    import io

    return _dumper_class()(io.StringIO(), **_OPTIONS)


class TemplateYaml:
    """dump_yaml of many configs that are one template's but at a few key paths (a sweep's jobs
    composed from one template: runner.sweep.compose). PyYAML's representer, which turns the
    data into YAML nodes in Python, is most of a dump (libyaml emits in C): the template's
    nodes are made once and each document represents only its values at `varying`, the rest
    of its nodes shared (a job's hydra.yaml: ~1.8 -> ~0.5 ms). dump(cfg, template) is byte
    for byte dump_yaml(cfg) as long as cfg differs from the first config dumped for that
    template at those paths alone; the caller names the template."""

    def __init__(self, varying: tuple[tuple[str, ...], ...]):
        self.varying = varying
        self._nodes: dict = {}  # template -> the representer's node of its first document

    def dump(self, cfg, template) -> str:
        from omegaconf import OmegaConf

        root = self._nodes.get(template)
        if root is None:
            container = OmegaConf.to_container(cfg, resolve=False, enum_to_str=True)
            root = self._nodes[template] = _representer().represent_data(container)
            return _emit(root)
        try:
            return _emit(_replaced(root, cfg, self.varying, _representer()))
        except Exception:  # noqa: BLE001 - _Different, or a node it cannot read: in full
            return dump_yaml(cfg)


class _Different(Exception):
    """The config's keys at a varying path are not the template's."""


def _replaced(node, cfg, paths, representer):
    """A copy of the mapping node `node` (cfg's template) with the values at `paths` (key
    tuples below it) represented from cfg; every other node shared."""
    import yaml
    from omegaconf import OmegaConf
    from omegaconf.basecontainer import BaseContainer

    by_key: dict = {}
    for path in paths:
        by_key.setdefault(path[0], []).append(path[1:])
    items, seen = [], set()
    for key_node, value_node in node.value:
        rest = by_key.get(key_node.value)
        if rest is not None:
            seen.add(key_node.value)
            child = cfg._get_node(key_node.value) if isinstance(cfg, BaseContainer) else None
            if child is None:
                raise _Different
            if any(not r for r in rest):  # the value itself varies
                if isinstance(child, BaseContainer):
                    value = OmegaConf.to_container(child, resolve=False, enum_to_str=True)
                else:
                    value = child._value()
                    if isinstance(value, Enum):
                        value = value.name
                value_node = representer.represent_data(value)
            elif isinstance(value_node, yaml.MappingNode):
                value_node = _replaced(value_node, child, rest, representer)
            else:
                raise _Different
        items.append((key_node, value_node))
    if seen != set(by_key) or len(node.value) != len(cfg):
        raise _Different
    return yaml.MappingNode(node.tag, items, flow_style=node.flow_style)
