"""Read and write scenario files (YAML or JSON) with errors that point at the file's lines.

Users edit scenarios by hand, so every failure (unreadable file, YAML syntax, a wrong type, a
dangling reference) becomes a `ScenarioFileError` listing `file:line: field: what to do`
instead of a traceback.  A valid JSON file goes through the C JSON parser; anything else, and
any JSON file with a problem, goes through the YAML parser, which knows every node's line.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from fairshare.errors import UserError
from fairshare.scenario import Scenario, ScenarioError

Loc = Sequence[Any]

_CYCLE = "the org tree refers to itself (a cycle via a YAML alias)"
_SHAPE = "expected a mapping with at least 'name', 'pools' and 'org'"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a scenario file, located by field path and (if known) 1-based line."""

    location: str
    line: int | None
    message: str


class ScenarioFileError(UserError):
    """A scenario file could not be loaded; `problems` lists every reason found."""

    def __init__(self, path: str, problems: list[Problem]):
        self.path = path
        self.problems = problems
        super().__init__(str(self))

    def report_lines(self) -> list[str]:
        """`PATH is not a valid scenario:` and one indented line per problem, each with its line number."""
        lines = [f"{self.path} is not a valid scenario:"]
        for p in self.problems:
            where = f"{self.path}:{p.line}" if p.line else self.path
            loc = f" {p.location}:" if p.location else ""
            lines.append(f"  {where}:{loc} {p.message}")
        return lines

    def __str__(self) -> str:
        lines = []
        for p in self.problems:
            where = f"{self.path}:{p.line}" if p.line is not None else self.path
            lines.append(": ".join(part for part in (where, p.location, p.message) if part))
        return "\n".join(lines)


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; raises ScenarioFileError for any problem."""
    source = str(path)
    text = _read_text(path)
    with collector_paused():
        if Path(path).suffix.lower() == ".json":
            fast = _json_fast_path(text)
            if fast is not None:
                return fast
            text = _json_as_yaml(text)
        return loads_scenario(text, source)


def read_yaml(path: str | Path) -> Any:
    """The data in a YAML or JSON file, for files that are not scenarios (a list of requests);
    raises ScenarioFileError, with the line where known, if it cannot be read or parsed."""
    text = _read_text(path)
    if Path(path).suffix.lower() == ".json":
        text = _json_as_yaml(text)
    with collector_paused():
        return _parse(text, str(path))[1]


def _read_text(path: str | Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ScenarioFileError(
            str(path), [Problem("", None, f"not UTF-8 text (bad byte at offset {e.start})")]
        ) from None
    except OSError as e:
        raise ScenarioFileError(str(path), [Problem("", None, f"cannot read the file: {e.strerror or e}")]) from None


def _json_as_yaml(text: str) -> str:
    """Literal tabs in valid JSON are only ever whitespace, but YAML rejects tab indentation."""
    return text.replace("\t", " ")


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cycle collector off while a file is parsed and validated.  Parsing creates
    hundreds of thousands of objects, none of them in a cycle, and the collector would walk
    them all again and again while they pile up: for a 10,000-request YAML file it took
    about 0.8 s of 1.2 s, and another 0.35 s in the validation after it.  Threads loading at
    once still leave it on: only one that found it on turns it back on, and every pause
    starts by turning it off."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def _json_fast_path(text: str) -> Scenario | None:
    """Valid JSON of a valid scenario through the C JSON parser (big files); anything else
    returns None and goes through the YAML path, which knows the line of every problem."""
    try:
        data = json.loads(text)
        return Scenario.model_validate(data) if isinstance(data, dict) else None
    except (ValueError, ValidationError, ScenarioError, RecursionError):
        return None


def loads_scenario(text: str, source: str = "<string>") -> Scenario:
    """Parse and validate scenario text; `source` names it in error messages."""
    with collector_paused():
        return _loads_scenario(text, source)


def _loads_scenario(text: str, source: str) -> Scenario:
    node, data = _parse(text, source)
    if not isinstance(data, dict):
        got = "an empty document" if data is None else f"a {type(data).__name__}"
        line = node.start_mark.line + 1 if node is not None else None
        raise ScenarioFileError(source, [Problem("", line, f"{_SHAPE}; got {got}")])
    try:
        return Scenario.model_validate(data)
    except ValidationError as e:
        problems = [p for err in e.errors() for p in _from_pydantic(err, node)]
    except ScenarioError as e:  # only if a future validator raises it outside pydantic
        problems = [_problem(loc, msg, node) for loc, msg in e.errors]
    except RecursionError:  # pydantic normally reports cycles itself; belt and braces
        problems = [Problem("org", _line(node, ("org",)), _CYCLE)]
    problems.sort(key=lambda p: (p.line is None, p.line or 0))
    raise ScenarioFileError(source, problems) from None


def dump_scenario(s: Scenario) -> str:
    """YAML text, defaults left out and fields in model order, that loads back to an equal Scenario."""
    data = s.model_dump(mode="json", exclude_defaults=True)
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)
    if any(ch in text for ch in "\x85\u2028\u2029"):
        # PyYAML writes these raw, but reads them back as line breaks; escape all non-ASCII instead
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=False, default_flow_style=False)
    return text


class _BadValue(yaml.MarkedYAMLError, UserError):
    """A scalar that looks like a YAML value of some type but is not one (2023-13-45)."""


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]  # libyaml: ~10x faster
    def construct_yaml_timestamp(self, node: yaml.ScalarNode) -> Any:
        """PyYAML raises a bare ValueError (no line) for a date that does not exist."""
        try:
            return super().construct_yaml_timestamp(node)
        except (ValueError, OverflowError) as e:
            raise _BadValue(
                problem=f"{node.value!r} is not a valid date ({e}); write dates as YYYY-MM-DD",  # type: ignore[call-arg]  # PyYAML's MarkedYAMLError takes these (no stubs installed)
                problem_mark=node.start_mark,
            ) from None


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _Loader.construct_yaml_timestamp)
_LOADER: Any = _Loader


def _parse(text: str, source: str) -> tuple[yaml.Node | None, Any]:
    """Compose (for line numbers) and construct (for data) from a single parse."""
    loader: Any = None
    try:
        loader = _LOADER(text)  # rejects non-printable characters right away
        node = loader.get_single_node()
        # construct flattens `<<` merges into the node tree, so _line sees merged keys too
        return node, (loader.construct_document(node) if node is not None else None)
    except _BadValue as e:
        line = e.problem_mark.line + 1 if e.problem_mark is not None else None
        raise ScenarioFileError(source, [Problem("", line, str(e.problem))]) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        what = " ".join(str(x) for x in (e.context, e.problem) if x)
        line = mark.line + 1 if mark is not None else None
        raise ScenarioFileError(source, [Problem("", line, f"invalid YAML: {what}")]) from None
    except yaml.reader.ReaderError as e:
        line = text.count("\n", 0, e.position) + 1
        raise ScenarioFileError(
            source, [Problem("", line, f"character #x{e.character:04x} is not allowed in YAML")]
        ) from None
    except yaml.YAMLError as e:
        raise ScenarioFileError(source, [Problem("", None, f"YAML error: {str(e).splitlines()[0]}")]) from None
    except RecursionError:
        raise ScenarioFileError(source, [Problem("", None, "the file is nested too deeply to read")]) from None
    finally:
        if loader is not None:
            loader.dispose()


def _from_pydantic(err: Any, root: yaml.Node | None) -> list[Problem]:
    """Turn one pydantic error into problems with a message that says what to fix."""
    loc, kind, ctx = tuple(err["loc"]), err["type"], err.get("ctx") or {}
    cause = ctx.get("error")
    if isinstance(cause, ScenarioError):  # raised in Scenario's model_validator, wrapped by pydantic
        return [_problem(loc + tuple(sub), msg, root) for sub, msg in cause.errors]
    if kind == "missing":
        msg = f"missing required field {loc[-1]!r}"
    elif kind == "extra_forbidden":
        msg = f"unknown field {loc[-1]!r} (check spelling; see docs/scenario.md)"
    elif kind == "recursion_loop":
        msg = _CYCLE
    elif isinstance(cause, Exception):
        msg = str(cause)
    elif kind == "string_pattern_mismatch":
        msg = (
            f"{err['input']!r} is not a valid name; use letters, digits, '_', '.' and '-', "
            "starting with a letter or digit"
        )
    else:
        msg = err["msg"]
        if isinstance(err.get("input"), (str, int, float, bool)):
            msg += f" (got {err['input']!r})"
    return [_problem(loc, msg, root)]


def _problem(loc: Loc, message: str, root: yaml.Node | None) -> Problem:
    return Problem(_path(loc), _line(root, loc), message)


def _path(loc: Loc) -> str:
    """('requests', 2, 'team') -> 'requests[2].team'; pydantic's '[key]' marker is dropped."""
    out = ""
    for part in loc:
        if part == "[key]":
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line(root: yaml.Node | None, loc: Loc) -> int | None:
    """1-based line of the node at `loc`, or of its deepest existing parent (e.g. for a missing field)."""
    if root is None:
        return None
    node, line = root, root.start_mark.line + 1
    key_line = line
    for part in loc:
        if part == "[key]":  # the error is about the mapping key just walked, not its value
            return key_line
        if isinstance(node, yaml.MappingNode):
            # last match wins, as in PyYAML's constructor (duplicate keys, merged keys)
            pair = next((kv for kv in reversed(node.value) if kv[0].value == str(part)), None)
            if pair is None:
                break
            key, node = pair
            key_line = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
        else:
            break
        line = node.start_mark.line + 1
    return line
