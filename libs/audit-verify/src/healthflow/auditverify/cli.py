"""``healthflow-audit-verify``: check an audit log against a signed checkpoint.

Usage::

    healthflow-audit-verify --key KEY --checkpoint CP [--earlier-checkpoint CP0]
        (--entries export.jsonl | --url https://host --token-file FILE)
        [--entry SEQ ...] [--save-entries export.jsonl]

``KEY`` is the C2SP verifier key (``GET /api/v1/audit/checkpoints/key``,
``verifier_key``) or a file holding it; ``CP`` a signed checkpoint note the
officer kept (a ``.checkpoint`` file). Checks, in order: the checkpoint's
signature; the hash chain of entries ``0..size-1`` recomputed from their
content; their Merkle root against the checkpoint's; the earlier checkpoint's
signature, its root against the same entries' prefix and (with ``--url``) the
log's RFC 9162 consistency proof between the two; the inclusion of each
``--entry`` (with ``--url``: the log's proof, checked against the checkpoint);
with ``--witness-key``, each witness's cosignature on the checkpoint
(``healthflow-audit-witness`` makes them).

Exit status: 0 all checks passed; 1 a check failed (the first failure is
printed on stderr as ``FAILED: …``); 2 bad usage or unreadable input.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from healthflow.auditverify import chain, note, proofs, witness

RATE_LIMIT_RETRIES = 30
TOKEN_ENV = "HEALTHFLOW_AUDIT_TOKEN"  # noqa: S105 (a variable's name, not a secret)


class Failed(Exception):
    """A check failed (exit 1)."""


class Unusable(Exception):
    """Input could not be read (exit 2)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="healthflow-audit-verify",
        description="Verify a HealthFlow audit log with its signed checkpoint and public key.")
    parser.add_argument("--key", required=True, help="verifier key, or a file holding it")
    parser.add_argument("--checkpoint", required=True, type=Path, help="signed checkpoint")
    parser.add_argument("--earlier-checkpoint", type=Path,
                        help="an earlier checkpoint the log must extend")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--entries", type=Path, help="JSON Lines export, one entry a line")
    source.add_argument("--url", help="the platform's base URL (entries and proofs by API)")
    parser.add_argument("--token-file", type=Path,
                        help="file holding a compliance officer's bearer token (with --url; "
                        f"or the environment variable {TOKEN_ENV})")
    parser.add_argument("--token", help="the token itself (visible to other local users in "
                        "the process list: prefer --token-file or the environment)")
    parser.add_argument("--entry", type=int, action="append", default=[],
                        help="seq of an entry whose inclusion to prove (repeatable)")
    parser.add_argument("--save-entries", type=Path, help="write the fetched entries here")
    parser.add_argument("--witness-key", action="append", default=[],
                        help="verifier key of a witness whose cosignature the checkpoint "
                        "must carry (C2SP tlog-cosignature; repeatable)")
    return parser


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise Unusable(f"cannot read the {what} {path}: {exc}") from None


def _key(text: str) -> note.VerifierKey:
    path = Path(text)
    raw = _read(path, "key file") if path.is_file() else text
    try:
        return note.parse_verifier_key(raw)
    except note.NoteError as exc:
        raise Unusable(str(exc)) from None


def _checkpoint(path: Path, key: note.VerifierKey, what: str) -> note.Checkpoint:
    try:
        return note.open_checkpoint(_read(path, what), key)
    except note.NoteError as exc:
        raise Failed(f"{what} {path}: {exc}") from None


def _export(path: Path) -> Iterator[dict[str, Any]]:
    """The export's entries, read a line at a time (memory: one entry)."""
    try:
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError:
                        raise Unusable(f"{path} line {number} is not JSON") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise Unusable(f"cannot read the export {path}: {exc}") from None


def _retry_after(value: str | None) -> float:
    """Seconds to wait (1 to 60) from a ``Retry-After`` of delay-seconds (RFC 9110 §10.2.3)."""
    try:
        return min(max(float(value or 1), 1.0), 60.0)
    except ValueError:
        return 1.0


def _detail(response: httpx.Response) -> str:
    """An error's problem ``detail`` (RFC 9457), else the start of its body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("detail", "")) if isinstance(body, dict) else str(body)[:200]


def token_of(args: argparse.Namespace) -> str | None:
    """``--token-file``'s content, else ``--token``, else ``$HEALTHFLOW_AUDIT_TOKEN``."""
    if args.token_file is not None:
        return _read(args.token_file, "token file").strip()
    return args.token or os.environ.get(TOKEN_ENV)


