"""Flows: JSON round trip, simplification, step order, rejection of bad stored data."""

from __future__ import annotations

from typing import Any

import pytest

from dynflow.flows import Atom, Concurrence, Flow, Sequence, from_json, simplify, step_ids, to_json

NESTED = Sequence(
    [
        Atom(1),
        Concurrence([Atom(2), Sequence([Atom(3), Atom(4)]), Atom(5)]),
        Atom(6),
    ]
)
NESTED_JSON = {
    "sequence": [
        1,
        {"concurrence": [2, {"sequence": [3, 4]}, 5]},
        6,
    ]
}


def test_to_json_writes_the_documented_format() -> None:
    assert to_json(NESTED) == NESTED_JSON


def test_from_json_reads_the_documented_format() -> None:
    assert from_json(NESTED_JSON) == NESTED


@pytest.mark.parametrize(
    "flow",
    [
        Atom(7),
        Sequence([]),
        Concurrence([]),
        Sequence([Atom(1), Atom(2)]),
        Concurrence([Sequence([Atom(1)]), Concurrence([])]),
        NESTED,
    ],
    ids=["atom", "empty-sequence", "empty-concurrence", "sequence", "nested-empty", "nested"],
)
def test_round_trip_keeps_the_flow(flow: Flow) -> None:
    assert from_json(to_json(flow)) == flow
    # the kind survives, not only the step ids
    assert type(from_json(to_json(flow))) is type(flow)


def test_sequence_and_concurrence_with_same_steps_differ() -> None:
    assert from_json({"sequence": [1, 2]}) != from_json({"concurrence": [1, 2]})


@pytest.mark.parametrize(
    "data",
    [
        None,
        "1",
        1.5,
        True,
        [1, 2],
        {},
        {"parallel": [1, 2]},
        {"sequence": [1], "concurrence": [2]},
        {"sequence": 5},
        {"sequence": [1, "two"]},
        {"concurrence": [{"sequence": [None]}]},
    ],
)
def test_from_json_rejects_bad_data(data: Any) -> None:
    with pytest.raises(ValueError, match="not a stored flow"):
        from_json(data)


@pytest.mark.parametrize(
    ("flow", "expected"),
    [
        (Atom(1), Atom(1)),
        (Sequence([Atom(1)]), Atom(1)),
        (Concurrence([Atom(1)]), Atom(1)),
        (Sequence([Concurrence([Sequence([Atom(4)])])]), Atom(4)),
        (Sequence([Atom(1), Concurrence([]), Atom(2)]), Sequence([Atom(1), Atom(2)])),
        (
            Concurrence([Sequence([]), Atom(1), Concurrence([Sequence([])]), Atom(2)]),
            Concurrence([Atom(1), Atom(2)]),
        ),
        (Sequence([Concurrence([]), Sequence([])]), Sequence([])),
        (Concurrence([]), Concurrence([])),
        (
            Sequence([Concurrence([Atom(1), Sequence([])]), Concurrence([Atom(2), Atom(3)])]),
            Sequence([Atom(1), Concurrence([Atom(2), Atom(3)])]),
        ),
        (
            Concurrence([Sequence([Atom(1), Atom(2)]), Sequence([Atom(3)])]),
            Concurrence([Sequence([Atom(1), Atom(2)]), Atom(3)]),
        ),
    ],
    ids=[
        "atom",
        "single-sequence",
        "single-concurrence",
        "deep-single",
        "drop-empty-in-sequence",
        "drop-empty-in-concurrence",
        "all-empty",
        "top-empty",
        "collapse-after-drop",
        "collapse-inner",
    ],
)
def test_simplify(flow: Flow, expected: Flow) -> None:
    simplified = simplify(flow)
    assert simplified == expected
    assert type(simplified) is type(expected)
    # simplification never loses or reorders steps
    assert list(step_ids(simplified)) == list(step_ids(flow))


def test_simplify_keeps_the_kind_of_a_compound() -> None:
    result = simplify(Concurrence([Atom(1), Sequence([]), Atom(2)]))
    assert isinstance(result, Concurrence)
    result = simplify(Sequence([Atom(1), Concurrence([]), Atom(2)]))
    assert isinstance(result, Sequence)


def test_step_ids_are_depth_first_in_flow_order() -> None:
    assert list(step_ids(NESTED)) == [1, 2, 3, 4, 5, 6]
    flow = Concurrence([Sequence([Atom(9), Atom(3)]), Atom(1), Sequence([])])
    assert list(step_ids(flow)) == [9, 3, 1]


def test_step_ids_of_empty_and_single() -> None:
    assert list(step_ids(Concurrence([]))) == []
    assert list(step_ids(Atom(5))) == [5]
