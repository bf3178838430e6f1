"""The platform runner's KEK: generated once under the var directory (0600) and kept, as
the local database is, so the keys it wrapped still open on the next run."""

from __future__ import annotations

import stat
from pathlib import Path

from healthflow.common.keywrap import parse_keks
from healthflow.devkit.supervisor import local_kek_file


def test_the_local_kek_is_generated_once_and_private(tmp_path: Path) -> None:
    path = local_kek_file(tmp_path)
    text = path.read_text(encoding="utf-8")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    keks, current = parse_keks(text, "KEY_ENCRYPTION_KEYS_FILE")
    assert current.startswith("local-") and len(keks[current]) == 32
    assert local_kek_file(tmp_path).read_text(encoding="utf-8") == text
