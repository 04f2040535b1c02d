"""Synthetic village boundaries for crowds: many villages in many kecamatan, so phones spread over villages as in
the field instead of a thousand officers sharing the six sample villages.

A real desa is a few kilometres across and holds about 2,000 households; an officer is assigned one or two,
and a thousand officers cover hundreds of them. With the six sample villages every phone of a crowd pulls a
sixth of everything the crowd made, which no field day looks like. The villages here tile a jittered grid
(neighbours share their edges, as real boundaries do) under a regency code no real one has (32.98), so they
cannot be mistaken for official boundaries. The same count always gives the same villages.
"""

from __future__ import annotations

import math
import random
from typing import Any

REGENCY = "32.98"  # Jawa Barat has no regency 98: these boundaries are illustrative only
REGENCY_NAME = "Kabupaten Simulasi"
VILLAGES_PER_KECAMATAN = 12  # a kecamatan of Jawa Barat has about a dozen desa
CELL_DEG = 0.025  # about 2.8 km: the size of a desa on the Bandung plateau
ORIGIN = (107.30, -7.25)  # (lon, lat) of the grid's south-west corner, south of Bandung
MOST = 99 * 999  # two-digit kecamatan, three-digit village serials

FIRST = ("Suka", "Ci", "Mekar", "Sinar", "Pasir", "Sindang", "Bojong", "Cikal", "Neglasari", "Jati", "Rancamulya",
         "Margah")
SECOND = ("jaya", "maju", "mulya", "asih", "rahayu", "sari", "wangi", "laksana", "manah", "galih", "makmur",
          "tani")


def village_code(index: int, per_kecamatan: int = VILLAGES_PER_KECAMATAN) -> str:
    """The code of the ``index``-th synthetic village (from 0): regency 32.98, kecamatan from 01."""
    kecamatan, serial = divmod(index, per_kecamatan)
    return f"{REGENCY}.{kecamatan + 1:02d}.{2001 + serial}"


def _name(index: int) -> str:
    first, second = FIRST[index % len(FIRST)], SECOND[(index // len(FIRST)) % len(SECOND)]
    round_ = index // (len(FIRST) * len(SECOND))
    return f"{first}{second}" + (f" {round_ + 1}" if round_ else "")


def synthetic_villages(count: int, *, per_kecamatan: int = VILLAGES_PER_KECAMATAN, seed: int = 1) -> dict[str, Any]:
    """A GeoJSON FeatureCollection of ``count`` villages as ``POST /api/v1/villages`` and ``kunjung
    import-villages`` take it: quadrilaterals of a grid whose inner corners are moved by up to a fifth of a
    cell, so that no two villages have the same shape while neighbours still meet edge to edge."""
    if not 1 <= count <= MOST:
        raise ValueError(f"between 1 and {MOST:,} synthetic villages, not {count}")
    if not 1 <= per_kecamatan <= 999:
        raise ValueError("a kecamatan holds between 1 and 999 villages")
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    rng = random.Random(f"synthetic-villages:{seed}")
    shift = CELL_DEG / 5
    corners: dict[tuple[int, int], tuple[float, float]] = {}
    for row in range(rows + 1):
        for column in range(columns + 1):
            inner = 0 < row < rows and 0 < column < columns
            dx, dy = (rng.uniform(-shift, shift), rng.uniform(-shift, shift)) if inner else (0.0, 0.0)
            corners[row, column] = (round(ORIGIN[0] + column * CELL_DEG + dx, 6),
                                    round(ORIGIN[1] + row * CELL_DEG + dy, 6))
    features = []
    for index in range(count):
        row, column = divmod(index, columns)
        # counter-clockwise, as RFC 7946 asks of an exterior ring: SW, SE, NE, NW, SW
        ring = [corners[row, column], corners[row, column + 1], corners[row + 1, column + 1],
                corners[row + 1, column], corners[row, column]]
        code = village_code(index, per_kecamatan)
        features.append({
            "type": "Feature",
            "properties": {"code": code, "name": _name(index), "district": f"Kecamatan Simulasi {code[6:8]}",
                           "regency": REGENCY_NAME, "province": "Jawa Barat"},
            "geometry": {"type": "Polygon", "coordinates": [[list(point) for point in ring]]},
        })
    return {"type": "FeatureCollection",
            "name": f"kunjung synthetic villages ({count}, illustrative boundaries, not official)",
            "features": features}
