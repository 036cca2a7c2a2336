"""The Goldberg image signature (Wong, Bern and Goldberg, ICIP 2002) as image-match 1.x computes it.

No HTTP and no storage here: bytes or a path in, numpy arrays out. docs/signatures.md explains
the exact and fast modes and their measured speed and accuracy.
"""

from match.signature.decode import decode_image
from match.signature.distance import normalized_distances
from match.signature.goldberg import (
    ALGORITHM,
    MODES,
    SIGNATURE_LENGTH,
    decode_for_signature,
    image_signature,
    is_blank,
    orientation_signatures,
    pixels_orientation_signatures,
)
from match.signature.orientations import ORIENTATIONS, signature_orientations
from match.signature.words import WORD_COUNT, words

__all__ = [
    "ALGORITHM",
    "MODES",
    "ORIENTATIONS",
    "SIGNATURE_LENGTH",
    "WORD_COUNT",
    "decode_for_signature",
    "decode_image",
    "image_signature",
    "is_blank",
    "normalized_distances",
    "orientation_signatures",
    "pixels_orientation_signatures",
    "signature_orientations",
    "words",
]
