"""The service's store on a two-node Elasticsearch/OpenSearch cluster on this machine.

Starts two engine processes on loopback (scripts/engines.py) that form one cluster, opens the
store the service uses (``Matcher`` with ELASTICSEARCH_URL, ELASTICSEARCH_SHARDS=2,
ELASTICSEARCH_REPLICAS=1) on the first node, loads the shared photos plus synthetic documents,
and shows:

1. shards and replicas in use: ``_cat/shards`` with a primary and a replica of each shard, one
   copy on each node;
2. search latency (p50/p99, one client) and throughput (several clients) on the healthy cluster;
3. the second node killed (SIGKILL, as in a crash): every search is still answered, with the
   same best match, from the surviving copies;
4. the second node restarted: time until the cluster is green again.

Queries are edited copies of the photos (half size, JPEG quality 60), all 8 orientations each.
Figures are printed; nothing is asserted. The nodes and index are removed at the end.

    .venv/bin/python bench/cluster.py                       # es8, 20k documents
    .venv/bin/python bench/cluster.py --engine os2 --docs 5000 --queries 30
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

import httpx
import numpy as np
from PIL import Image

from match.errors import MatchError
from match.service import Matcher, Query
from match.settings import Settings
from match.signature import SIGNATURE_LENGTH
from match.stores.base import ImageRecord
from match.stores.elastic import bodies
from shared_photos import photos_dir

ROOT = Path(__file__).resolve().parent.parent
INDEX = "match-cluster-bench"
HTTP_PORTS = (9481, 9482)  # clear of the single-node test engines (92xx)


def load_engines() -> ModuleType:
    name = "match_engines_script"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / "engines.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


# -- cluster --------------------------------------------------------------------------------
def cluster_nodes(engines: ModuleType, engine_name: str) -> list:
    """A master-and-data node and a data-only node, discovering each other over loopback.

    Two master-eligible nodes could not lose either one: a master needs a majority of the voting
    nodes. So the second node holds data only, and killing it is losing a data node, the failure
    replicas exist for; surviving the loss of any node takes three master-eligible nodes.
    """
    engine = engines.ENGINES[engine_name]
    ports = [p + engines.PORT_OFFSET for p in HTTP_PORTS]
    names = [f"{engine_name}-cluster-a", f"{engine_name}-cluster-b"]
    elasticsearch = engine.product == "elasticsearch"
    master = "master" if elasticsearch else "cluster_manager"
    shared = (
        ("cluster.name", f"match-{engine_name}-cluster"),
        ("discovery.seed_hosts", ",".join(f"127.0.0.1:{p + 100}" for p in ports)),
        (f"cluster.initial_{master}_nodes", names[0]),
    )
    roles = [f"{master},data,ingest", "data,ingest"]
    return [
        engines.Node(engine, name, port, port + 100, (*shared, ("node.roles", role)))
        for name, port, role in zip(names, ports, roles, strict=True)
    ]


def fresh_start(engines: ModuleType, nodes: list) -> float:
    """Start both nodes on empty data dirs (a cluster bootstraps only once); seconds taken."""
    for node in nodes:
        engines.stop_node(node)
        for sub in ("data", "logs", "config"):
            path = node.dir / sub
            if path.exists():
                shutil.rmtree(path)
    started = time.monotonic()
    engines.start_nodes(nodes)
    health(nodes[0].url, wait_for_nodes=2)
    return time.monotonic() - started


def health(url: str, **wait: object) -> dict:
    params = {k: str(v) for k, v in wait.items()} | {"timeout": "120s"}
    return httpx.get(f"{url}/_cluster/health", params=params, timeout=130).json()


def cat(url: str, what: str, **params: str) -> list[dict]:
    answer = httpx.get(f"{url}/_cat/{what}", params={"format": "json", **params}, timeout=30)
    answer.raise_for_status()
    return answer.json()


def master_name(url: str) -> str:
    rows = cat(url, "master")
    return rows[0]["node"] if rows else "(none)"


def kill(node) -> None:
    """SIGKILL the node's whole process group: a crash, not a shutdown."""
    engines = load_engines()
    pid = engines.read_pid(node)
    if pid is not None:
        os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while engines._group_alive(pid) and time.monotonic() < deadline:
            engines._exited(pid)  # reap the launcher, our child, or its zombie keeps the group
            time.sleep(0.1)
        node.pid_file.unlink(missing_ok=True)


