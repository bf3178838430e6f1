"""The Merkle tree over the chain's entries (pure: no I/O), in RFC 9162 §2.1 terms.

Definitions (the contract a third party needs to check a proof):

* Leaf ``i`` of the tree is entry ``seq = i``. Its **leaf input** is the 32 raw
  bytes of the entry's chain ``hash`` (:func:`healthflow.audit.domain.entry_hash`,
  which commits to the entry's content and to the previous entry's hash).
* ``leaf_hash = SHA-256(0x00 ‖ leaf input)`` and
  ``node_hash = SHA-256(0x01 ‖ left ‖ right)`` (RFC 9162 §2.1.1); the root of
  the empty tree is ``SHA-256()`` of no bytes.
* The root of a tree of ``n`` leaves is RFC 9162's ``MTH(D[n])``: split at the
  largest power of two ``k < n``; inclusion proofs are ``PATH(m, D[n])``
  (§2.1.3.1) and consistency proofs ``PROOF(m, D[n])`` (§2.1.4.1), hashes in
  the order the RFC lists them (deepest first).

Storage: every **complete aligned subtree** — ``(level, index)`` covering the
leaves ``[index·2^level, (index+1)·2^level)`` — is hashed once, when its last
leaf is appended (:func:`grow`), and never changes; a leaf (level 0) is not stored,
its hash is recomputed from its entry's chain hash. Any hash a proof needs is a
range ``[start, end)`` of leaves that :func:`cover` splits into at most
``2·log2(n)`` such stored subtrees, so a proof is ``O(log n)`` stored hashes,
read in one query.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence

NodeId = tuple[int, int]
"""``(level, index)``: the complete subtree of leaves ``[index << level, (index + 1) << level)``."""

Range = tuple[int, int]
"""``(start, end)``: the leaves ``start <= i < end`` (end exclusive)."""

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""``MTH({})``: the root of the tree with no leaves (RFC 9162 §2.1.1)."""


def leaf_hash(leaf_input: bytes) -> bytes:
    """``SHA-256(0x00 ‖ leaf_input)`` (RFC 9162 §2.1.1)."""
    return hashlib.sha256(b"\x00" + leaf_input).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 ‖ left ‖ right)`` (RFC 9162 §2.1.1)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def entry_leaf_hash(entry_hash_hex: str) -> bytes:
    """The leaf hash of the entry whose chain ``hash`` is ``entry_hash_hex`` (64 hex digits).

    Raises:
        ValueError: not 64 hex digits.
    """
    raw = bytes.fromhex(entry_hash_hex)
    if len(raw) != 32:
        raise ValueError("an entry hash is 32 bytes (64 hex digits)")
    return leaf_hash(raw)


def split_point(n: int) -> int:
    """The largest power of two strictly below ``n`` (``n >= 2``): RFC 9162's ``k``."""
    return 1 << ((n - 1).bit_length() - 1)


def cover(start: int, end: int) -> list[NodeId]:
    """``[start, end)`` as complete aligned subtrees, left to right, each the largest
    that starts at its position and fits.

    For the ranges RFC 9162 hashes (``start`` a multiple of a power of two at
    least ``end - start``), the right fold of :func:`node_hash` over these
    subtrees is ``MTH(D[start:end])`` (see :func:`range_hash`).
    """
    nodes: list[NodeId] = []
    while start < end:
        level = (start & -start).bit_length() - 1 if start else (end - start).bit_length()
        while (1 << level) > end - start:
            level -= 1
        nodes.append((level, start >> level))
        start += 1 << level
    return nodes


def frontier(size: int) -> list[NodeId]:
    """The complete subtrees whose hashes the tree of ``size`` leaves needs to grow:
    ``cover(0, size)``, largest first (one per set bit of ``size``)."""
    return cover(0, size)


def range_hash(start: int, end: int, stored: Mapping[NodeId, bytes]) -> bytes:
    """``MTH(D[start:end])`` from the stored subtree hashes of :func:`cover`.

    Raises:
        KeyError: a subtree hash is missing from ``stored``.
    """
    nodes = cover(start, end)
    if not nodes:
        return EMPTY_ROOT
    digest = stored[nodes[-1]]
    for node in reversed(nodes[:-1]):
        digest = node_hash(stored[node], digest)
    return digest


def grow(size: int, frontier_hashes: Sequence[bytes],
         leaf_hashes: Iterable[bytes]) -> dict[NodeId, bytes]:
    """Every complete subtree made by appending ``leaf_hashes`` to the tree of ``size``.

    ``frontier_hashes`` are the hashes of :func:`frontier` (``size``), in that
    order. Returns ``{(level, index): hash}``, the new leaves (level 0)
    included.

    Raises:
        ValueError: ``frontier_hashes`` is not as long as the frontier.
    """
    stack = list(zip(frontier(size), frontier_hashes, strict=True))
    made: dict[NodeId, bytes] = {}
    index = size
    for digest in leaf_hashes:
        node: tuple[NodeId, bytes] = ((0, index), digest)
        made[node[0]] = digest
        while stack and stack[-1][0][0] == node[0][0]:
            (level, left_index), left = stack.pop()
            node = ((level + 1, left_index >> 1), node_hash(left, node[1]))
            made[node[0]] = node[1]
        stack.append(node)
        index += 1
    return made


def inclusion_ranges(leaf: int, size: int) -> list[Range]:
    """The ranges whose hashes form ``PATH(leaf, D[size])`` (RFC 9162 §2.1.3.1), in order.

    Raises:
        ValueError: unless ``0 <= leaf < size``.
    """
    if not 0 <= leaf < size:
        raise ValueError(f"leaf {leaf} is not in a tree of size {size}")
    ranges: list[Range] = []
    start, end = 0, size
    while end - start > 1:
        k = split_point(end - start)
        if leaf < start + k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
    ranges.reverse()
    return ranges


def consistency_ranges(first: int, second: int) -> list[Range]:
    """The ranges whose hashes form ``PROOF(first, D[second])`` (RFC 9162 §2.1.4.1).

    Empty when ``first == second`` or ``first == 0`` (nothing to prove).

    Raises:
        ValueError: unless ``0 <= first <= second``.
    """
    if not 0 <= first <= second:
        raise ValueError(f"a tree of size {first} cannot be a prefix of one of size {second}")
    if first in (0, second):
        return []
    ranges: list[Range] = []
    start, end, whole = 0, second, True  # SUBPROOF(first - start, D[start:end], whole)
    while first - start != end - start:
        k = split_point(end - start)
        if first - start <= k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start, whole = start + k, False
    if not whole:
        ranges.append((start, end))
    ranges.reverse()
    return ranges


def needed(ranges: Iterable[Range]) -> set[NodeId]:
    """The stored subtrees the hashes of ``ranges`` are made of."""
    return {node for start, end in ranges for node in cover(start, end)}
