"""``dynflow.logs``: text or one JSON object per line, with the ``extra`` fields."""

from __future__ import annotations

import json
import logging

import pytest

from dynflow.logs import JsonFormatter, configure


def record(**extra: object) -> logging.LogRecord:
    made = logging.LogRecord(
        "dynflow.executor.core", logging.WARNING, "core.py", 1, "step %s failed", (3,), None
    )
    for key, value in extra.items():
        setattr(made, key, value)
    return made


def test_a_record_is_one_json_object_with_its_extra_fields() -> None:
    line = JsonFormatter().format(record(execution_plan_id="p-1", step_id=3, action_class="a.B"))
    entry = json.loads(line)
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "dynflow.executor.core"
    assert entry["message"] == "step 3 failed"
    assert (entry["execution_plan_id"], entry["step_id"], entry["action_class"]) == (
        "p-1",
        3,
        "a.B",
    )
    assert entry["time"].endswith("+00:00")
    assert "\n" not in line


def test_an_exception_travels_as_its_traceback() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        import sys

        failed = record()
        failed.exc_info = sys.exc_info()
    entry = json.loads(JsonFormatter().format(failed))
    assert "RuntimeError: boom" in entry["exception"]


def test_values_json_cannot_encode_are_written_as_text() -> None:
    entry = json.loads(JsonFormatter().format(record(when=object)))
    assert entry["when"] == str(object)


@pytest.mark.parametrize(
    ("level", "fmt", "named"), [("LOUD", "text", "log level"), ("INFO", "xml", "log format")]
)
def test_unknown_settings_are_refused(level: str, fmt: str, named: str) -> None:
    with pytest.raises(ValueError, match=f"unknown {named}"):
        configure(level, fmt)
