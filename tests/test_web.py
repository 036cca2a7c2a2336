"""The web page at / in a real browser: Debian's chromium, headless, driven by playwright (never a
downloaded browser: scripts/install-browser.sh installs it with apt). One Match server with API
keys (a read-write and a read-only one) on the embedded store; the page asks for the key once.

Each test saves a screenshot under tests/screenshots/ (git-ignored), to look at.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from api_server import ImageServer, MatchServer
from conftest import skip_or_fail
from match.service import Matcher
from match.settings import Settings
from match.signature import image_signature
from match.stores import ImageRecord, open_store

CHROMIUM = os.environ.get("MATCH_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
KEY, READ_ONLY_KEY = "page-key", "page-read"
LINKS = "links"
PHOTOS = 13
CROPPED = 10  # the photo whose centre is searched with (textured; public domain: docs/web.md)
STORED = PHOTOS + 2  # and two copies of it: a browse page of 12, then 3
TIMEOUT_MS = 60_000  # a search with partial matching on a busy 2-core machine
LAUNCH_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

try:
    from playwright.sync_api import BrowserContext, Page, expect, sync_playwright
except ImportError:  # the dev extra installs it
    sync_playwright = None  # type: ignore[assignment]


def _auth(key: str = KEY) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def _jpeg(image: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def _crop(path: Path) -> bytes:
    """The middle of a photo (half its width and height): found by partial matching only."""
    image = Image.open(path).convert("RGB")
    width, height = image.size
    return _jpeg(image.crop((width // 4, height // 4, width * 3 // 4, height * 3 // 4)))


def _stored(photo_paths: list[Path]) -> list[tuple[str, bytes, dict[str, Any]]]:
    """(filepath, image, metadata) of what the server holds: photos, and two copies of one
    (half size, turned a quarter) under scans/, which sort after photos/ on a tied score."""
    stored = [
        (f"photos/{path.name}", path.read_bytes(), {"n": n, "name": path.stem})
        for n, path in enumerate(photo_paths[:PHOTOS])
    ]
    original = Image.open(photo_paths[CROPPED]).convert("RGB")
    stem = photo_paths[CROPPED].stem
    half = original.resize((original.width // 2, original.height // 2))
    stored.append((f"scans/{stem}-half.jpg", _jpeg(half, 70), {"copy": "half"}))
    turned = original.transpose(Image.Transpose.ROTATE_90)
    stored.append((f"scans/{stem}-turned.jpg", _jpeg(turned), {"copy": "turned"}))
    return stored


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, photo_paths: list[Path], images: ImageServer
) -> Iterator[Any]:
    folder = tmp_path_factory.mktemp("web")
    env = {
        "MATCH_DATA_DIR": str(folder / "data"),
        "MATCH_API_KEYS": f"{KEY},{READ_ONLY_KEY}:ro",
        "MATCH_ALLOW_PRIVATE_URLS": "1",
        "WORKER_COUNT": "1",
    }
    # the collection "links": records stored without thumbnails (as with MATCH_THUMBNAILS=false
    # or before thumbnails), one under an http URL the page loads itself
    store = open_store(Settings.from_env(env))
    try:
        signature = image_signature(photo_paths[3])
        for filepath in (images.url(photo_paths[3].name), "elsewhere/no-thumbnail.jpg"):
            store.add(ImageRecord(filepath, signature, collection=LINKS))
    finally:
        store.close()
    with MatchServer(env, folder / "server.log") as running:
        with httpx.Client(base_url=running.url, headers=_auth(), timeout=120) as client:
            for filepath, image, metadata in _stored(photo_paths):
                added = client.post(
                    "/add",
                    data={"filepath": filepath, "metadata": json.dumps(metadata)},
                    files={"image": ("image.jpg", image)},
                )
                assert added.status_code == 200, added.text
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[BrowserContext]:
    if sync_playwright is None:
        skip_or_fail("playwright is not installed (make install: the dev extra)")
    if not os.access(CHROMIUM, os.X_OK):
        skip_or_fail(f"{CHROMIUM} is missing: as root, sh scripts/install-browser.sh")
    profile = tempfile.mkdtemp(prefix="match-chromium-")
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                headless=True,
                args=LAUNCH_FLAGS,
                viewport={"width": 1280, "height": 900},
            )
            context.set_default_timeout(TIMEOUT_MS)
            yield context
            context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser: BrowserContext, server: Any) -> Iterator[Page]:
    """A fresh tab that was given the read-write key once, at the page's request."""
    tab = browser.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    _open_with_key(tab, server.url, KEY)
    yield tab
    tab.close()
    assert not errors, errors  # no uncaught script error


