"""``python -m vocalis.service [--host H] [--port P]``: run the service."""

from __future__ import annotations

import argparse

from vocalis.service.app import main

if __name__ == "__main__":  # pragma: no cover
    p = argparse.ArgumentParser(prog="python -m vocalis.service", description=main.__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--log-level", default="info")
    a = p.parse_args()
    main(a.host, a.port, log_level=a.log_level)
