"""The one paging style of every list: ``?after=<cursor>&limit=n`` in, ``{"items": [...], "next": <cursor>|null}`` out.

A list's cursor is opaque and signed (server/cursors.py, kind ``page:<list>``): it holds the
position after which the next page starts (for most lists the last id shown), so a client
cannot make one, and a cursor of one list is refused by another. Scope is never in it: every
page is read with the caller's scope of that request. To page a list::

    class ThingQuery(PageQuery): ...
    @blp.response(200, page_schema(ThingSchema))
    def things(query):
        found = service(..., after=position(query, "things"), limit=query["limit"] + 1)
        return page(found, query["limit"], "things")
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import marshmallow as ma

from ..cursors import MAX_CURSOR_LENGTH, InvalidCursor
from ..syncing import cursor_codec

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
_SCHEMAS: dict[str, type[ma.Schema]] = {}


class PageQuery(ma.Schema):
    # Not bounded here: a cursor too long to be one is answered invalid_cursor like any other.
    after = ma.fields.String(metadata={"description": "the `next` of the previous page; omit it for the first page",
                                       "maxLength": MAX_CURSOR_LENGTH})
    limit = ma.fields.Integer(load_default=DEFAULT_LIMIT, validate=ma.validate.Range(min=1, max=MAX_LIMIT),
                              metadata={"description": "at most this many items"})


def page_schema(item: type[ma.Schema]) -> type[ma.Schema]:
    """The schema of a page of ``item``s, named after it (``VisitSchema`` -> ``VisitPage``)."""
    name = item.__name__.removesuffix("Schema") + "Page"
    if name not in _SCHEMAS:
        _SCHEMAS[name] = type(name, (ma.Schema,), {
            "__doc__": f"A page of {item.__name__.removesuffix('Schema')} items, in order.",
            "items": ma.fields.List(ma.fields.Nested(item), required=True),
            "next": ma.fields.String(required=True, allow_none=True, metadata={
                "description": "pass as `after` for the next page; null on the last page"}),
        })
    return _SCHEMAS[name]


def _kind(name: str) -> str:
    return f"page:{name}"


def position(query: Mapping[str, Any], name: str) -> Any:
    """Where the page asked for starts (None for the first page); 400 ``invalid_cursor`` for a cursor
    this server did not give for this list."""
    cursor = query.get("after")
    if cursor is None:
        return None
    state = cursor_codec().open(_kind(name), cursor, "after")
    if set(state) != {"p"}:
        raise InvalidCursor("after")
    return state["p"]


def cursor(name: str, at: Any) -> str:
    """The cursor of a page that starts after ``at``."""
    return cursor_codec().seal(_kind(name), {"p": at})


def page(found: list[Any], limit: int, name: str, key: Callable[[Any], Any] = lambda item: item["id"]
         ) -> dict[str, Any]:
    """A page from up to ``limit + 1`` items read in order: one more than shown says there is a next page."""
    items = found[:limit]
    more = len(found) > limit and bool(items)
    return {"items": items, "next": cursor(name, key(items[-1])) if more else None}


def id_position(query: Mapping[str, Any], name: str) -> str | None:
    """:func:`position` of a list paged by id: the last id shown, a string."""
    at = position(query, name)
    if at is not None and not isinstance(at, str):
        raise InvalidCursor("after")
    return at
