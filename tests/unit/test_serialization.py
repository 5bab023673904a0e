"""JSON values: checking with errors that name the place, read-only views, references."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import pytest

from dynflow import NotSerializable
from dynflow.action.references import OutputReference, to_marker_or_refuse
from dynflow.serialization import (
    REF_KEY,
    dumps,
    find_refs,
    freeze,
    loads,
    ref_marker,
    resolve_refs,
    to_json_value,
)

# -- to_json_value -------------------------------------------------------------------------


def test_plain_json_values_are_copied() -> None:
    value = {"a": [1, 2.5, "x", None, True, {"b": []}], "c": ("t", 1)}
    result = to_json_value(value, "CreateVM input")
    assert result == {"a": [1, 2.5, "x", None, True, {"b": []}], "c": ["t", 1]}
    # a copy: changing it does not change the original
    result["a"][5]["b"].append(1)
    assert value["a"][5] == {"b": []}


def test_read_only_mappings_and_tuples_become_dicts_and_lists() -> None:
    result = to_json_value(MappingProxyType({"k": (1, (2,))}), "X output")
    assert result == {"k": [1, [2]]}
    assert type(result) is dict
    assert type(result["k"]) is list


def test_error_names_the_place_and_key() -> None:
    with pytest.raises(NotSerializable) as raised:
        to_json_value({"when": datetime.now(UTC)}, "CreateVM output")
    message = str(raised.value)
    assert "CreateVM output['when']" in message
    assert "datetime" in message


def test_error_names_a_nested_place() -> None:
    with pytest.raises(NotSerializable, match=r"CreateVM output\['a'\]\[1\]\['b'\]: value of type"):
        to_json_value({"a": [0, {"b": {1, 2}}]}, "CreateVM output")


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_are_refused(number: float) -> None:
    with pytest.raises(NotSerializable, match=r"Job output\['x'\]: .* is not a JSON number"):
        to_json_value({"x": number}, "Job output")


@pytest.mark.parametrize("key", [1, None, ("a",), 2.5])
def test_non_string_keys_are_refused(key: Any) -> None:
    with pytest.raises(NotSerializable, match=r"Job input\['m'\]: key .* is not a string"):
        to_json_value({"m": {key: "v"}}, "Job input")


class Thing:
    pass


@pytest.mark.parametrize("value", [Thing(), object(), b"bytes", {1, 2}, datetime.now(UTC)])
def test_objects_are_refused(value: Any) -> None:
    with pytest.raises(NotSerializable, match=type(value).__name__):
        to_json_value([value], "Job output")


def test_on_unknown_converts_values_it_accepts() -> None:
    ref = OutputReference(3, "CreateVM", ("id",))
    result = to_json_value({"vm": ref}, "Attach input", on_unknown=to_marker_or_refuse)
    assert result == {"vm": ref_marker(3, ("id",))}


def test_on_unknown_refusing_gives_the_usual_error() -> None:
    with pytest.raises(NotSerializable, match=r"Attach input\['x'\]: value of type Thing"):
        to_json_value({"x": Thing()}, "Attach input", on_unknown=to_marker_or_refuse)


def test_dumps_and_loads_round_trip() -> None:
    value = {"name": "wéb-1", "n": [1, 2.5, None, True]}
    assert loads(dumps(value)) == value
    assert "wéb-1" in dumps(value)
    assert loads(None) is None


@pytest.mark.parametrize(
    "value",
    [
        {"text": "é ü 中 \u2028", "nul": "a\x00b", "control": "\n\t\x1f"},
        {"big": 2**70, "negative": -(2**64), "exact": 12345678901234567890},
        {"float": 0.00012345678901234567, "large": 1e16, "tiny": 5e-324, "zero": -0.0},
        {"nested": [[[{"deep": [1, [2, [3]]]}]]], "empty": [{}, []]},
        "lone \ud800 and \udfff",
    ],
)
def test_dumps_writes_what_the_standard_library_writes_and_loads_reads_it_back(
    value: Any,
) -> None:
    """Non-ASCII text stays as it is; NUL and control characters are escaped; integers
    of any size and every float come back exactly; lone surrogates become escapes."""
    text = dumps(value)
    assert json.loads(text) == json.loads(_stdlib(value))
    assert loads(text) == value
    assert loads(text.encode()) == value
    assert "\x00" not in text
    if isinstance(value, dict) and "text" in value:
        assert "é ü 中" in text


def _stdlib(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@pytest.mark.parametrize(
    "value",
    [
        {"when": datetime(2026, 1, 1, tzinfo=UTC)},
        {"view": MappingProxyType({"a": 1})},
        {"thing": object()},
        {"set": {1, 2}},
    ],
)
def test_dumps_refuses_what_the_standard_library_refuses_with_its_message(value: Any) -> None:
    with pytest.raises(TypeError) as expected:
        _stdlib(value)
    with pytest.raises(TypeError) as refused:
        dumps(value)
    assert str(refused.value) == str(expected.value)


def test_dumps_writes_non_string_keys_as_the_standard_library_does() -> None:
    assert dumps({1: "a", None: "b"}) == _stdlib({1: "a", None: "b"})


@pytest.mark.parametrize("prefix", ["", "é \ud800 中", "١٢٣٤٥٦٧٨٩٠١٢٣٤٥٦٧٨٩٠"])
def test_loads_reads_long_integers_exactly_whatever_else_the_text_holds(prefix: str) -> None:
    text = dumps({"s": prefix, "big": 2**70, "n": -(2**64), "f": 0.12345678901234567890123})
    for given in (text, text.encode("utf-8", "surrogatepass")):
        value = loads(given)
        assert (value["big"], value["n"]) == (2**70, -(2**64))
        assert isinstance(value["f"], float)
    assert loads("[1234567890123456789, 123456789012345678]") == [
        1234567890123456789,
        123456789012345678,
    ]
    assert loads('["\ud800", 123456789012345678901]') == ["\ud800", 123456789012345678901]
    # the shortest integers orjson reads as floats: 19 digits, alone in the text
    assert loads("[-9223372036854775809]") == [-(2**63) - 1]
    assert loads(b'{"n": -9223372036854775809}') == {"n": -(2**63) - 1}


def test_loads_refuses_text_that_is_not_json() -> None:
    with pytest.raises(ValueError, match="line 1 column 2"):
        loads("{oops")


# -- freeze --------------------------------------------------------------------------------


def test_freeze_makes_nested_read_only_views() -> None:
    original = {"a": {"b": [1, {"c": 2}]}, "d": "x"}
    frozen = freeze(original)
    assert frozen["a"]["b"][1]["c"] == 2
    assert frozen["a"]["b"] == (1, frozen["a"]["b"][1])
    with pytest.raises(TypeError):
        frozen["d"] = "y"
    with pytest.raises(TypeError):
        frozen["a"]["new"] = 1
    with pytest.raises(TypeError):
        frozen["a"]["b"][1]["c"] = 3
    assert not hasattr(frozen["a"]["b"], "append")
    assert frozen == {"a": {"b": (1, {"c": 2})}, "d": "x"}


def test_freeze_leaves_scalars_alone() -> None:
    for value in (None, 1, 2.5, "s", True):
        assert freeze(value) == value


# -- references ----------------------------------------------------------------------------


OUTPUTS: dict[int, Any] = {
    1: {"id": 42, "net": {"ips": ["10.0.0.1", "10.0.0.2"], "name": "lan"}},
    2: {"ok": True},
}


def test_resolve_refs_resolves_nested_paths_anywhere_in_the_value() -> None:
    value = {
        "vm": ref_marker(1, ("id",)),
        "list": [ref_marker(1, ("net", "ips", 1)), {"deep": ref_marker(1, ("net", "name"))}],
        "whole": ref_marker(2, ()),
        "plain": "x",
    }
    assert resolve_refs(value, OUTPUTS.__getitem__) == {
        "vm": 42,
        "list": ["10.0.0.2", {"deep": "lan"}],
        "whole": {"ok": True},
        "plain": "x",
    }


def test_resolve_refs_of_an_output_reference_built_by_indexing() -> None:
    ref = OutputReference(1, "CreateVM")["net"]["ips"][0]
    assert resolve_refs({"ip": ref.to_marker()}, OUTPUTS.__getitem__) == {"ip": "10.0.0.1"}


@pytest.mark.parametrize(
    ("path", "shown"),
    [
        (("missing",), "['missing']"),
        (("net", "gateway"), "['net']['gateway']"),
        (("net", "ips", 5), "['net']['ips'][5]"),
        (("id", "x"), "['id']['x']"),
    ],
)
def test_resolve_refs_missing_key_names_the_reference(path: tuple[Any, ...], shown: str) -> None:
    with pytest.raises(KeyError) as raised:
        resolve_refs({"v": ref_marker(1, path)}, OUTPUTS.__getitem__)
    message = str(raised.value)
    assert "action 1" in message
    assert f"output{shown}" in message


def test_a_dict_that_only_looks_like_a_marker_is_left_alone() -> None:
    value = {REF_KEY: {"action_id": 1, "path": []}, "other": 1}
    assert resolve_refs(value, OUTPUTS.__getitem__) == value
    assert find_refs(value) == set()


def test_find_refs_collects_referenced_action_ids() -> None:
    value = {"a": ref_marker(1, ("x",)), "b": [ref_marker(5, ()), {"c": ref_marker(1, ())}]}
    assert find_refs(value) == {1, 5}
    assert find_refs({"a": [1, "x"]}) == set()
