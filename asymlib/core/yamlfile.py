"""Reading YAML without letting a repeated key slip by: ``load_yaml`` and ``UniqueKeyLoader``.

PyYAML's ``safe_load`` keeps the last of two equal keys in a mapping and says nothing, so
a profile with ``members: 4`` and, further down, ``members: 64`` silently runs 64. Every
profile and every ``settings.yaml`` the package reads goes through ``load_yaml``, which
refuses such a file with a ``DuplicateKeyError`` naming the key (as a dotted path from
the top of the document), and the lines of both occurrences.
"""

from __future__ import annotations

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

__all__ = ["DuplicateKeyError", "UniqueKeyLoader", "load_yaml"]

_MERGE = "tag:yaml.org,2002:merge"


class DuplicateKeyError(ConstructorError):
    """A mapping of the document has one key twice. ``key``: its dotted path from the
    top of the document (e.g. ``deep_ensembles.members``); ``lines``: the 1-based lines
    of the first and the second occurrence."""

    def __init__(self, key: str, lines: tuple[int, int], mark, source: str | None = None) -> None:
        super().__init__(None, None, f"{key} appears twice (lines {lines[0]} and {lines[1]})", mark)
        self.key, self.lines, self.source = key, lines, source

    def __str__(self) -> str:
        where = f"{self.source}: " if self.source else ""
        return f"{where}{self.key} appears twice (lines {self.lines[0]} and {self.lines[1]}); each key may appear once"


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that raises ``DuplicateKeyError`` on a repeated mapping key.

    The whole node tree is walked before anything is constructed, so that the error
    can name the key's place in the document (``section.key``), which a mapping being
    constructed on its own does not know. Keys are compared as written (tag and text);
    YAML merge keys (``<<``) are left to PyYAML, whose merging is meant to override.
    """

    def construct_document(self, node: Node):
        _refuse_repeats(node, path="")
        return super().construct_document(node)


def _refuse_repeats(node: Node, path: str, seen: set[int] | None = None) -> None:
    seen = set() if seen is None else seen
    if id(node) in seen:  # an alias of a node already walked
        return
    seen.add(id(node))
    if isinstance(node, MappingNode):
        first: dict[tuple[str, str], Node] = {}
        for key, value in node.value:
            if isinstance(key, ScalarNode) and key.tag != _MERGE:
                written = (key.tag, key.value)
                if written in first:
                    lines = (first[written].start_mark.line + 1, key.start_mark.line + 1)
                    raise DuplicateKeyError(f"{path}.{key.value}" if path else key.value, lines, key.start_mark)
                first[written] = key
            label = key.value if isinstance(key, ScalarNode) else "?"
            _refuse_repeats(value, f"{path}.{label}" if path else label, seen)
    elif isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            _refuse_repeats(item, f"{path}[{index}]", seen)


def load_yaml(text: str, *, source: str | None = None):
    """The document in ``text``, as ``yaml.safe_load`` reads it, but refusing a repeated
    mapping key (``DuplicateKeyError``, a ``yaml.YAMLError``, whose message starts with
    ``source``, the file's name, when given)."""
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except DuplicateKeyError as error:
        error.source = source
        raise
