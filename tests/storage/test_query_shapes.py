"""The registry of reads in server/store.py: every declared query has an index that serves it, on
SQLite's planner (and on a real MongoDB's, given ``KUNJUNG_TEST_MONGO_URI``), and every index serves one.

The suite runs with strict queries on (tests/conftest.py), so a read the server makes without a
declared query fails the test that made it; this file checks that the declarations are true.
"""

from __future__ import annotations

import os
import re
import uuid

import pymongo
import pytest

from server.storage import In, Range, open_store
from server.storage.base import index_serves, sort_key
from server.storage.mongo import _key, _query
from server.store import COLLECTIONS

SHAPES = [(spec, query) for spec in COLLECTIONS for query in spec.queries]


def _sample(spec, query):
    """A read of the query's shape: a value for each filter field (a range on seq, as a pull's)."""
    where = {}
    for name in query.filter:
        where[name] = Range(gt=0) if name == "seq" else In(["a", "b"]) if name == "id" else "x"
    return where


def _id(item):
    spec, query = item
    return f"{spec.name}: {', '.join(query.filter) or '-'} by {query.order or 'count'}"


def _index_name(spec, index):
    if index == ("id",):
        return f"sqlite_autoindex_c_{spec.name}_1"
    return f"ix_{spec.name}__{'_'.join(index)}"


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory):
    store = open_store(f"sqlite:///{tmp_path_factory.mktemp('shapes')}/kunjung.db", COLLECTIONS)
    store.ensure_schema()
    yield store
    store.close()


@pytest.mark.parametrize("item", SHAPES, ids=[_id(item) for item in SHAPES])
def test_sqlite_serves_each_declared_read_from_its_index_without_sorting(sqlite_store, item):
    spec, query = item
    plan = sqlite_store.explain(spec.name, _sample(spec, query), order_by=query.order)
    text = " / ".join(plan)
    assert "USE TEMP B-TREE" not in text, text
    keys = set(query.filter) - {query.order}
    if keys or query.order not in (None, "id"):
        # The declared index, or another that serves the read as well (SQLite counts with the smallest).
        indexes = {_index_name(spec, index): index for index in (*spec.indexes, ("id",), ("seq",))}
        used = re.search(r"USING (?:COVERING )?INDEX (\S+)", text)
        assert used, text
        assert index_serves(indexes[used.group(1)], query.filter, query.order), text
        if query.order:
            assert used.group(1) == _index_name(spec, query.index), text


def test_every_index_serves_a_declared_read():
    for spec in COLLECTIONS:
        used = {query.index for query in spec.queries}
        assert set(spec.indexes) <= used, f"{spec.name}: indexes no read uses: {set(spec.indexes) - used}"


def test_no_read_of_a_unique_order_sorts_on_a_tie_break_and_other_orders_end_in_id():
    assert sort_key("seq") == ("seq",)
    assert sort_key("id") == ("id",)
    assert sort_key("at") == ("at", "id")
    for spec in COLLECTIONS:
        for index in spec.indexes:
            assert index[-1] in ("id", "seq") or len(index) == 1, f"{spec.name}: {index} gives no order to ties"


if os.environ.get("KUNJUNG_TEST_MONGO_URI"):
    def _stages(plan):
        yield plan["stage"]
        for child in [plan.get("inputStage"), *plan.get("inputStages", [])]:
            if child:
                yield from _stages(child)

    @pytest.fixture(scope="module")
    def real_mongo():
        uri = os.environ["KUNJUNG_TEST_MONGO_URI"]
        client = pymongo.MongoClient(uri)
        name = f"kunjung_shapes_{uuid.uuid4().hex[:8]}"
        store = open_store(uri, COLLECTIONS, client=client, database=name)
        store.ensure_schema()
        yield store
        client.drop_database(name)

    @pytest.mark.parametrize("item", [s for s in SHAPES if s[1].order], ids=[_id(s) for s in SHAPES if s[1].order])
    def test_mongo_real_serves_each_declared_read_without_a_blocking_sort(real_mongo, item):
        spec, query = item
        keys = set(query.filter) - {query.order}
        sort = [(_key(k), 1) for k in sort_key(query.order)]
        plan = real_mongo.db[spec.name].find(_query(_sample(spec, query))).sort(sort).explain()
        stages = set(_stages(plan["queryPlanner"]["winningPlan"]))
        assert "SORT" not in stages, plan
        if keys:
            assert "COLLSCAN" not in stages, plan
