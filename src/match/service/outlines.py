"""Where the matched region lies: the two outlines every result carries, in pixels of the images
as they were given.

- ``query_outline``: where the query's frame lies in the stored image (for a crop of the stored
  image: the crop's box);
- ``target_outline``: where the stored image's frame lies in the query (for a screenshot holding
  it: where it was pasted).

A partial match maps the query's feature frame into the stored image's by its fitted affine
map (which mirrors when the query matched as a mirror image; the outline's corners are then
the query's own, so its top-left corner lies at the stored image's top-right); the frames (long
side match.local.FRAME, points at pixel centres) are scaled to the images' sizes. A signature match
compares whole images: its outlines are the two images' own frames. An outline is None when a
size is not known (records stored before sizes were, or by image-match).
"""

from __future__ import annotations

import numpy as np

from match.local import LocalFeatures, Verified

Size = tuple[int, int]
Outline = list[list[float]]  # four [x, y] points: top-left, top-right, bottom-right, bottom-left


def frame(size: Size | None) -> Outline | None:
    """An image's own frame."""
    if size is None:
        return None
    width, height = size
    return _points(_corners(width, height))


def local_outlines(
    verified: Verified,
    query: LocalFeatures,
    query_size: Size | None,
    stored: LocalFeatures,
    stored_size: Size | None,
) -> tuple[Outline | None, Outline | None]:
    """(query_outline, target_outline) of a partial match."""
    forward = np.vstack([verified.matrix, [0.0, 0.0, 1.0]])
    query_outline = target_outline = None
    if stored_size is not None:
        in_stored = _through(forward, query.size)
        query_outline = _points(in_stored * _scale(stored.size, stored_size))
    if query_size is not None:
        in_query = _through(np.linalg.inv(forward), stored.size)
        target_outline = _points(in_query * _scale(query.size, query_size))
    return query_outline, target_outline


def _through(matrix: np.ndarray, size: Size) -> np.ndarray:
    """A frame's corners through a map between pixel-centre coordinates (the frame's corners
    lie half a pixel out from its corner pixels' centres), in pixel-edge coordinates."""
    return _apply(matrix, _corners(*size) - 0.5) + 0.5


def _corners(width: float, height: float) -> np.ndarray:
    return np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float64)


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:2, :2].T + matrix[:2, 2]


def _scale(frame_size: Size, size: Size) -> np.ndarray:
    """Frame coordinates to pixels of the image as given."""
    return np.array([size[0] / frame_size[0], size[1] / frame_size[1]])


def _points(points: np.ndarray) -> Outline:
    return [[round(float(x), 1), round(float(y), 1)] for x, y in points]
