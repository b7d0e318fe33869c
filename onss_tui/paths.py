"""Where onss keeps its data: ``$ONSS_DATA_DIR``, else the platform's user data folder
(``~/.local/share/onss`` on Linux). The checkpoint goes in ``models/``, benchmark results in ``bench/``."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    env = os.environ.get("ONSS_DATA_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_data_dir("onss"))
