"""The embedded store's inverted index of terms (match.stores.sqlite.words; match.local.terms)
against a brute-force tf-idf over the same images: shared segments built from stored rows, the
tail's appends and merges, and deletions."""

from __future__ import annotations

import math

import numpy as np
import pytest

import match.stores.sqlite.words as words_module
from match.local import WORDS
from match.local.terms import TERMS
from match.stores.sqlite.words import WordIndex, build


def default(ids: np.ndarray | int) -> np.ndarray:
    """Every row in the default collection (1)."""
    return np.ones(ids if isinstance(ids, int) else len(ids), dtype=np.int32)


SPREAD_TERMS = np.random.default_rng(0).choice(TERMS, WORDS, replace=False)


def random_images(count: int, seed: int) -> list[np.ndarray]:
    """Distinct sorted terms per image, drawn from a Zipf-like law as real vocabularies are, of
    WORDS terms spread over the whole term space."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / (np.arange(WORDS) + 20.0)
    weights /= weights.sum()
    shuffled = rng.permutation(SPREAD_TERMS)
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


def append(index: WordIndex, ids: np.ndarray, images: list[np.ndarray]) -> None:
    """Rows for images, their word-row keys equal to their ids."""
    counts = np.array([len(w) for w in images])
    words = np.concatenate(images) if images else np.zeros(0, np.int64)
    index.append(ids, ids, default(ids), counts, words)


def segment(ids: np.ndarray, images: list[np.ndarray], parts: int = 5) -> dict[str, np.ndarray]:
    """A shared segment's arrays built from images, read in ``parts`` chunks, as the store does."""

    def chunks() -> list[words_module.Chunk]:
        split = np.array_split(np.arange(len(images)), parts)
        return [
            (
                ids[p],
                ids[p],
                default(p),
                np.array([len(images[i]) for i in p]),
                np.concatenate([images[i] for i in p]),
            )
            for p in split
        ]

    built = build(chunks)
    assert built is not None
    return built


@pytest.fixture
def small_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tail segments of a few images each, so that appends flush and merge many times."""
    monkeypatch.setattr(words_module, "TAIL_POSTINGS", 1500)


def test_the_tail_equals_brute_force_through_appends_merges_and_deletions(
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
        append(index, ids, chosen)
        live.update(zip(ids.tolist(), chosen, strict=True))
        dead = rng.choice(list(live), 8, replace=False)
        index.kill(np.append(dead, 10**9))  # an id never indexed is ignored
        for image_id in dead.tolist():
            del live[image_id]
        assert index.live_count == len(live)
        for query in queries:
            assert_same_ranking(index, live, query)
    assert index._tail_segments  # the unsorted run was flushed into segments, and merged


@pytest.fixture(params=[words_module.SCORE_CHUNK, 997], ids=["one chunk", "chunks of 997"])
def score_chunk(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Postings scored all at once, or a few hundred at a time (chunks end inside a word's run
    of postings)."""
    monkeypatch.setattr(words_module, "SCORE_CHUNK", request.param)


def test_shared_segments_and_a_tail_rank_as_brute_force(
    small_segments: None, score_chunk: None
) -> None:
    images = [*random_images(900, seed=9), np.zeros(0, np.int64)]  # one image without words
    ids = np.arange(3, 3 + 2 * len(images), 2)
    # word rows out of id order, as when features are stored after their image
    order = np.random.default_rng(1).permutation(600)
    first = segment(ids[:600][order], [images[i] for i in order])
    second = segment(ids[600:800], images[600:800], parts=1)
    index = WordIndex()
    append(index, np.array([1]), [np.array([1, 2, 3])])  # replaced by the segments
    index.set_segments([first, second], through=int(ids[799]))
    assert index.last_key == ids[799] and index.tail_rows == 0
    append(index, ids[800:], images[800:])
    live = dict(zip(ids.tolist(), images, strict=True))
    assert index.live_count == len(live)
    queries = [images[4], images[250][::3], images[700], images[850], *random_images(2, seed=10)]
    for query in queries:
        assert_same_ranking(index, live, query)
    dead = ids[::7]  # in both segments and the tail
    index.kill(dead)
    live = {i: w for i, w in live.items() if i not in set(dead.tolist())}
    assert index.live_count == len(live)
    for query in queries:
        assert_same_ranking(index, live, query)


def test_ties_go_to_the_earlier_row_and_limits_hold() -> None:
    words = random_images(3, seed=8)
    index = WordIndex()
    same = [words[0], words[1], words[0], words[0]]  # ids 1, 3, 4 hold identical words
    append(index, np.array([1, 2, 3, 4]), same)
    assert index.top(words[0], 10).tolist()[:3] == [1, 3, 4]
    assert index.top(words[0], 2).tolist() == [1, 3]
    assert index.top(words[0], 0).tolist() == []
    assert index.top(np.zeros(0, np.int64), 10).tolist() == []
    index.kill(np.array([1]))
    assert index.top(words[0], 2).tolist() == [3, 4]


