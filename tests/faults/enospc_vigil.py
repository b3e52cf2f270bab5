"""``vigil`` with a full disk injected where mounting a small tmpfs is not allowed: the cache's atomic marker write
(``tasks.cache.write_marker``, the one helper every cache entry is completed by) raises ENOSPC for the stage named
by ``VIGIL_FAULT_ENOSPC_STAGE``. Used by ``test_faults.py`` only: ``python enospc_vigil.py run defect ...``."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import tasks.cache  # noqa: E402
from flows.cli import main  # noqa: E402

_write_marker = tasks.cache.write_marker


def _full_disk(folder: Path, stage: str, key: str) -> None:
    if stage == os.environ.get("VIGIL_FAULT_ENOSPC_STAGE"):
        (folder / ".complete.tmp").write_text("{")  # half a file, as a real full disk leaves it
        raise OSError(errno.ENOSPC, "No space left on device", str(folder / ".complete.tmp"))
    _write_marker(folder, stage, key)


tasks.cache.write_marker = _full_disk

if __name__ == "__main__":
    sys.exit(main())
