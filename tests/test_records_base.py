"""The record base: what from_json refuses, what to_json writes, and the schema it derives."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

import re

import pytest

from harness.records import Record, RecordError, Section


@dataclass
class Lat(Section):
    median: float
    p95: float | None = None


@dataclass
class Doc(Record):
    KIND = "test-doc"
    VERSION = 3
    status: Literal["ok", "error"]
    count: int
    lat: Lat | None = None
    tags: list[str] = field(default_factory=list)
    free: dict[str, Any] = field(default_factory=dict)


GOOD = {"schema": 3, "status": "ok", "count": 2, "lat": {"median": 1, "p95": 2.5},
        "tags": ["a"], "free": {"x": [1, None]}}


def test_round_trip_is_the_same_json():
    d = Doc.from_json(GOOD)
    assert isinstance(d.lat, Lat) and d.lat.median == 1 and d.lat.p95 == 2.5
    assert d.to_json() == GOOD
    # an integer read as a number stays an integer: written back, the file is the same bytes
    assert json.dumps(d.to_json(omit_absent=True)) == json.dumps(GOOD)


@pytest.mark.parametrize("change, message", [
    ({"schema": 2}, "written by an older qparity"),
    ({"schema": 4}, "written by a newer qparity"),
    ({"schema": "3"}, "schema is '3'"),
    ({"status": "maybe"}, "status is 'maybe', not one of 'ok', 'error'"),
    ({"count": True}, "count is boolean True, not an integer"),
    ({"count": 2.0}, "count is number 2.0, not an integer"),
    ({"lat": {"median": float("nan")}}, "lat.median is nan, not a finite number"),
    ({"lat": {"median": 1, "p50": 1}}, "lat.p50 is not a field of Lat"),
    ({"tags": ["a", 3]}, "tags[1] is number 3, not a string"),
    ({"extra": 1}, "extra is not a field of Doc"),
])
def test_refusals_name_the_field(change, message):
    with pytest.raises(RecordError, match=re.escape(message)):
        Doc.from_json({**GOOD, **change})


def test_omit_absent_writes_back_exactly_the_keys_read():
    sparse = {"schema": 3, "status": "ok", "count": 2, "lat": {"median": 1.5}}
    d = Doc.from_json(sparse)
    assert d.to_json(omit_absent=True) == sparse
    # every field by default: the absent ones at their defaults, as before
    assert d.to_json() == {**sparse, "lat": {"median": 1.5, "p95": None}, "tags": [], "free": {}}
    assert not d.has("tags") and d.has("count") and not d.lat.has("p95")
    d.lat.p95 = None  # set, even to the default: written from now on
    d.tags.append("x")  # changed in place: no longer the default, so written
    assert d.to_json(omit_absent=True) == {**sparse, "lat": {"median": 1.5, "p95": None},
                                           "tags": ["x"]}


def test_omit_absent_keeps_the_order_read_then_the_order_set():
    d = Doc.from_json({"count": 2, "schema": 3, "status": "ok"})
    d.free = {"k": 1}
    d.lat = Lat.sparse(p95=2.0, median=1.0)
    assert list(d.to_json(omit_absent=True)) == ["schema", "count", "status", "free", "lat"]
    assert list(d.to_json(omit_absent=True)["lat"]) == ["p95", "median"]
    assert list(d.to_json()) == ["schema", "status", "count", "lat", "tags", "free"]


def test_sparse_builds_a_section_with_only_the_fields_given():
    lat = Lat.sparse(median=2.0)
    assert lat.p95 is None and lat.to_json(omit_absent=True) == {"median": 2.0}
    assert Lat(median=2.0).to_json(omit_absent=True) == {"median": 2.0, "p95": None}


def test_dig_reads_free_form_json():
    from harness.records.base import dig

    env = {"cpu": {"model": "EPYC", "emulated": None}, "gpus": []}
    assert dig(env, "cpu", "model") == "EPYC"
    assert dig(env, "cpu", "emulated", "label") is None
    assert dig(env, "gpus", "name") is None and dig(None, "cpu") is None


def test_missing_required_field_and_not_an_object():
    bad = dict(GOOD)
    del bad["count"]
    with pytest.raises(RecordError, match="^count is missing$"):
        Doc.from_json(bad)
    with pytest.raises(RecordError, match="not a test-doc record"):
        Doc.from_json([1])


def test_schema_is_derived_from_the_fields():
    s = Doc.json_schema()
    assert s["$id"] == "qparity.test-doc.v3"
    assert s["properties"]["schema"] == {"const": 3, "description": "test-doc schema version"}
    assert s["required"] == ["schema", "status", "count"]
    assert s["additionalProperties"] is False
    assert s["properties"]["status"] == {"enum": ["ok", "error"]}
    assert s["properties"]["lat"] == {"anyOf": [{"$ref": "#/$defs/Lat"}, {"type": "null"}]}
    assert s["$defs"]["Lat"]["required"] == ["median"]
    assert s["properties"]["free"] == {"type": "object", "additionalProperties": {}}
