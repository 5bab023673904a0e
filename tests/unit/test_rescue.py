"""Rescue strategies combined over failed actions; action names and labels."""

from __future__ import annotations

import pytest

from dynflow import Action, Phase, PhaseContext, Rescue
from dynflow.action.base import combine_rescue

SKIP, FAIL, PAUSE, REVERT = Rescue.SKIP, Rescue.FAIL, Rescue.PAUSE, Rescue.REVERT


@pytest.mark.parametrize(
    ("strategies", "combined"),
    [
        ([SKIP], SKIP),
        ([SKIP, SKIP, SKIP], SKIP),
        ([FAIL], FAIL),
        ([FAIL, FAIL], FAIL),
        ([PAUSE], PAUSE),
        ([PAUSE, PAUSE], PAUSE),
        ([SKIP, FAIL], PAUSE),
        ([SKIP, PAUSE], PAUSE),
        ([FAIL, PAUSE], PAUSE),
        ([SKIP, FAIL, PAUSE], PAUSE),
        ([FAIL, SKIP, SKIP], PAUSE),
        ([], PAUSE),
        ([REVERT], REVERT),
        ([REVERT, REVERT], REVERT),
        ([REVERT, PAUSE], PAUSE),
        ([REVERT, SKIP], PAUSE),
        ([REVERT, FAIL, REVERT], PAUSE),
    ],
)
def test_combine_rescue(strategies: list[Rescue], combined: Rescue) -> None:
    assert combine_rescue(strategies) is combined


def test_rescue_values() -> None:
    assert [r.value for r in Rescue] == ["pause", "skip", "fail", "revert"]
    assert Action.rescue_strategy is Rescue.PAUSE


class CreateVM(Action):
    pass


class SyncRepository(Action):
    pass


class Provision2Hosts(Action):
    pass


class Plain(Action):
    pass


class Labelled(Action):
    label = "Create a virtual machine"


class SubOfCreateVM(CreateVM):
    pass


class SkipMe(Action):
    rescue_strategy = Rescue.SKIP


@pytest.mark.parametrize(
    ("cls", "name"),
    [
        (CreateVM, "Create VM"),
        (SyncRepository, "Sync Repository"),
        (Provision2Hosts, "Provision2 Hosts"),
        (Plain, "Plain"),
        (Labelled, "Labelled"),
    ],
)
def test_humanized_name(cls: type[Action], name: str) -> None:
    assert cls.humanized_name() == name


def test_label_defaults_to_the_humanized_name() -> None:
    assert CreateVM.label == "Create VM"
    assert SyncRepository.label == "Sync Repository"


def test_class_level_label_wins() -> None:
    assert Labelled.label == "Create a virtual machine"
    assert Labelled.humanized_name() == "Labelled"


def test_label_is_per_class_not_inherited_from_the_base_default() -> None:
    assert SubOfCreateVM.label == "Sub Of Create VM"


def test_label_on_an_instance() -> None:
    context = PhaseContext(None, "plan-1", Phase.RUN)  # type: ignore[arg-type]
    assert CreateVM(context, 1).label == "Create VM"
    assert Labelled(context, 2).label == "Create a virtual machine"


def test_rescue_strategy_is_a_class_attribute() -> None:
    assert SkipMe.rescue_strategy is Rescue.SKIP
    assert CreateVM.rescue_strategy is Rescue.PAUSE