class Api:
    """The audit API through the gateway (a compliance officer's token)."""

    def __init__(self, url: str, token: str | None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.Client(base_url=url.rstrip("/") + "/api/v1/audit",
                                   headers=headers, timeout=30.0)

    def get(self, path: str, **params: Any) -> Any:
        """GET ``path``; a 429 (the edge's rate limit) is waited out per ``Retry-After``."""
        for _ in range(RATE_LIMIT_RETRIES):
            try:
                response = self.client.get(path, params=params)
            except httpx.HTTPError as exc:
                raise Unusable(f"the audit API does not answer: {exc}") from None
            if response.status_code != 429:
                break
            time.sleep(_retry_after(response.headers.get("retry-after")))
        if response.status_code != 200:
            raise Failed(f"GET {path} answered {response.status_code}: "
                         f"{_detail(response)}")
        try:
            return response.json()
        except ValueError:
            raise Unusable(f"GET {path} did not answer JSON: {response.text[:200]!r}") from None

    def entries(self, size: int) -> Iterator[dict[str, Any]]:
        """Entries ``0..size-1`` (``GET /export``, JSON Lines), streamed a line at a time;
        a 429 is waited out per ``Retry-After``."""
        for _ in range(RATE_LIMIT_RETRIES):
            try:
                with self.client.stream("GET", "/export", params={"tree_size": size}) as response:
                    if response.status_code == 429:
                        time.sleep(_retry_after(response.headers.get("retry-after")))
                        continue
                    if response.status_code != 200:
                        response.read()
                        raise Failed(f"GET /export answered {response.status_code}: "
                                     f"{_detail(response)}")
                    for line in response.iter_lines():
                        if line.strip():
                            yield _entry_line(line)
                    return
            except httpx.HTTPError as exc:
                raise Unusable(f"the audit API does not answer: {exc}") from None
        raise Failed("GET /export was rate limited on every retry")

    def proof(self, path: str, field: str, **params: Any) -> list[bytes]:
        return [base64.b64decode(h) for h in self.get(path, **params)[field]]


def _entry_line(line: str) -> dict[str, Any]:
    try:
        entry = json.loads(line)
    except json.JSONDecodeError:
        raise Failed("the export is not JSON Lines") from None
    if not isinstance(entry, dict):
        raise Failed("an export line is not a JSON object")
    return entry


def _saved(entries: Iterable[dict[str, Any]], path: Path | None
           ) -> Iterator[dict[str, Any]]:
    """``entries``, each also appended to ``path`` as it passes (when given)."""
    if path is None:
        yield from entries
        return
    with path.open("w", encoding="utf-8") as out:
        for entry in entries:
            out.write(json.dumps(entry) + "\n")
            yield entry


def _check_entries(entries: Iterable[dict[str, Any]], latest: note.Checkpoint
                   ) -> list[bytes]:
    """The first ``latest.size`` entries' chain and root; keeps only their leaf hashes."""
    try:
        leaves = chain.check_chain(itertools.islice(entries, latest.size))
    except chain.ChainError as exc:
        raise Failed(f"hash chain: {exc}") from None
    if len(leaves) < latest.size:
        raise Failed(f"the export holds {len(leaves)} entries; the checkpoint covers "
                     f"{latest.size}")
    if proofs.root_of(leaves) != latest.root:
        raise Failed(f"the entries' Merkle root is not the checkpoint's root for tree size "
                     f"{latest.size}: the log was rewritten after it was signed")
    return leaves


def _check_earlier(earlier: note.Checkpoint, latest: note.Checkpoint, leaves: list[bytes],
                   api: Api | None) -> None:
    if earlier.size > latest.size:
        raise Failed(f"the earlier checkpoint (size {earlier.size}) is larger than the "
                     f"checkpoint (size {latest.size})")
    if proofs.root_of(leaves[:earlier.size]) != earlier.root:
        raise Failed(f"the first {earlier.size} entries do not have the earlier checkpoint's "
                     "root: history before it was rewritten")
    if api is not None and earlier.size > 0:
        path = api.proof("/proof/consistency", "consistency_path", first=earlier.size,
                         second=latest.size)
        try:
            proofs.verify_consistency(earlier.size, latest.size, earlier.root, latest.root,
                                      path)
        except proofs.ProofError as exc:
            raise Failed(f"consistency proof: {exc}") from None


def _check_inclusion(seqs: Sequence[int], latest: note.Checkpoint, leaves: list[bytes],
                     api: Api | None) -> None:
    for seq in seqs:
        if not 0 <= seq < latest.size:
            raise Failed(f"entry {seq} is not covered by the checkpoint (size {latest.size})")
        if api is None:
            continue  # the export's root already matched: every entry in it is included
        path = api.proof("/proof/inclusion", "audit_path", seq=seq, tree_size=latest.size)
        try:
            proofs.verify_inclusion(seq, latest.size, leaves[seq], path, latest.root)
        except proofs.ProofError as exc:
            raise Failed(f"inclusion of entry {seq}: {exc}") from None


def _check_witnesses(keys: Sequence[str], text: str) -> list[str]:
    done = []
    for raw in keys:
        try:
            key = note.parse_verifier_key(raw, witness.COSIGNATURE)
        except note.NoteError as exc:
            raise Unusable(f"--witness-key: {exc}") from None
        try:
            when = witness.verify_cosignature(text, key)
        except note.NoteError as exc:
            raise Failed(str(exc)) from None
        done.append(f"cosigned by witness {key.name} at POSIX time {when}")
    return done


def run(args: argparse.Namespace) -> list[str]:
    """Every check; returns what passed (one line each). Raises Failed or Unusable."""
    key = _key(args.key)
    latest = _checkpoint(args.checkpoint, key, "checkpoint")
    done = [f"checkpoint signed by {key.name} ({key.key_id.hex()}): tree size {latest.size}"]
    done.extend(_check_witnesses(args.witness_key, _read(args.checkpoint, "checkpoint")))
    api = Api(args.url, token_of(args)) if args.url else None
    entries = api.entries(latest.size) if api is not None else _export(args.entries)
    leaves = _check_entries(_saved(entries, args.save_entries), latest)
    done.append(f"hash chain of entries 0..{latest.size - 1} recomputed; Merkle root matches")
    if args.earlier_checkpoint is not None:
        earlier = _checkpoint(args.earlier_checkpoint, key, "earlier checkpoint")
        _check_earlier(earlier, latest, leaves, api)
        done.append(f"the log at size {latest.size} extends the earlier checkpoint "
                    f"(size {earlier.size})")
    _check_inclusion(args.entry, latest, leaves, api)
    done.extend(f"entry {seq} is included in the checkpoint's tree" for seq in args.entry)
    return done


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        for line in run(args):
            print(f"ok: {line}")
    except Failed as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except Unusable as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print("VERIFIED")


if __name__ == "__main__":
    main()