def _open_with_key(tab: Page, url: str, key: str) -> None:
    tab.goto(url + "/")
    dialog = tab.get_by_role("dialog", name="API key")
    expect(dialog).to_be_visible()
    dialog.get_by_label("API key").fill(key)
    dialog.get_by_role("button", name="Use this key").click()
    expect(dialog).to_be_hidden()
    expect(tab.get_by_label("Collection")).to_have_value("default")


def _screenshot(tab: Page, name: str) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    tab.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def _points(polygon: Any) -> list[float]:
    """The points an outline's polygon was drawn through, flat: x0, y0, x1, y1, ..."""
    return [float(n) for n in re.split(r"[ ,]", polygon.get_attribute("points").strip())]


def _flat(outline: list[list[float]]) -> list[float]:
    return [value for point in outline for value in point]


# -- the page, served -----------------------------------------------------------------------------
def test_browsers_get_the_page_and_clients_the_routes_and_data_needs_a_key(server: Any) -> None:
    html = httpx.get(server.url + "/", headers={"accept": "text/html,*/*;q=0.8"})
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in html.headers["content-security-policy"]
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html.text)  # nothing off-site
    for name in ("app.js", "style.css"):
        assert httpx.get(f"{server.url}/ui/{name}").status_code == 200
    assert httpx.get(server.url + "/").status_code == 401  # */*: the JSON index, needs a key
    index = httpx.get(server.url + "/", headers={"accept": "application/json", **_auth()})
    assert index.json()["method"] == "index"
    photo = {"filepath": "photos/" + "x.jpg"}
    for path in ("/thumbnail", "/access", "/count", "/list"):
        assert httpx.get(server.url + path, params=photo).status_code == 401, path
    assert httpx.get(f"{server.url}/ui/missing.js").status_code == 404


def test_thumbnails_are_small_and_carry_the_stored_images_size(
    server: Any, photo_paths: list[Path]
) -> None:
    sizes = []
    for path in photo_paths[:PHOTOS]:
        answer = httpx.get(
            server.url + "/thumbnail", params={"filepath": f"photos/{path.name}"}, headers=_auth()
        )
        assert answer.status_code == 200 and answer.headers["content-type"] == "image/webp"
        thumbnail = Image.open(io.BytesIO(answer.content))
        width, height = Image.open(path).size
        assert (int(answer.headers["x-image-width"]), int(answer.headers["x-image-height"])) == (
            width,
            height,
        )
        assert max(thumbnail.size) == min(256, max(width, height))
        assert abs(thumbnail.size[0] / thumbnail.size[1] - width / height) < 0.02
        sizes.append(len(answer.content))
    assert max(sizes) < 20_000, sizes
    missing = httpx.get(server.url + "/thumbnail", params={"filepath": "nope"}, headers=_auth())
    assert missing.status_code == 404
    assert missing.json()["error"] == ["No image is stored under the filepath 'nope'"]
    read_only = httpx.get(server.url + "/access", headers=_auth(READ_ONLY_KEY)).json()["result"]
    assert read_only == [{"keys": True, "read_only": True, "collections": None}]


