"""Match over HTTP: the Starlette app (``match.http.app.create_app``), its routes and helpers."""
