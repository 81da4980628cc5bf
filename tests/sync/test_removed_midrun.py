"""A school removed from SessionDb while a run that listed it has not reached it yet."""

from __future__ import annotations

from cleversync.sync.school import SyncRequest
from tests.world import World


def test_a_school_removed_before_its_turn_is_not_reported_as_being_synced(world: World) -> None:
    school = world.school(1)
    district = world.services.registry.get_district(school.district_id)
    world.services.registry.remove_school(school.school_id)  # never synced: no history
    result = world.services.school_sync().run(school, district, SyncRequest(correlation_id="c"))
    assert result.status == "Failed"
    assert result.error is not None
    assert result.error == f"no school has id {school.school_id} (removed since the run began)"
    assert world.history(school_id=school.school_id) == []
