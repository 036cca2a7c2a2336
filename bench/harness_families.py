"""Extra query families for the photos harness (../shared/photos), beside its 27.

    .venv/bin/python bench/harness_families.py QUERIES VIEW

QUERIES is a folder written by the harness's make_queries.py (``--out``). VIEW becomes a copy of
the harness that also knows the extra families, without touching either:

- VIEW/queries: a symlink to each family folder of QUERIES, the extra families' query files,
  and queries.json with their entries added;
- VIEW/set.json: the harness's, with the extra families appended to its list (accuracy.py
  accepts only the families set.json names, and reads it from its own folder);
- VIEW/accuracy.py and VIEW/engines.py: copies of the harness's files, unchanged; originals/
  and distractors/ are symlinks.

Then run the harness from the view, e.g. through HTTP on a fresh server:

    HARNESS/venv/bin/python VIEW/accuracy.py --queries VIEW/queries --out VIEW/results \\
        --engines http:http://127.0.0.1:8888 --families mirror_crop_center_70

The extra families are made as make_queries.py makes its own: the original in RGB, edited with
Pillow, saved as JPEG quality 90; crop_center keeps the centred share of each side, rounding
as make_queries.py does.

The extra families' negative queries also set the run's threshold. To compare with a run of the
harness's own families, rescore the run's rows on those families alone (the harness's threshold
and evaluate functions, the threshold from their negatives only):

    .venv/bin/python bench/harness_families.py --rescore VIEW/results/ENGINE.rows.json.gz
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from PIL import Image

HARNESS = Path(__file__).resolve().parent.parent.parent / "shared" / "photos"
QUALITY = 90  # make_queries.py's QUERY_QUALITY


def crop_center(image: Image.Image, share: float) -> Image.Image:
    """The centred ``share`` of each side (make_queries.py's crop_center)."""
    w, h = round(image.width * share), round(image.height * share)
    x, y = (image.width - w) // 2, (image.height - h) // 2
    return image.crop((x, y, x + w, y + h))


def mirrored(image: Image.Image) -> Image.Image:
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)


FAMILIES: dict[str, Callable[[Image.Image], Image.Image]] = {
    # a mirrored crop: the classic way to get a repost past a duplicate filter
    "mirror_crop_center_70": lambda image: crop_center(mirrored(image), 0.70),
    # mirrored, then turned 90 degrees counter-clockwise, then cropped
    "mirror_rot_90_crop_center_70": lambda image: crop_center(
        mirrored(image).transpose(Image.Transpose.ROTATE_90), 0.70
    ),
}


def make_view(queries: Path, view: Path, harness: Path = HARNESS) -> int:
    """Writes the view; returns how many query files it made."""
    meta = json.loads((harness / "set.json").read_text())
    truth = json.loads((queries / "queries.json").read_text())
    view.mkdir(parents=True, exist_ok=True)
    for name in ("accuracy.py", "engines.py"):
        shutil.copyfile(harness / name, view / name)
    for name in ("originals", "distractors"):
        _link(view / name, harness / name)
    out = view / "queries"
    out.mkdir(exist_ok=True)
    for family in truth["families"]:
        _link(out / family, (queries / family).resolve())
    made = 0
    ids = sorted(meta["indexed"] + meta["negatives"])
    for family, edit in FAMILIES.items():
        (out / family).mkdir(exist_ok=True)
        for id_ in ids:
            relative = f"{family}/{id_}.jpg"
            with Image.open(harness / "originals" / f"{id_}.jpg") as original:
                edit(original.convert("RGB")).save(out / relative, quality=QUALITY)
            truth["queries"][relative] = {"original": id_, "family": family}
            made += 1
    extra = [family for family in FAMILIES if family not in truth["families"]]
    truth["families"] = truth["families"] + extra
    (out / "queries.json").write_text(json.dumps(truth, indent=1) + "\n")
    meta["families"] = meta["families"] + [f for f in FAMILIES if f not in meta["families"]]
    (view / "set.json").write_text(json.dumps(meta, indent=1) + "\n")
    return made


def _link(link: Path, target: Path) -> None:
    if link.is_symlink():
        link.unlink()
    link.symlink_to(target, target_is_directory=True)


def rescore(rows_file: Path, harness: Path = HARNESS) -> None:
    """Prints a run's table on the harness's own families, threshold from their negatives."""
    sys.path.insert(0, str(harness))  # accuracy.py imports its engines.py (numpy and Pillow)
    spec = importlib.util.spec_from_file_location("accuracy", harness / "accuracy.py")
    assert spec is not None and spec.loader is not None
    accuracy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(accuracy)
    families = json.loads((harness / "set.json").read_text())["families"]
    with gzip.open(rows_file, "rt") as f:
        rows = [row for row in json.load(f) if row["family"] in families]
    t = accuracy.threshold([row["top_score"] for row in rows if row["negative"]])
    name = f"{rows_file.name}, the harness's families only"
    scored = accuracy.evaluate(rows, t)
    print(accuracy.table(name, scored, t, [f for f in families if f in scored]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("queries", type=Path, nargs="?", help="a folder of make_queries.py")
    parser.add_argument("view", type=Path, nargs="?", help="the harness view to write")
    parser.add_argument("--harness", type=Path, default=HARNESS, help="the photos harness")
    parser.add_argument("--rescore", type=Path, help="a run's .rows.json.gz: rescore it")
    args = parser.parse_args()
    if args.rescore:
        rescore(args.rescore, args.harness)
        return
    if args.queries is None or args.view is None:
        parser.error("give QUERIES and VIEW, or --rescore")
    made = make_view(args.queries, args.view, args.harness)
    print(f"{made} query files of {', '.join(FAMILIES)} in {args.view / 'queries'}")


if __name__ == "__main__":
    main()
