"""The embedded store's inverted index of visual words (match.stores.sqlite.words) against a
brute-force tf-idf over the same images, through appends, segment merges, deletions and
compaction."""

from __future__ import annotations

import math

import numpy as np
import pytest

import match.stores.sqlite.rows as rows_module
import match.stores.sqlite.words as words_module
from match.local import WORDS
from match.stores.sqlite.words import WordIndex


def default(ids: np.ndarray | int) -> np.ndarray:
    """Every row in the default collection (1)."""
    return np.ones(ids if isinstance(ids, int) else len(ids), dtype=np.int32)


def random_images(count: int, seed: int) -> list[np.ndarray]:
    """Distinct sorted words per image, drawn from a Zipf-like law as real vocabularies are."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / (np.arange(WORDS) + 20.0)
    weights /= weights.sum()
    shuffled = rng.permutation(WORDS)
    sizes = rng.integers(0, 400, count)
    return [np.unique(shuffled[rng.choice(WORDS, size, p=weights)]) for size in sizes]


def brute_force(images: dict[int, np.ndarray], query: np.ndarray) -> list[tuple[float, int]]:
    """(score, id) of every live image sharing a word, by binary tf-idf, best first then id."""
    query_words = set(np.unique(query).tolist())
    shared = {i: query_words.intersection(words.tolist()) for i, words in images.items()}
    df: dict[int, int] = {}
    for words in shared.values():
        for word in words:
            df[word] = df.get(word, 0) + 1
    n = len(images)
    scored = [
        (
            sum(math.log1p((n - df[w] + 0.5) / (df[w] + 0.5)) ** 2 for w in words)
            / math.sqrt(len(images[i])),
            i,
        )
        for i, words in shared.items()
        if words
    ]
    return sorted(scored, key=lambda item: (-item[0], item[1]))


def assert_same_ranking(index: WordIndex, live: dict[int, np.ndarray], query: np.ndarray) -> None:
    everything = brute_force(live, query)
    expected = everything[:25]
    found = index.top(query, 25).tolist()
    assert len(found) == len(expected)
    by_id = {image_id: score for score, image_id in everything}
    assert [by_id[i] for i in found] == pytest.approx([score for score, _ in expected], rel=1e-9)
    # the same images, except where float rounding may reorder a near tie
    exact = [image_id for score, image_id in expected if abs(score - expected[-1][0]) > 1e-9]
    assert set(exact) <= set(found)


@pytest.fixture
def small_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    """Segments of a few images each, so that appends flush and merge many times."""
    monkeypatch.setattr(words_module, "TAIL_POSTINGS", 1500)
    monkeypatch.setattr(rows_module, "COMPACT_AFTER", 40)


def test_top_equals_brute_force_through_appends_merges_and_deletions(
    small_segments: None,
) -> None:
    images = random_images(700, seed=3)
    queries = [images[i][::2] for i in (5, 77, 300, 650)] + random_images(3, seed=4)
    index, live = WordIndex(), {}
    rng = np.random.default_rng(5)
    next_id = 1
    for batch in np.array_split(np.arange(len(images)), 25):  # batches of ~28 images
        ids = np.arange(next_id, next_id + len(batch)) + rng.integers(0, 3)  # gaps in ids
        next_id = int(ids[-1]) + 1
        chosen = [images[i] for i in batch]
        index.append(ids, default(ids), np.array([len(w) for w in chosen]), np.concatenate(chosen))
        live.update(zip(ids.tolist(), chosen, strict=True))
        dead = rng.choice(list(live), 8, replace=False)
        index.kill(np.append(dead, 10**9))  # an id never indexed is ignored
        for image_id in dead.tolist():
            del live[image_id]
        assert index.live_count == len(live)
        for query in queries:
            assert_same_ranking(index, live, query)
    assert len(index._segments) > 1  # merges happened, but not into one segment each time


def test_ties_go_to_the_older_image_and_limits_hold() -> None:
    words = random_images(3, seed=8)
    index = WordIndex()
    same = [words[0], words[1], words[0], words[0]]  # ids 1, 3, 4 hold identical words
    index.append(
        np.array([1, 2, 3, 4]), default(4), np.array([len(w) for w in same]), np.concatenate(same)
    )
    assert index.top(words[0], 10).tolist()[:3] == [1, 3, 4]
    assert index.top(words[0], 2).tolist() == [1, 3]
    assert index.top(words[0], 0).tolist() == []
    assert index.top(np.zeros(0, np.int64), 10).tolist() == []
    index.kill(np.array([1]))
    assert index.top(words[0], 2).tolist() == [3, 4]


def test_a_word_in_every_image_still_counts() -> None:
    index = WordIndex()
    index.append(np.array([9]), default(1), np.array([2]), np.array([5, 6]))
    assert index.top(np.array([6, 7]), 5).tolist() == [9]
    index.kill(np.array([9]))
    assert index.top(np.array([6]), 5).tolist() == []


def test_compaction_frees_the_dead_postings(small_segments: None) -> None:
    images = random_images(400, seed=6)
    index = WordIndex()
    index.append(
        np.arange(1, 401), default(400), np.array([len(w) for w in images]), np.concatenate(images)
    )
    full = index.nbytes()
    index.kill(np.arange(1, 301))
    assert index.live_count == 100
    assert index.nbytes() < full / 2
    live = {i + 1: images[i] for i in range(300, 400)}
    for query in (images[350], images[10]):
        assert_same_ranking(index, live, query)


def test_a_load_in_two_passes_ranks_as_brute_force(small_segments: None) -> None:
    images = [*random_images(500, seed=9), np.zeros(0, np.int64)]  # one image without words
    ids = np.arange(3, 3 + 2 * len(images), 2)

    def chunks() -> list[words_module.Chunk]:
        parts = np.array_split(np.arange(len(images)), 7)
        return [
            (
                ids[p],
                default(p),
                np.array([len(images[i]) for i in p]),
                np.concatenate([images[i] for i in p]),
            )
            for p in parts
        ]

    index = WordIndex()
    index.append(
        np.array([1]), default(1), np.array([3]), np.array([1, 2, 3])
    )  # replaced by the load
    index.load(chunks)
    live = dict(zip(ids.tolist(), images, strict=True))
    assert index.live_count == len(live) and index.last_id == ids[-1]
    assert len(index._segments) == 1
    queries = [images[4], images[250][::3], *random_images(2, seed=10)]
    for query in queries:
        assert_same_ranking(index, live, query)
    more = random_images(60, seed=11)
    new_ids = np.arange(2000, 2060)
    index.append(new_ids, default(new_ids), np.array([len(w) for w in more]), np.concatenate(more))
    index.kill(ids[:100])
    live = {i: w for i, w in live.items() if i not in set(ids[:100].tolist())}
    live.update(zip(new_ids.tolist(), more, strict=True))
    for query in [*queries, more[7]]:
        assert_same_ranking(index, live, query)


def test_a_load_of_nothing_is_empty() -> None:
    index = WordIndex()
    index.load(list)
    assert index.live_count == 0 and index.top(np.array([1, 2]), 5).tolist() == []


def test_past_the_budget_the_most_frequent_query_words_are_left_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    images = random_images(300, seed=12)
    index = WordIndex()
    index.append(
        np.arange(1, 301), default(300), np.array([len(w) for w in images]), np.concatenate(images)
    )
    live = dict(zip(range(1, 301), images, strict=True))
    query = images[20]
    df = np.array([sum(int(w in set(words.tolist())) for words in images) for w in query])
    budget = int(df.sum()) // 3
    monkeypatch.setattr(words_module, "POSTINGS_BUDGET", budget)
    rarest = np.argsort(df, kind="stable")
    kept = query[rarest[np.cumsum(df[rarest]) <= budget]]
    assert 0 < len(kept) < len(query)
    assert_same_ranking(index, live, kept)
    assert index.top(query, 25).tolist() == index.top(kept, 25).tolist()
    monkeypatch.setattr(words_module, "POSTINGS_BUDGET", 1)  # still reads the rarest word
    assert index.top(query, 300).tolist() == index.top(query[rarest[:1]], 300).tolist() != []
