"""Partial matching: local features, visual words and geometric verification.

The global signature (match.signature) finds an image after edits that keep its whole frame;
this finds it after crops, padding, screenshots, captions, small rotations and perspective. An
image's RootSIFT keypoints (features.py) become visual words (vocabulary.py) that stores index
for candidate retrieval; candidates are confirmed by an affine RANSAC fit (verify.py), whose
inlier count becomes a score (score.py) and whose map gives the overlap of the two images. A
query also gets its mirror image's features from the same keypoints (mirror.py), so mirrored
copies are found with nothing more stored.
"""

import numpy as np

from match.local.codec import pack, unpack
from match.local.features import (
    EXTRACTION,
    FRAME,
    QUERY,
    STORED,
    Extraction,
    Keypoints,
    grey_frame,
    keypoints,
)
from match.local.mirror import mirrored_descriptors, mirrored_points
from match.local.verify import LocalFeatures, Verified, verify, verify_all
from match.local.vocabulary import WORDS, vocabulary

__all__ = [
    "FRAME",
    "QUERY",
    "STORED",
    "WORDS",
    "Extraction",
    "LocalFeatures",
    "Verified",
    "grey_frame",
    "keypoints",
    "local_features",
    "local_features_and_mirror",
    "pack",
    "unpack",
    "verify",
    "verify_all",
    "vocabulary",
]


def local_features(pixels, extraction: Extraction = EXTRACTION) -> LocalFeatures:
    """The local features of decoded (H, W, 3) RGB or (H, W) grey uint8 pixels."""
    return _quantised(keypoints(pixels, extraction), extraction, mirror=False)[0]


def _quantised(found: Keypoints, extraction: Extraction, mirror: bool) -> list[LocalFeatures]:
    """LocalFeatures of the keypoints, and with ``mirror`` of their mirror image's too (points
    mirrored, descriptors permuted: mirror.py): one quantisation of both, with the extraction's
    words per keypoint."""
    n = len(found.descriptors)
    descriptors = [found.descriptors] + [mirrored_descriptors(found.descriptors)] * mirror
    points = [found.points] + [mirrored_points(found.points, found.size[0])] * mirror
    words, bits, source = vocabulary().quantise_near(
        np.concatenate(descriptors), extraction.assignments, extraction.assignment_ratio
    )
    several = extraction.assignments > 1
    results = []
    for part, part_points in enumerate(points):
        mine = (source >= part * n) & (source < (part + 1) * n)
        keypoint = source[mine] - part * n
        results.append(
            LocalFeatures(
                part_points[keypoint] if several else part_points,
                words[mine],
                bits[mine],
                found.size,
                keypoint if several else None,
            )
        )
    return results


def local_features_and_mirror(
    pixels, extraction: Extraction = EXTRACTION
) -> tuple[LocalFeatures, LocalFeatures]:
    """The local features of decoded pixels and those of their mirror image (left-right), from
    one extraction: the mirror's descriptors are a permutation of the image's (mirror.py), and
    both are quantised in one pass."""
    image, mirror = _quantised(keypoints(pixels, extraction), extraction, mirror=True)
    return image, mirror
