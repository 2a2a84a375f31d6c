"""The boundary every input file crosses: the deployment configuration, the CompiledArtifacts
document and a chart's own files.

Hostile or broken files fail here with one message naming the file and the problem, raised as
the caller's own error type (``ConfigError``, ``ArtifactsError``, ...), and never with a stack
trace, a hang or a document that silently means something else:

- **size**: a file larger than its limit is refused from its size alone (it is never read);
  what cannot be measured beforehand (a pipe) is read up to the limit plus one byte;
- **UTF-8**: anything else (Latin-1, UTF-16, binary) is refused with the offset and line of the
  first byte that is not UTF-8; a UTF-8 byte-order mark is dropped;
- **YAML**: safe tags only; duplicate keys are refused (file, line, key); anchors and aliases are
  allowed (they keep per-environment overrides short) but a document may not expand, counting
  each alias as a copy of what it names, to more than ``MAX_YAML_VALUES`` values, so an alias
  bomb ("billion laughs", merge keys included) fails before anything is expanded; an alias
  inside the node it names is refused;
- **nesting**: at most ``MAX_NESTING`` levels of mappings/objects and lists/arrays, in YAML and
  in JSON, so nothing later (pydantic, the values layering, json.dumps) can recurse deeply;
  the JSON check scans the text before it is parsed, in linear time;
- **JSON**: no NaN or Infinity (not JSON), no key twice in an object.

Limits, measured on a 2-core machine (best of three, idle):

- ``CONFIG_MAX_BYTES`` 1 MiB: ``floe-deploy.yaml`` is 1.2 KB; a configuration with 2,000
  environments, each with platform and jobs overrides, is 0.56 MB (68,000 values) and loads in
  0.46 s here (0.33 s plain libyaml; 1.4 s with PyYAML's pure-Python parser, which is why libyaml
  parses); at the limit (125,000 such values) it takes up to 1.5 s.
- ``MAX_YAML_VALUES`` 200,000: three times that configuration.
- ``ARTIFACTS_MAX_BYTES`` 32 MiB: a big data product (5,000 dbt models with tags, dependencies and
  three quality checks each, 200 data contracts of 30 columns) is 6.5 MB and loads and validates
  in 0.10 s (the nesting scan 0.02 s of it); 20,000 models and 1,000 contracts, well beyond
  large dbt projects (a few thousand models), are 27.5 MB and take 0.65 s, plus 0.5 s for the
  digest. 32 MiB is
  five times the big product and bounds a load to about a second; the slowest hostile text of
  that size for the nesting scan (strings and brackets alternating) takes 1.3 s to refuse.
- ``CHART_FILE_MAX_BYTES`` 4 MiB: our largest chart file, floe-platform's values.schema.json, is
  31 KB.
- ``MAX_NESTING`` 64: our deepest documents (the charts' values schemas) have 8 levels, the
  upstream CompiledArtifacts fixture 7, ``floe-deploy.yaml`` 6.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MiB = 1024 * 1024
CONFIG_MAX_BYTES = 1 * MiB
ARTIFACTS_MAX_BYTES = 32 * MiB
CHART_FILE_MAX_BYTES = 4 * MiB
MAX_NESTING = 64
# Values a YAML document may hold, each alias counted as a copy of what it names.
MAX_YAML_VALUES = 200_000

ErrorType = Callable[[str], Exception]  # the caller's error class: ConfigError, ArtifactsError...


# --- reading ---------------------------------------------------------------------------------
def _size(count: int) -> str:
    if count < MiB:
        return f"{count} bytes"
    return f"{count / MiB:.1f}".removesuffix(".0") + " MiB"


def read_text(path: Path, *, what: str, limit: int, error: ErrorType) -> str:
    """The file as text: at most ``limit`` bytes of UTF-8. ``what`` names the document in
    messages ("the deployment configuration")."""
    try:
        # Non-blocking open: a FIFO nobody writes to would otherwise block the open forever.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise error(f"{path}: cannot read {what}: {exc.strerror}") from None
    try:
        info = os.fstat(descriptor)
        if stat.S_ISDIR(info.st_mode):
            raise error(f"{path}: cannot read {what}: it is a folder, not a file")
        if stat.S_ISREG(info.st_mode) and info.st_size > limit:
            raise error(
                f"{path}: {_size(info.st_size)}, larger than the {_size(limit)} {what} may have"
            )
        flags = fcntl.fcntl(descriptor, fcntl.F_GETFL)
        fcntl.fcntl(descriptor, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
        with os.fdopen(descriptor, "rb", closefd=False) as file:
            data = file.read(limit + 1)
    except OSError as exc:
        raise error(f"{path}: cannot read {what}: {exc.strerror}") from None
    finally:
        os.close(descriptor)
    if len(data) > limit:
        raise error(f"{path}: larger than the {_size(limit)} {what} may have")
    return decode_utf8(data, str(path), what, error)


def decode_utf8(data: bytes, source: str, what: str, error: ErrorType) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        hint = ""
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            hint = " (it starts with a UTF-16 byte-order mark: save it as UTF-8)"
        raise error(
            f"{source}: not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start} "
            f"(line {line}) is not UTF-8{hint}; {what} must be UTF-8"
        ) from None
    return text.removeprefix("\ufeff")


# --- YAML ------------------------------------------------------------------------------------
_MERGE_TAG = "tag:yaml.org,2002:merge"
# libyaml parses; composing and constructing stay PyYAML's (safe tags only). Without libyaml,
# PyYAML's own parser is used and deep nesting ends in a RecursionError, turned into the same
# message.
_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _RefusedError(Exception):
    def __init__(self, node: Node, problem: str) -> None:
        super().__init__(problem)
        self.line = node.start_mark.line + 1
        self.problem = problem


class _StrictLoader(_BaseLoader):  # type: ignore[valid-type,misc]
    """A safe loader that checks the composed document (nesting, expanded size, recursive
    aliases, duplicate keys) before it constructs anything: aliases are still shared nodes
    then, so the check costs one pass over the text's own nodes."""

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        self._check(node)
        return self.construct_document(node)

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, TypeError, OverflowError) as exc:  # 2020-02-30, a 5000-digit int
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read this value: {exc}", node.start_mark
            ) from None

    def _check(self, root: Node) -> None:
        height: dict[int, int] = {}  # levels of collections below and including the node
        values: dict[int, int] = {}  # values in the node once its aliases are expanded
        on_path: set[int] = set()
        aliased = False
        stack: list[tuple[Node, bool]] = [(root, False)]
        while stack:
            node, children_done = stack.pop()
            key = id(node)
            children = _children(node)
            if children_done:
                on_path.discard(key)
                height[key] = 1 + max((height[id(c)] for c in children), default=0)
                values[key] = 1 + sum(values[id(c)] for c in children)
                if height[key] > MAX_NESTING:
                    raise _RefusedError(
                        node, f"nested more than {MAX_NESTING} levels deep (mappings and lists)"
                    )
                if values[key] > MAX_YAML_VALUES:
                    how = (
                        ", counting each alias as a copy of what it names (an alias bomb?)"
                        if aliased
                        else ""
                    )
                    raise _RefusedError(node, f"more than {MAX_YAML_VALUES} values{how}")
                if isinstance(node, MappingNode):
                    self._no_duplicate_keys(node)
                continue
            if key in height:
                aliased = True
                continue  # an alias of a node already checked
            if key in on_path:
                raise _RefusedError(
                    node, "an alias inside the node it names (a recursive document)"
                )
            if isinstance(node, ScalarNode):
                height[key], values[key] = 0, 1
                continue
            on_path.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in children)

    def _no_duplicate_keys(self, node: MappingNode) -> None:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == _MERGE_TAG:
                continue  # merged keys may be overridden; complex keys fail construction
            try:
                key = self.construct_object(key_node, deep=True)  # yes/true, 1/0x1 are one key
                hash(key)
            except (yaml.YAMLError, TypeError):
                continue  # construction reports it
            if key in first:
                raise _RefusedError(
                    key_node,
                    f"key {key_node.value!r} appears twice in the same mapping (first at line "
                    f"{first[key]})",
                )
            first[key] = key_node.start_mark.line + 1


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _position(text: str, mark: yaml.Mark) -> str:
    # libyaml puts an error at the end of a text without a final newline on a line after it.
    lines = text.split("\n")
    if mark.line >= len(lines):
        return f"line {len(lines)}, column {len(lines[-1]) + 1}"
    return f"line {mark.line + 1}, column {mark.column + 1}"


