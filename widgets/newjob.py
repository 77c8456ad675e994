"""The JupyterLab launcher tile "Distributed job": it opens a notebook with the launcher.

A ``jupyter_serverproxy_servers`` entry point (``setup.py``) makes jupyter-server-proxy show the
tile in JupyterLab's launcher. Its "server" is this tiny standard-library HTTP server, started on
first use inside the user's own server: every request copies the examples into
``~/kubelab-examples`` (never overwriting the user's edits, :func:`kubelab.jobs.examples.copy_examples`)
and redirects to ``<server>/lab/tree/kubelab-examples/distributed-job.ipynb``, which JupyterLab
opens with the ``JobLauncher`` cell ready to run.

    python -m kubelab.widgets.newjob --port 8765 --base-url /user/alice/
"""

from __future__ import annotations

import argparse
import http.server
from pathlib import Path
from typing import Any
from urllib.parse import quote

from kubelab.jobs.examples import DEFAULT_FOLDER, copy_examples

#: The notebook the tile opens.
NOTEBOOK = "distributed-job.ipynb"
ICON = Path(__file__).with_name("distributed-job.svg")


def notebook_url(base_url: str) -> str:
    """Where the tile sends the browser: the example notebook in JupyterLab."""
    return f"{base_url.rstrip('/')}/lab/tree/{quote(DEFAULT_FOLDER)}/{quote(NOTEBOOK)}"


def server_proxy() -> dict[str, Any]:
    """jupyter-server-proxy's definition of the tile."""
    return {
        "command": ["python", "-m", "kubelab.widgets.newjob", "--port", "{port}", "--base-url", "{base_url}"],
        "timeout": 30,
        "absolute_url": False,
        "new_browser_tab": False,
        "launcher_entry": {"enabled": True, "title": "Distributed job", "icon_path": str(ICON),
                           "category": "Notebook"},
    }


def make_handler(base_url: str, home: Path) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            copy_examples(home / DEFAULT_FOLDER)
            target = notebook_url(base_url)
            # jupyter-server-proxy shows the tile's page in a JupyterLab tab: leave it for the
            # notebook at the top level (a plain redirect would nest JupyterLab inside itself).
            body = (f"<!doctype html><meta charset='utf-8'><title>Distributed job</title>"
                    f"<script>window.top.location.href = {target!r};</script>"
                    f"<p>Opening <a href='{target}' target='_top'>the distributed job notebook</a>…</p>").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--base-url", default="/")
    args = parser.parse_args(argv)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(args.base_url, Path.home()))
    server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
