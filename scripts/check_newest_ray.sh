#!/usr/bin/env bash
# Would the grid's Ray edge work with the newest Ray on the package index?  (issue 25)
#
# Installs that Ray (with what it needs) into a scratch folder placed first on PYTHONPATH, so this
# checkout's virtualenv is left as it is, then runs the checks that name Ray's API: every Ray name
# slmscale spells is public and exists (tests/test_ray_public_api.py), the typed trial travels
# through Tune and Train, and the smoke grid trains on a local Ray (tests/test_grid_ray.py).
# Usage, from the repository root with the project's virtualenv active:
#   scripts/check_newest_ray.sh            # the newest Ray
#   scripts/check_newest_ray.sh 2.61.0     # a given one
set -euo pipefail
cd "$(dirname "$0")/.."
version="${1:-$(pip index versions ray 2>/dev/null | sed -n 's/^ray (\(.*\))$/\1/p')}"
[ -n "$version" ] || { echo "check_newest_ray: could not ask the package index for ray's versions" >&2; exit 2; }
pinned=$(python -c "import ray; print(ray.__version__)")
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
echo "ray: pinned $pinned, checking $version (in $scratch)"
pip install -q --target "$scratch" "ray[default,train,tune,data]==$version"
export PYTHONPATH="$scratch${PYTHONPATH:+:$PYTHONPATH}"
python -c "import ray; assert ray.__version__ == '$version', ray.__version__; print('using ray', ray.__version__)"
python -m pytest -q -p no:cacheprovider tests/test_ray_public_api.py tests/test_grid_ray.py
