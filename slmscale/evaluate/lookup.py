"""Find benchmark utterances in a units dataset made by `slmscale tokenize`.

The tokenize stage names each utterance by its input file's path relative to the input root,
without extension (`aAbcD` when the root is the split folder, `syntactic/dev/aAbcD` when it is the
benchmark root).  Gold files name stems, so a stem matches an utterance id equal to it or ending
in `/<stem>`.  When several ids share a stem (dev and test in one dataset), the one in the
benchmark's split wins; still ambiguous means "missing", with the reason.

Pure core: pyarrow through `slmscale.units`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from slmscale import units as units_io


def _rejected(units_dir: str | Path) -> dict[str, str]:
    """Stem of each input the tokenize stage rejected -> its error."""
    table = units_io.read_rejects(units_dir)
    if table.num_rows == 0:
        return {}
    sources = table["source"].to_pylist()
    errors = table["error"].to_pylist()
    pairs = zip(sources, errors, strict=True)
    return {PurePosixPath(str(s).replace("\\", "/")).stem: str(e) for s, e in pairs}


def find_units(
    units_dir: str | Path, names: Iterable[str], split: str
) -> tuple[dict[str, list[int]], dict[str, str]]:
    """(found: stem -> units, missing: stem -> why) for the wanted utterance stems."""
    table = units_io.read_units(units_dir, columns=["utterance_id", "split", "units"])
    ids = table["utterance_id"].to_pylist()
    splits = table["split"].to_pylist()
    by_id = {u: i for i, u in enumerate(ids)}
    by_stem: dict[str, list[int]] = defaultdict(list)
    for i, u in enumerate(ids):
        by_stem[PurePosixPath(u).name].append(i)
    units_col = table["units"]
    found: dict[str, list[int]] = {}
    missing: dict[str, str] = {}
    rejects = None
    for name in names:
        rows = [by_id[name]] if name in by_id else by_stem.get(name, [])
        if len(rows) > 1:
            rows = [i for i in rows if splits[i] == split] or rows
        if len(rows) == 1:
            found[name] = units_col[rows[0]].as_py() or []
            continue
        if rows:
            missing[name] = f"ambiguous: {len(rows)} utterances named {name}"
            continue
        rejects = _rejected(units_dir) if rejects is None else rejects
        missing[name] = (
            f"rejected at tokenize time: {rejects[name]}"
            if name in rejects
            else "not in the units dataset"
        )
    return found, missing
