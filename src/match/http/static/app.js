// Match's web page: search, browse, compare and review duplicates (docs/web.md).
// Plain JavaScript over the HTTP API; no library, no build step. Every text that comes from the
// store (filepaths, metadata, errors) is set with textContent, never parsed as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORAGE = "match.api-key";
const state = {
  key: sessionStorage.getItem(KEY_STORAGE) || "",
  access: null, // GET /access: {keys, read_only, collections}
  collection: "default",
  browseOffset: 0,
  duplicatesOffset: 0,
  duplicates: [], // the groups on the page shown
  query: null, // the search's query image: {src, width, height}
  results: [],
  selected: 0, // the result whose outline is drawn on the query
};

// -- the API -------------------------------------------------------------------------------------
class ApiError extends Error {
  constructor(status, method, messages) {
    const text = (messages && messages.length ? messages : ["error"]).join("; ");
    super(status ? `${method}: ${text} (HTTP ${status})` : `${method}: ${text}`);
    this.status = status;
  }
}

function headers() {
  const sent = { Accept: "application/json" };
  if (state.key) sent.Authorization = `Bearer ${state.key}`;
  return sent;
}

// One API call: GET and DELETE send their parameters in the query string, POST a multipart form
// (files included). Resolves to the envelope's result; rejects with the API's own messages.
async function api(method, path, params = {}) {
  const url = new URL(path, location.origin);
  let body;
  const given = Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== "");
  if (method === "GET" || method === "DELETE") {
    for (const [name, value] of given) url.searchParams.set(name, String(value));
  } else {
    body = new FormData();
    for (const [name, value] of given) body.append(name, value);
  }
  let response;
  try {
    // credentials "omit": the key goes in the header, and a 401 never opens the browser's own
    // password prompt
    response = await fetch(url, { method, body, headers: headers(), credentials: "omit" });
  } catch (error) {
    throw new ApiError(0, path.replace(/^\//, ""), [`Match did not answer (${error.message})`]);
  }
  let answer;
  try {
    answer = await response.json();
  } catch {
    throw new ApiError(response.status, path.replace(/^\//, ""), ["the answer was not JSON"]);
  }
  if (!response.ok || answer.status !== "ok") {
    const error = new ApiError(response.status, answer.method || path, answer.error);
    if (response.status === 401) askForKey(error.message);
    throw error;
  }
  return answer.result;
}

const withCollection = (params = {}) => ({ collection: state.collection, ...params });

// -- messages ------------------------------------------------------------------------------------
function showError(error) {
  const box = $("message");
  box.textContent = error instanceof Error ? error.message : String(error);
  box.hidden = false;
  if (!(error instanceof ApiError)) console.error(error);
}

function clearError() {
  $("message").hidden = true;
  $("message").textContent = "";
}

async function guarded(action) {
  clearError();
  try {
    return await action();
  } catch (error) {
    showError(error);
    return undefined;
  }
}

// -- small DOM helpers ---------------------------------------------------------------------------
function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

const SVG = "http://www.w3.org/2000/svg";

function formatScore(score) {
  return Number(score).toFixed(1);
}

function percent(value) {
  return `${Math.round(Number(value))}%`;
}

const METHODS = { signature: "whole image", local: "partial match", pdq: "PDQ hash" };

// -- images: thumbnails, URLs, placeholders, outlines ---------------------------------------------
const thumbnails = new Map();

// What to show for a stored image: its thumbnail (with the stored image's size), else its
// filepath itself when that is an http(s) URL, else null (a placeholder).
function stored(filepath) {
  const key = `${state.collection}\u0000${filepath}`;
  if (!thumbnails.has(key)) thumbnails.set(key, loadThumbnail(filepath));
  return thumbnails.get(key);
}

async function loadThumbnail(filepath) {
  const url = new URL("/thumbnail", location.origin);
  url.searchParams.set("filepath", filepath);
  url.searchParams.set("collection", state.collection);
  try {
    const response = await fetch(url, { headers: headers(), credentials: "omit" });
    if (response.ok) {
      const blob = await response.blob();
      const width = Number(response.headers.get("X-Image-Width")) || null;
      const height = Number(response.headers.get("X-Image-Height")) || null;
      return { src: URL.createObjectURL(blob), width, height };
    }
  } catch {
    // no answer: fall through to the URL or the placeholder
  }
  if (/^https?:\/\//i.test(filepath)) return { src: filepath, width: null, height: null };
  return null;
}

// A picture with an outline drawn over it: ``outline`` is four [x, y] points in pixels of the
// image as given (``source.width`` x ``source.height``, or its natural size when not known).
function picture(source, alt, outline = null, big = false, drawn = null) {
  const frame = el("div", { class: big ? "frame big" : "frame" });
  if (!source) {
    frame.append(el("div", { class: "placeholder", role: "img", "aria-label": `${alt}: no thumbnail` },
      el("span", { text: "no thumbnail" })));
    return frame;
  }
  const holder = el("div", { class: "picture" });
  const image = el("img", { src: source.src, alt, decoding: "async", referrerpolicy: "no-referrer" });
  image.addEventListener("error", () => {
    holder.replaceWith(el("div", { class: "placeholder", role: "img", "aria-label": `${alt}: not loaded` },
      el("span", { text: "image not loaded" })));
  });
  holder.append(image);
  frame.append(holder);
  // a big picture is shown at one height whatever its pixels (a thumbnail or a file): its shape
  const shape = () => holder.style.setProperty("--ratio", String(image.naturalWidth / image.naturalHeight));
  if (big) image.addEventListener("load", shape);
  if (outline) {
    const draw = (width, height) => {
      const svg = outlineSvg(outline, width, height);
      holder.append(svg);
      if (drawn) drawn(svg);
    };
    if (source.width && source.height) draw(source.width, source.height);
    else image.addEventListener("load", () => draw(image.naturalWidth, image.naturalHeight));
  }
  return frame;
}

// The outline as drawn: the part of the other image's frame that lies on this one (the polygon
// clipped to this image's frame, Sutherland-Hodgman), so that a frame larger than the picture
// still shows where the two overlap. The API's points stay in data-outline.
function clipped(points, width, height) {
  const edges = [
    [(p) => p[0] >= 0, (a, b) => cut(a, b, 0, (p) => p[0])],
    [(p) => p[0] <= width, (a, b) => cut(a, b, width, (p) => p[0])],
    [(p) => p[1] >= 0, (a, b) => cut(a, b, 0, (p) => p[1])],
    [(p) => p[1] <= height, (a, b) => cut(a, b, height, (p) => p[1])],
  ];
  let polygon = points.map(([x, y]) => [Number(x), Number(y)]);
  for (const [inside, cross] of edges) {
    const next = [];
    polygon.forEach((current, i) => {
      const previous = polygon[(i + polygon.length - 1) % polygon.length];
      if (inside(current)) {
        if (!inside(previous)) next.push(cross(previous, current));
        next.push(current);
      } else if (inside(previous)) {
        next.push(cross(previous, current));
      }
    });
    polygon = next;
    if (!polygon.length) break;
  }
  return polygon;
}

function area(polygon) {
  let twice = 0;
  polygon.forEach(([x, y], i) => {
    const [nx, ny] = polygon[(i + 1) % polygon.length];
    twice += x * ny - nx * y;
  });
  return Math.abs(twice) / 2;
}

function cut(a, b, value, axis) {
  const t = (value - axis(a)) / (axis(b) - axis(a));
  return [a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])];
}

function outlineSvg(points, width, height) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("class", "outline");
  svg.setAttribute("aria-hidden", "true");
  svg.dataset.outline = JSON.stringify(points);
  const drawn = clipped(points, width, height);
  // nothing to point at when the region is the whole picture (a whole-image match, or a query
  // lying wholly inside the stored image): say so instead of framing it all
  const whole = drawn.length >= 3 && area(drawn) >= 0.98 * width * height;
  svg.dataset.covers = whole ? "all" : drawn.length >= 3 ? "part" : "none";
  if (drawn.length < 3 || whole) return svg;
  const text = drawn.map(([x, y]) => `${Math.round(x * 10) / 10},${Math.round(y * 10) / 10}`).join(" ");
  for (const kind of ["halo", "line"]) {
    const polygon = document.createElementNS(SVG, "polygon");
    polygon.setAttribute("points", text);
    polygon.setAttribute("class", kind);
    svg.append(polygon);
  }
  return svg;
}

async function storedPicture(filepath, outline = null, big = false) {
  return picture(await stored(filepath), filepath, outline, big);
}

function localSource(file) {
  return { src: URL.createObjectURL(file), width: null, height: null };
}

// -- access: the key, read-only, collections ----------------------------------------------------
function askForKey(reason) {
  const dialog = $("key-dialog");
  $("key-reason").textContent = state.key
    ? `The key was refused: ${reason}`
    : "This Match needs an API key: every request to it carries one.";
  $("key-button").hidden = false;
  if (!dialog.open) dialog.showModal();
  $("key-input").focus();
}

function setupKey() {
  $("key-form").addEventListener("submit", () => {
    state.key = $("key-input").value.trim();
    sessionStorage.setItem(KEY_STORAGE, state.key);
    $("key-input").value = "";
    thumbnails.clear();
    start();
  });
  $("key-button").addEventListener("click", () => askForKey("change it"));
}

async function loadAccess() {
  state.access = await api("GET", "/access");
  const [access] = state.access;
  document.body.classList.toggle("read-only", access.read_only);
  $("key-button").hidden = !access.keys;
  $("key-button").textContent = access.read_only ? "API key (read-only)" : "API key";
}

const canDelete = () => Boolean(state.access) && !state.access[0].read_only;

async function loadCollections() {
  const found = await api("GET", "/collections");
  const select = $("collection");
  const wanted = sessionStorage.getItem("match.collection") || state.collection;
  select.replaceChildren(
    ...found.map((item) => el("option", { value: item.collection, text: `${item.collection} (${item.count})` })),
  );
  const names = found.map((item) => item.collection);
  state.collection = names.includes(wanted) ? wanted : names[0] || "default";
  select.value = state.collection;
}

// -- views ---------------------------------------------------------------------------------------
const VIEWS = ["search", "browse", "compare", "duplicates"];

function currentView() {
  const name = location.hash.replace("#", "");
  return VIEWS.includes(name) ? name : "search";
}

function showView() {
  const view = currentView();
  for (const name of VIEWS) $(`view-${name}`).hidden = name !== view;
  for (const link of document.querySelectorAll("nav a")) {
    if (link.dataset.view === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (view === "browse") guarded(loadBrowse);
}

// -- Search --------------------------------------------------------------------------------------
let searchFile = null;

function setSearchFile(file) {
  searchFile = file;
  $("search-url").value = "";
  $("search-filepath").value = "";
  $("search-drop").querySelector("span").textContent = file ? `Image: ${file.name || "pasted"}` : "Drop, paste or pick an image";
}

function setupDrop(label, onFile) {
  const input = label.querySelector("input[type=file]");
  input.addEventListener("change", () => input.files[0] && onFile(input.files[0]));
  label.addEventListener("dragover", (event) => {
    event.preventDefault();
    label.classList.add("over");
  });
  label.addEventListener("dragleave", () => label.classList.remove("over"));
  label.addEventListener("drop", (event) => {
    event.preventDefault();
    label.classList.remove("over");
    const file = [...event.dataTransfer.files].find((f) => f.type.startsWith("image/"));
    if (file) onFile(file);
  });
}

function searchQuery() {
  const url = $("search-url").value.trim();
  const filepath = $("search-filepath").value.trim();
  if (url) return { params: { url }, source: Promise.resolve({ src: url, width: null, height: null }), name: url };
  if (filepath) return { params: { filepath }, source: stored(filepath), name: filepath };
  if (searchFile) return { params: { image: searchFile }, source: Promise.resolve(localSource(searchFile)), name: searchFile.name || "pasted image" };
  return null;
}

let searchRun = 0;

async function runSearch() {
  const run = ++searchRun;
  const query = searchQuery();
  if (!query) throw new Error("Search: drop, paste or pick an image, or give a URL or a stored filepath");
  $("search-status").textContent = "Searching…";
  $("search-results").replaceChildren();
  const params = withCollection({
    ...query.params,
    min_score: $("search-min-score").value || undefined,
    limit: $("search-limit").value || undefined,
    all_orientations: $("search-orientations").checked ? "true" : "false",
  });
  let results;
  try {
    results = await api("POST", "/search", params);
  } catch (error) {
    $("search-status").textContent = "";
    throw error;
  }
  const source = await query.source;
  if (run !== searchRun) return;
  state.query = source;
  state.results = results;
  state.selected = 0;
  $("search-query").hidden = false;
  state.queryName = query.name;
  $("search-status").textContent = results.length
    ? `${results.length} match${results.length === 1 ? "" : "es"}, best first`
    : "No match in this collection";
  drawQuery();
  const cards = await Promise.all(results.map((result, index) => resultCard(result, index)));
  if (run !== searchRun) return;
  $("search-results").replaceChildren(...cards);
}

function drawQuery() {
  const result = state.results[state.selected];
  const outline = result && result.method === "local" ? result.target_outline : null;
  const alt = result ? `Query, with where ${result.filepath} lies in it` : "Query";
  const caption = $("search-query-caption");
  caption.textContent = `Query: ${state.queryName}`;
  const explain = (svg) => {
    const where = { all: "all of it lies in", part: "the box is where it overlaps", none: "it lies beyond" }[svg.dataset.covers];
    caption.textContent = `Query: ${state.queryName} (${where} ${result.filepath})`;
  };
  $("search-query-frame").replaceWith(
    Object.assign(picture(state.query, alt, outline, true, explain), { id: "search-query-frame" }),
  );
}

function describe(result) {
  const facts = [["Method", METHODS[result.method] || result.method]];
  const turned = result.orientation === "original" ? "upright" : result.orientation.replaceAll("_", " ");
  facts.push(["Orientation", result.mirrored && !turned.startsWith("mirror") ? `${turned}, mirrored` : turned]);
  if (result.method === "local") {
    facts.push(["Overlap", `query ${percent(result.query_overlap_percent)} · stored ${percent(result.target_overlap_percent)}`]);
  }
  if (result.pdq_distance !== null && result.pdq_distance !== undefined) facts.push(["PDQ distance", String(result.pdq_distance)]);
  return facts;
}

function factList(facts, metadata) {
  const list = el("dl", { class: "facts" });
  for (const [name, value] of facts) list.append(el("dt", { text: name }), el("dd", { text: value }));
  if (metadata === null) list.append(el("dt", { text: "Metadata" }), el("dd", { text: "none" }));
  else if (metadata !== undefined) {
    // each key on its line, its value as JSON (strings without quotes)
    for (const [name, value] of Object.entries(metadata)) {
      list.append(el("dt", { class: "key", text: name }),
        el("dd", { text: typeof value === "string" ? value : JSON.stringify(value) }));
    }
  }
  return list;
}

async function resultCard(result, index) {
  const outline = result.method === "local" ? result.query_outline : null;
  const image = result.hash_only
    ? picture(null, `${result.filepath} (hash-only record)`)
    : await storedPicture(result.filepath, outline);
  const card = el("li", { class: `card ${result.method}` },
    image,
    el("p", { class: "score" },
      el("strong", { text: formatScore(result.score) }),
      el("span", { class: `badge ${result.method}`, text: METHODS[result.method] || result.method })),
    el("p", { class: "path", title: result.filepath, text: result.filepath }),
    factList(describe(result).slice(1), result.metadata));
  const buttons = el("div", { class: "buttons" });
  if (result.method === "local") {
    buttons.append(el("button", {
      type: "button", class: "quiet", "aria-pressed": String(index === state.selected),
      text: "Show on query",
      onclick: (event) => {
        state.selected = index;
        for (const pressed of $("search-results").querySelectorAll("[aria-pressed]")) pressed.setAttribute("aria-pressed", "false");
        event.currentTarget.setAttribute("aria-pressed", "true");
        drawQuery();
      },
    }));
  }
  if (!result.hash_only) {
    buttons.append(el("button", { type: "button", class: "quiet", text: "Search with it", onclick: () => searchWith(result.filepath) }));
  }
  card.append(buttons);
  return card;
}

function searchWith(filepath) {
  $("detail-dialog").open && $("detail-dialog").close();
  setSearchFile(null);
  $("search-filepath").value = filepath;
  location.hash = "#search";
  guarded(runSearch);
}

function setupSearch() {
  setupDrop($("search-drop"), (file) => {
    setSearchFile(file);
    guarded(runSearch);
  });
  $("search-url").addEventListener("input", () => {
    searchFile = null;
    $("search-filepath").value = "";
  });
  $("search-filepath").addEventListener("input", () => {
    searchFile = null;
    $("search-url").value = "";
  });
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    guarded(runSearch);
  });
  document.addEventListener("paste", (event) => {
    if (currentView() !== "search") return;
    const file = [...(event.clipboardData?.files || [])].find((f) => f.type.startsWith("image/"));
    if (!file) return;
    event.preventDefault();
    setSearchFile(file);
    guarded(runSearch);
  });
}

// -- Browse --------------------------------------------------------------------------------------
let browseRun = 0; // the latest loadBrowse: an older one that answers late draws nothing

async function loadBrowse() {
  const run = ++browseRun;
  const size = Number($("browse-size").value) || 24;
  const [count] = await api("GET", "/count", withCollection());
  if (state.browseOffset >= count && count > 0) state.browseOffset = Math.floor((count - 1) / size) * size;
  const filepaths = count ? await api("GET", "/list", withCollection({ offset: state.browseOffset, limit: size })) : [];
  if (run !== browseRun) return;
  pager($("browse-pager-top"), count, state.browseOffset, size, ["image", "images"], (offset) => {
    state.browseOffset = offset;
    guarded(loadBrowse);
  });
  const cards = await Promise.all(filepaths.map(async (filepath) => el("li", { class: "card" },
    el("button", { type: "button", class: "open", "aria-label": `Open ${filepath}`, onclick: () => guarded(() => openDetail(filepath)) },
      await storedPicture(filepath),
      el("span", { class: "path", title: filepath, text: filepath })))));
  if (run !== browseRun) return;
  $("browse-grid").replaceChildren(...cards);
  if (!count) $("browse-grid").append(el("li", { class: "empty", text: `The collection ${state.collection} holds no image.` }));
}

function pager(container, total, offset, size, [one, many], go) {
  const pages = Math.max(1, Math.ceil(total / size));
  const page = Math.floor(offset / size) + 1;
  container.replaceChildren(
    el("button", { type: "button", text: "Previous", disabled: page <= 1, onclick: () => go(offset - size) }),
    el("span", { class: "where", text: total === null ? `Page ${page}` : `Page ${page} of ${pages} · ${total} ${total === 1 ? one : many}` }),
    el("button", { type: "button", text: "Next", disabled: total === null ? false : page >= pages, onclick: () => go(offset + size) }),
  );
}

async function openDetail(filepath) {
  const dialog = $("detail-dialog");
  $("detail-title").textContent = filepath;
  $("detail-frame").replaceChildren(await storedPicture(filepath, null, true));
  $("detail-facts").replaceChildren();
  $("detail-delete").hidden = !canDelete();
  dialog.dataset.filepath = filepath;
  dialog.showModal();
  // its metadata, and how many others look like it: a search with it (it finds itself)
  const found = await api("POST", "/search", withCollection({ filepath, limit: 100 }));
  const self = found.find((item) => item.filepath === filepath && !item.hash_only);
  const facts = [["Similar images", String(found.filter((item) => item.filepath !== filepath).length)]];
  if (self && self.pdq) facts.push(["PDQ", self.pdq]);
  $("detail-facts").replaceWith(Object.assign(factList(facts, self ? self.metadata : null), { id: "detail-facts" }));
}

function confirmDelete(text) {
  const dialog = $("confirm-dialog");
  $("confirm-text").textContent = text;
  dialog.returnValue = "";
  dialog.showModal();
  $("confirm-yes").focus();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "confirm"), { once: true });
  });
}