def test_a_word_in_every_image_still_counts() -> None:
    index = WordIndex()
    append(index, np.array([9]), [np.array([5, 6])])
    assert index.top(np.array([6, 7]), 5).tolist() == [9]
    index.kill(np.array([9]))
    assert index.top(np.array([6]), 5).tolist() == []


def test_a_build_of_nothing_is_none_and_no_segments_are_empty() -> None:
    assert build(list) is None
    index = WordIndex()
    index.set_segments([], through=0)
    assert index.live_count == 0 and index.top(np.array([1, 2]), 5).tolist() == []


def test_past_the_budget_the_most_frequent_query_words_are_left_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    images = random_images(300, seed=12)
    index = WordIndex()
    index.set_segments([segment(np.arange(1, 201), images[:200])], through=200)
    append(index, np.arange(201, 301), images[200:])
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


def test_killing_an_absent_id_beside_a_present_one_counts_one_death() -> None:
    # an absent id's search position is its successor's: 764 lands on 765, which must still be
    # found once (it was found twice, and live_count fell by 2)
    images = random_images(3, seed=13)
    index = WordIndex()
    index.set_segments([segment(np.array([700, 765, 800]), images, parts=1)], through=800)
    append(index, np.array([900]), [images[0]])
    index.kill(np.array([764, 765, 899, 900]))
    assert index.live_count == 2
    assert sorted(index.live_ids().tolist()) == [700, 800]


def stored_words(images: dict[int, np.ndarray], reads: list[int]) -> words_module.WordsOf:
    """The store's read of images' own words (tables.words_by_id), over ``images``: in an
    order of its own, and counting the images each call reads."""

    def read(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        present = [i for i in ids.tolist()[::-1] if i in images]
        reads.append(len(present))
        words = [images[i].astype("<u4") for i in present] or [np.zeros(0, "<u4")]
        counts = np.array([len(images[i]) for i in present], dtype=np.int64)
        return np.array(present, dtype=np.int64), counts, np.concatenate(words)

    return read


def test_a_few_chosen_rows_rank_from_their_own_words_as_from_the_postings(
    small_segments: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = random_images(600, seed=21)
    images[74] = images[0] = images[37]  # three chosen images tie: the earlier row goes first
    ids = np.arange(1, 601)
    order = np.random.default_rng(2).permutation(400)  # word rows out of id order
    index = WordIndex()
    index.set_segments([segment(ids[:400][order], [images[i] for i in order])], through=400)
    append(index, ids[400:], images[400:])
    live = dict(zip(ids.tolist(), images, strict=True))
    chosen = index.selection(1, ids[::37])  # 17 images, in the segment and in the tail
    queries = [images[37][::2], images[407], images[300], *random_images(2, seed=22)]
    reads: list[int] = []
    for query in queries:
        monkeypatch.setattr(words_module, "GATHER_COST", 10**9)  # never: the postings
        expected = index.top(query, 8, chosen, stored_words(live, reads)).tolist()
        assert reads == [] and expected
        monkeypatch.setattr(words_module, "GATHER_COST", 1)  # always: the words read
        assert index.top(query, 8, chosen, stored_words(live, reads)).tolist() == expected
        assert reads.pop() == 17
    ties = index.top(images[37], 3, chosen, stored_words(live, reads)).tolist()
    rows = {int(i): row for row, i in enumerate(index.live_ids())}
    assert sorted(ties) == [1, 38, 75] and ties == sorted(ties, key=rows.__getitem__)
    # with dead rows only the postings give the live document frequencies: no words read
    index.kill(ids[1:3])
    chosen = index.selection(1, ids[::37])
    for query in queries:
        found = index.top(query, 8, chosen, stored_words(live, reads)).tolist()
        assert found == index.top(query, 8, chosen).tolist()
    assert reads == [17]  # the ties' read, before


def test_a_segment_of_many_rows_keeps_every_posting() -> None:
    # 150,001 images, read in chunks whose edges fall inside terms' runs
    count = 150_001
    rows = np.arange(count)
    images = [
        np.array([r % 97, 100 + r % 13, 200 + (r // 1000) % 50, 300 + (r > 140_000)])
        for r in rows.tolist()
    ]
    ids = rows * 2 + 5  # ids in row order, with gaps
    built = segment(ids, images, parts=7)
    assert built["rows"].dtype == np.int32 and len(built["rows"]) == 4 * count
    assert built["terms"].tolist() == [*range(97), *range(100, 113), *range(200, 250), 300, 301]
    index = WordIndex()
    index.set_segments([built], through=int(ids[-1]))
    for word, holders in (
        (3, rows[rows % 97 == 3]),
        (107, rows[rows % 13 == 7]),
        (249, rows[(rows // 1000) % 50 == 49]),
        (301, rows[rows > 140_000]),
        (300, rows[rows <= 140_000]),
    ):
        # every image holding the word ties, so all come back in row order
        assert index.top(np.array([word]), count).tolist() == ids[holders].tolist()
    assert index.top(np.array([399]), 10).tolist() == []  # a word no image holds
