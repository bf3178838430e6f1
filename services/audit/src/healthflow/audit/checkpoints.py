"""Use cases of signed checkpoints: sign the tree's size and root, keep the checkpoint,
and write it outside the database.

A checkpoint (format: :mod:`healthflow.audit.note`) is signed every
``checkpoint_interval`` seconds when the log grew (:func:`run_due`, a worker
loop) and on demand (:func:`sign_now`, the ``POST /checkpoints`` route). Each
is kept in the ``checkpoints`` collection and written

* as the file ``<checkpoint_dir>/<size>.checkpoint``, and ``latest.checkpoint``
  replaced atomically, for an operator to ship elsewhere;
* to the blob store as ``checkpoints/<size as 20 digits>`` (text/plain), retried
  by the loop until it succeeds.

Whoever rewrites the database afterwards cannot produce a checkpoint signed by
the key for the rewritten root, and a kept checkpoint then fails the offline
verifier's consistency or root check (``healthflow-audit-verify``). Nor does the
service sign over a rewrite: before each new checkpoint it recomputes, from the
tree, the root at the size of the latest checkpoint kept in the database, of
the latest file and of the newest blob (outside the database), and refuses
(:class:`HistoryRewritten`) when one differs, is unreadable, or the log is
shorter. The copies outside are not at the database's mercy either: a note is
exported only when it opens with the service's key at its stored size and root,
each ``<size>`` file and blob is written once, and ``latest.checkpoint`` never
moves to a smaller size.

A generated key (local runs) is kept in ``signing_keys`` as an envelope
(:mod:`healthflow.common.keywrap`, bound to ``audit`` and the record, :data:`KEY_CONTEXT`),
never in clear; at start a clear seed of an older release is wrapped and an
envelope of a previous KEK re-wrapped (:func:`~healthflow.common.keywrap.kept_key`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from healthflow.audit import note, store, tree
from healthflow.audit.settings import Settings
from healthflow.common.blobs import BlobStore
from healthflow.common.errors import Conflict, NotFound
from healthflow.common.keywrap import kept_key
from healthflow.common.mongo import Document, utcnow
from healthflow.common.service import ServiceRuntime
from healthflow.common.settings import ConfigurationError

log = logging.getLogger(__name__)

NOTE_TYPE = "text/plain; charset=utf-8"
BLOB_PREFIX = "checkpoints/"
KEY_CONTEXT = {"service": "audit", "record": f"{store.SIGNING_KEYS}/{store.SIGNING_KEY_ID}"}


class HistoryRewritten(Conflict):
    """(409) The log no longer has the root of a checkpoint signed earlier: entries up
    to that checkpoint's size were changed or removed. Nothing is signed."""

    slug = "audit-history-rewritten"


def settings_of(runtime: ServiceRuntime) -> Settings:
    settings = runtime.settings
    assert isinstance(settings, Settings)
    return settings


async def signer(runtime: ServiceRuntime) -> note.NoteSigner:
    """The configured key (``AUDIT_CHECKPOINT_SIGNING_KEY``), else — only when
    ``AUDIT_ALLOW_GENERATED_SIGNING_KEY`` (local runs) — the database's, made once;
    named by the checkpoint origin. Called at start-up.

    Raises:
        ConfigurationError: no key configured and a generated one not allowed; no KEK
            in production, or (``KeyUnwrapError``) the kept key does not open with the
            configured KEKs.
    """
    cached = runtime.state.get("checkpoint_signer")
    if isinstance(cached, note.NoteSigner):
        return cached
    settings = settings_of(runtime)
    if settings.checkpoint_signing_key is not None:
        seed = note.unb64url(settings.checkpoint_signing_key.get_secret_value())
    elif not settings.allow_generated_signing_key:
        raise ConfigurationError(
            "AUDIT_CHECKPOINT_SIGNING_KEY is not set: audit checkpoints need an Ed25519 seed "
            "(32 bytes, base64url) from a secret; AUDIT_ALLOW_GENERATED_SIGNING_KEY=true "
            "keeps a generated one in the database, for local runs only")
    else:
        seed = await kept_key(runtime.db[store.SIGNING_KEYS], store.SIGNING_KEY_ID,
                              settings.key_wrapper(), KEY_CONTEXT, generate=note.new_seed)
    made = note.signer_from_seed(settings.checkpoint_origin, seed)
    runtime.state["checkpoint_signer"] = made
    return made