async function deleteImage(filepath) {
  await api("DELETE", "/delete", withCollection({ filepath }));
  thumbnails.delete(`${state.collection}\u0000${filepath}`);
}

function setupBrowse() {
  $("browse-size").addEventListener("change", () => {
    state.browseOffset = 0;
    guarded(loadBrowse);
  });
  $("detail-search").addEventListener("click", () => searchWith($("detail-dialog").dataset.filepath));
  $("detail-delete").addEventListener("click", async () => {
    const filepath = $("detail-dialog").dataset.filepath;
    $("detail-dialog").close();
    if (!(await confirmDelete(`Delete ${filepath} from the collection ${state.collection}? This cannot be undone.`))) return;
    await guarded(async () => {
      await deleteImage(filepath);
      await loadCollections();
      await loadBrowse();
    });
  });
}

// -- Compare -------------------------------------------------------------------------------------
const compareFiles = { 1: null, 2: null };

function compareSide(n) {
  const url = $(`compare-url-${n}`).value.trim();
  const filepath = $(`compare-filepath-${n}`).value.trim();
  if (url) return { params: { [`url${n}`]: url }, source: Promise.resolve({ src: url, width: null, height: null }), name: url };
  if (filepath) return { params: { [`filepath${n}`]: filepath }, source: stored(filepath), name: filepath };
  if (compareFiles[n]) return { params: { [`image${n}`]: compareFiles[n] }, source: Promise.resolve(localSource(compareFiles[n])), name: compareFiles[n].name };
  return null;
}

