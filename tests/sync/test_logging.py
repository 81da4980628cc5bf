"""Sync log records carry their dimensions; one correlation id links a run's logs and history."""

from __future__ import annotations

import logging

from cleversync.sandbox import Fault
from cleversync.telemetry import configure_logging
from tests.world import World, clever_school_id

DIMENSIONS = ("SyncId", "CorrelationId", "DistrictId", "SchoolId", "EntityType", "Status")


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_sync_records_carry_dimensions_and_the_correlation_id(world: World) -> None:
    handler = Records()
    logging.getLogger().addHandler(handler)
    configure_logging(
        world.services.settings, level=logging.DEBUG, redactor=world.services.redactor
    )
    world.sandbox.faults.add(
        Fault("status", path=f"/v3.0/schools/{clever_school_id(world)}/users", status=503, times=1)
    )
    try:
        run = world.sync(school_id=1)
    finally:
        logging.getLogger().removeHandler(handler)
    entity_records = [r for r in handler.records if r.getMessage().startswith("Synced ")]
    assert len(entity_records) == 3
    rows = {r["SyncId"]: r for r in world.history(school_id=1)}
    for record in entity_records:
        for name in DIMENSIONS:
            assert getattr(record, name, None) is not None, name
        assert record.CorrelationId == run.correlation_id
        assert rows[record.SyncId]["CorrelationId"] == run.correlation_id
        assert rows[record.SyncId]["EntityType"] == record.EntityType
    # A retry logged deep in the Clever client still says which run and school it delayed.
    retry = next(r for r in handler.records if r.getMessage().startswith("Retrying students"))
    assert (retry.CorrelationId, retry.SchoolId, retry.DistrictId) == (run.correlation_id, 1, 1)
    finish = next(r for r in handler.records if "finished: Success" in r.getMessage())
    assert finish.Status == "Success"
    assert finish.CorrelationId == run.correlation_id
