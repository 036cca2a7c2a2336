"""The engine's partial-matching candidate query (issue 13): variants of it side by side, on
indexes bench/scale.py filled and kept.

    .venv/bin/python bench/scale.py engine --url http://127.0.0.1:9281 --images 100000 \
        --keep-indexes --cache /tmp/i13-engine/real.pkl
    nice -n 10 .venv/bin/python bench/engine_words.py --url http://127.0.0.1:9281 \
        --index i13-scale-100000 --cache /tmp/i13-engine/real.pkl

For each query (the harness's edited copies, ``--per-family`` of each partial family) and each
pass (the query's words, its mirror image's), every variant's body is sent in rotated order,
and the bench prints per variant: the engine's own time (``took``) p50 / p99, the client's wall
time, the postings the query's words have (their document frequencies summed), and how often
the original is in the shortlist of ``LOCAL_SHORTLIST`` (either pass), per family.

Variants: ``all`` is the query as shipped; ``rarest K`` keeps the query's K rarest words (their
document frequencies from the engine: ``_termvectors`` of an artificial document);
``budget B`` keeps the rarest words while their postings sum to at most B; ``msm M`` requires
M shared words. Every variant reads no stored field (no ``_source``, no ``_id``): as shipped,
the hits carry path, packed signature and candidate value from doc values; a variant ending in
``ids`` carries the path only: the ranking's cost alone, without reading the 200 records.
"""

from __future__ import annotations

import argparse
import pickle
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from match.service import LOCAL_SHORTLIST, Matcher
from match.stores.elastic import bodies
from match.stores.elastic.documents import LOCAL_WORDS_FIELD
from match.stores.filters import DEFAULT_COLLECTION
from scale import HARNESS, _by_family, harness_queries, on_settings, real_records
from shared_photos import PHOTOS
from store import ms

Words = np.ndarray


def doc_freqs(url: str, index: str, words: Words) -> np.ndarray:
    """The engine's document frequency of each word (0 if no document has it)."""
    body = {
        "doc": {LOCAL_WORDS_FIELD: " ".join(map(str, words.tolist()))},
        "fields": [LOCAL_WORDS_FIELD],
        "term_statistics": True,
        "field_statistics": False,
        "positions": False,
        "offsets": False,
    }
    answer = httpx.post(f"{url}/{index}/_termvectors", json=body, timeout=60)
    answer.raise_for_status()
    terms = answer.json().get("term_vectors", {}).get(LOCAL_WORDS_FIELD, {}).get("terms", {})
    return np.array([terms.get(str(w), {}).get("doc_freq", 0) for w in words.tolist()])


def variant_body(name: str, words: Words, df: np.ndarray) -> dict[str, Any]:
    ids_only = name.endswith(" ids")
    kind, _, value = name.removesuffix(" ids").partition(" ")
    chosen = words
    rarest = np.argsort(df, kind="stable")
    if kind == "rarest":
        chosen = np.sort(words[rarest[: int(value)]])
    elif kind == "budget":
        fits = np.cumsum(df[rarest]) <= int(value)
        fits[0] = True
        chosen = np.sort(words[rarest[fits]])
    body = bodies.local_query(
        {LOCAL_WORDS_FIELD: chosen}, LOCAL_SHORTLIST, bodies.scope(DEFAULT_COLLECTION, None), "path"
    )
    if kind == "msm":
        body["query"]["bool"]["must"][0]["match"][LOCAL_WORDS_FIELD]["minimum_should_match"] = value
    if ids_only:  # the ranking alone: no stored fields to decompress, the path from doc values
        body["_source"] = False
        body["stored_fields"] = "_none_"
        body["docvalue_fields"] = ["path"]
    return body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--index", required=True, action="append")
    parser.add_argument("--photos", type=Path, default=PHOTOS)
    parser.add_argument("--harness", type=Path, default=HARNESS)
    parser.add_argument("--per-family", type=int, default=20)
    parser.add_argument("--cache", type=Path, help="the dev photos' records (pickle)")
    parser.add_argument("--queries", type=Path, help="the built queries' words (pickle cache)")
    parser.add_argument(
        "--variants",
        default="all,rarest 100,rarest 150,rarest 200,rarest 250",
        help="comma-separated",
    )
    args = parser.parse_args()
    started = time.perf_counter()
    stored = {r.filepath for r in real_records(args.photos, args.cache)}
    queries = harness_queries(args.harness, args.per_family, stored)
    if args.queries is not None and args.queries.exists():
        with open(args.queries, "rb") as handle:
            passes = pickle.load(handle)  # our own cache file
    else:
        matcher = Matcher(on_settings())
        passes = []
        for query in queries:
            built = matcher.query(query.data, True)
            features = [f for f in (built.local, built.mirrored_local) if f is not None]
            passes.append([np.unique(f.words) for f in features])
        if args.queries is not None:
            with open(args.queries, "wb") as handle:
                pickle.dump(passes, handle)
    variants = args.variants.split(",")
    for index in args.index:
        run(args.url, index, queries, passes, variants)
    print(f"\nbenchmark run time: {time.perf_counter() - started:.0f} s")


def run(url: str, index: str, queries: list, passes: list[list[Words]], variants: list[str]):
    client = httpx.Client(timeout=120)
    count = client.get(f"{url}/{index}/_count").json()["count"]
    segments = client.get(f"{url}/_cat/segments/{index}?format=json").json()
    print(f"\n== {index}: {count:,} documents, {len(segments)} segments ==")
    took: dict[str, list[float]] = {v: [] for v in variants}
    wall: dict[str, list[float]] = {v: [] for v in variants}
    postings: dict[str, list[int]] = {v: [] for v in variants}
    found: dict[str, list[tuple[str, bool]]] = {v: [] for v in variants}
    for k, (query, words_of) in enumerate(zip(queries, passes, strict=True)):
        hit = dict.fromkeys(variants, False)
        for words in words_of:
            df = doc_freqs(url, index, words)
            order = variants[k % len(variants) :] + variants[: k % len(variants)]
            for variant in order:
                body = variant_body(variant, words, df)
                began = time.perf_counter()
                answer = client.post(f"{url}/{index}/_search", json=body)
                wall[variant].append(time.perf_counter() - began)
                answer.raise_for_status()
                result = answer.json()
                took[variant].append(result["took"] / 1000)
                chosen = body["query"]["bool"]["must"][0]["match"][LOCAL_WORDS_FIELD]["query"]
                chosen_words = np.array(chosen.split(), dtype=np.int64)
                postings[variant].append(int(df[np.isin(words, chosen_words)].sum()))
                paths = [
                    h["_source"]["path"] if "_source" in h else h["fields"]["path"][0]
                    for h in result["hits"]["hits"]
                ]
                hit[variant] = hit[variant] or query.original in paths
        for variant in variants:
            found[variant].append((query.family, hit[variant]))
    print(f"{len(queries)} queries, {sum(map(len, passes))} passes")
    for variant in variants:
        print(
            f"{variant:12} took p50 {ms(took[variant], 0.5)} / p99 {ms(took[variant], 0.99)} ms,"
            f" wall p50 {ms(wall[variant], 0.5)} ms; postings p50 "
            f"{int(np.median(postings[variant])):,}; shortlist {_by_family(found[variant])}"
        )


if __name__ == "__main__":
    main()