async function runCompare() {
  const first = compareSide(1);
  const second = compareSide(2);
  if (!first || !second) throw new Error("Compare: give two images (a file, a URL or a stored filepath each)");
  $("compare-status").textContent = "Comparing…";
  $("compare-pair").replaceChildren();
  let result;
  try {
    [result] = await api("POST", "/compare", withCollection({
      ...first.params, ...second.params,
      all_orientations: $("compare-orientations").checked ? "true" : "false",
    }));
  } catch (error) {
    $("compare-status").textContent = "";
    throw error;
  }
  const partial = result.method === "local";
  const [one, two] = await Promise.all([first.source, second.source]);
  $("compare-status").replaceChildren(
    el("strong", { class: "big-score", text: `Score ${formatScore(result.score)}` }),
    ` · ${METHODS[result.method] || result.method}`,
    result.score > 0 ? "" : " · no match",
  );
  $("compare-pair").replaceChildren(
    el("figure", {}, picture(one, `First image: ${first.name}`, partial ? result.target_outline : null, true),
      el("figcaption", { text: `First: ${first.name}` })),
    el("figure", {}, picture(two, `Second image: ${second.name}`, partial ? result.query_outline : null, true),
      el("figcaption", { text: `Second: ${second.name}` })),
    factList(describe(result)),
  );
}

