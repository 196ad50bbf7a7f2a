"""Provenance for results written before each row carried its own (run once, 2026-12-02): for
every results JSON, the commit that last wrote it (from git), that commit's date, the file's
command, the sha256 of the shipped models it names as they were at that commit, and of the rMD17
files it names. Rows that already carry provenance are left alone.

    python benchmarks/stamp_provenance.py [--data ../shared/data/rmd17]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess

from common import DEFAULT_RMD17, RESULTS
from harness import REPO, git, sha256

SHIPPED = ("qm9-anids", "rmd17-50-ethanol", "rmd17-50-aspirin", "rmd17-ethanol", "rmd17-aspirin")
NOTE = ("reconstructed from git history: the commit that last wrote this file; every row shares the file's command, "
        "which for a file that gathered rows from several runs is the last run's")


def model_hash_at(commit: str, name: str) -> str | None:
    shown = subprocess.run(["git", "show", f"{commit}:anids_md/models/{name}.safetensors"], cwd=REPO, capture_output=True, check=False)
    return hashlib.sha256(shown.stdout).hexdigest() if shown.returncode == 0 else None


def reconstructed(path, data_dir) -> dict:
    text = path.read_text()
    commit = git("log", "-1", "--format=%H", "--", str(path.relative_to(REPO)))
    values = json.loads(text)
    machine = values.get("machine") if isinstance(values.get("machine"), dict) else {}
    models = sorted({m for m in SHIPPED if re.search(rf"(?<![\w-]){re.escape(m)}(?![\w-])", text)})
    data = sorted(set(re.findall(r"rmd17_[a-z]+_(?:train|test)_01\.npz", text)))
    return {
        "commit": commit,
        "date": git("log", "-1", "--format=%cI", commit),
        "command": machine.get("command") or values.get("command"),
        "models": {m: model_hash_at(commit, m) for m in models},
        "data": {d: sha256(data_dir / d) if (data_dir / d).is_file() else None for d in data},
        "reconstructed": NOTE,
    }


def stamp(path, data_dir) -> bool:
    values = json.loads(path.read_text())
    if not isinstance(values, dict):
        return False
    stamp = reconstructed(path, data_dir)
    changed = False
    row_lists = [v for v in values.values() if isinstance(v, list) and v and all(isinstance(r, dict) for r in v)]
    for rows in row_lists:
        for row in rows:
            if "provenance" in row:
                continue
            base = stamp
            if isinstance(row.get("machine"), dict) and row["machine"].get("command"):  # a row that records its own command
                base = {**stamp, "command": row["machine"]["command"], "date": row["machine"].get("date", stamp["date"])}
            if "commit" in row:  # memory.json's first rows: flat fields into the common form
                row["provenance"] = {"commit": row.pop("commit"), "dirty": row.pop("dirty"), "command": base["command"],
                                     "date": base["date"], "models": {row.pop("model"): row.pop("model_sha256")}, "data": {}}
            elif not base["data"] and isinstance(row.get("molecule"), str):  # the row's molecule names its rMD17 files
                files = [f"rmd17_{row['molecule']}_{part}_01.npz" for part in ("train", "test")]
                row["provenance"] = {**base, "data": {f: sha256(data_dir / f) if (data_dir / f).is_file() else None for f in files}}
            else:
                row["provenance"] = base
            changed = True
    if not row_lists and "provenance" not in values:
        values["provenance"] = stamp
        changed = True
    if changed:
        path.write_text(json.dumps(values, indent=1, ensure_ascii=False) + "\n")
    return changed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_RMD17))
    args = parser.parse_args()
    from pathlib import Path

    for path in sorted(RESULTS.rglob("*.json")):
        if stamp(path, Path(args.data)):
            print(f"stamped {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
