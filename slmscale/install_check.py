"""Is this installation whole?  Checks that run in a second, before a stage starts.

Why this exists: torchaudio's wheels carry a native library built against one exact torch build.
When the package index served torchaudio 2.11.1 beside torch 2.11.0, every fresh install imported
torch fine and then died deep inside a stage (`libtorchaudio.so: undefined symbol ...`), as a
42-line traceback from a Ray actor.  The project now pins the pair exactly (pyproject.toml) and
locks the rest (constraints.txt); this module makes a broken pair fail loudly, early and in one
line: `slmscale info` reports it, the commands that decode or featurise audio refuse to start, and
the test suite's first test names it.

Loading the module is not enough to prove the native library works (torchaudio loads its
extension lazily), so the check runs one resample and one MelSpectrogram on a few samples.
"""

from __future__ import annotations

import importlib.metadata as md

from slmscale.errors import UserError

#: How to get back to a working pair; the lock file pins the exact versions the project tested.
FIX = "reinstall the pinned pair: pip install -c constraints.txt -e .  (see README, 'Install')"


class BrokenInstall(UserError):
    """The environment, not the user's input, is wrong: still one line and exit code 2."""


def _version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "not installed"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:240]


def _describe(exc: BaseException) -> str:
    """The error's first line, plus the root cause when it is the telling one.

    torchaudio wraps the loader's `OSError` ("undefined symbol: ...") in its own "Could not load
    this library" error; the symbol is what says the builds do not match, so keep it.
    """
    line = f"{type(exc).__name__}: {_first_line(exc)}"
    cause, seen = exc.__cause__ or exc.__context__, 0
    while cause is not None and seen < 8:
        if "undefined symbol" in str(cause):
            text = _first_line(cause)
            return f"{line}: {text[text.index('undefined symbol') :]}"
        cause, seen = cause.__cause__ or cause.__context__, seen + 1
    return line


def exercise_torchaudio() -> None:
    """Import torchaudio and run its native kernels once (raises whatever a broken build raises)."""
    import torch
    import torchaudio
    import torchaudio.functional as AF

    wave = torch.linspace(-1.0, 1.0, 800)
    AF.resample(wave, 8000, 16000)
    torchaudio.transforms.MelSpectrogram(sample_rate=16000, n_fft=400, n_mels=8)(wave)


def torchaudio_problem() -> str | None:
    """None when torchaudio works with this torch; otherwise one line naming versions and the fix."""
    try:
        exercise_torchaudio()
    except Exception as exc:  # ImportError, OSError (undefined symbol), RuntimeError: all fatal
        torch_v, ta_v = _version("torch"), _version("torchaudio")
        return f"torchaudio {ta_v} does not work with torch {torch_v} ({_describe(exc)}); {FIX}"
    return None


def require_torchaudio() -> None:
    """Raise `BrokenInstall` (one line, exit 2) unless torchaudio's native library works."""
    problem = torchaudio_problem()
    if problem is not None:
        raise BrokenInstall(problem)
