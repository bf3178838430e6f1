"""The runner's console: one status line per component, coloured on a terminal."""

from __future__ import annotations

import os
import sys
from typing import TextIO


class Console:
    """Short status lines on stdout, coloured when stdout is a terminal (and no ``NO_COLOR``)."""

    COLORS = {"green": "32", "yellow": "33", "red": "31", "cyan": "36", "dim": "2", "bold": "1"}

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.color = self.stream.isatty() and not os.environ.get("NO_COLOR")

    def paint(self, text: str, color: str) -> str:
        if not self.color or color not in self.COLORS:
            return text
        return f"\033[{self.COLORS[color]}m{text}\033[0m"

    def line(self, text: str = "") -> None:
        print(text, file=self.stream, flush=True)

    def status(self, name: str, state: str, detail: str = "", color: str = "") -> None:
        """``  auth         ready      http://127.0.0.1:8101``: one line per event."""
        self.line(f"  {name:<12} {self.paint(f'{state:<10}', color)} {detail}".rstrip())
