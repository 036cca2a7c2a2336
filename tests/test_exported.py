"""The package's public API is what ``match.__all__`` says, sorted, and every name resolves."""

from __future__ import annotations

import match


def test_the_public_api_is_pinned() -> None:
    assert match.__all__ == sorted(match.__all__, key=lambda name: (not name.isupper(), name))
    assert match.__all__ == [
        "ALGORITHM",
        "ORIENTATIONS",
        "BadParameter",
        "BlankImage",
        "BulkResult",
        "Comparison",
        "FetchError",
        "Hit",
        "ImageRecord",
        "IncompatibleRecord",
        "LocalCandidate",
        "LocalFeatures",
        "Match",
        "MatchError",
        "Matcher",
        "NotAnImage",
        "NotFound",
        "Query",
        "Settings",
        "Store",
        "StoreUnavailable",
        "TooLarge",
        "UnsupportedFormat",
        "UpstreamError",
        "as_json",
        "image_signature",
        "local_features",
        "normalized_distances",
        "open_store",
        "orientation_signatures",
    ]
    for name in match.__all__:
        assert getattr(match, name) is not None, name


def test_the_library_never_imports_the_http_layer_or_the_cli() -> None:
    # the layers point one way: http and cli over the library, never the other way round
    import subprocess
    import sys

    code = (
        "import sys, match, match.service, match.stores.sqlite, match.stores.elastic; "
        "print(sorted(m for m in sys.modules if m.startswith(('match.http', 'match.cli'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
