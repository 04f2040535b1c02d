"""Village polygons for the simulator: points a phone's GPS would give inside a village, or clearly outside it."""

from __future__ import annotations

import random
from typing import Any

import shapely
from shapely.geometry import shape


class NoPoint(RuntimeError):
    """No point with the asked property was found in a village's bounding box."""


class Boundaries:
    """Village polygons from GeoJSON, for points a GPS would give inside or outside a village."""

    def __init__(self, collection: dict[str, Any]) -> None:
        self.names: dict[str, str] = {}
        self.shapes: dict[str, Any] = {}
        for feature in collection.get("features", []):
            code = feature["properties"]["code"]
            self.names[code] = feature["properties"].get("name", code)
            geometry = shape(feature["geometry"])
            shapely.prepare(geometry)
            self.shapes[code] = geometry

    def point(self, rng: random.Random, code: str, *, outside: bool) -> tuple[float, float]:
        """(lat, lon) inside the village, or clearly (over ~50 m) outside it."""
        geometry = self.shapes.get(code)
        if geometry is None:
            return round(-6.93 + rng.uniform(-0.02, 0.02), 6), round(107.70 + rng.uniform(-0.02, 0.02), 6)
        west, south, east, north = geometry.bounds
        margin = 0.02 if outside else 0.0
        for _ in range(10_000):
            lon = round(rng.uniform(west - margin, east + margin), 6)
            lat = round(rng.uniform(south - margin, north + margin), 6)
            candidate = shapely.Point(lon, lat)
            if outside:
                if not geometry.covers(candidate) and geometry.distance(candidate) > 0.0005:
                    return lat, lon
            elif geometry.covers(candidate) and geometry.boundary.distance(candidate) > 0.0002:
                return lat, lon
        raise NoPoint(f"no point found {'outside' if outside else 'inside'} {code}")


