#!/usr/bin/env bash
# Build kubelab's container images with docker or podman: `make images`, or
#   images/build.sh [hub|notebook-cpu|notebook-gpu|trainer ...]
#
# Environment:
#   CONTAINER_ENGINE   docker or podman (default: whichever is on PATH, docker first)
#   IMAGE_PREFIX       registry/namespace (default: ghcr.io/kubelab)
#   IMAGE_TAG          tag (default: the version in setup.py)
#
# The build context is a temporary copy of only what the Dockerfiles COPY (setup.py,
# pyproject.toml, the kubelab folders and images/), taken from git's view of the tree, so
# that .venv, caches and the devcluster's state never reach the engine.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
all_images=(hub notebook-cpu notebook-gpu trainer)
images=("$@")
if [ "${#images[@]}" -eq 0 ]; then images=("${all_images[@]}"); fi
for image in "${images[@]}"; do
    if [ ! -f "$root/images/$image/Dockerfile" ]; then
        echo "images/build.sh: unknown image '$image' (known: ${all_images[*]})" >&2
        exit 2
    fi
done

engine="${CONTAINER_ENGINE:-}"
if [ -z "$engine" ]; then
    for candidate in docker podman; do
        if command -v "$candidate" >/dev/null 2>&1; then engine="$candidate"; break; fi
    done
fi
if [ -z "$engine" ] || ! command -v "$engine" >/dev/null 2>&1; then
    echo "images/build.sh: no container engine available (neither docker nor podman is on PATH); install one, or set CONTAINER_ENGINE, to build the images" >&2
    exit 3
fi

prefix="${IMAGE_PREFIX:-ghcr.io/kubelab}"
tag="${IMAGE_TAG:-$(sed -n 's/^ *version="\([^"]*\)".*/\1/p' "$root/setup.py" | head -n 1)}"

context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
cd "$root"
git ls-files --cached --others --exclude-standard -- \
    setup.py pyproject.toml hub_config spawner jobs widgets devcluster images \
    | tar --create --files-from=- | tar --extract --directory="$context"

for image in "${images[@]}"; do
    echo "images/build.sh: building $prefix/$image:$tag with $engine"
    "$engine" build --file "$context/images/$image/Dockerfile" --tag "$prefix/$image:$tag" "$context"
done