# -- data -----------------------------------------------------------------------------------
def photos() -> list[Path]:
    return sorted((photos_dir("bench/cluster.py") / "originals").glob("*.jpg"))


def edited(path: Path) -> bytes:
    """A half-size JPEG at quality 60: the kind of copy a reverse image search must find."""
    with Image.open(path) as image:
        small = image.convert("RGB").resize((max(1, image.width // 2), max(1, image.height // 2)))
    out = io.BytesIO()
    small.save(out, "JPEG", quality=60)
    return out.getvalue()


def synthetic(bases: np.ndarray, count: int, seed: int = 7) -> Iterator[ImageRecord]:
    """Documents built from real signatures with 60% of the values redrawn: they share some
    words with real images (so they are candidates) without being near-duplicates."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        signature = bases[rng.integers(len(bases))].copy()
        redraw = rng.random(SIGNATURE_LENGTH) < 0.6
        signature[redraw] = rng.choice([-2, -1, 0, 1, 2], size=int(redraw.sum()))
        yield ImageRecord(f"synthetic/{i:07d}.jpg", signature.astype(np.int8), None)


def load(matcher: Matcher, files: list[Path], docs: int) -> dict[str, float]:
    """The photos through the service's signature and bulk path, then synthetic documents.
    (One `add` waits for a refresh, about a second: the bulk path is how collections load.)"""
    started = time.monotonic()
    bases = np.stack([matcher.signature(path.read_bytes()) for path in files])
    photos_added = matcher.add_many(
        ImageRecord(f"photos/{path.name}", signature, {"source": "originals"})
        for path, signature in zip(files, bases, strict=True)
    )
    photo_rate = photos_added.added / (time.monotonic() - started)
    started = time.monotonic()
    result = matcher.add_many(synthetic(bases, max(0, docs - len(files))))
    bulk_seconds = time.monotonic() - started
    return {
        "photo_rate": photo_rate,
        "bulk_rate": result.added / bulk_seconds if bulk_seconds else 0.0,
        "bulk_failed": float(len(result.failed) + len(photos_added.failed)),
    }


# -- measuring ------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def run_queries(
    matcher: Matcher, queries: list[tuple[str, Query]]
) -> tuple[list[float], dict[str, str | None], int]:
    """Latency (ms) of each search, the best match per query, and how many searches failed."""
    latencies, best, failures = [], {}, 0
    for name, query in queries:
        started = time.perf_counter()
        try:
            found = matcher.search(query, limit=5)
        except MatchError as exc:
            failures += 1
            best[name] = f"error: {exc}"
            continue
        latencies.append((time.perf_counter() - started) * 1000)
        best[name] = found[0].filepath if found else None
    return latencies, best, failures


def throughput(search: Callable[[Query], object], queries: list, clients: int) -> float:
    """Searches per second with `clients` concurrent callers, each going through all queries."""

    def work(offset: int) -> int:
        for i in range(len(queries)):
            search(queries[(i + offset) % len(queries)][1])
        return len(queries)

    started = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        done = sum(pool.map(work, range(clients)))
    return done / (time.monotonic() - started)


def engine_took(url: str, matcher: Matcher, queries: list) -> list[float]:
    """Engine-side time (ms, the `took` of the _msearch) of the store's own candidate queries:
    what the cluster spends, without this client's HTTP and re-ranking time."""
    store = matcher.store
    took = []
    for _, query in queries:
        lines = []
        for row in query.signatures:
            scope = bodies.scope("default")
            query = bodies.words_query(row, store.candidates, "path", scope, store.min_words)
            lines += [json.dumps({}), json.dumps(query)]
        answer = httpx.post(
            f"{url}/{INDEX}/_msearch",
            content="\n".join(lines) + "\n",
            headers={"content-type": "application/x-ndjson"},
            timeout=120,
        )
        took.append(float(answer.json()["took"]))
    return took


def disk_figures(url: str) -> None:
    """Bytes per document (primaries) and per image (all copies) after a merge to one segment,
    and where they go (Elasticsearch's _disk_usage; OpenSearch has no such API)."""
    httpx.post(f"{url}/{INDEX}/_forcemerge", params={"max_num_segments": "1"}, timeout=900)
    stats = httpx.get(f"{url}/{INDEX}/_stats/store,docs", timeout=60).json()["_all"]
    count = stats["primaries"]["docs"]["count"]
    per_doc = stats["primaries"]["store"]["size_in_bytes"] / count
    per_image = stats["total"]["store"]["size_in_bytes"] / count
    print(f"disk after force-merge: {per_doc:,.0f} B/document (primaries), ", end="")
    print(f"{per_image:,.0f} B/image with its replica")
    usage = httpx.post(
        f"{url}/{INDEX}/_disk_usage", params={"run_expensive_tasks": "true"}, timeout=900
    )
    if usage.status_code != 200:
        return
    fields = usage.json()[INDEX]["all_fields"]
    parts = {
        "inverted index (words, path)": fields["inverted_index"]["total_in_bytes"],
        "stored fields (_source, _id)": fields["stored_fields_in_bytes"],
        "doc values (packed signature, path)": fields["doc_values_in_bytes"],
        "points (timestamp)": fields["points_in_bytes"],
        "norms": fields["norms_in_bytes"],
    }
    # _disk_usage counts one copy of each shard: the primaries
    print("  " + ", ".join(f"{k} {v / count:,.0f} B" for k, v in parts.items()))


def show_shards(url: str) -> None:
    rows = cat(url, "shards", index=INDEX, h="index,shard,prirep,state,docs,store,node")
    print(f"{'shard':>5} {'role':8} {'state':8} {'docs':>8} {'store':>8}  node")
    for row in sorted(rows, key=lambda r: (int(r["shard"]), r["prirep"])):
        role = "primary" if row["prirep"] == "p" else "replica"
        print(
            f"{row['shard']:>5} {role:8} {row['state']:8} {row['docs'] or '-':>8} "
            f"{row['store'] or '-':>8}  {row['node'] or '(unassigned)'}"
        )
    primaries = {r["shard"]: r["node"] for r in rows if r["prirep"] == "p"}
    replicas = {r["shard"]: r["node"] for r in rows if r["prirep"] == "r"}
    spread = all(replicas.get(s) not in (None, n) for s, n in primaries.items())
    nodes = sorted({r["node"] for r in rows if r["node"]})
    print(
        f"-> {len(primaries)} primaries, {len(replicas)} replicas on {len(nodes)} nodes; "
        f"each shard's copies on different nodes: {spread}"
    )


def summary(label: str, latencies: list[float], failures: int, total: int) -> None:
    print(
        f"{label}: {total - failures}/{total} searches answered, "
        f"p50 {percentile(latencies, 50):.1f} ms, p99 {percentile(latencies, 99):.1f} ms "
        f"(8 orientations each)"
    )


# -- main -----------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", default="es8", help="es8, os2 or os3 (default es8)")
    parser.add_argument("--docs", type=int, default=20_000, help="documents in the index")
    parser.add_argument("--queries", type=int, default=50, help="query photos (edited copies)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients, throughput")
    args = parser.parse_args()

    engines = load_engines()
    why = engines.missing_prerequisites(engines.ENGINES[args.engine])
    if why:
        sys.exit(f"cannot start {args.engine}: {why}")
    nodes = cluster_nodes(engines, args.engine)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped by SIGTERM"))  # still clean up
    try:
        bench(engines, nodes, args)
    finally:
        for node in nodes:
            engines.stop_node(node)


def bench(engines: ModuleType, nodes: list, args: argparse.Namespace) -> None:
    first, second = nodes
    seconds = fresh_start(engines, nodes)
    info = engines.engine_info(first.url)
    print(f"cluster: {info['distribution']} {info['number']}, nodes {first.name} ({first.url})")
    print(f"         and {second.name} ({second.url}), formed in {seconds:.0f}s")

    settings = Settings.from_env(
        {
            "ELASTICSEARCH_URL": first.url,
            "ELASTICSEARCH_INDEX": INDEX,
            "ELASTICSEARCH_SHARDS": "2",
            "ELASTICSEARCH_REPLICAS": "1",
        }
    )
    matcher = Matcher(settings)
    try:
        files = photos()
        loaded = load(matcher, files, args.docs)
        print(
            f"\nloaded {matcher.count():,} documents: {len(files)} photos signed and bulk-added "
            f"({loaded['photo_rate']:.0f}/s), the rest by bulk ({loaded['bulk_rate']:,.0f}/s, "
            f"{loaded['bulk_failed']:.0f} failed)"
        )
        print(f"cluster health: {health(first.url, wait_for_status='green')['status']}\n")
        show_shards(first.url)

        picked = files[:: max(1, len(files) // args.queries)][: args.queries]
        queries = [(p.name, Query(matcher.query_signatures(edited(p), True))) for p in picked]
        run_queries(matcher, queries[:5])  # warm-up
        latencies, before, failures = run_queries(matcher, queries)
        found = sum(before[p.name] == f"photos/{p.name}" for p in picked)
        print()
        summary("two nodes", latencies, failures, len(queries))
        print(f"  best match is the original for {found}/{len(queries)} edited copies")
        rate = throughput(lambda s: matcher.search(s, limit=5), queries, args.clients)
        print(f"  throughput: {rate:.1f} searches/s with {args.clients} clients")
        took = engine_took(first.url, matcher, queries)
        print(
            f"  engine time per search (_msearch took): p50 {percentile(took, 50):.0f} ms, "
            f"p99 {percentile(took, 99):.0f} ms"
        )
        disk_figures(first.url)

        print(f"\nelected master: {master_name(first.url)}")
        killed = time.monotonic()
        kill(second)
        print(f"killed {second.name} (SIGKILL)")
        latencies, after, failures = run_queries(matcher, queries)
        window = time.monotonic() - killed
        same = sum(after[name] == before[name] for name, _ in queries)
        summary("one node left", latencies, failures, len(queries))
        print(f"  same best match as before: {same}/{len(queries)} (within {window:.1f}s)")
        status = httpx.get(f"{first.url}/_cluster/health", params={"timeout": "5s"}, timeout=30)
        print(f"  health from {first.name}: HTTP {status.status_code} {short(status.text)}")

        restarted = time.monotonic()
        engines.start_node(second)
        green = health(first.url, wait_for_status="green", wait_for_nodes=2)
        print(
            f"\nrestarted {second.name}: cluster {green['status']} with "
            f"{green['number_of_nodes']} nodes after {time.monotonic() - restarted:.0f}s"
        )
        show_shards(first.url)
    finally:
        httpx.delete(f"{first.url}/{INDEX}", timeout=60)
        matcher.close()


def short(text: str, limit: int = 160) -> str:
    try:
        body = json.loads(text)
    except ValueError:
        return text[:limit]
    keys = ("status", "number_of_nodes", "active_shards", "unassigned_shards", "error")
    picked = {k: body[k] for k in keys if k in body}
    return json.dumps(picked)[:limit]


if __name__ == "__main__":
    main()
