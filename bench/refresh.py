"""What making an add searchable costs on Elasticsearch/OpenSearch, four ways side by side.

    nice .venv/bin/python bench/refresh.py --engine http://127.0.0.1:9281

On a fresh index (1 shard, refresh interval 1 s, as Match creates it), --clients threads index
20 KB documents (about a Match record with local features), and each write returns:
- wait_for: once the periodic refresh has made it searchable (Match's adds before issue 13);
- true: after a refresh of its own (`refresh=true` on the write);
- shared: after a refresh that started after it, shared by the writes in flight (GroupRefresh,
  what ElasticStore.add does now);
- none: at once, searchable within the refresh interval (ELASTICSEARCH_BULK_REFRESH=true).
Prints p50 / p99 latency and writes/s for 1 and 4 clients. The index is deleted at the end.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
import uuid

import httpx

from match.stores.elastic.index import GroupRefresh

DOCUMENT = {"blob": "x" * 20_000}


def run(client: httpx.Client, url: str, mode: str, clients: int, writes: int) -> None:
    shared = GroupRefresh(lambda: client.post(f"{url}/_refresh").raise_for_status() and None)
    latencies: list[float] = []

    def writer(number: int) -> None:
        param = {"wait_for": "wait_for", "true": "true"}.get(mode, "false")
        for n in range(writes):
            started = time.perf_counter()
            doc = f"{url}/_doc/{mode}-{clients}-{number}-{n}"
            client.put(doc, json=DOCUMENT, params={"refresh": param}).raise_for_status()
            if mode == "shared":
                shared.after_write()
            latencies.append(time.perf_counter() - started)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    print(
        f"{mode:<9} {clients:>7} {statistics.median(latencies) * 1000:>8.0f} "
        f"{p99 * 1000:>8.0f} {len(latencies) / seconds:>8.1f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", required=True)
    parser.add_argument("--writes", type=int, default=40, help="per client (wait_for: half)")
    args = parser.parse_args()
    url = f"{args.engine.rstrip('/')}/refresh-bench-{uuid.uuid4().hex}"
    settings = {"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "1s"}
    with httpx.Client(timeout=60) as client:
        client.put(url, json={"settings": settings}).raise_for_status()
        try:
            print(f"{'mode':<9} {'clients':>7} {'p50 ms':>8} {'p99 ms':>8} {'writes/s':>8}")
            for clients in (1, 4):
                for mode in ("wait_for", "true", "shared", "none"):
                    writes = args.writes // 2 if mode == "wait_for" else args.writes
                    run(client, url, mode, clients, writes)
        finally:
            client.delete(url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