function setupCompare() {
  for (const n of [1, 2]) {
    const input = $(`compare-file-${n}`);
    setupDrop(input.closest("label"), (file) => {
      compareFiles[n] = file;
      $(`compare-url-${n}`).value = "";
      $(`compare-filepath-${n}`).value = "";
      input.closest("label").querySelector("span").textContent = `Image: ${file.name}`;
    });
    for (const other of ["url", "filepath"]) {
      $(`compare-${other}-${n}`).addEventListener("input", () => {
        compareFiles[n] = null;
      });
    }
  }
  $("compare-form").addEventListener("submit", (event) => {
    event.preventDefault();
    guarded(runCompare);
  });
}

// -- Duplicates ----------------------------------------------------------------------------------
let duplicatesRun = 0;

async function loadDuplicates() {
  const run = ++duplicatesRun;
  const limit = Number($("duplicates-limit").value) || 10;
  $("duplicates-status").textContent = "Looking for duplicates…";
  let groups;
  try {
    groups = await api("GET", "/duplicates", withCollection({
      min_score: $("duplicates-min-score").value || undefined, offset: state.duplicatesOffset, limit,
    }));
  } catch (error) {
    $("duplicates-status").textContent = "";
    throw error;
  }
  if (run !== duplicatesRun) return;
  state.duplicates = groups.map((group) => ({ ...group, kept: new Set(), deleted: new Set() }));
  const more = groups.length === limit;
  $("duplicates-status").textContent = groups.length
    ? `${groups.length} group${groups.length === 1 ? "" : "s"} on this page`
    : state.duplicatesOffset ? "No more groups" : "No duplicates at this score";
  pager($("duplicates-pager"), more ? null : state.duplicatesOffset + groups.length, state.duplicatesOffset, limit, ["group", "groups"], (offset) => {
    state.duplicatesOffset = Math.max(0, offset);
    guarded(loadDuplicates);
  });
  if (!more) $("duplicates-pager").querySelector("button:last-child").disabled = true;
  $("duplicates-delete-page").hidden = !canDelete() || !groups.length;
  const items = await Promise.all(state.duplicates.map((group, index) => groupItem(group, index)));
  if (run !== duplicatesRun) return;
  $("duplicates-groups").replaceChildren(...items);
}

