"""The README's commands run (with tiny settings where a full run would take minutes), or the
test says why one cannot; its test count is the collected count; the command pages are current."""

import os
import re
import sys
from pathlib import Path

from ase.build import molecule
from ase.io import write

from anids_md.cli import main

from .conftest import emt_frames

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def fenced(language: str) -> list[str]:
    """Commands (bash: one per line, continuations joined, comments dropped) or code (python)."""
    blocks = re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)
    if language == "python":
        return blocks
    return [line.split("  #")[0].strip() for block in blocks for line in block.replace("\\\n", " ").splitlines() if line.strip()]


NOT_RUN_HERE = {
    "python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 -e . && anids-md demo":
        "a fresh install; `anids-md demo` itself is run by tests/test_cli.py::test_demo_runs_with_shipped_model",
    "python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 -e \".[test]\" && pytest -q":
        "the command that runs these tests (.ci/run runs it on a clean clone)",
}
# What each README command gets added to run in seconds: later options override earlier ones.
TINY = {
    "anids-md md": ["--steps", "20"],
    "anids-md dft-optimize": ["--basis", "sto-3g"],
    "anids-md validate": ["--basis", "sto-3g"],
    "anids-md train": ["optim.max_steps=2", "prior.frames=12", "prior.starts=1", "prior.equilibration_steps=4", "prior.interval=2",
                       "prior.epochs=1", "prior.n_valid=4", "prior.compile=false", "--quiet"],
    "anids-md fit": ["--basis", "sto-3g", "--frames", "4", "--rounds", "0", "--test-frames", "2", "--md-steps", "20", "--steps", "3",
                     "--workers", "1", "--quiet", "--pool-frames", "20", "--prior-epochs", "1"],
}


def test_every_readme_command_runs_in_order(tmp_path, monkeypatch, capsys):
    commands = fenced("bash")
    assert len(commands) >= 8
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ANIDS_MD_CACHE", str(tmp_path / "cache"))
    write("start.xyz", molecule("CH3CH2OH"))  # the files the README's commands assume
    write("frames.extxyz", emt_frames(16))
    write("test_frames.extxyz", emt_frames(4, seed=1))
    for command in commands:
        if command in NOT_RUN_HERE:
            continue
        assert command.startswith("anids-md "), f"a README command neither run nor explained here: {command}"
        argv = re.findall(r'"[^"]*"|\S+', command)[1:]
        argv = [a.strip('"') for a in argv]
        extra = next((v for k, v in TINY.items() if command.startswith(k)), [])
        try:
            main(argv + extra)
        except SystemExit as stop:  # a few training steps make no valid force field: fit says so, after its report
            assert command.startswith("anids-md fit") and "FAILED VALIDATION" in str(stop.code), stop.code
    out = capsys.readouterr().out
    assert "RMSD" in out and "held-out force MAE" in out and "committee spread" in out
    for produced in ("relaxed.extxyz", "md.extxyz", "md_committee.extxyz", "dft_min.extxyz", "validate.json", "runs/my-model/model.safetensors",
                     "ethanol-ff/report.json"):
        assert (tmp_path / produced).exists(), produced


def test_the_readme_python_runs(monkeypatch, capsys):
    (code,) = fenced("python")
    exec(compile(code, "README.md", "exec"), {})
    assert "eV" in capsys.readouterr().out


def test_the_readme_test_count_is_the_collected_count():
    import subprocess

    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    collected = int(re.search(r"(\d+) tests? collected", done.stdout).group(1))
    stated = int(re.search(r"(\d+) tests", README).group(1))
    assert stated == collected, f"the README says {stated} tests; {collected} are collected"


def test_readme_is_short_and_speaks_to_users():
    lines = README.splitlines()
    assert len(lines) <= 220
    for word in ("issue", "session", "targets", "target of"):
        assert word not in README.lower(), word
    assert not re.search(r"\b20\d\d-\d\d-\d\d\b", README)  # no dates as versions


def test_the_command_pages_are_current(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.syspath_prepend(str(ROOT / "docs" / "cli"))
    import generate

    for file, text in generate.pages().items():
        assert (ROOT / "docs" / "cli" / file).read_text() == text, f"docs/cli/{file} is stale: run python docs/cli/generate.py"
    sys.modules.pop("generate", None)
