"""Put this checkout's ``lib/`` first on ``sys.path``; every stage script imports it first.

DVC hashes the ``lib/`` files a stage lists as deps, so the code that runs must be this
copy's. An editable install points at one checkout (the workspace), and a temporary or
queued DVC experiment runs its stages in a copy under ``.dvc/tmp``: without this, such a
stage would run the workspace's ``lib/`` as it is at that moment, not the copy DVC hashed.
"""

import sys
from pathlib import Path

LIB = str(Path(__file__).resolve().parents[1] / "lib")
if sys.path[:1] != [LIB]:
    sys.path.insert(0, LIB)
