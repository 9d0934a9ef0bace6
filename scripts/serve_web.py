#!/usr/bin/env python3
"""Serve the built browser demo (web/dist, from `make web`) on http://localhost:8000.

python scripts/serve_web.py [--dir web/dist] [--port 8000] [--host 127.0.0.1]
"""

from __future__ import annotations

import argparse
import functools
import http.server
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".wasm": "application/wasm",
        ".js": "text/javascript",
        ".mjs": "text/javascript",
        ".json": "application/json",
    }

    def end_headers(self):
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format, *args):  # quiet, but errors still show
        if args and str(args[1])[:1] in "45":
            super().log_message(format, *args)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default=str(ROOT / "web" / "dist"), help="the built page")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    folder = Path(args.dir)
    if not (folder / "index.html").is_file():
        print(f"error: {folder}/index.html is missing: run `make web` first", file=sys.stderr)
        return 2
    handler = functools.partial(Handler, directory=str(folder))
    with http.server.ThreadingHTTPServer((args.host, args.port), handler) as server:
        print(f"serving {folder} on http://{args.host}:{server.server_port}/", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
