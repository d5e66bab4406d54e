#!/usr/bin/env bash
# Wheels for benchmarks/gpu.py on the lent GPU machines (Python 3.12, x86-64, no network there):
# what the library imports on those paths and their image lacks (it has numpy, scipy, pandas,
# pyarrow, xarray, numba, scikit-image, scikit-learn, CuPy). Written to .whl/ (git-ignored);
# carry it with the run and install it there with
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
rm -rf .whl && mkdir .whl
# the versions installed here, so the machine runs what the tests ran
pins=$(python3 - <<'PY'
from importlib.metadata import version, PackageNotFoundError
names = ("astropy pyerfa astropy-iers-data astropy-healpix reproject pyavm dask distributed "
         "tornado tblib zict locket partd array-api-compat dask-image numcodecs crc32c lz4 "
         "importlib-metadata lazy-loader regions").split()
out = []
for n in names:
    try:
        out.append(f"{n}=={version(n)}")
    except PackageNotFoundError:
        out.append(n)
print(" ".join(out))
PY
)
# shellcheck disable=SC2086
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 --platform any -d .whl $pins
du -sh .whl
