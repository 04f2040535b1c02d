"""./scripts/bench --quick keeps working: every figure is measured, beside its baseline, and nothing is lost."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIGURES = {
    "push": "visits/s",
    "pull_first_sync": "households/s",
    "pull_incremental": "ms (median)",
    "first_sync_memory": "MB growth (peak)",
    "form_list_304": "requests/s",
    "form_definition_304": "requests/s",
    "concurrency_push": "ms",
    "concurrency_pull": "ms",
    "openrosa_submission": "visits/s",
    "openrosa_entity_list": "ms",
    "media_upload": "MB/s",
    "media_upload_memory": "MB growth (peak)",
    "media_concurrent_photos": "photos/s",
    "media_export_memory": "MB growth (peak)",
    "web_dashboard": "ms (median)",
    "web_review_queue": "ms (median)",
    "web_map_data": "ms (median)",
    "web_map_layer": "ms (median)",
    "relay_round": "events/s",
    "relay_files": "files/s",
    "relay_hall_rush": "ms p99",
}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "results.json"
    done = subprocess.run([str(ROOT / "scripts" / "bench"), "--quick", "--output", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"written to {out}" in done.stdout
    return done, json.loads(out.read_text())


def test_quick_bench_measures_every_figure(quick_run):
    done, results = quick_run
    assert results["mode"] == "quick"
    assert results["errors"] == {}
    assert set(results["figures"]) == set(FIGURES)
    for name, unit in FIGURES.items():
        figure = results["figures"][name]
        assert figure["unit"] == unit, name
        assert figure["value"] >= 0, name
        assert figure["baseline"] > 0, name
        assert math.isfinite(figure["ratio"]), name
        if figure["value"] > 0:
            # the ratio is the figure over its baseline, as printed (both rounded)
            assert figure["ratio"] == pytest.approx(figure["value"] / figure["baseline"], rel=0.02, abs=0.002), name
        assert figure["label"] in done.stdout, name
    machine = results["machine"]
    assert machine["cores"] >= 1
    assert machine["cpu"]


def test_quick_bench_figures_are_sane(quick_run):
    _, results = quick_run
    figures = results["figures"]
    push = figures["push"]["details"]
    assert push["visits"] == results["scale"]["push_batches"] * 500
    assert 0 < push["server_cpu_ms_per_visit"] < 1000  # the workers' CPU was counted
    assert push["outside_village_flags"] == push["visits"] // 20  # the geotags met the village boundaries
    assert push["household_doc_bytes"] > 1000  # four members folded: a real household, not a stub
    pull = figures["pull_first_sync"]["details"]
    assert pull["households"] > 0
    incremental = figures["pull_incremental"]["details"]
    assert (incremental["small_store"], incremental["large_store"]) == (
        results["scale"]["small_store"], results["scale"]["large_store"])
    assert len(incremental["small_ms"]) == len(incremental["large_ms"]) == results["scale"]["pull_repeats"]
    memory = figures["first_sync_memory"]
    assert memory["details"]["households"] == results["scale"]["memory_households"]
    assert 10 < memory["baseline"] < 4096  # a gunicorn worker's RSS in MB
    assert memory["details"]["peak_mb"] >= memory["baseline"]
    for name in ("concurrency_push", "concurrency_pull"):
        details = figures[name]["details"]
        assert details["devices"] == results["scale"]["devices"]
        assert details["requests"] > 0
        assert details["p50_ms"] <= details["p95_ms"] <= details["p99_ms"] <= details["max_ms"]
        # correctness, not speed: every event is stored exactly once
        assert details["lost"] == 0
        assert details["duplicated"] == 0
        assert details["checks_failed"] == []
        # the figure says what the load was: arrivals spread over a stated window, and what it cost whom
        arrivals = details["arrivals"]
        assert arrivals["mode"] == "spread"
        assert arrivals["window_s"] > 0
        assert details["load"] == f"{details['devices']} devices over {arrivals['window_s']:g} s"
        assert details["server_cpu_s"] > 0
        assert details["simulator_cpu_ms_per_device"] > 0
        # the simulator's own CPU while the phones sync, apart from setting up and checking afterwards
        assert 0 < details["simulator_cpu_ms_per_sync"] < details["simulator_cpu_ms_per_device"]
        assert 1 <= arrivals["most_busy"] <= details["devices"]
        assert 0 <= arrivals["late_for_thread"] <= arrivals["late"]
        # the officers spread over synthetic villages, a few to a village, as in the field
        assert details["villages"] == max(6, round(details["devices"] / 2.5))


def test_quick_bench_reports_each_goal(quick_run):
    done, results = quick_run
    goals = {row["goal"].split(" (")[0]: row for row in results["goals"]}
    assert set(goals) == {"push throughput", "push vs raw insert", "push CPU per visit", "first sync vs raw read",
                          "incremental pull vs store size", "first-sync memory growth", "lost / duplicated events",
                          "push p99", "pull p99", "web dashboard vs the API",
                          "web review queue vs the API", "web map data vs the API",
                          "upload in 256 KB chunks vs disk", "worker memory during a video upload",
                          "lost / corrupted photos", "worker memory, CSV zip export with media",
                          "relay round vs direct push", "hall rush", "OpenRosa submissions vs JSON push"}
    for row in goals.values():
        assert isinstance(row["met"], bool)
        assert f"[{'met' if row['met'] else 'NOT MET':>7}] {row['goal']}" in done.stdout
    assert goals["lost / duplicated events"]["met"] is True
    assert goals["lost / corrupted photos"]["met"] is True


def test_quick_bench_media_figures_lose_nothing(quick_run):
    _, results = quick_run
    figures = results["figures"]
    crowd = figures["media_concurrent_photos"]["details"]
    assert (crowd["lost"], crowd["corrupted"], crowd["errors"]) == (0, 0, [])
    assert figures["media_upload"]["details"]["bytes"] == 5 * 1024 * 1024
    assert figures["media_export_memory"]["details"]["export_bytes"] > 40 * 1024 * 1024  # the video went out too


def test_quick_bench_hall_rush_loses_nothing(quick_run):
    _, results = quick_run
    rush = results["figures"]["relay_hall_rush"]["details"]
    assert rush["events"] == rush["officers"] * 10  # every phone's day of edits was made and counted
    assert rush["lost"] == 0
    assert rush["requests"] >= 2 * rush["officers"]  # each phone pushed and pulled through the hall process
    assert rush["hall_cpu_s"] is None or rush["hall_cpu_s"] > 0  # the hall's processes did the work