async function groupItem(group, index) {
  const keeper = el("li", { class: "card keeper" },
    await storedPicture(group.keeper),
    el("p", { class: "score" }, el("span", { class: "badge keeper", text: "keeper" })),
    el("p", { class: "path", title: group.keeper, text: group.keeper }),
    el("p", { class: "reason", text: group.reason }));
  keeper.append(imageButtons(group, group.keeper, true));
  const members = await Promise.all(group.members.map(async (member) => {
    const outline = member.method === "local" ? member.query_outline : null;
    const card = el("li", { class: `card ${member.method}`, "data-filepath": member.filepath },
      await storedPicture(member.filepath, outline),
      el("p", { class: "score" },
        el("strong", { text: formatScore(member.score) }),
        el("span", { class: `badge ${member.method}`, text: METHODS[member.method] || member.method })),
      el("p", { class: "path", title: member.filepath, text: member.filepath }),
      factList(describe(member).slice(1)));
    card.append(imageButtons(group, member.filepath, false));
    return card;
  }));
  const heading = el("h3", { text: `Group ${state.duplicatesOffset + index + 1}: ${group.members.length + 1} images` });
  const actions = el("div", { class: "buttons" });
  if (canDelete()) {
    actions.append(el("button", {
      type: "button", class: "danger", text: "Delete the others",
      "aria-label": `Delete every image of group ${state.duplicatesOffset + index + 1} but its keeper and those marked keep`,
      onclick: () => guarded(async () => {
        const doomed = group.members.map((m) => m.filepath).filter((f) => !group.kept.has(f) && !group.deleted.has(f));
        if (!doomed.length) return;
        if (!(await confirmDelete(`Delete ${doomed.length} image${doomed.length === 1 ? "" : "s"} of this group (keeping ${group.keeper})?`))) return;
        await deleteMany(group, doomed);
      }),
    }));
  }
  return el("li", { class: "group", "aria-label": heading.textContent }, el("div", { class: "group-head" }, heading, actions),
    el("ul", { class: "grid" }, keeper, ...members));
}

