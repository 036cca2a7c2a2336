"""Partial matching: local features, visual words and geometric verification.

The global signature (match.signature) finds an image after edits that keep its whole frame;
this finds it after crops, padding, screenshots, captions, small rotations and perspective. An
image's RootSIFT keypoints (features.py) become visual words (vocabulary.py) that stores index
for candidate retrieval; candidates are confirmed by an affine RANSAC fit (verify.py), whose
inlier count becomes a score (score.py) and whose map gives the overlap of the two images.
"""

from match.local.codec import pack, unpack
from match.local.features import EXTRACTION, FRAME, Extraction, grey_frame, keypoints
from match.local.verify import LocalFeatures, Verified, verify
from match.local.vocabulary import WORDS, vocabulary

__all__ = [
    "FRAME",
    "WORDS",
    "LocalFeatures",
    "Verified",
    "grey_frame",
    "keypoints",
    "local_features",
    "pack",
    "unpack",
    "verify",
    "vocabulary",
]


def local_features(pixels, extraction: Extraction = EXTRACTION) -> LocalFeatures:
    """The local features of decoded (H, W, 3) RGB or (H, W) grey uint8 pixels."""
    found = keypoints(pixels, extraction)
    words, bits = vocabulary().quantise(found.descriptors)
    return LocalFeatures(found.points, words, bits, found.size)
