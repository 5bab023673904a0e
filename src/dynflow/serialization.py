"""JSON values: checking, output-reference markers, read-only views."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import orjson

from dynflow.errors import NotSerializable, ValueTooLarge

JSON = Any
REF_KEY = "__dynflow_ref__"


def to_json_value(
    value: Any, where: str, *, on_unknown: Callable[[Any], JSON] | None = None
) -> JSON:
    """A plain JSON copy of ``value`` (mappings -> dict, sequences -> list).

    ``where`` names the value in errors, e.g. ``"CreateVM output['vm']"``.
    ``on_unknown`` may convert values that are not JSON (e.g. output references);
    it raises ``TypeError`` to refuse them.
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise NotSerializable(f"{where}: {value} is not a JSON number")
        return value
    if isinstance(value, Mapping):
        result = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotSerializable(f"{where}: key {key!r} is not a string")
            result[key] = to_json_value(item, f"{where}[{key!r}]", on_unknown=on_unknown)
        return result
    if isinstance(value, list | tuple):
        return [
            to_json_value(item, f"{where}[{i}]", on_unknown=on_unknown)
            for i, item in enumerate(value)
        ]
    if on_unknown is not None:
        try:
            return on_unknown(value)
        except TypeError:
            pass
    raise NotSerializable(
        f"{where}: value of type {type(value).__name__} is not JSON-serialisable"
        " (use str, int, float, bool, None, lists and dicts with string keys)"
    )


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_SURROGATE = re.compile("[\ud800-\udfff]")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
#: an integer orjson may read as a float (it reads integers of up to 64 bits only): 19
#: digits or more, not part of a fraction or followed by one (digits in strings match
#: too, and go to the slower reader: no harm)
_LONG_NUMBER = re.compile(r"(?<![\d.])\d{19,}(?![\d.eE])")
_LONG_NUMBER_BYTES = re.compile(rb"(?<![\d.])\d{19,}(?![\d.eE])")
#: ASCII digits to "0", every other byte to " ": the UTF-8 text has a run of 19 digits
#: (a JSON number's digits are ASCII) where this has 19 zeros; much faster than the
#: expression above, which then runs only on texts that have such a run
_DIGITS = bytes(48 if 48 <= byte <= 57 else 32 for byte in range(256))
_DIGIT_RUN = b"0" * 19


def dumps(value: JSON) -> str:
    """Compact JSON text that every database stores as it is: NUL is escaped (as JSON
    escapes every control character), and so are lone surrogates, which UTF-8 cannot
    encode; other characters stay as they are.

    orjson writes it; what orjson refuses (lone surrogates, integers over 64 bits,
    keys that are not strings) goes to the standard library's encoder, which also
    raises the errors (``TypeError``, ``ValueError``) of values that are not JSON.
    """
    try:
        return orjson.dumps(value, option=_ORJSON_OPTIONS, default=_refuse).decode()
    except TypeError:
        pass
    text = _ENCODER.encode(value)
    if text.isascii():
        return text
    return _SURROGATE.sub(_escape, text)


#: datetimes and dataclasses are not JSON: they go to ``_refuse`` (then the standard
#: library says so), not to orjson's own conversions
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def _refuse(value: Any) -> Any:
    raise TypeError


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


#: the default of ``World(max_value_bytes=...)``: 10 MB per input, output or event payload
DEFAULT_MAX_VALUE_BYTES = 10 * 1024 * 1024


def check_size(value: JSON, limit: int, what: str) -> None:
    """Raise :class:`ValueTooLarge` when ``value`` as JSON (UTF-8) is over ``limit``
    bytes; ``what`` names it, e.g. ``"CreateVM output"``."""
    text = dumps(value)
    if len(text) * 4 <= limit:  # never more than 4 bytes a character: no need to count
        return
    size = len(text.encode())
    if size > limit:
        raise ValueTooLarge(
            f"{what} is {size} bytes as JSON, over the limit of {limit} bytes: keep large "
            "data elsewhere and pass a reference to it (the limit is "
            "World(max_value_bytes=...))"
        )


def storable_text(text: str) -> str:
    """``text`` for a plain text column (a label): NUL, which PostgreSQL's text cannot
    hold, and lone surrogates, which UTF-8 cannot encode, become U+FFFD, on every
    database alike."""
    return _UNSTORABLE.sub("\ufffd", text)


def loads(text: str | bytes | None) -> JSON:
    """The value of a JSON text (``ValueError`` if it is not JSON).

    orjson reads it, unless it may hold an integer of over 64 bits (orjson would make
    it a float) or orjson refuses it (e.g. an escaped lone surrogate): then the
    standard library does."""
    if text is None:
        return None
    if _may_hold_long_number(text):
        return json.loads(text)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _may_hold_long_number(text: str | bytes) -> bool:
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if _DIGIT_RUN not in raw.translate(_DIGITS):
        return False
    if isinstance(text, str):
        return _LONG_NUMBER.search(text) is not None
    return _LONG_NUMBER_BYTES.search(text) is not None


def freeze(value: JSON) -> Any:
    """A read-only view of a JSON value (dicts -> mapping proxies, lists -> tuples)."""
    if isinstance(value, dict):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(freeze(v) for v in value)
    return value


def ref_marker(action_id: int, path: tuple[str | int, ...]) -> dict[str, Any]:
    return {REF_KEY: {"action_id": action_id, "path": list(path)}}


def find_refs(value: JSON) -> set[int]:
    """Ids of the actions whose outputs ``value`` references."""
    found: set[int] = set()
    _collect_refs(value, found)
    return found


def _collect_refs(value: JSON, found: set[int]) -> None:
    if isinstance(value, dict):
        if REF_KEY in value and len(value) == 1:
            found.add(int(value[REF_KEY]["action_id"]))
            return
        for item in value.values():
            _collect_refs(item, found)
    elif isinstance(value, list):
        for item in value:
            _collect_refs(item, found)


def resolve_refs(value: JSON, outputs: Callable[[int], JSON]) -> JSON:
    """Replace reference markers by the referenced values.

    ``outputs(action_id)`` returns that action's output. A missing key raises
    ``KeyError`` with a message naming the reference.
    """
    if isinstance(value, dict):
        if REF_KEY in value and len(value) == 1:
            ref = value[REF_KEY]
            return _follow(outputs(int(ref["action_id"])), int(ref["action_id"]), ref["path"])
        return {k: resolve_refs(v, outputs) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_refs(v, outputs) for v in value]
    return value


def _follow(output: JSON, action_id: int, path: list[str | int]) -> JSON:
    current = output
    for depth, key in enumerate(path):
        try:
            current = current[key]
        except (KeyError, IndexError, TypeError):
            shown = "".join(f"[{k!r}]" for k in path[: depth + 1])
            raise KeyError(
                f"output reference action {action_id} output{shown}: no such key in its output"
            ) from None
    return current
