#!/usr/bin/env bash
# Run HERE (the build machine) before a device call: the Python 3.12 wheels the GPU machine lacks go to .whl/, a copy
# of ../shared/data to .device-data/ (both ignored by git; name them in the device call's `carry`). See README.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
rm -rf .whl .device-data
mkdir -p .whl
# Pure-Python packages dovlib imports lazily that the GPU image does not hold (its torch, torchvision, numpy, scipy,
# pandas, seaborn, scikit-image, onnxruntime are used as they are there).
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux2014_x86_64 -d .whl lpips==0.1.4 pytorch-msssim==1.0.0
cp -r ../shared/data .device-data
du -sh .whl .device-data
