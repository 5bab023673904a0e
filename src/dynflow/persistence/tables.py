"""The schema, written once. Migrations under ``migrations/`` must produce exactly this."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from dynflow.persistence.types import (
    DOUBLE,
    LONG_TEXT,
    JSONText,
    UTCDateTime,
    exact_string,
)

metadata = sa.MetaData()

UUID = sa.String(36)
#: every table in utf8mb4 on MySQL/MariaDB, whatever the database's default
MYSQL: dict[str, Any] = {"mysql_charset": "utf8mb4", "mariadb_charset": "utf8mb4"}

execution_plans = sa.Table(
    "dynflow_execution_plans",
    metadata,
    sa.Column("id", UUID, primary_key=True),
    sa.Column("label", exact_string(255), nullable=False),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("result", sa.String(20), nullable=False),
    sa.Column("started_at", UTCDateTime(), nullable=True),
    sa.Column("ended_at", UTCDateTime(), nullable=True),
    sa.Column("execution_time", DOUBLE, nullable=False, default=0.0),
    sa.Column("real_time", DOUBLE, nullable=False, default=0.0),
    sa.Column("caller_execution_plan_id", UUID, nullable=True),
    sa.Column("caller_action_id", sa.Integer(), nullable=True),
    # run_flow, finalize_flow and requires: written once at planning
    sa.Column("data", JSONText(), nullable=False),
    # trigger options (written once, at planning) and the planning world's code version
    sa.Column("key", exact_string(255), nullable=True),
    sa.Column("code_version", sa.String(64), nullable=True),
    sa.Column("priority", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("deadline_at", UTCDateTime(), nullable=True),
    sa.Column("labels", JSONText(), nullable=True),
    # the plans list's orders (see migration 0010): a time column and the id that
    # breaks its ties; state, result or label, then the start time and the id
    sa.Index("ix_dynflow_execution_plans_started_at_id", "started_at", "id"),
    sa.Index("ix_dynflow_execution_plans_ended_at_id", "ended_at", "id"),
    sa.Index("ix_dynflow_execution_plans_real_time_id", "real_time", "id"),
    sa.Index("ix_dynflow_execution_plans_state_started", "state", "started_at", "id"),
    sa.Index("ix_dynflow_execution_plans_result_started", "result", "started_at", "id"),
    sa.Index("ix_dynflow_execution_plans_label_started", "label", "started_at", "id"),
    sa.Index("ix_dynflow_execution_plans_state_ended", "state", "ended_at", "id"),
    sa.Index("ix_dynflow_execution_plans_state_real_time", "state", "real_time", "id"),
    sa.Index("ix_dynflow_execution_plans_state_result", "state", "result", "started_at", "id"),
    sa.Index("ix_dynflow_execution_plans_state_label", "state", "label", "started_at", "id"),
    # a parent's children by state: its counts and the planned ones to start
    sa.Index(
        "ix_dynflow_execution_plans_caller_state",
        "caller_execution_plan_id",
        "caller_action_id",
        "state",
        "result",
    ),
    sa.Index("ux_dynflow_execution_plans_key", "key", unique=True),
    sa.Index("ix_dynflow_execution_plans_deadline_at", "deadline_at"),
    **MYSQL,
)

#: ``after``: the plan ``execution_plan_id`` starts once ``after_plan_id`` stopped
plan_dependencies = sa.Table(
    "dynflow_plan_dependencies",
    metadata,
    sa.Column("execution_plan_id", UUID, primary_key=True),
    sa.Column("after_plan_id", UUID, primary_key=True),
    sa.Index("ix_dynflow_plan_dependencies_after", "after_plan_id"),
    **MYSQL,
)

actions = sa.Table(
    "dynflow_actions",
    metadata,
    sa.Column("execution_plan_id", UUID, primary_key=True),
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("action_class", sa.String(255), nullable=False),
    sa.Column("label", exact_string(255), nullable=False),
    sa.Column("input", JSONText(), nullable=False),
    sa.Column("output", JSONText(), nullable=False),
    sa.Column("plan_step_id", sa.Integer(), nullable=True),
    sa.Column("run_step_id", sa.Integer(), nullable=True),
    sa.Column("finalize_step_id", sa.Integer(), nullable=True),
    sa.Column("parent_action_id", sa.Integer(), nullable=True),
    **MYSQL,
)

steps = sa.Table(
    "dynflow_steps",
    metadata,
    sa.Column("execution_plan_id", UUID, primary_key=True),
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("action_id", sa.Integer(), nullable=False),
    sa.Column("action_class", sa.String(255), nullable=False),
    sa.Column("phase", sa.String(10), nullable=False),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("queue", sa.String(100), nullable=False),
    sa.Column("error", JSONText(), nullable=True),
    sa.Column("started_at", UTCDateTime(), nullable=True),
    sa.Column("ended_at", UTCDateTime(), nullable=True),
    sa.Column("execution_time", DOUBLE, nullable=False),
    sa.Column("real_time", DOUBLE, nullable=False),
    sa.Column("progress_done", DOUBLE, nullable=False),
    sa.Column("progress_weight", DOUBLE, nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UTCDateTime(), nullable=True),
    sa.Column("errors", JSONText(), nullable=True),
    **MYSQL,
)

execution_history = sa.Table(
    "dynflow_execution_history",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("execution_plan_id", UUID, nullable=False),
    sa.Column("time", UTCDateTime(), nullable=False),
    sa.Column("name", sa.String(50), nullable=False),
    sa.Column("world_id", UUID, nullable=True),
    sa.Index("ix_dynflow_execution_history_plan", "execution_plan_id"),
    **MYSQL,
)

coordinator_records = sa.Table(
    "dynflow_coordinator_records",
    metadata,
    sa.Column("class", exact_string(100), primary_key=True),
    sa.Column("id", exact_string(255), primary_key=True),
    sa.Column("owner_id", sa.String(255), nullable=True),
    sa.Column("data", JSONText(), nullable=False),
    sa.Index("ix_dynflow_coordinator_records_owner", "owner_id"),
    **MYSQL,
)

delayed_plans = sa.Table(
    "dynflow_delayed_plans",
    metadata,
    sa.Column("execution_plan_id", UUID, primary_key=True),
    sa.Column("start_at", UTCDateTime(), nullable=False),
    sa.Column("start_before", UTCDateTime(), nullable=True),
    # {"action_class": dotted name, "args": [...], "kwargs": {...}}
    sa.Column("args", JSONText(), nullable=False),
    sa.Index("ix_dynflow_delayed_plans_start_at", "start_at"),
    **MYSQL,
)

schedules = sa.Table(
    "dynflow_schedules",
    metadata,
    sa.Column("name", exact_string(200), primary_key=True),
    sa.Column("cron", sa.String(100), nullable=False),
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("action_class", sa.String(255), nullable=False),
    # {"args": [...], "kwargs": {...}}
    sa.Column("args", JSONText(), nullable=False),
    sa.Column("overlap", sa.String(10), nullable=False),
    sa.Column("catch_up", sa.Boolean(), nullable=False),
    sa.Column("paused", sa.Boolean(), nullable=False),
    sa.Column("next_run_at", UTCDateTime(), nullable=False),
    sa.Column("last_due_at", UTCDateTime(), nullable=True),
    sa.Column("last_plan_id", UUID, nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Index("ix_dynflow_schedules_next_run_at", "next_run_at"),
    **MYSQL,
)

envelopes = sa.Table(
    "dynflow_envelopes",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("receiver_id", sa.String(36), nullable=False),
    sa.Column("data", LONG_TEXT, nullable=False),
    sa.Index("ix_dynflow_envelopes_receiver", "receiver_id"),
    **MYSQL,
)

limits = sa.Table(
    "dynflow_limits",
    metadata,
    sa.Column("key", exact_string(255), primary_key=True),
    sa.Column("concurrency", sa.Integer(), nullable=True),
    sa.Column("rate", sa.Integer(), nullable=True),
    sa.Column("per", DOUBLE, nullable=True),
    **MYSQL,
)

limit_slots = sa.Table(
    "dynflow_limit_slots",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("key", exact_string(255), nullable=False),
    sa.Column("execution_plan_id", UUID, nullable=False),
    sa.Column("step_id", sa.Integer(), nullable=False),
    sa.Column("world_id", UUID, nullable=False),
    # waiting, holding, or spent (a rate-limited holder that ended, inside the window)
    sa.Column("state", sa.String(10), nullable=False),
    sa.Column("requested_at", UTCDateTime(), nullable=False),
    sa.Column("granted_at", UTCDateTime(), nullable=True),
    sa.Index("ix_dynflow_limit_slots_line", "key", "state", "id"),
    sa.Index("ix_dynflow_limit_slots_world", "world_id"),
    sa.Index("ix_dynflow_limit_slots_plan", "execution_plan_id"),
    **MYSQL,
)