function imageButtons(group, filepath, isKeeper) {
  const buttons = el("div", { class: "buttons" });
  if (!isKeeper) {
    buttons.append(el("button", {
      type: "button", class: "quiet keep", "aria-pressed": "false", text: "Keep",
      "aria-label": `Keep ${filepath}`,
      onclick: (event) => {
        const kept = !group.kept.has(filepath);
        if (kept) group.kept.add(filepath);
        else group.kept.delete(filepath);
        event.currentTarget.setAttribute("aria-pressed", String(kept));
        event.currentTarget.closest(".card").classList.toggle("kept", kept);
      },
    }));
  }
  if (canDelete()) {
    buttons.append(el("button", {
      type: "button", class: "danger", text: "Delete", "aria-label": `Delete ${filepath}`,
      onclick: () => guarded(async () => {
        if (!(await confirmDelete(`Delete ${filepath}? This cannot be undone.`))) return;
        await deleteMany(group, [filepath]);
      }),
    }));
  }
  return buttons;
}

async function deleteMany(group, filepaths) {
  for (const filepath of filepaths) {
    await deleteImage(filepath);
    group.deleted.add(filepath);
    for (const card of document.querySelectorAll(".group .card")) {
      const shown = card.dataset.filepath || card.querySelector(".path")?.textContent;
      if (shown === filepath) card.classList.add("deleted");
      if (shown === filepath) card.querySelectorAll("button").forEach((button) => { button.disabled = true; });
    }
  }
  await loadCollections();
}

