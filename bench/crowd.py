"""A crowded store for the photos harness (issue 13): recall when thousands of photo-like
distractors share the index.

    .venv/bin/python bench/crowd.py make VIEW --queries QUERIES      # the split and the view
    .venv/bin/python bench/crowd.py load VIEW DATA_DIR [--images 10000]   # the crowd, stored
    .venv/bin/python bench/crowd.py fidelity VIEW [--images 200]      # emulated against real
    .venv/bin/python bench/crowd.py addset VIEW DATA_DIR              # what the harness adds
    .venv/bin/python bench/crowd.py ranks VIEW DATA_DIR OUT           # the candidate step
    .venv/bin/python bench/crowd.py cost VIEW DATA_DIR                # the shortlist's CPU

**The split.** The harness's indexed originals are split in two by id: the first half (A)
keeps its queries; the second half (B) joins the harness's distractors, indexed and never
queried. The crowd is built from B and the harness's distractors only, so no crowd image holds
content of a queried original (A) or of a held-back one (the negatives): each is an edited copy
of *another* photo, as a large collection holds them.

**The crowd.** Each image is planned from a seeded generator (deterministic): a crop of 25-90%
of each side at a random place (80% of them), a left-right mirror (50%), quarter turns (20%),
a recolouring and a resize (which leave the local features as they are: SIFT runs on grey and
every image is seen at 640 px); or (12%) a collage of 2-4 crops of different sources tiled on a
light canvas, a page of photos. Photos of B are drawn 90 times as often as each harness
distractor (drawings, textures, wallpapers) is drawn 20 times.

**Emulated features.** Extracting 10,000 images' features costs about 20 CPU-minutes, hours on
the shared machine; so a crowd image's local features are made from its sources' keypoints:
each source is run through OpenCV SIFT once at 1280 px (6,000 keypoints, the store's detector
settings), and for a planned image the keypoints inside its crop are mapped through its
geometry into its 640 px frame; those the frame cannot resolve (size under 1.8 px, SIFT's
smallest in a 640 px frame) are dropped, the 1,500 strongest kept and spread to 500 as
features.py spreads them (coarse ones, 7.2 px and up, first); a mirror permutes the descriptors
(local/mirror.py); then the vocabulary quantises them. ``fidelity`` renders the first images as
JPEG, extracts them for real and prints how many visual words the emulated and the real
features share. Signatures are synthetic (bench/store.py): the crowd is about partial matching.

VIEW is a copy of the harness that knows the split, without touching it (as
bench/harness_families.py makes one): VIEW/set.json (indexed: A; distractors: the harness's and
B), VIEW/distractors/ (symlinks to both), VIEW/accuracy.py and engines.py (copies),
VIEW/originals and VIEW/queries (symlinks). Serve DATA_DIR (``MATCH_DATA_DIR``) and run the
harness from the view through HTTP: it adds A, the distractors and B itself, then searches.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from match.local import features, mirrored_descriptors, vocabulary
from match.local.verify import LocalFeatures
from shared_photos import PHOTOS, photos_dir

SEED = 13
COPIES_OF_PHOTO = 90
COPIES_OF_DISTRACTOR = 20
SOURCE_SIDE = 1280  # sources are extracted once at this long side
SOURCE_KEYPOINTS = 6000
SMALLEST = 1.8  # px: SIFT's smallest keypoint in a FRAME-sized frame (its doubled first octave)
COARSE = 7.2  # px: its octaves from 1 up, in that frame (features.py keeps those first)


def split(meta: dict) -> tuple[list[str], list[str]]:
    """(A, B): the indexed originals by id, first half queried, second half crowd sources."""
    indexed = sorted(meta["indexed"])
    half = (len(indexed) + 1) // 2
    return indexed[:half], indexed[half:]


def sources(view: Path) -> list[Path]:
    meta = json.loads((view / "set.json").read_text())
    return [view / "distractors" / f"{d}.jpg" for d in meta["distractors"]]


def make(view: Path, harness: Path, queries: Path) -> None:
    meta = json.loads((harness / "set.json").read_text())
    queried, crowd_sources = split(meta)
    view.mkdir(parents=True, exist_ok=True)
    for name in ("accuracy.py", "engines.py"):
        shutil.copy(harness / name, view / name)
    for name, target in (("originals", harness / "originals"), ("queries", queries)):
        if not (view / name).exists():
            (view / name).symlink_to(target)
    distractors = view / "distractors"
    distractors.mkdir(exist_ok=True)
    pairs = [(b, "originals") for b in crowd_sources]
    pairs += [(d, "distractors") for d in meta["distractors"]]
    for id_, folder in pairs:
        link = distractors / f"{id_}.jpg"
        if not link.exists():
            link.symlink_to(harness / folder / f"{id_}.jpg")
    view_meta = dict(meta, indexed=queried, distractors=[i for i, _ in pairs])
    view_meta["about"] = meta["about"] + " (crowd view: bench/crowd.py)"
    (view / "set.json").write_text(json.dumps(view_meta, indent=1) + "\n")
    print(f"view in {view}: {len(queried)} originals queried (A), {len(pairs)} crowd sources")


# -- plans --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Piece:
    """One source's part of a crowd image: its crop (x, y, w, h in the source's pixels), and
    the affine map (2, 3) of source pixels into the crowd image's pixels."""

    source: int
    crop: tuple[int, int, int, int]
    matrix: np.ndarray
    mirrored: bool