def test_with_thumbnails_off_none_is_stored(tmp_path: Path, photo_paths: list[Path]) -> None:
    settings = Settings.from_env({"MATCH_DATA_DIR": str(tmp_path), "MATCH_THUMBNAILS": "false"})
    matcher = Matcher(settings)
    try:
        record = matcher.add("off.jpg", photo_paths[4].read_bytes())
        assert record.thumbnail is None and matcher.thumbnail("off.jpg") is None
        on = Matcher(settings.replace(match_thumbnails=True), matcher.store)
        assert on.add("on.jpg", photo_paths[4].read_bytes()).thumbnail is not None
        assert on.thumbnail("on.jpg") is not None
    finally:
        matcher.close()


# -- the views, in the browser --------------------------------------------------------------------
def test_search_by_upload_shows_the_best_match_first_with_the_crop_outlined(
    page: Page, server: Any, photo_paths: list[Path], tmp_path: Path
) -> None:
    crop = tmp_path / "crop.jpg"
    crop.write_bytes(_crop(photo_paths[CROPPED]))
    expected = httpx.post(
        server.url + "/search", files={"image": crop.read_bytes()}, headers=_auth()
    ).json()["result"][0]
    assert expected["method"] == "local"
    # the photo and its two stored copies score within a tenth of each other (about 99): which
    # of them comes first depends on the keypoints each one's own size gives
    stem = photo_paths[CROPPED].stem
    photo = f"photos/{photo_paths[CROPPED].name}"
    assert expected["filepath"] in {photo, f"scans/{stem}-half.jpg", f"scans/{stem}-turned.jpg"}

    page.get_by_label("Drop, paste or pick an image").set_input_files(str(crop))
    results = page.get_by_role("list", name="Search results").get_by_role("listitem")
    expect(results.first).to_contain_text(expected["filepath"])
    first = results.first
    expect(first).to_contain_text("partial match")
    expect(first).to_contain_text(f"{expected['score']:.1f}")
    # the crop's box drawn on the stored image, as the API reports it (inside the stored image)
    drawn = first.locator("svg.outline")
    assert json.loads(drawn.get_attribute("data-outline")) == expected["query_outline"]
    line = _points(drawn.locator("polygon.line"))
    assert line == pytest.approx(_flat(expected["query_outline"]), abs=0.1)
    # where the stored image lies in the query: beyond all of its frame (a crop), so nothing
    # is framed on the query
    on_query = (
        page.get_by_role("region", name="Search").get_by_role("figure").locator("svg.outline")
    )
    assert json.loads(on_query.get_attribute("data-outline")) == expected["target_outline"]
    expect(on_query).to_have_attribute("data-covers", "all")
    expect(on_query.locator("polygon")).to_have_count(0)
    expect(drawn).to_have_attribute("data-covers", "part")
    copies = results.filter(has_text=f"scans/{photo_paths[CROPPED].stem}")
    expect(copies).to_have_count(2)  # the half-size and the turned copy, found too
    image = first.locator("img")
    expect(image).to_have_js_property("complete", True)
    assert image.evaluate("img => img.naturalWidth") > 0
    _screenshot(page, "search")


def test_search_by_keyboard_with_a_stored_filepath_and_options(
    page: Page, photo_paths: list[Path]
) -> None:
    filepath = f"photos/{photo_paths[1].name}"
    field = page.get_by_role("region", name="Search").get_by_label("Stored filepath")
    for _ in range(20):  # tab through the header and the drop zone to the field
        page.keyboard.press("Tab")
        if field.evaluate("node => node === document.activeElement"):
            break
    else:
        pytest.fail("the filepath field cannot be reached with Tab")
    page.keyboard.type(filepath)
    page.get_by_role("region", name="Search").get_by_label("Minimum score").fill("95")
    page.keyboard.press("Enter")
    results = page.get_by_role("list", name="Search results").get_by_role("listitem")
    expect(results).to_have_count(1)
    expect(results.first).to_contain_text(filepath)
    expect(results.first).to_contain_text("100.0")
    expect(results.first.locator("dd").filter(has_text=photo_paths[1].stem)).to_be_visible()


PUT_IMAGE = """([kind, data]) => {
    const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
    const transfer = new DataTransfer();
    transfer.items.add(new File([bytes], "query.jpg", { type: "image/jpeg" }));
    if (kind === "paste") {
        document.dispatchEvent(new ClipboardEvent("paste", { clipboardData: transfer }));
    } else {
        document.getElementById("search-drop").dispatchEvent(
            new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
    }
}"""


