"""Object storage for every file the platform keeps (X-rays, documents, images,
recordings, invoices): :class:`BlobStore` on the ``minio`` client, one bucket per
service, content types checked from the bytes against a :class:`BlobUse`.

See :mod:`healthflow.common.blobs.store` (streaming, threads, garbage collection)
and :mod:`healthflow.common.blobs.kinds` (uses, detection, refusals).
"""

from healthflow.common.blobs.kinds import (
    CLINICAL_DOCUMENT,
    INVOICE,
    PATIENT_IMAGE,
    RECORDING,
    XRAY,
    BlobTooLarge,
    BlobTypeRefused,
    BlobUse,
    check_type,
    detect_type,
)
from healthflow.common.blobs.store import BlobStore, Source, StoredBlob

__all__ = [
    "CLINICAL_DOCUMENT", "INVOICE", "PATIENT_IMAGE", "RECORDING", "XRAY",
    "BlobStore", "BlobTooLarge", "BlobTypeRefused", "BlobUse", "Source", "StoredBlob",
    "check_type", "detect_type",
]
