#!/usr/bin/env bash
# The packages benchmarks/gpu.sh needs that a GPU machine without network access lacks, as wheels
# for its Python 3.12 in .whl/ (git-ignored through .git/info/exclude): Hydra (hydra-core,
# omegaconf, antlr4's runtime, a source package built into a wheel here) and DeepXDE with
# scikit-optimize and pyaml. Run it where pip reaches a package index; gpu.sh installs the
# wheels into /tmp/site when .whl/ is there (carry .whl to the GPU machine).
#
#   bash benchmarks/gpu_wheels.sh
set -eu
cd "$(dirname "$0")/.."
exclude=$(git rev-parse --git-path info/exclude)  # also in a worktree, where .git is a file
grep -qx '/.whl/' "$exclude" 2>/dev/null || { mkdir -p "$(dirname "$exclude")"; echo '/.whl/' >>"$exclude"; }
mkdir -p .whl
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" \
    -d .whl hydra-core==1.3.2 omegaconf==2.3.0 deepxde==1.15.0 scikit-optimize==0.10.2 pyaml
python3 -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3
ls .whl
