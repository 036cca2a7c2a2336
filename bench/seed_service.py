"""A stand-in of the seed's service, dsys/match, for bench/endtoend.py to measure Match against.

dsys/match was a Flask app behind gunicorn (sync workers) calling ascribe/image-match 1.1.2's
SignatureES on Elasticsearch. This file rebuilds its two hot routes the way it ran them
(../shared/reference/dsys-match.md): image-match's own signature, words and search loop
(`SignatureDatabaseBase`, 8 orientations on search: ALL_ORIENTATIONS defaulted to true), and
the same Elasticsearch requests — a document with `simple_word_0..62` in dynamic mapping, a
`bool.should` of 63 term queries, size 100, rescored by normalized distance in Python. Only
the transport is new: elasticsearch-py 6 does not talk to Elasticsearch 8, so the requests go
over httpx with the same bodies.

    /add     filepath + image: delete the ids already stored under filepath, index the record
    /search  image: every match under image-match's cutoff (0.45), nearest first

Not part of Match and not installed with it: bench/endtoend.py makes a venv with Flask,
gunicorn and image-match (`--no-deps`, it pins 2017 versions) and runs
`gunicorn -w 2 seed_service:app` with SEED_ES_URL and SEED_ES_INDEX set.
"""

from __future__ import annotations

import json
import os
from datetime import datetime

import httpx
import numpy as np
from flask import Flask, jsonify, request
from image_match import goldberg
from image_match.goldberg import ImageSignature
from image_match.signature_database_base import SignatureDatabaseBase, normalized_distance

# image-match 1.1.2 ran on scikit-image 0.12, whose rgb2gray returned a grey (2-D) array as it
# was; search_image relies on that (it greys the query once, then signs each turned copy).
# Today's rgb2gray refuses 2-D input, so the old behaviour is put back for image-match alone.
_rgb2gray = goldberg.rgb2gray
goldberg.rgb2gray = lambda image: image if np.ndim(image) == 2 else _rgb2gray(image)

ES_URL = os.environ.get("SEED_ES_URL", "http://127.0.0.1:9200").rstrip("/")
ES_INDEX = os.environ.get("SEED_ES_INDEX", "images")


class HttpSignatureES(SignatureDatabaseBase):
    """SignatureES's two record methods, same request bodies, over httpx."""

    def __init__(self, client: httpx.Client, size: int = 100) -> None:
        super().__init__()
        self.client = client
        self.size = size

    def search_single_record(self, rec: dict) -> list[dict]:
        rec.pop("path")
        signature = rec.pop("signature")
        rec.pop("metadata", None)
        body = {
            "query": {"bool": {"should": [{"term": {word: rec[word]}} for word in rec]}},
            "_source": {"excludes": ["simple_word_*"]},
            "size": self.size,
            "timeout": "10s",
        }
        hits = self._search(body)
        if not hits:
            return []
        signatures = np.array([hit["_source"]["signature"] for hit in hits])
        distances = normalized_distance(signatures, np.array(signature))
        found = []
        for hit, distance in zip(hits, distances, strict=True):
            if distance < self.distance_cutoff:
                source = hit["_source"]
                found.append(
                    {
                        "id": hit["_id"],
                        "dist": float(distance),
                        "path": source.get("path"),
                        "metadata": source.get("metadata"),
                    }
                )
        return found

    def insert_single_record(self, rec: dict, refresh_after: bool = False) -> None:
        rec["timestamp"] = datetime.now().isoformat()
        params = {"refresh": "true"} if refresh_after else {}
        self.client.post(f"{ES_URL}/{ES_INDEX}/_doc", json=rec, params=params).raise_for_status()

    def ids_with_path(self, path: str) -> list[str]:
        # dsys/match: es.search(q='path:' + json.dumps(path)), a query-string phrase on the
        # analysed path, 10 hits. A bare `match` would OR the path's tokens ("e2e", "jpg") and
        # so delete nearly every other image on each add.
        query = {"query_string": {"query": "path:" + json.dumps(path)}}
        body = {"query": query, "_source": False, "size": 10}
        return [hit["_id"] for hit in self._search(body)]

    def delete(self, id_: str) -> None:
        self.client.delete(f"{ES_URL}/{ES_INDEX}/_doc/{id_}")

    def _search(self, body: dict) -> list[dict]:
        answer = self.client.post(f"{ES_URL}/{ES_INDEX}/_search", json=body)
        if answer.status_code == 404:  # no index before the first add, as with dynamic mapping
            return []
        answer.raise_for_status()
        return answer.json()["hits"]["hits"]


app = Flask(__name__)
database = HttpSignatureES(httpx.Client(timeout=30))
signatures = ImageSignature()


@app.route("/add", methods=["POST"])
def add():
    filepath = request.form["filepath"]
    image = request.files["image"].read()
    metadata = request.form.get("metadata")
    old_ids = database.ids_with_path(filepath)
    database.add_image(
        filepath, img=image, bytestream=True, metadata=metadata and json.loads(metadata)
    )
    for id_ in old_ids:
        database.delete(id_)
    return jsonify({"status": "ok", "error": [], "method": "add", "result": []})


@app.route("/search", methods=["POST"])
def search():
    image = request.files["image"].read()
    matches = database.search_image(image, all_orientations=True, bytestream=True)
    result = [
        {
            "score": (1 - match["dist"]) * 100,
            "filepath": match["path"],
            "metadata": match["metadata"],
        }
        for match in matches
    ]
    return jsonify({"status": "ok", "error": [], "method": "search", "result": result})


@app.route("/ping", methods=["GET"])
def ping():
    return jsonify({"status": "ok", "error": [], "method": "ping", "result": []})
