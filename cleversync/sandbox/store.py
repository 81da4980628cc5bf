"""One district's records, their sorted id indexes, and the changes that emit events."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from cleversync.sandbox.changes import merge, previous_attributes
from cleversync.sandbox.events import EventLog
from cleversync.sandbox.generator import GeneratedDistrict
from cleversync.sandbox.ids import iso_ms
from cleversync.sandbox.paging import SortedIds

IndexKey = tuple[str | bool | None, ...]

ROLES = ("student", "teacher", "staff", "district_admin", "contact")


def user_schools(user: dict[str, Any]) -> list[str]:
    """Every school a user's roles name, primary school first, without repeats."""
    found: dict[str, None] = {}
    for role in user.get("roles", {}).values():
        if role.get("school"):
            found[role["school"]] = None
        for school_id in role.get("schools") or ():
            found[school_id] = None
    return list(found)


def _user_keys(user: dict[str, Any]) -> list[IndexKey]:
    keys: list[IndexKey] = [("users", None)]
    for role_name, role in user.get("roles", {}).items():
        keys.append(("users", role_name))
        # /schools/{id}/users lists everyone whose role names the school in "schools",
        # not only those whose primary school it is (that is what primary=true asks).
        for school_id in role.get("schools") or ():
            keys += [
                ("school_users", school_id, None, False),
                ("school_users", school_id, role_name, False),
            ]
        if role.get("school"):
            primary = role["school"]
            keys += [
                ("school_users", primary, None, True),
                ("school_users", primary, role_name, True),
            ]
    return list(dict.fromkeys(keys))


def _section_keys(section: dict[str, Any]) -> list[IndexKey]:
    return [("sections",), ("school_sections", section.get("school"))]


def _school_keys(school: dict[str, Any]) -> list[IndexKey]:
    return [("schools",)]


KeysOf = Callable[[dict[str, Any]], list[IndexKey]]


class UnknownRecordError(KeyError):
    """No record with that id in this district."""