@pytest.mark.parametrize("kind", ["paste", "drop"])
def test_an_image_pasted_or_dropped_is_searched_with(
    page: Page, photo_paths: list[Path], kind: str
) -> None:
    data = base64.b64encode(photo_paths[5].read_bytes()).decode()
    page.evaluate(PUT_IMAGE, [kind, data])
    results = page.get_by_role("list", name="Search results").get_by_role("listitem")
    expect(results.first).to_contain_text(f"photos/{photo_paths[5].name}")
    expect(results.first).to_contain_text("100.0")
    expect(page.get_by_role("region", name="Search").get_by_role("figure")).to_contain_text(
        "query.jpg"
    )


def test_the_apis_errors_are_shown_as_such(page: Page) -> None:
    page.get_by_role("region", name="Search").get_by_label("Image URL").fill("ftp://x.org/a.jpg")
    page.get_by_role("button", name="Search", exact=True).click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("search: Parameter 'url'")
    expect(alert).to_contain_text("(HTTP 400)")
    _screenshot(page, "error")


def test_compare_two_images_side_by_side(
    page: Page, server: Any, photo_paths: list[Path], tmp_path: Path
) -> None:
    crop = tmp_path / "crop.jpg"
    crop.write_bytes(_crop(photo_paths[CROPPED]))
    filepath = f"photos/{photo_paths[CROPPED].name}"
    [expected] = httpx.post(
        server.url + "/compare",
        data={"filepath2": filepath},
        files={"image1": crop.read_bytes()},
        headers=_auth(),
    ).json()["result"]
    page.get_by_role("link", name="Compare").click()
    first = page.get_by_role("group", name="First image (the query)")
    first.get_by_label("Drop or pick an image").set_input_files(str(crop))
    page.get_by_role("group", name="Second image (the stored one)").get_by_label(
        "Stored filepath"
    ).fill(filepath)
    page.get_by_role("button", name="Compare", exact=True).click()
    expect(page.get_by_role("region", name="Compare").get_by_role("status")).to_contain_text(
        f"Score {expected['score']:.1f}"
    )
    pair = page.get_by_role("group", name="Compared images")
    expect(pair.get_by_role("img", name=re.compile("^Second image"))).to_be_visible()
    on_second = _points(pair.locator("figure").nth(1).locator("polygon.line"))
    assert on_second == pytest.approx(_flat(expected["query_outline"]), abs=0.1)
    expect(pair).to_contain_text("partial match")
    _screenshot(page, "compare")


def test_browse_pages_through_the_collection_and_deletes_one_image(
    page: Page, server: Any, photo_paths: list[Path]
) -> None:
    page.get_by_role("link", name="Browse").click()
    page.get_by_label("Per page").select_option("12")
    expect(page.get_by_role("navigation", name="Browse pages")).to_contain_text(
        f"Page 1 of 2 · {STORED} images"
    )
    grid = page.get_by_role("list", name="Stored images")
    expect(grid.get_by_role("listitem")).to_have_count(12)
    _screenshot(page, "browse")
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_role("navigation", name="Browse pages")).to_contain_text("Page 2 of 2")
    last = f"photos/{photo_paths[PHOTOS - 1].name}"
    expect(grid.get_by_role("listitem")).to_have_count(STORED - 12)
    grid.get_by_role("button", name=f"Open {last}").click()
    detail = page.get_by_role("dialog", name=last)
    expect(detail.locator("dd").filter(has_text=photo_paths[PHOTOS - 1].stem)).to_have_count(1)
    _screenshot(page, "browse-detail")
    detail.get_by_role("button", name="Delete…").click()
    confirm = page.get_by_role("dialog", name="Delete?")
    expect(confirm).to_contain_text(last)
    confirm.get_by_role("button", name="Delete").click()
    expect(page.get_by_role("navigation", name="Browse pages")).to_contain_text(
        f"Page 2 of 2 · {STORED - 1} images"
    )
    expect(grid.get_by_role("listitem")).to_have_count(STORED - 13)
    expect(grid.get_by_role("button", name=f"Open {last}")).to_have_count(0)
    count = httpx.get(server.url + "/count", headers=_auth()).json()["result"]
    assert count == [STORED - 1]
    expect(page.get_by_label("Collection")).to_contain_text(f"default ({STORED - 1})")


