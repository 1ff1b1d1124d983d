"""The Data Docs site: where its index is, and serving it on 127.0.0.1 for a browser."""

from __future__ import annotations

import functools
import http.server
import threading
import webbrowser
from pathlib import Path

from core.settings import Settings
from expectations import context as gxc
from expectations import site


def docs_index(settings: Settings, gx_root: str | Path | None = None) -> Path:
    """The path of the site's `index.html` (the site is built first if it does not exist yet)."""
    root = gxc.gx_root(settings, gx_root)
    index = gxc.site_dir(root) / "index.html"
    if not index.exists():
        context = gxc.get_context(root)
        with gxc.gx_lock(root):
            context.build_data_docs(site_names=[gxc.SITE])
            site.decorate(root, gxc.site_dir(root))
    return index


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # one line per request is noise here
        pass


def make_server(site: Path, port: int) -> http.server.ThreadingHTTPServer:
    """An HTTP server for the site folder, bound to 127.0.0.1 only (port 0: any free port)."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    return http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)


def serve(index: Path, port: int, *, open_browser: bool = False) -> None:
    """Serve the site until interrupted (Ctrl-C)."""
    from core import console

    server = make_server(index.parent, port)
    url = f"http://127.0.0.1:{server.server_address[1]}/index.html"
    console.ok(f"serving Data Docs on {url} (Ctrl-C to stop)")
    if open_browser:
        threading.Timer(0.5, webbrowser.open, args=(url,)).start()
    try:
        server.serve_forever()
    finally:
        server.server_close()


def open_in_browser(index: Path) -> bool:
    return webbrowser.open(index.as_uri())
