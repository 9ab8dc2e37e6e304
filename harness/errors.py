"""One exception type for input the user can fix: its message is the one line we print."""

from __future__ import annotations

from pathlib import Path


class QParityError(Exception):
    """A clear, one-line, user-facing error that names the file and the problem."""

    def __init__(self, message: str, path: Path | str | None = None):
        text = f"{path}: {message}" if path is not None else message
        super().__init__(" ".join(text.split()))  # never more than one line
        self.path = path
