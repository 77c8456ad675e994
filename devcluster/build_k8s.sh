#!/usr/bin/env bash
# Build kube-apiserver, kube-controller-manager and kube-scheduler v1.20.2 from
# Debian bookworm's `kubernetes` source package and install them into $1.
# Why from source: no registry but Debian/PyPI/npm is reachable, and Debian
# ships the full upstream tree with vendor/ as a source package only.
# One progress line per step, prefixed "[build]".
set -euo pipefail
dest=${1:?usage: build_k8s.sh DEST_DIR}
work=${KUBELAB_BUILD_DIR:-$(dirname "$dest")/build-src}
step() { echo "[build] $*"; }

export DEBIAN_FRONTEND=noninteractive
# apt-get source needs deb-src twins of the configured sources (deb822 or classic format).
if [ ! -f /etc/apt/sources.list.d/kubelab-deb-src.sources ] && [ ! -f /etc/apt/sources.list.d/kubelab-deb-src.list ]; then
  step "adding deb-src entries next to the existing apt sources"
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
      > /etc/apt/sources.list.d/kubelab-deb-src.sources
  elif grep -qs '^deb ' /etc/apt/sources.list; then
    sed -n 's/^deb /deb-src /p' /etc/apt/sources.list > /etc/apt/sources.list.d/kubelab-deb-src.list
  else
    echo "[build] no apt sources found to derive deb-src entries from" >&2
    exit 1
  fi
fi
step "apt-get update"
apt-get update -qq >/dev/null
step "installing build tools (golang-go, rsync, dpkg-dev, reflect2 fix packages)"
apt-get install -y -qq --no-install-recommends golang-go rsync dpkg-dev make \
  golang-github-modern-go-reflect2-dev golang-github-json-iterator-go-dev >/dev/null

mkdir -p "$work"
cd "$work"
if [ ! -d src ]; then
  step "downloading Debian source package kubernetes"
  rm -rf dl && mkdir dl && (cd dl && apt-get source --download-only -qq kubernetes >/dev/null)
  step "unpacking source"
  dpkg-source -x --no-check dl/kubernetes_*.dsc src-tmp >/dev/null
  mv src-tmp src
fi
cd src

# Required fix: vendored reflect2 v1.0.1 crashes the apiserver under Go >= 1.18
# (fatal error: fault in mapiterinit) on the first custom resource create.
step "replacing vendored reflect2 and json-iterator with Debian's fixed copies"
for pkg in github.com/modern-go/reflect2 github.com/json-iterator/go; do
  rm -rf "vendor/$pkg"
  mkdir -p "vendor/$pkg"
  rsync -a --exclude='*_test.go' --exclude='.*' "/usr/share/gocode/src/$pkg/" "vendor/$pkg/"
done

step "compiling (about 7 minutes cold on 2 cores)"
export GOPROXY=off CGO_ENABLED=0 GOFLAGS=-mod=vendor GO111MODULE=on
export GOCACHE="$work/gocache" GOPATH="$work/gopath"
make WHAT="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler" GOLDFLAGS="-s -w" >"$work/make.log" 2>&1 \
  || { tail -30 "$work/make.log"; exit 1; }

mkdir -p "$dest.tmp"
for b in kube-apiserver kube-controller-manager kube-scheduler; do
  cp "$(find _output -type f -name "$b" | head -1)" "$dest.tmp/$b"
done
rm -rf "$dest" && mv "$dest.tmp" "$dest"
step "installed binaries into $dest"
