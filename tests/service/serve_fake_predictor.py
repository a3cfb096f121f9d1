"""``vocalis serve`` with the deterministic stream predictor of ``test_stream`` (loud audio = scream).

Used by ``test_shutdown.py`` as a real server process: ``python tests/service/serve_fake_predictor.py
--port N``; everything else (uvicorn, the app, the relay, the notifiers) is the production code.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    import vocalis.service.routes.stream as stream
    from tests.service.test_stream import FakePredictor
    from vocalis.cli import main

    stream.default_predictor = lambda app, config: FakePredictor()  # type: ignore[assignment]
    sys.argv = ["vocalis", "serve", "--host", "127.0.0.1", *sys.argv[1:]]
    main()
