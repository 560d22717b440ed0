"""User-facing errors.

A `UserError` is a mistake in what the user gave us (a spec, a path, a flag).  The CLI prints its
message as one line and exits with code 2; anything else is our bug and keeps its traceback.
Messages name *what* is wrong and *where* (file, field path, run id), and how to fix it if useful.
"""

from __future__ import annotations

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A problem with the user's input: reported as one line, exit code 2."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split("\n")))