function setupDuplicates() {
  $("duplicates-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.duplicatesOffset = 0;
    guarded(loadDuplicates);
  });
  $("duplicates-delete-page").addEventListener("click", () => guarded(async () => {
    const work = state.duplicates.map((group) => [group, group.members.map((m) => m.filepath)
      .filter((f) => !group.kept.has(f) && !group.deleted.has(f))]);
    const total = work.reduce((sum, [, doomed]) => sum + doomed.length, 0);
    if (!total) return;
    if (!(await confirmDelete(`Delete ${total} duplicate${total === 1 ? "" : "s"} from ${work.length} groups, keeping each group's keeper and the images marked keep?`))) return;
    for (const [group, doomed] of work) await deleteMany(group, doomed);
    $("duplicates-status").textContent = `Deleted ${total} image${total === 1 ? "" : "s"}`;
  }));
}

// -- start ---------------------------------------------------------------------------------------
async function start() {
  clearError();
  try {
    await loadAccess();
    await loadCollections();
  } catch (error) {
    if (error.status !== 401) showError(error);
    return;
  }
  document.body.classList.add("ready");
  showView();
}

document.addEventListener("DOMContentLoaded", () => {
  setupKey();
  setupSearch();
  setupBrowse();
  setupCompare();
  setupDuplicates();
  $("collection").addEventListener("change", () => {
    state.collection = $("collection").value;
    sessionStorage.setItem("match.collection", state.collection);
    state.browseOffset = 0;
    state.duplicatesOffset = 0;
    // what was found in the other collection goes
    $("search-results").replaceChildren();
    $("search-status").textContent = "";
    $("search-query").hidden = true;
    $("duplicates-groups").replaceChildren();
    $("duplicates-pager").replaceChildren();
    $("duplicates-status").textContent = "";
    $("duplicates-delete-page").hidden = true;
    showView();
  });
  window.addEventListener("hashchange", () => {
    clearError();
    showView();
  });
  start();
});
