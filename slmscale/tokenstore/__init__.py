"""The token store: one shuffled, packed token file per units dataset (or mixture), K and seed.

Why: a trial used to stream its U_D unique tokens out of the Parquet shards into a pool of its
own, so every trial start decoded the whole corpus and every U_D wrote another copy.  Here the
training tokens live once, in a fixed order, and a trial's U_D unique tokens are the first U_D
tokens of that order: a file offset, ready in milliseconds, and smaller budgets nest in larger
ones (the nanoGPT `train.bin` / Megatron indexed-dataset shape).  Weights are the sources' sizes
by default (the union of the corpora, so every source runs out at the end together) or the
spec's explicit `weight`s; with explicit weights a source that runs out passes its share to the
others (`allocate`).

One module per concern (pure core: numpy, pyarrow and filelock; no Ray, no MLflow):

- `mixture`   token width, disk size, mixture weights, a prefix's share per source
- `location`  where stores live ($SLMSCALE_CACHE, beside the units, the temp fallback)
- `identity`  the store's key (the sources' content, not their paths) and the staleness check
- `reader`    the on-disk layout and the verified, memory-mapped `TokenStore`
- `build`     the order (seeded shuffle, weighted merge) and the build into place
- `ensure`    open, or build once under a file lock: what trials and `slmscale tokenize` call
"""

from slmscale.tokenstore.build import TEST_SPLIT, StoreSpaceError
from slmscale.tokenstore.ensure import build_store_for_units, ensure_store, open_store
from slmscale.tokenstore.identity import FORMAT, store_key
from slmscale.tokenstore.location import ENV_CACHE, STORES_DIR, default_store_dir
from slmscale.tokenstore.mixture import (
    allocate,
    holds_until,
    mixture_weights,
    store_bytes,
    token_dtype,
)
from slmscale.tokenstore.reader import (
    INDEX_FILE,
    TEST_FILE,
    TOKENS_FILE,
    UTT_SOURCE_FILE,
    UTTS_FILE,
    TokenStore,
)

__all__ = [
    "ENV_CACHE",
    "FORMAT",
    "INDEX_FILE",
    "STORES_DIR",
    "TEST_FILE",
    "TEST_SPLIT",
    "TOKENS_FILE",
    "UTTS_FILE",
    "UTT_SOURCE_FILE",
    "StoreSpaceError",
    "TokenStore",
    "allocate",
    "build_store_for_units",
    "default_store_dir",
    "ensure_store",
    "holds_until",
    "mixture_weights",
    "open_store",
    "store_bytes",
    "store_key",
    "token_dtype",
]
