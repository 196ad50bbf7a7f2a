"""The benchmark scripts import without doing work, and every result they left carries its
provenance and is listed in results/MANIFEST.md."""

import importlib
import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
RESULTS = BENCHMARKS / "results"


@pytest.mark.parametrize("script", sorted(p.stem for p in BENCHMARKS.glob("*.py")))
def test_every_benchmark_script_imports(script, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.setenv("ANIDS_RMD17", "/nonexistent")  # no script may need the data at import
    module = importlib.import_module(script)
    assert module.__doc__  # each says what it measures and how to run it
    sys.modules.pop(script, None)


def rows_of(values: dict) -> list[dict]:
    lists = [v for v in values.values() if isinstance(v, list) and v and all(isinstance(r, dict) for r in v)]
    return [row for rows in lists for row in rows] or [values]


@pytest.mark.parametrize("path", sorted(RESULTS.rglob("*.json")), ids=lambda p: p.name)
def test_every_result_row_has_provenance(path):
    values = json.loads(path.read_text())
    # a reader finds the commit where results files keep it: in each of its "rows", or for the whole file
    assert "rows" in values or "provenance" in values, f"{path.name}: neither rows nor a file-wide provenance"
    for row in rows_of(values):
        stamp = row["provenance"]
        assert len(stamp["commit"]) == 40 and stamp["command"] and stamp["date"]
        assert all(len(h) == 64 for h in stamp["models"].values() if h is not None)


def test_the_manifest_names_every_result_file():
    manifest = (RESULTS / "MANIFEST.md").read_text()
    files = [p for p in RESULTS.rglob("*") if p.is_file() and p.name != "MANIFEST.md"]
    missing = [str(p.relative_to(RESULTS)) for p in files if str(p.relative_to(RESULTS).with_suffix("")) not in manifest]
    assert not missing, f"not in MANIFEST.md: {missing}"
