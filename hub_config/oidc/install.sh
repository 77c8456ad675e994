#!/usr/bin/env bash
# Install the local OIDC provider's Node dependencies into a cache folder keyed by the
# lock file's hash, so `make demo` and `make test` share one install and a changed pin
# gets a fresh folder instead of a half-upgraded one.
#
# Usage: hub_config/oidc/install.sh        prints the node_modules parent folder on stdout
# Env:   KUBELAB_CACHE (default ~/.cache/kubelab)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${KUBELAB_CACHE:-$HOME/.cache/kubelab}"
key="$(sha256sum "$here/package-lock.json" | cut -c1-12)"
prefix="$cache/oidc-node/$key"

if [ -f "$prefix/.installed" ]; then
    echo "$prefix"
    exit 0
fi

command -v node >/dev/null || { echo "install.sh: node (>= 20) is required: apt-get install nodejs npm" >&2; exit 1; }
command -v npm >/dev/null || { echo "install.sh: npm is required: apt-get install npm" >&2; exit 1; }

# Install into a temporary folder and rename at the end, so an interrupted install never
# leaves a folder that looks complete.
tmp="$(mktemp -d "$cache/oidc-node/.tmp-XXXXXX" 2>/dev/null || { mkdir -p "$cache/oidc-node"; mktemp -d "$cache/oidc-node/.tmp-XXXXXX"; })"
trap 'rm -rf "$tmp"' EXIT
cp "$here/package.json" "$here/package-lock.json" "$tmp/"
(cd "$tmp" && npm ci --omit=dev --no-audit --no-fund --loglevel=error >&2)
touch "$tmp/.installed"
rm -rf "$prefix"
mv "$tmp" "$prefix"
trap - EXIT
echo "$prefix"