class DistrictState:
    """A district's current objects, kept immutable: changes replace them (copy-on-write).

    Pages hold references to stored objects and serialize them after the lock is released;
    events keep the snapshot they were made with. Neither works if anything edits a stored
    object in place, so nothing does.
    """

    def __init__(self, generated: GeneratedDistrict, events: EventLog) -> None:
        self.district = generated.district
        self.id: str = generated.district["id"]
        self.schools: dict[str, dict[str, Any]] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.sections: dict[str, dict[str, Any]] = {}
        self._indexes: dict[IndexKey, SortedIds] = {}
        self.events = events
        self.events_enabled = True
        self.events_disabled_status = 403
        # Bulk load: append to the index lists, then sort once (cheap: ids come ascending).
        for kind, objects, keys in (
            ("schools", generated.schools, _school_keys),
            ("users", generated.users, _user_keys),
            ("sections", generated.sections, _section_keys),
        ):
            table = self._table(kind)
            for obj in objects:
                table[obj["id"]] = obj
                for key in keys(obj):
                    index = self._indexes.get(key)
                    if index is None:
                        index = self._indexes[key] = SortedIds()
                    index.ids.append(obj["id"])
        for index in self._indexes.values():
            index.ids.sort()

    # -- reading ---------------------------------------------------------------------------

    def ids(self, key: IndexKey) -> list[str]:
        """The ascending ids under an index key (read only; empty when nothing matches)."""
        index = self._indexes.get(key)
        return index.ids if index is not None else []

    def school_ids(self) -> list[str]:
        return self.ids(("schools",))

    def object(self, kind: str, object_id: str) -> dict[str, Any] | None:
        if kind == "districts":
            return self.district if object_id == self.id else None
        return self._table(kind).get(object_id)

    def _table(self, kind: str) -> dict[str, dict[str, Any]]:
        return {"users": self.users, "sections": self.sections, "schools": self.schools}[kind]

    # -- index upkeep ----------------------------------------------------------------------

    def _index(self, key: IndexKey, object_id: str, *, add: bool) -> None:
        index = self._indexes.get(key)
        if add:
            if index is None:
                index = self._indexes[key] = SortedIds()
            index.add(object_id)
        elif index is not None:
            index.discard(object_id)

    def _put(
        self, kind: str, obj: dict[str, Any], keys: KeysOf, old: dict[str, Any] | None
    ) -> None:
        old_keys = keys(old) if old is not None else []
        new_keys = keys(obj)
        for key in old_keys:
            if key not in new_keys:
                self._index(key, obj["id"], add=False)
        for key in new_keys:
            if key not in old_keys:
                self._index(key, obj["id"], add=True)
        self._table(kind)[obj["id"]] = obj

    def _drop(self, kind: str, obj: dict[str, Any], keys: KeysOf) -> None:
        for key in keys(obj):
            self._index(key, obj["id"], add=False)
        del self._table(kind)[obj["id"]]

    # -- changes (each emits the matching event) -------------------------------------------

    def add_user(self, user: dict[str, Any], now: float) -> None:
        if user["id"] in self.users:
            raise ValueError(f"user {user['id']} already exists")
        self._put("users", user, _user_keys, None)
        self.events.append("users.created", user, None, user_schools(user), now)

    def update_user(self, user_id: str, changes: dict[str, Any], now: float) -> bool:
        old = self._get(self.users, user_id)
        new = self._changed(old, changes, now)
        if new is None:
            return False
        self._put("users", new, _user_keys, old)
        schools = user_schools(new) + user_schools(old)  # leavers must hear about it too
        self.events.append("users.updated", new, previous_attributes(old, new), schools, now)
        return True

    def remove_user(self, user_id: str, now: float, *, unenroll: bool = True) -> None:
        user = self._get(self.users, user_id)
        if unenroll:  # the SIS drops the enrolments first: sections.updated, then users.deleted
            for section in list(self._sections_with(user_id)):
                self.update_section(section["id"], without_member(section, user_id), now)
        self._drop("users", user, _user_keys)
        self.events.append("users.deleted", user, None, user_schools(user), now)

    def add_section(self, section: dict[str, Any], now: float) -> None:
        if section["id"] in self.sections:
            raise ValueError(f"section {section['id']} already exists")
        self._put("sections", section, _section_keys, None)
        self.events.append("sections.created", section, None, _section_schools(section), now)

    def update_section(self, section_id: str, changes: dict[str, Any], now: float) -> bool:
        old = self._get(self.sections, section_id)
        new = self._changed(old, changes, now)
        if new is None:
            return False
        self._put("sections", new, _section_keys, old)
        schools = _section_schools(new) + _section_schools(old)
        self.events.append("sections.updated", new, previous_attributes(old, new), schools, now)
        return True

    def remove_section(self, section_id: str, now: float) -> None:
        section = self._get(self.sections, section_id)
        self._drop("sections", section, _section_keys)
        self.events.append("sections.deleted", section, None, _section_schools(section), now)

    @staticmethod
    def _get(table: dict[str, dict[str, Any]], object_id: str) -> dict[str, Any]:
        try:
            return table[object_id]
        except KeyError:
            raise UnknownRecordError(object_id) from None

    @staticmethod
    def _changed(old: dict[str, Any], changes: dict[str, Any], now: float) -> dict[str, Any] | None:
        if "id" in changes and changes["id"] != old["id"]:
            raise ValueError("a record's id cannot change")
        new = merge(old, changes)
        if new == old:
            return None
        if "last_modified" not in changes:
            new["last_modified"] = iso_ms(now)
        return new

    def _sections_with(self, user_id: str) -> Iterable[dict[str, Any]]:
        for section in self.sections.values():
            if user_id in section.get("students", ()) or user_id in section.get("teachers", ()):
                yield section

    def sections_of_user(self, user_id: str) -> list[str]:
        return sorted(section["id"] for section in self._sections_with(user_id))


def _section_schools(section: dict[str, Any]) -> list[str]:
    return [section["school"]] if section.get("school") else []


def without_member(section: dict[str, Any], user_id: str) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if user_id in section.get("students", ()):
        changes["students"] = [s for s in section["students"] if s != user_id]
    if user_id in section.get("teachers", ()) or section.get("teacher") == user_id:
        teachers = [t for t in section.get("teachers", ()) if t != user_id]
        changes["teachers"] = teachers
        if section.get("teacher") == user_id:
            changes["teacher"] = teachers[0] if teachers else ""
    return changes
