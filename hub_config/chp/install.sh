#!/usr/bin/env bash
# Install the npm configurable-http-proxy (pinned in package-lock.json) into a cache folder keyed
# by the lock file's hash, like hub_config/oidc/install.sh: `make demo` and `make test` share one
# install, and a changed pin gets a fresh folder instead of a half-upgraded one.
#
# Usage: hub_config/chp/install.sh     prints the install prefix on stdout; the proxy is
#                                      <prefix>/node_modules/.bin/configurable-http-proxy
# Env:   KUBELAB_CACHE (default ~/.cache/kubelab)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="${KUBELAB_CACHE:-$HOME/.cache/kubelab}/chp-node"
prefix="$root/$(sha256sum "$here/package-lock.json" | cut -c1-12)"

if [ ! -f "$prefix/.installed" ]; then
    for tool in node npm; do
        command -v "$tool" >/dev/null || { echo "install.sh: $tool (node >= 20) is required: apt-get install nodejs npm" >&2; exit 1; }
    done
    mkdir -p "$root"
    # npm ci into a temporary folder, renamed at the end: an interrupted install never looks complete.
    tmp="$(mktemp -d "$root/.tmp-XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    cp "$here/package.json" "$here/package-lock.json" "$tmp/"
    (cd "$tmp" && npm ci --omit=dev --no-audit --no-fund --loglevel=error >&2)
    "$tmp/node_modules/.bin/configurable-http-proxy" --version >/dev/null
    touch "$tmp/.installed"
    rm -rf "$prefix"
    mv "$tmp" "$prefix"
    trap - EXIT
fi
echo "$prefix"
