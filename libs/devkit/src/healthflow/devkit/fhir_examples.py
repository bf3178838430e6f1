"""The official HL7 FHIR R4 examples (npm ``hl7.fhir.r4.examples``, CC0) as a test corpus.

Not on PyPI: :func:`corpus` fetches the package once per machine with ``npm pack``
(the ordinary client) into ``~/.cache/healthflow`` (or ``$HEALTHFLOW_CACHE``), checks
the registry's SHA-1 (``dist.shasum``) and opens the tarball; nothing is copied into
the repository. :func:`example` reads one resource, :func:`names` lists a type's.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

PACKAGE, VERSION = "hl7.fhir.r4.examples", "4.0.1"
SHA1 = "537ea7db3f3c7b3575fe2eaa7808bad21261cca3"  # the registry's dist.shasum


class CorpusUnavailable(Exception):
    """npm is missing, or the tarball is not the expected package (then it is removed)."""


def corpus() -> tarfile.TarFile:
    """The package's tarball, fetched on first use.

    Raises:
        CorpusUnavailable: see the class.
    """
    cache = Path(os.environ.get("HEALTHFLOW_CACHE", Path.home() / ".cache" / "healthflow"))
    tarball = cache / f"{PACKAGE}-{VERSION}.tgz"
    if not tarball.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise CorpusUnavailable("npm is not installed: the FHIR examples come from the "
                                    "npm registry")
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([npm, "pack", f"{PACKAGE}@{VERSION}", "--silent",
                        "--pack-destination", str(cache)], check=True, timeout=300,
                       capture_output=True)
    if hashlib.sha1(tarball.read_bytes()).hexdigest() != SHA1:  # noqa: S324 (npm's checksum)
        tarball.unlink()
        raise CorpusUnavailable(f"{tarball} is not {PACKAGE}@{VERSION}; removed, run again")
    return tarfile.open(tarball)


def example(archive: tarfile.TarFile, name: str) -> dict[str, Any]:
    """The resource ``name`` (``<Type>-<id>``, e.g. ``Patient-example``) as JSON."""
    member = archive.extractfile(f"package/{name}.json")
    if member is None:
        raise KeyError(name)
    return dict(json.load(member))


def names(archive: tarfile.TarFile, kind: str) -> list[str]:
    """Every ``<kind>-<id>`` example of the package, sorted."""
    return sorted(m.name.removeprefix("package/").removesuffix(".json")
                  for m in archive.getmembers() if m.name.startswith(f"package/{kind}-"))
