"""RFC 9162 §2.1 Merkle tree hashing and proof verification (the RFC's own algorithms).

Written from the RFC, independently of the audit service's proof generation:
``leaf_hash = SHA-256(0x00 ‖ leaf input)``, ``node = SHA-256(0x01 ‖ left ‖ right)``,
inclusion proofs checked per §2.1.3.2 and consistency proofs per §2.1.4.2.
Hashes are 32 raw bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


class ProofError(ValueError):
    """A proof does not verify; the message says which check failed."""


def leaf_hash(leaf_input: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf_input).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """``MTH(D[n])`` of the given leaf hashes (RFC 9162 §2.1.1), in O(n) with a stack."""
    if not leaf_hashes:
        return hashlib.sha256(b"").digest()
    stack: list[tuple[int, bytes]] = []  # (size of the complete subtree, its hash)
    for digest in leaf_hashes:
        item = (1, digest)
        while stack and stack[-1][0] == item[0]:
            size, left = stack.pop()
            item = (size * 2, _node(left, item[1]))
        stack.append(item)
    size, digest = stack.pop()
    while stack:
        _, left = stack.pop()
        digest = _node(left, digest)
    return digest


def verify_inclusion(leaf_index: int, tree_size: int, leaf: bytes,
                     path: Sequence[bytes], root: bytes) -> None:
    """Check that ``leaf`` (a leaf hash) is at ``leaf_index`` of the tree with ``root``.

    Raises:
        ProofError: the proof does not lead to ``root`` (RFC 9162 §2.1.3.2).
    """
    if not 0 <= leaf_index < tree_size:
        raise ProofError(f"leaf {leaf_index} is outside a tree of size {tree_size}")
    fn, sn, r = leaf_index, tree_size - 1, leaf
    for p in path:
        if sn == 0:
            raise ProofError("the inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = _node(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = _node(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("the inclusion proof is shorter than the tree is deep")
    if r != root:
        raise ProofError(f"leaf {leaf_index} is not in the tree of size {tree_size} "
                         "with that root hash")


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes,
                       path: Sequence[bytes]) -> None:
    """Check that the tree of ``second`` leaves with ``second_root`` extends the one of
    ``first`` leaves with ``first_root`` (RFC 9162 §2.1.4.2; ``first == 0`` and
    ``first == second`` take an empty proof).

    Raises:
        ProofError: the trees are not consistent, or the proof is malformed.
    """
    if not 0 <= first <= second:
        raise ProofError(f"a tree of size {first} cannot be a prefix of one of size {second}")
    if first == 0 or first == second:
        if path:
            raise ProofError("a consistency proof between these sizes must be empty")
        if first == second and first_root != second_root:
            raise ProofError(f"two different root hashes for the tree of size {first}")
        return
    proof = list(path)
    if first & (first - 1) == 0:
        proof.insert(0, first_root)
    if not proof:
        raise ProofError("the consistency proof is empty")
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            raise ProofError("the consistency proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            fr, sr = _node(c, fr), _node(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = _node(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("the consistency proof is shorter than the tree is deep")
    if fr != first_root:
        raise ProofError(f"the proof does not lead to the root of the tree of size {first}")
    if sr != second_root:
        raise ProofError(f"the tree of size {second} does not extend the tree of size {first}")