async def sign_now(runtime: ServiceRuntime) -> Document:
    """The checkpoint of the log as it is now: signed and kept when the log grew since the
    latest one, else the latest. Exported before returning (a failed export is logged
    and retried by :func:`run_due`).

    The size signed is the tree's (it trails the head while the tree catches up).

    Returns the stored document (``_id`` the tree size, ``root`` hex, ``note``).

    Raises:
        HistoryRewritten: (409) the log or tree is shorter than the latest checkpoint
            (truncated), or no longer has its root.
    """
    db = runtime.db
    head, size = await store.read_chain(db)
    latest = await store.latest_checkpoint(db)
    if latest is not None and int(latest["_id"]) > head.seq + 1:
        _rewritten(int(latest["_id"]), "database", head.seq + 1)
    if latest is not None and int(latest["_id"]) >= size:
        return latest
    key = await signer(runtime)
    await _check_extends(runtime, key, latest, size)
    root = await tree.root(db, size)
    document: Document = {
        "_id": size, "root": root.hex(), "note": note.sign_checkpoint(key, size, root),
        "key_id": key.key_id.hex(), "signed_at": utcnow(), "blob_key": None, "file": None,
    }
    if not await store.insert_checkpoint(db, document):  # another replica signed it
        kept = await store.get_checkpoint(db, size)
        assert kept is not None
        return kept
    log.info("checkpoint signed", extra={"tree_size": size})
    await _export(runtime, document)
    return document


async def recent(runtime: ServiceRuntime) -> Document:
    """The latest checkpoint, or a new one (:func:`sign_now`) when there is none or the
    latest was signed ``checkpoint_interval`` seconds ago or more: reads that need a
    checkpoint (reports) sign at most once per interval.

    Raises:
        HistoryRewritten: (409) as :func:`sign_now`, when one is signed.
    """
    latest = await store.latest_checkpoint(runtime.db)
    signed_at = latest.get("signed_at") if latest is not None else None
    if (latest is not None and isinstance(signed_at, datetime)
            and (utcnow() - signed_at.replace(tzinfo=UTC)).total_seconds()
            < settings_of(runtime).checkpoint_interval):
        return latest
    return await sign_now(runtime)


async def _check_extends(runtime: ServiceRuntime, key: note.NoteSigner,
                         latest: Document | None, size: int) -> None:
    """Raise HistoryRewritten unless the log of ``size`` entries still has the roots of the
    latest checkpoint in the database, of the latest file and of the newest one in the
    blob store. A file or blob that is there but not a checkpoint of this key counts
    as tampering; an absent one (or a blob store that does not answer) is skipped."""
    earlier: list[tuple[int, bytes, str]] = []
    if latest is not None:
        earlier.append((int(latest["_id"]), bytes.fromhex(str(latest["root"])), "database"))
    for where, text in (("file", await _latest_file(runtime)),
                        ("blob store", await _newest_blob(runtime))):
        if text is None:
            continue
        if (kept := note.open_own_checkpoint(key, text)) is None:
            _rewritten(0, f"{where}, unreadable or not signed by this key", size)
        earlier.append((*kept, where))
    for kept_size, kept_root, where in earlier:
        if kept_size > size or await tree.root(runtime.db, kept_size) != kept_root:
            _rewritten(kept_size, where, size)


async def _latest_file(runtime: ServiceRuntime) -> str | None:
    """``latest.checkpoint``'s text; ``None`` when absent; ``""`` when unreadable."""
    path = settings_of(runtime).checkpoint_dir / "latest.checkpoint"
    try:
        return await asyncio.to_thread(path.read_text, encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError):
        return ""


async def _newest_blob(runtime: ServiceRuntime) -> str | None:
    """The newest checkpoint in the blob store (keys sort by size); ``None`` when there
    is none or the store does not answer (logged)."""
    blobs: BlobStore | None = runtime.state.get("blobs")
    if blobs is None:
        return None
    try:
        keys = await blobs.keys(BLOB_PREFIX)
        if not keys:
            return None
        data = b"".join([chunk async for chunk in blobs.stream(max(keys))])
    except Exception as exc:  # S3 down: the database and the file still count
        log.warning("newest checkpoint not read from the blob store",
                    extra={"error": type(exc).__name__})
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return ""


def _rewritten(kept_size: int, where: str, size: int) -> NoReturn:
    log.error("audit history rewritten: a signed checkpoint no longer matches",
              extra={"tree_size": kept_size, "kept_in": where, "log_size": size})
    raise HistoryRewritten(
        f"the log no longer has the root of the checkpoint signed at tree size "
        f"{kept_size} (kept in the {where}): entries before it were changed or "
        "removed; no checkpoint is signed", tree_size=kept_size)