@dataclass(frozen=True)
class Plan:
    size: tuple[int, int]  # (width, height) of the crowd image
    pieces: list[Piece]
    recolour: int  # -1: none, else which recolouring
    recolour_amount: float
    quality: int


def _crop_box(w: int, h: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
    cw, ch = (max(16, round(side * rng.uniform(0.25, 0.9))) for side in (w, h))
    return int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1)), cw, ch


def _edited(source: int, w: int, h: int, rng: np.random.Generator) -> Plan:
    box = _crop_box(w, h, rng) if rng.random() < 0.8 else (0, 0, w, h)
    x, y, cw, ch = box
    matrix = np.array([[1.0, 0.0, -x], [0.0, 1.0, -y], [0.0, 0.0, 1.0]])
    width, height = cw, ch
    mirrored = bool(rng.random() < 0.5)
    if mirrored:
        matrix = np.array([[-1.0, 0, width - 1], [0, 1, 0], [0, 0, 1]]) @ matrix
    if rng.random() < 0.2:
        for _ in range(int(rng.integers(1, 4))):  # a quarter turn counter-clockwise each
            matrix = np.array([[0.0, 1, 0], [-1, 0, width - 1], [0, 0, 1]]) @ matrix
            width, height = height, width
    recolour = int(rng.integers(0, 6)) if rng.random() < 0.6 else -1
    amount = float(rng.uniform(0.0, 1.0))
    return Plan(
        (width, height),
        [Piece(source, box, matrix[:2], mirrored)],
        recolour,
        amount,
        int(rng.integers(70, 96)),
    )