def load_yaml(text: str, source: str, error: ErrorType) -> Any:
    """One YAML document, checked as the module says; every problem is ``error``."""
    loader = _StrictLoader(text)
    try:
        return loader.get_single_data()
    except _RefusedError as refused:
        raise error(f"{source}: line {refused.line}: {refused.problem}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = _position(text, mark) if mark else "somewhere"
        problem = exc.problem or exc.context or "unreadable"
        if "maximum nesting depth" in problem:  # libyaml's own limit (1000 levels)
            line = where.partition(",")[0]
            nested = f"nested more than {MAX_NESTING} levels deep (mappings and lists)"
            raise error(f"{source}: {line}: {nested}") from None
        if exc.problem and exc.context and exc.context_mark:
            context_where = _position(text, exc.context_mark)
            if context_where != where:
                problem += f" ({exc.context} at {context_where})"
        raise error(f"{source}: not valid YAML at {where}: {problem}") from None
    except yaml.reader.ReaderError as exc:  # a control character, such as NUL
        at_line = text.count("\n", 0, exc.position) + 1
        code = ord(exc.character) if isinstance(exc.character, str) else exc.character
        raise error(
            f"{source}: not valid YAML at line {at_line}: character #x{code:04x}: {exc.reason}"
        ) from None
    except yaml.YAMLError as exc:
        problem = " ".join(str(exc).split())
        raise error(f"{source}: not valid YAML: {problem}") from None
    except RecursionError:  # only without libyaml: PyYAML's composer recurses per level
        raise error(
            f"{source}: nested more than {MAX_NESTING} levels deep (mappings and lists)"
        ) from None
    finally:
        loader.dispose()


# --- JSON ------------------------------------------------------------------------------------
_KEEP = b'"[]{}'
_DELETE = bytes(b for b in range(256) if b not in _KEEP)
_FOLD = bytes.maketrans(b"{}", b"[]")
_STRING = re.compile(rb'"[^"]*"')


def json_nesting_exceeds(text: str, limit: int = MAX_NESTING) -> bool:
    """Whether the JSON text nests arrays and objects more than ``limit`` levels deep. Exact for
    any text ``json.loads`` accepts; linear time and C-speed passes only (the structural
    brackets are what is left once escapes and strings are taken out), so it runs before the
    parser, which would otherwise recurse once per level."""
    data = text.encode("utf-8", "surrogatepass").replace(b"\\\\", b"").replace(b'\\"', b"")
    # Quotes and brackets only; an empty pair of quotes (a string with no bracket in it, or the
    # text between two strings) goes at once, so the strings left to strip are few.
    brackets = data.translate(_FOLD, _DELETE).replace(b'""', b"")
    if b'"' in brackets:
        brackets = _STRING.sub(b"", brackets).partition(b'"')[0]  # after a lone quote: a string
    if b"[" * (limit + 1) in brackets:
        return True
    # Each pass takes away the innermost level (every adjacent pair).
    for _ in range(limit):
        if not brackets:
            return False
        shorter = brackets.replace(b"[]", b"")
        if len(shorter) == len(brackets):
            break
        brackets = shorter
    if b"[]" in brackets:  # a balanced part deeper than the limit
        return True
    # Unbalanced (not JSON, the parser says where): too deep only if it opens too many.
    return brackets.count(b"[") > limit


class DuplicateKeyError(ValueError):
    pass


def refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` for ``json.loads``: JSON leaves a repeated key undefined, and
    Python would keep the last one silently."""
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKeyError(f"key {key!r} appears twice in the same object")
            seen.add(key)
    return document


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def load_json(text: str, source: str, error: ErrorType) -> Any:
    """A JSON document checked as the module says; every problem is ``error``."""
    if json_nesting_exceeds(text):
        raise error(f"{source}: nested more than {MAX_NESTING} levels deep (objects and arrays)")
    try:
        return json.loads(
            text, object_pairs_hook=refuse_duplicate_keys, parse_constant=_reject_constant
        )
    except json.JSONDecodeError as exc:
        raise error(
            f"{source}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except ValueError as exc:
        raise error(f"{source}: not valid JSON: {exc}") from None
    except RecursionError:  # not reached after the nesting check; kept as a guard
        raise error(f"{source}: nested too deeply (objects and arrays)") from None
