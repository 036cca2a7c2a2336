"""`match add` throughput, as a user runs it: the dev photos added to a fresh embedded store by
the CLI (a subprocess, every core), with partial matching on (the default) and off.

    .venv/bin/python bench/cli.py          # about a minute on 2 cores

Prints, for each mode, images per second over the whole command (start-up, signatures, local
features, writes) and the second run's time (everything already stored: skipped), beside the
figures the README quotes, and writes them to bench/results/cli.json, from which the README's
figures are taken (tests/test_readme.py checks that they agree).
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import shared_photos

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = shared_photos.PHOTOS / "originals"
RESULTS = ROOT / "bench" / "results" / "cli.json"
README = ROOT / "README.md"


def add(photos: Path, data: Path, partial: bool) -> float:
    env = dict(os.environ, MATCH_DATA_DIR=str(data), MATCH_PARTIAL_MATCHING=str(partial).lower())
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "match", "add", str(photos), "--recursive", "--silent"],
        env=env,
        check=True,
    )
    return time.perf_counter() - started


def readme_figures() -> dict[str, float]:
    """The img/s the README quotes for each mode, if any."""
    text = " ".join(README.read_text().split())
    found = re.findall(r"(\d+(?:\.\d+)?) img/s (with|without) partial matching", text)
    return {("partial" if mode == "with" else "signature"): float(rate) for rate, mode in found}


def main() -> None:
    shared_photos.photos_dir("bench/cli.py")
    count = len(list(PHOTOS.glob("*.jpg")))
    quoted = readme_figures()
    results: dict[str, dict[str, float]] = {}
    for mode, partial in (("partial", True), ("signature", False)):
        with tempfile.TemporaryDirectory() as folder:
            data = Path(folder) / "data"
            seconds = add(PHOTOS, data, partial)
            again = add(PHOTOS, data, partial)
        rate = count / seconds
        results[mode] = {"images": count, "seconds": round(seconds, 2), "img_per_s": round(rate, 1)}
        results[mode]["second_run_seconds"] = round(again, 2)
        print(
            f"{mode:>9}: {count} images in {seconds:.1f} s = {rate:.1f} img/s; second run "
            f"(all skipped) {again:.1f} s; README quotes "
            + (f"{quoted[mode]:.1f} img/s" if mode in quoted else "nothing")
        )
    results["machine"] = {"cpus": os.cpu_count() or 0, "python": platform.python_version()}  # type: ignore[dict-item]
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