def test_a_read_only_key_sees_no_delete_button(
    browser: BrowserContext, server: Any, photo_paths: list[Path]
) -> None:
    tab = browser.new_page()
    try:
        _open_with_key(tab, server.url, READ_ONLY_KEY)
        expect(tab.get_by_role("button", name="API key (read-only)")).to_be_visible()
        tab.get_by_role("link", name="Browse").click()
        first = f"photos/{photo_paths[0].name}"
        tab.get_by_role("button", name=f"Open {first}").click()
        detail = tab.get_by_role("dialog", name=first)
        expect(detail.get_by_role("button", name="Search with it")).to_be_visible()
        expect(detail.get_by_role("button", name="Delete…")).to_be_hidden()
    finally:
        tab.close()


def test_without_a_thumbnail_a_url_is_loaded_and_anything_else_is_a_placeholder(
    page: Page, images: ImageServer, photo_paths: list[Path]
) -> None:
    page.get_by_role("link", name="Browse").click()
    page.get_by_label("Collection").select_option(LINKS)
    grid = page.get_by_role("list", name="Stored images")
    expect(grid.get_by_role("listitem")).to_have_count(2)
    url = images.url(photo_paths[3].name)
    loaded = grid.get_by_role("button", name=f"Open {url}").locator("img")
    expect(loaded).to_have_attribute("src", url)
    expect(loaded).to_have_js_property("complete", True)
    assert loaded.evaluate("img => img.naturalWidth") == Image.open(photo_paths[3]).size[0]
    other = grid.get_by_role("button", name="Open elsewhere/no-thumbnail.jpg")
    expect(
        other.get_by_role("img", name="elsewhere/no-thumbnail.jpg: no thumbnail")
    ).to_be_visible()
    _screenshot(page, "browse-links")


def test_readable_at_phone_width(page: Page, photo_paths: list[Path]) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    search = page.get_by_role("region", name="Search")
    search.get_by_label("Stored filepath").fill(f"photos/{photo_paths[2].name}")
    page.get_by_role("button", name="Search", exact=True).click()
    results = page.get_by_role("list", name="Search results").get_by_role("listitem")
    expect(results.first).to_be_visible()
    overflow = page.evaluate("document.scrollingElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow} px wider than the phone"
    _screenshot(page, "phone")


def test_duplicates_view_reviews_a_group(page: Page, server: Any, photo_paths: list[Path]) -> None:
    keeper = f"photos/{photo_paths[CROPPED].name}"
    half, turned = (f"scans/{photo_paths[CROPPED].stem}-{copy}.jpg" for copy in ("half", "turned"))
    page.get_by_role("link", name="Duplicates").click()
    view = page.get_by_role("region", name="Duplicates")
    view.get_by_role("button", name="Find duplicates").click()
    group = view.get_by_role("listitem").filter(has_text=turned).first
    expect(group).to_contain_text(keeper)
    expect(group).to_contain_text("keeper")
    group.get_by_role("button", name=f"Keep {half}").click()
    expect(group.get_by_role("button", name=f"Keep {half}")).to_have_attribute(
        "aria-pressed", "true"
    )
    _screenshot(page, "duplicates")
    view.get_by_role("button", name="Delete every duplicate on this page").click()
    page.get_by_role("dialog", name="Delete?").get_by_role("button", name="Delete").click()
    expect(view.get_by_role("status")).to_contain_text("Deleted")
    listed = httpx.get(server.url + "/list", params={"limit": 100}, headers=_auth())
    assert turned not in listed.json()["result"]
    assert {keeper, half} <= set(listed.json()["result"])  # the keeper and the one kept
