"""The photos harness's HTTP engine for a server whose store already holds what the harness
would add (bench/crowd.py: the crowd, then ``addset``): ``index`` does nothing, every search
goes through HTTP as the harness's own ``http:`` engine sends it.

    CROWD_URL=http://127.0.0.1:8931 PYTHONPATH=bench HARNESS/venv/bin/python VIEW/accuracy.py \\
        --engines crowd_http:Engine --queries VIEW/queries --out VIEW/results --families ...

CROWD_NAME names the run's result files (default ``crowd``).
"""

from __future__ import annotations

import os

import engines  # the harness's, beside accuracy.py


class Engine(engines.HTTPEngine):
    def __init__(self) -> None:
        super().__init__(os.environ["CROWD_URL"], timeout=600)
        self.name = os.environ.get("CROWD_NAME", "crowd")

    def index(self, id_: str, path: object) -> None:
        """Already stored (bench/crowd.py addset), under the id as filepath."""
