"""The "Distributed job" launcher tile's server: it copies the examples and sends the browser to the notebook."""

from __future__ import annotations

import http.server
import threading
import urllib.request
from pathlib import Path

from kubelab.widgets.newjob import ICON, make_handler, notebook_url, server_proxy


def test_the_tile_opens_the_example_notebook(tmp_path: Path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make_handler("/user/alice/", tmp_path))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_address[1]}/", timeout=10) as r:
            page = r.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    assert "window.top.location.href = '/user/alice/lab/tree/kubelab-examples/distributed-job.ipynb'" in page
    assert (tmp_path / "kubelab-examples" / "distributed-job.ipynb").is_file()
    assert (tmp_path / "kubelab-examples" / "ddp_train.py").is_file()


def test_the_tile_is_declared_for_jupyter_server_proxy() -> None:
    spec = server_proxy()
    assert spec["launcher_entry"]["title"] == "Distributed job" and Path(spec["launcher_entry"]["icon_path"]) == ICON
    assert ICON.is_file() and "{port}" in spec["command"]
    assert notebook_url("/user/bob") == "/user/bob/lab/tree/kubelab-examples/distributed-job.ipynb"
