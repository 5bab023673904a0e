"""The PostgreSQL adapter: the generic one with one-statement fast paths.

Writes go out as one statement each (``bulk``), autocommitted; a plan is read
as one JSON document (``documents``); taking a plan over moves its lock, reads
it and writes the reply in one statement; envelopes wake their receiver with
NOTIFY (``envelopes``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from dynflow.errors import NotFound
from dynflow.execution_plan.model import ExecutionPlan
from dynflow.persistence.changes import Changes
from dynflow.persistence.postgres import documents, maintenance, sub_plans
from dynflow.persistence.postgres.bulk import Answer, Fence, PostgresBulkWriter
from dynflow.persistence.postgres.database import PostgresDatabase
from dynflow.persistence.postgres.envelopes import PostgresEnvelopeStore, channel
from dynflow.persistence.records import TakeOver
from dynflow.persistence.sql.adapter import SqlPersistence, change_operations
from dynflow.persistence.sql.bulk import Operation
from dynflow.persistence.sql.loading import execution_locks
from dynflow.persistence.sql.locks import lock_taken
from dynflow.persistence.sub_plans import SubPlanRound


class PostgresPersistence(SqlPersistence):
    db: PostgresDatabase
    bulk: PostgresBulkWriter

    def _open(self, database_url: str, idle_in_transaction: float | None) -> PostgresDatabase:
        return PostgresDatabase(database_url, idle_in_transaction=idle_in_transaction)

    def _bulk_writer(self) -> PostgresBulkWriter:
        return PostgresBulkWriter()

    def _envelope_store(self) -> PostgresEnvelopeStore:
        return PostgresEnvelopeStore(self.db)

    def _insert(self, operations: Sequence[Operation], envelope: tuple[str, str] | None) -> bool:
        """The plan, its envelope and the receiver's wake-up in one statement, straight
        on the driver."""
        try:
            if envelope is None:
                self.bulk.run(self.db, operations)
                return False
            return self.bulk.write_and_send(self.db, operations, envelope, channel(envelope[0]))
        except self.db.driver_integrity_errors as exc:  # a key or lock taken: the caller says which
            raise sa.exc.IntegrityError(None, None, exc) from exc

    def _apply_fenced(
        self, changes: Changes, owner: str, registration: str, plan_ids: set[str]
    ) -> set[str]:
        """One statement share-locks the owner's execution locks and writes."""
        fence = Fence(owner, registration, frozenset(plan_ids))
        answers = [
            Answer(plan_id, receiver, data, channel(receiver))
            for plan_id, (receiver, data) in changes.answers.items()
        ]
        held = self.bulk.write_fenced(self.db, change_operations(changes), fence, answers)
        return plan_ids - held

    def take_over_plan(
        self,
        plan_id: str,
        from_owner: str,
        owner: str,
        lock_data: Mapping[str, Any],
        reply: tuple[str, str] | None = None,
    ) -> tuple[bool, ExecutionPlan | None, bool]:
        """The lock moves, the plan is read and ``reply`` written, in one statement."""
        moved, document = documents.take_over_and_load(
            self.db, plan_id, from_owner, owner, dict(lock_data), reply
        )
        plan = None if document is None else document.to_plan()
        return moved, plan, moved and reply is not None

    def take_over_plans(
        self, owner: str, requests: Sequence[TakeOver]
    ) -> list[tuple[bool, ExecutionPlan | None, bool]]:
        """The locks move, the plans are read and the replies written, in one statement."""
        taken = documents.take_over_and_load_many(self.db, owner, requests)
        answers: list[tuple[bool, ExecutionPlan | None, bool]] = []
        for n, request in enumerate(requests):
            if n not in taken:
                answers.append((False, None, False))
                continue
            document = taken[n]
            plan = None if document is None else document.to_plan()
            answers.append((True, plan, request.reply is not None))
        return answers

    def load_execution_plan(self, execution_plan_id: str) -> ExecutionPlan:
        """One statement instead of four."""
        document = documents.load(self.db, [execution_plan_id]).get(execution_plan_id)
        if document is None:
            raise NotFound(f"execution plan {execution_plan_id} not found")
        return document.to_plan()

    def load_execution_plans(self, execution_plan_ids: Sequence[str]) -> list[ExecutionPlan]:
        """One statement for them all."""
        found = documents.load(self.db, execution_plan_ids)
        return [found[i].to_plan() for i in execution_plan_ids if i in found]

    def sub_plan_round(
        self, execution_plan_id: str, action_id: int, limit: int | None
    ) -> SubPlanRound:
        """One statement, one snapshot."""
        return sub_plans.read_round(self.db, execution_plan_id, action_id, limit)

    def lock_and_load_execution_plans(
        self, owner_id: str, execution_plan_ids: Sequence[str]
    ) -> list[ExecutionPlan]:
        """The locks taken and the plans read in one statement."""
        try:
            found = documents.lock_and_load(self.db, owner_id, execution_plan_ids)
        except self.db.driver_integrity_errors:
            raise lock_taken(self.db, execution_locks(owner_id, execution_plan_ids)) from None
        return [found[i].to_plan() for i in execution_plan_ids if i in found]

    def find_execution_plan(self, execution_plan_id: str) -> ExecutionPlan:
        """Loaded whole: one statement either way."""
        return self.load_execution_plan(execution_plan_id)

    def maintain(self) -> list[str]:
        """Vacuum and analyze the engine's tables that changed a lot since (autovacuum
        may be off, or behind)."""
        return maintenance.maintain(self.db)
