"""``healthflow-audit-witness``: cosign an audit checkpoint as an independent witness.

Usage::

    healthflow-audit-witness --log-key KEY --name witness.example/w1 \\
        --seed-file witness.seed --state witness-state/audit.checkpoint \\
        --checkpoint latest.checkpoint --url https://host --token-file FILE [--out FILE]

The seed file holds the witness's 32-byte Ed25519 seed, base64url (made with
``--new-seed``, which prints the witness's verifier key). The checkpoint is
cosigned (C2SP tlog-cosignature) only when the log's signature verifies and the
log's consistency proof shows it extends the last checkpoint this witness
cosigned (kept in ``--state``). Exit 0 and the cosigned note (stdout or
``--out``); 1 when refused; 2 for bad usage or unreadable input.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from healthflow.auditverify import note, witness
from healthflow.auditverify.cli import Api, Failed, Unusable, token_of


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="healthflow-audit-witness",
                                     description="Cosign a HealthFlow audit checkpoint.")
    parser.add_argument("--name", required=True, help="the witness's key name")
    parser.add_argument("--seed-file", required=True, type=Path)
    parser.add_argument("--new-seed", action="store_true",
                        help="write a new seed to --seed-file and print the verifier key")
    parser.add_argument("--log-key", help="the log's verifier key")
    parser.add_argument("--state", type=Path, help="file keeping the last cosigned checkpoint")
    parser.add_argument("--checkpoint", type=Path, help="the checkpoint to cosign")
    parser.add_argument("--url", help="the platform's base URL (consistency proofs)")
    parser.add_argument("--token-file", type=Path, help="file holding a compliance officer's "
                        "bearer token (or the environment variable HEALTHFLOW_AUDIT_TOKEN)")
    parser.add_argument("--token", help="the token itself (visible in the process list)")
    parser.add_argument("--out", type=Path, help="write the cosigned note here")
    return parser


def _seed(path: Path) -> bytes:
    try:
        text = path.read_text(encoding="utf-8").strip()
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (OSError, ValueError) as exc:
        raise Unusable(f"cannot read the seed file {path}: {exc}") from None


def run(args: argparse.Namespace) -> str:
    """The cosigned note (or, with ``--new-seed``, the new verifier key)."""
    if args.new_seed:
        seed = Ed25519PrivateKey.generate().private_bytes_raw()
        try:  # owner-only from the start, and never over an existing seed
            fd = os.open(args.seed_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise Unusable(f"cannot create the seed file {args.seed_file}: {exc}") from None
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(base64.urlsafe_b64encode(seed).decode().rstrip("=") + "\n")
        return witness.witness_from_seed(args.name, seed).verifier_key + "\n"
    missing = [f"--{n}" for n in ("log_key", "state", "checkpoint", "url")
               if getattr(args, n) is None]
    if missing:
        raise Unusable(f"cosigning needs {', '.join(m.replace('_', '-') for m in missing)}")
    try:
        log_key = note.parse_verifier_key(args.log_key)
        me = witness.witness_from_seed(args.name, _seed(args.seed_file))
        text = args.checkpoint.read_text(encoding="utf-8")
    except (note.NoteError, ValueError, OSError) as exc:
        raise Unusable(str(exc)) from None
    api = Api(args.url, token_of(args))
    try:
        return witness.cosign(me, log_key, text, args.state,
                              lambda first, second: api.proof(
                                  "/proof/consistency", "consistency_path",
                                  first=first, second=second))
    except (note.NoteError, witness.Refused) as exc:
        raise Failed(str(exc)) from None


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        output = run(args)
    except Failed as exc:
        print(f"REFUSED: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except Unusable as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if args.out is not None and not args.new_seed:
        args.out.write_text(output, encoding="utf-8")
    else:
        sys.stdout.write(output)


if __name__ == "__main__":
    main()