def _collage(picked: list[int], dims: list[tuple[int, int]], rng: np.random.Generator) -> Plan:
    width, height = int(rng.integers(600, 1100)), int(rng.integers(500, 900))
    rows = (len(picked) + 1) // 2
    cell_w, cell_h = width // 2, height // rows
    pieces = []
    for n, source in enumerate(picked):
        x, y, cw, ch = box = _crop_box(*dims[n], rng)
        scale = min((cell_w - 12) / cw, (cell_h - 12) / ch, 1.0)
        tile_w, tile_h = max(1, round(cw * scale)), max(1, round(ch * scale))
        left = (n % 2) * cell_w + int(rng.integers(0, cell_w - tile_w + 1))
        top = (n // 2) * cell_h + int(rng.integers(0, cell_h - tile_h + 1))
        matrix = np.array([[scale, 0.0, left - scale * x], [0.0, scale, top - scale * y]])
        pieces.append(Piece(source, box, matrix, False))
    return Plan((width, height), pieces, -1, 0.0, int(rng.integers(70, 96)))


def plans(files: list[Path], images: int, photos: int) -> list[Plan]:
    """``images`` plans over ``files``, whose first ``photos`` are the photos of B."""
    dims = []
    for path in files:
        with Image.open(path) as image:
            dims.append(image.size)
    weights = np.array(
        [COPIES_OF_PHOTO] * photos + [COPIES_OF_DISTRACTOR] * (len(files) - photos), float
    )
    probabilities = weights / weights.sum()
    rng = np.random.default_rng(SEED)
    made = []
    for _ in range(images):
        if rng.random() < 0.12:
            count = int(rng.integers(2, 5))
            picked = [int(n) for n in rng.choice(len(files), count, replace=False, p=probabilities)]
            made.append(_collage(picked, [dims[n] for n in picked], rng))
        else:
            source = int(rng.choice(len(files), p=probabilities))
            made.append(_edited(source, *dims[source], rng))
    return made


def render(plan: Plan, files: list[Path]) -> Image.Image:
    """The crowd image a plan describes, as a JPEG would hold it (for ``fidelity``)."""
    canvas = Image.new("RGB", plan.size, (235, 235, 230))
    for piece in plan.pieces:
        with Image.open(files[piece.source]) as opened:
            source = opened.convert("RGB")
        inverse = np.linalg.inv(np.vstack([piece.matrix, [0, 0, 1]]))[:2]
        x, y, w, h = piece.crop
        corners = piece.matrix @ np.array(
            [[x, x + w - 1, x, x + w - 1], [y, y, y + h - 1, y + h - 1], [1, 1, 1, 1]]
        )
        left, top = np.floor(corners.min(axis=1)).astype(int)
        right, bottom = np.ceil(corners.max(axis=1)).astype(int) + 1
        tile = source.transform(
            (right - left, bottom - top),
            Image.Transform.AFFINE,
            tuple((inverse @ np.array([[1, 0, left], [0, 1, top], [0, 0, 1]])).ravel()),
            Image.Resampling.BICUBIC,
        )
        canvas.paste(tile, (int(left), int(top)))
    image = canvas
    if plan.recolour == 0:
        image = ImageEnhance.Brightness(image).enhance(0.6 + 0.8 * plan.recolour_amount)
    elif plan.recolour == 1:
        image = ImageEnhance.Contrast(image).enhance(0.5 + plan.recolour_amount)
    elif plan.recolour == 2:
        image = ImageEnhance.Color(image).enhance(2 * plan.recolour_amount)
    elif plan.recolour == 3:
        hsv = np.array(image.convert("HSV"))
        hsv[..., 0] = (hsv[..., 0].astype(int) + 20 + int(215 * plan.recolour_amount)) % 256
        image = Image.fromarray(hsv, "HSV").convert("RGB")
    elif plan.recolour in (4, 5):
        image = ImageOps.grayscale(image).convert("RGB")
    return image


# -- emulated features --------------------------------------------------------------------------
@dataclass(frozen=True)
class SourceKeypoints:
    points: np.ndarray  # (n, 2) in the source's own pixels
    sizes: np.ndarray  # in the source's own pixels
    responses: np.ndarray
    descriptors: np.ndarray  # RootSIFT


def source_keypoints(path: Path) -> SourceKeypoints:
    with Image.open(path) as image:
        grey = np.array(image.convert("L"))
    width = grey.shape[1]
    frame = features._resized(grey, features._frame_size(grey.shape, SOURCE_SIDE))
    found, descriptors = _source_sift().detectAndCompute(frame, None)
    scale = width / frame.shape[1]
    if descriptors is None:  # a flat image
        descriptors = np.zeros((0, 128), np.float32)
    points = (np.array([k.pt for k in found], np.float32).reshape(-1, 2) + 0.25) * scale - 0.5
    return SourceKeypoints(
        points,
        np.array([k.size for k in found], np.float32) * scale,
        np.array([k.response for k in found], np.float32),
        features._root(descriptors),
    )


@cache
def _source_sift() -> cv2.SIFT:
    return cv2.SIFT_create(nfeatures=SOURCE_KEYPOINTS)


def emulated(plan: Plan, keypoints: list[SourceKeypoints]) -> LocalFeatures:
    """The local features a plan's image would have, from its sources' keypoints."""
    width, height = plan.size
    frame_scale = features.FRAME / max(width, height)
    size = (max(1, round(width * frame_scale)), max(1, round(height * frame_scale)))
    points, sizes, responses, descriptors = [], [], [], []
    for piece in plan.pieces:
        found = keypoints[piece.source]
        x, y, w, h = piece.crop
        inside = (
            (found.points[:, 0] >= x)
            & (found.points[:, 0] < x + w)
            & (found.points[:, 1] >= y)
            & (found.points[:, 1] < y + h)
        )
        linear = piece.matrix[:, :2]
        mapped = (found.points[inside] @ linear.T + piece.matrix[:, 2]) * frame_scale
        scale = float(np.sqrt(abs(np.linalg.det(linear)))) * frame_scale
        chosen = found.descriptors[inside]
        if piece.mirrored:
            chosen = mirrored_descriptors(chosen)
        points.append(mapped)
        sizes.append(found.sizes[inside] * scale)
        responses.append(found.responses[inside])
        descriptors.append(chosen)
    points_ = np.clip(np.concatenate(points), 0, np.float32((size[0] - 1, size[1] - 1)))
    sizes_, responses_ = np.concatenate(sizes), np.concatenate(responses)
    descriptors_ = np.concatenate(descriptors)
    seen = np.flatnonzero(sizes_ >= SMALLEST)
    seen = seen[np.argsort(-responses_[seen], kind="stable")][: 3 * features.MAX_KEYPOINTS]
    keep = seen[features._spread(points_[seen], responses_[seen], sizes_[seen] >= COARSE, *size)]
    words, bits = vocabulary().quantise(descriptors_[keep])
    return LocalFeatures(points_[keep].astype(np.float32), words, bits, size)


# -- commands -----------------------------------------------------------------------------------
def crowd_plans(view: Path, images: int) -> tuple[list[Path], list[Plan]]:
    meta = json.loads((view / "set.json").read_text())
    files = sources(view)
    photos = len(meta["distractors"]) - len(
        json.loads((PHOTOS / "set.json").read_text())["distractors"]
    )
    return files, plans(files, images, photos)


def load(view: Path, data_dir: Path, images: int) -> None:
    from match.stores.base import ImageRecord
    from match.stores.sqlite import SQLiteStore
    from store import synthetic

    start = time.perf_counter()
    files, planned = crowd_plans(view, images)
    keypoints = [source_keypoints(path) for path in files]
    extracted = time.perf_counter() - start
    data_dir.mkdir(parents=True, exist_ok=True)
    store = SQLiteStore(data_dir)
    signatures = synthetic(images, np.random.default_rng(SEED))
    batch = []
    for number, plan in enumerate(planned):
        local = emulated(plan, keypoints)
        batch.append(
            ImageRecord(f"crowd/{number:06d}", signatures[number], local=local, size=plan.size)
        )
        if len(batch) == 1000 or number == images - 1:
            assert not store.add_many(batch).failed
            batch = []
    store.close()
    print(
        f"{images} crowd images in {data_dir}: {len(files)} sources extracted in "
        f"{extracted:.0f} s, "
        f"all stored after {time.perf_counter() - start:.0f} s"
    )


def _record(item: tuple[str, Path]):
    from match.errors import MatchError
    from match.service import Matcher
    from match.settings import Settings

    global _MATCHER
    if "_MATCHER" not in globals():
        _MATCHER = Matcher(Settings.from_env(match_partial_matching=True))
    try:
        return _MATCHER.record(item[0], item[1].read_bytes())
    except MatchError:  # a blank wallpaper, refused as the server refuses it
        return None


def add_set(view: Path, data_dir: Path) -> None:
    """What the harness adds from the view (filepaths: the ids), for ``ranks`` offline."""
    from concurrent.futures import ProcessPoolExecutor

    from match.stores.sqlite import SQLiteStore

    meta = json.loads((view / "set.json").read_text())
    files = [(i, view / "originals" / f"{i}.jpg") for i in meta["indexed"]]
    files += [(d, view / "distractors" / f"{d}.jpg") for d in meta["distractors"]]
    with ProcessPoolExecutor(2) as pool:
        records = [r for r in pool.map(_record, files, chunksize=8) if r is not None]
    store = SQLiteStore(data_dir)
    assert not store.add_many(records).failed
    store.close()
    print(f"{len(records)} of the view's images added to {data_dir}")


def fidelity(view: Path, images: int, out: Path | None) -> None:
    """Emulated against real features of the first ``images`` crowd images. For scale, the same
    measure between the real features of each image and of its copy at 80% size, JPEG quality
    75 (what re-extraction alone changes), and between two different crowd images."""
    import io

    from match.local import local_features
    from match.signature.decode import decode_pixels

    def share(a: LocalFeatures, b: LocalFeatures) -> float:
        return len(np.intersect1d(a.words, b.words)) / max(1, len(np.unique(b.words)))

    files, planned = crowd_plans(view, images)
    keypoints: dict[int, SourceKeypoints] = {}
    emulation, again, unrelated, counts = [], [], [], []
    previous = None
    for number, plan in enumerate(planned):
        for piece in plan.pieces:
            if piece.source not in keypoints:
                keypoints[piece.source] = source_keypoints(files[piece.source])
        lookup = [keypoints.get(n) for n in range(len(files))]
        fake = emulated(plan, lookup)  # type: ignore[arg-type]
        image = render(plan, files)
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            image.save(out / f"{number:06d}.jpg", quality=plan.quality)
        real = local_features(np.array(image))
        smaller = io.BytesIO()
        image.resize((max(1, image.width * 4 // 5), max(1, image.height * 4 // 5))).save(
            smaller, "JPEG", quality=75
        )
        copy = local_features(decode_pixels(smaller.getvalue()))
        emulation.append(share(fake, real))
        again.append(share(copy, real))
        if previous is not None:
            unrelated.append(share(previous, real))
        previous = real
        counts.append((len(fake.words), len(real.words)))
    counts_ = np.array(counts)
    print(
        f"{images} crowd images: keypoints emulated / real, mean "
        f"{counts_[:, 0].mean():.0f} / {counts_[:, 1].mean():.0f}"
    )
    print("share of a real image's distinct words found in (p50, p10):")
    for name, values in (
        ("its emulated features", emulation),
        ("its 80% JPEG-75 copy, extracted", again),
        ("another crowd image", unrelated),
    ):
        print(f"  {name:<32} {np.median(values):.2f}, {np.percentile(values, 10):.2f}")


def ranks(view: Path, data_dir: Path, families: list[str], limit: int, out: Path) -> None:
    """Where each query's original ranks among the store's local candidates (both passes), with
    every candidate's number of tentative matches and the original's RANSAC inliers: the
    candidate step studied offline, one JSON line per query in ``out``."""
    from match.local import verify as verify_one
    from match.local.verify import tentative_matches_all
    from match.service import Matcher
    from match.settings import Settings
    from match.stores.sqlite import SQLiteStore

    queried = json.loads((view / "set.json").read_text())["indexed"]
    store = SQLiteStore(data_dir)
    matcher = Matcher(Settings.from_env(match_partial_matching=True), store)
    with out.open("w") as lines:
        for family in families:
            for original in queried:
                path = view / "queries" / family / f"{original}.jpg"
                query = matcher.query(path.read_bytes(), True)
                row: dict = {"family": family, "original": original}
                for name, local, mirror in (
                    ("plain", query.local, None),
                    ("mirror", query.mirrored_local, "query"),
                ):
                    if local is None:
                        continue
                    found = store.local_candidates(local.words, limit, bits=local.bits)
                    paths = [c.filepath for c in found]
                    tentative = tentative_matches_all(local, [c.local for c in found])
                    rank = paths.index(original) if original in paths else None
                    row[name] = {"rank": rank, "tentative": [len(t[0]) for t in tentative]}
                    if rank is not None:
                        fit = verify_one(local, found[rank].local, mirror_of=mirror)
                        row[name]["inliers"] = fit.inliers if fit else 0
                lines.write(json.dumps(row) + "\n")
                lines.flush()


def cost(view: Path, data_dir: Path, families: list[str], per_family: int) -> None:
    """CPU time of a search's local part (both passes: the store's candidates, then tentative
    matches and RANSAC), the shortlist against the 30 candidates of before, back to back in
    alternating order, and whether the original was verified by each."""
    from match.local.verify import verify_all
    from match.service import LOCAL_CANDIDATES, LOCAL_SHORTLIST, Matcher
    from match.settings import Settings
    from match.stores.sqlite import SQLiteStore

    queried = json.loads((view / "set.json").read_text())["indexed"]
    store = SQLiteStore(data_dir)
    matcher = Matcher(Settings.from_env(match_partial_matching=True), store)
    variants = {
        "before": (LOCAL_CANDIDATES, None),
        "shortlist": (LOCAL_SHORTLIST, LOCAL_CANDIDATES),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    found = dict.fromkeys(variants, 0)
    store.local_candidates(np.arange(10), 1)  # the word index, mapped
    count = 0
    for family in families:
        for original in queried[:per_family]:
            query = matcher.query(
                (view / "queries" / family / f"{original}.jpg").read_bytes(), True
            )
            names = list(variants) if count % 2 == 0 else list(variants)[::-1]
            count += 1
            for name in names:
                limit, fits = variants[name]
                start, hit = time.process_time(), False
                for local, mirror in ((query.local, None), (query.mirrored_local, "query")):
                    if local is None:
                        continue
                    candidates = store.local_candidates(local.words, limit, bits=local.bits)
                    fitted = verify_all(
                        local, [c.local for c in candidates], mirror_of=mirror, fits=fits
                    )
                    hit |= any(
                        c.filepath == original and v is not None and v.inliers >= 8
                        for c, v in zip(candidates, fitted, strict=True)
                    )
                times[name].append(time.process_time() - start)
                found[name] += hit
    print(f"local part of a search (both passes), {count} queries, {store.count()} images:")
    for name, spent in times.items():
        ms = 1000 * np.array(spent)
        print(
            f"  {name:<9}: CPU p50 {np.median(ms):.1f} ms, p90 {np.percentile(ms, 90):.1f} ms, "
            f"mean {ms.mean():.1f} ms; original verified (8+ inliers) {found[name]}/{count}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    making = commands.add_parser("make")
    making.add_argument("view", type=Path)
    making.add_argument("--queries", type=Path, required=True, help="make_queries.py's folder")
    loading = commands.add_parser("load")
    loading.add_argument("view", type=Path)
    loading.add_argument("data_dir", type=Path)
    loading.add_argument("--images", type=int, default=10_000)
    adding = commands.add_parser("addset")
    adding.add_argument("view", type=Path)
    adding.add_argument("data_dir", type=Path)
    checking = commands.add_parser("fidelity")
    checking.add_argument("view", type=Path)
    checking.add_argument("--images", type=int, default=200)
    checking.add_argument("--out", type=Path, help="also save the rendered images here")
    ranking = commands.add_parser("ranks")
    ranking.add_argument("view", type=Path)
    ranking.add_argument("data_dir", type=Path)
    ranking.add_argument("out", type=Path)
    ranking.add_argument("--families", default="augly_screenshot,screenshot_60,crop_center_70")
    ranking.add_argument("--limit", type=int, default=1000)
    costing = commands.add_parser("cost")
    costing.add_argument("view", type=Path)
    costing.add_argument("data_dir", type=Path)
    costing.add_argument("--families", default="augly_screenshot,screenshot_60,crop_center_70")
    costing.add_argument("--per-family", type=int, default=25)
    args = parser.parse_args()
    if args.command == "make":
        make(args.view, photos_dir("bench/crowd.py", PHOTOS), args.queries.resolve())
    elif args.command == "load":
        load(args.view, args.data_dir, args.images)
    elif args.command == "addset":
        add_set(args.view, args.data_dir)
    elif args.command == "fidelity":
        fidelity(args.view, args.images, args.out)
    elif args.command == "cost":
        cost(args.view, args.data_dir, args.families.split(","), args.per_family)
    else:
        ranks(args.view, args.data_dir, args.families.split(","), args.limit, args.out)


if __name__ == "__main__":
    main()
