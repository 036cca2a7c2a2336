"""`match add` throughput, as a user runs it: the dev photos added to a fresh embedded store by
the CLI (a subprocess, every core), with partial matching on (the default) and off.

    .venv/bin/python bench/cli.py          # about a minute on 2 cores
    .venv/bin/python bench/cli.py --engine http://127.0.0.1:9281   # into a new engine index too

Prints, for each mode, images per second over the whole command (start-up, signatures, local
features, writes) and the second run's time (everything already stored: skipped), beside the
figures the README quotes, and writes them to bench/results/cli.json, from which the README's
figures are taken (tests/test_readme.py checks that they agree).

With ``--engine URL`` the same photos are also added, partial matching on, into a new index on
that Elasticsearch/OpenSearch server (deleted after), right after the embedded store's run of
the same mode, and the ratio is printed; those figures go to bench/results/cli-engine.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

import shared_photos

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = shared_photos.PHOTOS / "originals"
RESULTS = ROOT / "bench" / "results" / "cli.json"
ENGINE_RESULTS = ROOT / "bench" / "results" / "cli-engine.json"
README = ROOT / "README.md"


def add(photos: Path, data: Path, partial: bool, engine: dict[str, str] | None = None) -> float:
    env = dict(os.environ, MATCH_DATA_DIR=str(data), MATCH_PARTIAL_MATCHING=str(partial).lower())
    env.update(engine or {})
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


def engine_run(url: str, count: int, embedded: float) -> None:
    """The photos added into a new index on ``url``, partial matching on, beside the embedded
    store's rate of the same run."""
    index = f"bench-cli-{uuid.uuid4().hex[:8]}"
    engine = {"ELASTICSEARCH_URL": url, "ELASTICSEARCH_INDEX": index}
    try:
        with tempfile.TemporaryDirectory() as folder:
            seconds = add(PHOTOS, Path(folder), True, engine)
            again = add(PHOTOS, Path(folder), True, engine)
    finally:
        httpx.delete(f"{url}/{index},{index}-hashes", params={"ignore_unavailable": "true"})
    rate = count / seconds
    print(
        f"   engine: {count} images in {seconds:.1f} s = {rate:.1f} img/s with partial matching "
        f"({rate / embedded:.2f}x the embedded store's in this run); second run {again:.1f} s"
    )
    figures = {"images": count, "seconds": round(seconds, 2), "img_per_s": round(rate, 1)}
    figures |= {"second_run_seconds": round(again, 2), "embedded_img_per_s": round(embedded, 1)}
    ENGINE_RESULTS.write_text(json.dumps({"url": url, "partial": figures}, indent=2) + "\n")
    print(f"written to {ENGINE_RESULTS.relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", help="an Elasticsearch/OpenSearch URL: add into it too")
    args = parser.parse_args()
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
        if args.engine and partial:
            engine_run(args.engine, count, rate)
    results["machine"] = {"cpus": os.cpu_count() or 0, "python": platform.python_version()}  # type: ignore[dict-item]
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
