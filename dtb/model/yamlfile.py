"""Reading a YAML configuration safely: bounded in bytes, in values once aliases are expanded
and in depth, checked on the parsed node graph before anything is constructed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from dtb.errors import ConfigError
from dtb.model.problems import short_repr

MAX_CONFIG_BYTES = 32 * 2**20   # a config file larger than this is refused unread
MAX_YAML_NODES = 2_000_000      # values after expanding aliases (billion laughs: 1e9)
MAX_YAML_DEPTH = 64             # nesting levels (a config needs about 6)


def read_yaml(path: str | Path, what: str = "config") -> Any:
    """The YAML document in ``path``, read safely; raises ConfigError naming the file.

    Refused, each with what was expected: a file over ``MAX_CONFIG_BYTES``; bytes that are
    not UTF-8 (the offset named); invalid YAML; more than ``MAX_YAML_NODES`` values once
    aliases are expanded (an alias bomb costs nothing to write and exponential time to
    walk), nesting deeper than ``MAX_YAML_DEPTH``, or a recursive alias.  The limits are
    checked on the parsed node graph before anything is constructed, in time linear in
    the file."""

    path = Path(path)
    src = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError([f"file of {size:,} bytes -- expected a {what} of at most "
                               f"{MAX_CONFIG_BYTES:,} bytes"], src)
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError([f"cannot read the file: {e.strerror or e}"], src) from e
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise ConfigError([f"byte {e.start} (line {line}): {raw[e.start:e.start + 1]!r} -- "
                           "expected UTF-8 text"], src) from None
    loader = None
    try:
        loader = yaml.SafeLoader(text)           # its reader refuses control characters
        node = loader.get_single_node()
        if node is None:
            return None
        _check_yaml_graph(node, src)
        return loader.construct_document(node)
    except RecursionError:
        raise ConfigError([f"nested too deeply -- expected at most {MAX_YAML_DEPTH} levels"],
                          src) from None
    except yaml.YAMLError as e:
        raise ConfigError([f"not valid YAML: {short_repr(str(e), 400)[1:-1]}"], src) from None
    finally:
        if loader is not None:
            loader.dispose()


def _check_yaml_graph(root: Any, src: str) -> None:
    """Expanded size and depth of a composed YAML node graph (aliases are shared nodes),
    iteratively and with one visit per distinct node; raises ConfigError past the limits
    or on a cycle."""

    size: dict[int, int] = {}
    height: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]

    def children(n: Any) -> list[Any]:
        if isinstance(n, yaml.SequenceNode):
            return list(n.value)
        if isinstance(n, yaml.MappingNode):
            return [x for kv in n.value for x in kv]
        return []

    while stack:
        n, done = stack.pop()
        key = id(n)
        if done:
            kids = children(n)
            size[key] = 1 + sum(size[id(c)] for c in kids)
            height[key] = 1 + max((height[id(c)] for c in kids), default=0)
            on_path.discard(key)
            if size[key] > MAX_YAML_NODES:
                raise ConfigError([f"line {n.start_mark.line + 1}: {size[key]:,} values once "
                                   f"aliases are expanded -- expected at most "
                                   f"{MAX_YAML_NODES:,} (an alias bomb?)"], src)
            if height[key] > MAX_YAML_DEPTH:
                raise ConfigError([f"line {n.start_mark.line + 1}: nested more than "
                                   f"{MAX_YAML_DEPTH} levels -- expected at most "
                                   f"{MAX_YAML_DEPTH}"], src)
            continue
        if key in size:
            continue
        if key in on_path:
            raise ConfigError([f"line {n.start_mark.line + 1}: a recursive alias -- expected "
                               "a value that does not contain itself"], src)
        on_path.add(key)
        stack.append((n, True))
        stack.extend((c, False) for c in children(n) if id(c) not in size)
