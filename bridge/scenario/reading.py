"""Reading YAML the user wrote, bounded and exact: before anything is built from a scenario file or a `--set` value.

PyYAML's safe loader runs no code, but it accepts what a scenario must not hold: a duplicate key (the last one
silently wins: a different seed, different results), a document whose aliases expand to billions of nodes (read
in microseconds, then exhausting memory in whatever walks it), a file of any size. Here a file is at most
`MAX_BYTES` of UTF-8, a duplicate key is an error naming both lines, and a document's expansion (every alias
counted as a copy of what it names) is at most `MAX_NODES` nodes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_BYTES = 1 << 20  # a scenario is a page of YAML; 1 MiB is thousands of attack entries
MAX_NODES = 100_000  # nodes after alias expansion (a 1 MiB file without aliases has fewer)


class YamlError(ValueError):
    """YAML that is refused; str() is one line without the file name (the caller adds it)."""


class _Loader(yaml.SafeLoader):
    """The safe loader, refusing duplicate keys in a mapping (merge keys `<<` aside: YAML lets keys override them)."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        lines: dict[str, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            line = key_node.start_mark.line + 1
            if key_node.value in lines:
                raise YamlError(f"duplicate key '{key_node.value}' at lines {lines[key_node.value]} and {line}")
            lines[key_node.value] = line
        return super().construct_mapping(node, deep)


def _expanded(node: Node, memo: dict[int, int]) -> int:
    """The number of nodes `node` stands for once every alias is copied out (a recursive alias: over budget)."""
    if id(node) in memo:
        return memo[id(node)]
    memo[id(node)] = MAX_NODES + 1  # seen again before it is counted: the node contains itself
    if isinstance(node, SequenceNode):
        size = 1 + sum(_expanded(child, memo) for child in node.value)
    elif isinstance(node, MappingNode):
        size = 1 + sum(_expanded(k, memo) + _expanded(v, memo) for k, v in node.value)
    else:
        size = 1
    memo[id(node)] = size
    return size


def parse(text: str) -> Any:
    """The value of the YAML document `text`; YamlError for invalid YAML, duplicate keys or too large an expansion."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded(node, {})
        if size > MAX_NODES:
            raise YamlError(
                f"the document expands to more than {MAX_NODES} values (YAML aliases copy what they name); "
                "write the values out"
            )
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise YamlError(f"not valid YAML{where}: {getattr(exc, 'problem', None) or exc}") from None
    except RecursionError:
        raise YamlError("the document is nested too deeply") from None
    finally:
        loader.dispose()


def read(path: Path) -> tuple[str, Any]:
    """The text of the scenario file at `path` and its value; YamlError (or OSError) says why it cannot be read."""
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise YamlError(f"the file is {size} bytes; a scenario file is at most {MAX_BYTES} bytes")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlError(f"not a text file: byte 0x{data[exc.start]:02x} at offset {exc.start} is not UTF-8") from None
    return text, parse(text)


def recorded(text: str) -> Any:
    """YAML read back from a study's record (its resolved scenario, its scenario file as the study read it): checked
    when it was first read, so parsed with libyaml's C safe loader where PyYAML has one (several times faster than
    the pure-Python loader; the report reads both on every study)."""
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