async def _export(runtime: ServiceRuntime, document: Document) -> None:
    """Write ``document``'s note to the file and the blob store, once it opens with the
    service's own key at the document's size and root (else nothing is written: the
    database was changed). Write-once: an existing ``<size>`` file or blob with other
    bytes is kept; ``latest.checkpoint`` never moves to a smaller size. Failures are
    logged (the loop retries the blob store)."""
    size, text = int(document["_id"]), str(document["note"])
    key = await signer(runtime)
    if note.open_own_checkpoint(key, text) != (size, bytes.fromhex(str(document["root"]))):
        log.error("checkpoint in the database does not verify with the service's key; "
                  "not exported", extra={"tree_size": size})
        return
    where: dict[str, str] = {}
    try:
        where["file"] = str(await asyncio.to_thread(_write_file, key, settings_of(runtime)
                                                    .checkpoint_dir, size, text))
    except OSError as exc:
        log.warning("checkpoint file not written", extra={"tree_size": size, "error": str(exc)})
    if (blob_key := await _put_blob(runtime, size, text)) is not None:
        where["blob_key"] = blob_key
    if where:
        await store.mark_exported(runtime.db, size, **where)


async def _put_blob(runtime: ServiceRuntime, size: int, text: str) -> str | None:
    """Store the note as ``checkpoints/<size>`` unless stored already; its key, or ``None``
    when the store failed or holds other bytes under that key (logged)."""
    blobs: BlobStore | None = runtime.state.get("blobs")
    if blobs is None:
        return None
    key, data = f"{BLOB_PREFIX}{size:020d}", text.encode("utf-8")
    try:
        if await blobs.exists(key):
            if b"".join([chunk async for chunk in blobs.stream(key)]) == data:
                return key
            log.error("a different checkpoint of this size is in the blob store; kept",
                      extra={"tree_size": size})
            return None
        await blobs.put_generated(key, data, NOTE_TYPE)
    except Exception as exc:  # S3 down: the loop retries
        log.warning("checkpoint not written to the blob store",
                    extra={"tree_size": size, "error": type(exc).__name__})
        return None
    return key


def _write_file(key: note.NoteSigner, directory: Path, size: int, text: str) -> Path:
    """``<size>.checkpoint`` (write-once) and ``latest.checkpoint`` (unless it holds a larger
    size signed by ``key``), each replaced atomically.

    Raises:
        FileExistsError: ``<size>.checkpoint`` holds other bytes (kept as it is).
    """
    directory.mkdir(parents=True, exist_ok=True)
    target, latest = directory / f"{size}.checkpoint", directory / "latest.checkpoint"
    paths = [target, latest]
    if target.exists():
        if target.read_bytes() != text.encode("utf-8"):
            raise FileExistsError(f"{target.name} holds another checkpoint; kept")
        paths.remove(target)
    if latest.exists():
        kept = note.open_own_checkpoint(key, latest.read_text(encoding="utf-8",
                                                              errors="replace"))
        if kept is not None and kept[0] > size:
            paths.remove(latest)
    for path in paths:
        partial = path.with_suffix(".partial")
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
    return target


async def run_due(runtime: ServiceRuntime) -> None:
    """One turn of the checkpoint loop: catch the tree up with entries it lacks
    (:func:`healthflow.audit.tree.rebuild`), sign when it grew (not while the log is
    empty); retry blob exports."""
    await tree.rebuild(runtime.db)
    if await store.tree_size(runtime.db) > 0:
        await sign_now(runtime)
    if runtime.state.get("blobs") is not None:
        for document in await store.unexported_checkpoints(runtime.db):
            await _export(runtime, document)


async def get(runtime: ServiceRuntime, size: int | None) -> Document:
    """Checkpoint of tree ``size`` (the latest when ``None``).

    Raises:
        NotFound: (404) no checkpoint of that size (or none yet).
    """
    found = (await store.latest_checkpoint(runtime.db) if size is None
             else await store.get_checkpoint(runtime.db, size))
    if found is None:
        raise NotFound("no checkpoint has been signed yet" if size is None
                       else f"no checkpoint was signed at tree size {size}")
    return found


async def public_key(runtime: ServiceRuntime) -> dict[str, Any]:
    """The checkpoint key: name, key ID (8 hex), raw public key (base64) and the C2SP
    verifier key string."""
    key = await signer(runtime)
    return {"name": key.name, "key_id": key.key_id.hex(), "algorithm": "Ed25519",
            "public_key": note.b64(key.public_raw), "verifier_key": key.verifier_key}
