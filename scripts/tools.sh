#!/usr/bin/env bash
# tools.sh: the pinned tools that the deployment checks need, installed once into
# ~/.cache/reversald/<tool>-<version>/ (outside the repo) and reused from there.
#
#   scripts/tools.sh path helm|promtool   install if missing, print the binary's path
#   scripts/tools.sh install              install every tool that is missing
#   scripts/tools.sh docker-compose       install Debian's docker-compose (apt) if missing
#   scripts/tools.sh chromium             install Debian's chromium (apt) if missing, print its path
#
# helm is built from source with `go install` at a pinned version (the Go module proxy is the
# one registry it comes from). promtool is the binary of Debian bookworm's prometheus package at
# a pinned version: the .deb is downloaded (apt-get download, verified by apt against Debian's
# signed index) and only /usr/bin/promtool is extracted from it; nothing is installed, no
# service, no dependency. (Building promtool with go install compiles all of Prometheus'
# service discovery and cloud SDKs: over an hour on a loaded 2-core machine.) docker-compose is
# Debian's package: its `docker-compose config -q` checks docker-compose.yml without a Docker
# engine.
set -euo pipefail

HELM_VERSION=v3.22.0
# Debian bookworm's prometheus package; promtool --version must then say PROMTOOL_VERSION.
PROMTOOL_DEB_VERSION=2.42.0+ds-5+deb12u1
PROMTOOL_VERSION=2.42.0
# Debian bookworm's docker-compose; another version is refused rather than trusted silently.
DOCKER_COMPOSE_VERSION=1.29.2
# Debian's chromium, for the console's browser tests. Debian replaces a chromium build with each
# security update and drops the old one from its archive, so an exact pin would soon name a
# package apt can no longer fetch: the current build is installed and a minimum major version is
# required (the test prints the version it ran with). Raise it when a feature the tests use
# needs a newer one.
CHROMIUM_MIN_MAJOR=120

CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/reversald"

log() { printf 'tools: %s\n' "$*" >&2; }
die() { printf 'tools: ERROR: %s\n' "$*" >&2; exit 1; }

# go_tool NAME PACKAGE VERSION: the path of NAME built from PACKAGE@VERSION, built when missing.
go_tool() {
  local name=$1 pkg=$2 version=$3
  local dir="$CACHE_ROOT/$name-$version"
  if [ ! -x "$dir/$name" ]; then
    command -v go >/dev/null || die "go is not installed: $name $version is built with go install"
    log "installing $name $version into $dir (go install $pkg@$version; the first time takes minutes)"
    mkdir -p "$dir"
    # A temporary GOBIN, then a rename: an interrupted build never leaves a half-written binary
    # where the next run would take it as installed.
    local tmp
    tmp=$(mktemp -d "$dir/.install-XXXXXX")
    if ! GOBIN="$tmp" GOFLAGS=-mod=mod go install "$pkg@$version" >&2; then
      rm -rf "$tmp"
      die "go install $pkg@$version failed"
    fi
    mv "$tmp/$name" "$dir/$name"
    rm -rf "$tmp"
  fi
  echo "$dir/$name"
}

# promtool_path: the path of promtool PROMTOOL_VERSION, extracted from Debian's prometheus
# package PROMTOOL_DEB_VERSION when missing.
promtool_path() {
  local dir="$CACHE_ROOT/promtool-$PROMTOOL_VERSION"
  if [ ! -x "$dir/promtool" ]; then
    command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null ||
      die "promtool $PROMTOOL_VERSION comes from Debian's prometheus package $PROMTOOL_DEB_VERSION (apt-get download), and this machine has no apt-get/dpkg-deb: put promtool $PROMTOOL_VERSION at $dir/promtool by hand"
    log "installing promtool $PROMTOOL_VERSION into $dir (promtool alone from Debian's prometheus $PROMTOOL_DEB_VERSION: apt-get download, dpkg-deb -x; nothing installed)"
    mkdir -p "$dir"
    # A temporary directory, then a rename: an interrupted install never leaves a half-written
    # binary where the next run would take it as installed.
    local tmp deb
    tmp=$(mktemp -d "$dir/.install-XXXXXX")
    # apt-get download runs as the caller (no _apt sandbox: the cache may be in root's home).
    if ! (cd "$tmp" && apt-get download -q -o APT::Sandbox::User="$(id -un)" "prometheus=$PROMTOOL_DEB_VERSION" >&2); then
      # A fresh machine's package lists may be missing or old: refresh them once and retry.
      local sudo=""
      [ "$(id -u)" -eq 0 ] || sudo=sudo
      log "apt-get download failed; apt-get update, then again"
      $sudo apt-get update -qq >&2 || true
      if ! (cd "$tmp" && apt-get download -q -o APT::Sandbox::User="$(id -un)" "prometheus=$PROMTOOL_DEB_VERSION" >&2); then
        rm -rf "$tmp"
        die "apt-get download prometheus=$PROMTOOL_DEB_VERSION failed: promtool $PROMTOOL_VERSION comes from that Debian bookworm package (apt-cache policy prometheus lists the versions apt offers; a new one means updating PROMTOOL_DEB_VERSION and PROMTOOL_VERSION in scripts/tools.sh after make deploy-check passes with it)"
      fi
    fi
    deb=$(find "$tmp" -maxdepth 1 -name 'prometheus_*.deb' -print -quit)
    if [ -z "$deb" ] || [ "$(dpkg-deb -f "$deb" Version)" != "$PROMTOOL_DEB_VERSION" ]; then
      rm -rf "$tmp"
      die "apt-get download did not give prometheus $PROMTOOL_DEB_VERSION"
    fi
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" ./usr/bin/promtool
    local v
    v=$("$tmp/usr/bin/promtool" --version 2>&1 | sed -n 's/^promtool, version \([^ +]*\).*/\1/p')
    if [ "$v" != "$PROMTOOL_VERSION" ]; then
      rm -rf "$tmp"
      die "the promtool of prometheus $PROMTOOL_DEB_VERSION says version '$v', want $PROMTOOL_VERSION"
    fi
    mv "$tmp/usr/bin/promtool" "$dir/promtool"
    rm -rf "$tmp"
  fi
  echo "$dir/promtool"
}

tool_path() {
  case "$1" in
    helm) go_tool helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION" ;;
    promtool) promtool_path ;;
    *) die "unknown tool $1 (helm, promtool)" ;;
  esac
}

docker_compose() {
  if ! command -v docker-compose >/dev/null; then
    log "installing Debian's docker-compose (apt)"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
  fi
  local v
  v=$(docker-compose version --short 2>/dev/null || true)
  [ "$v" = "$DOCKER_COMPOSE_VERSION" ] ||
    die "docker-compose $v found, this project checks with $DOCKER_COMPOSE_VERSION (Debian bookworm's): install that one, or update DOCKER_COMPOSE_VERSION in scripts/tools.sh after checking docker-compose.yml with the new one"
  command -v docker-compose
}

chromium_browser() {
  if ! command -v chromium >/dev/null; then
    log "installing Debian's chromium (apt; the console's browser tests drive it headless)"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null
  fi
  local v major
  v=$(chromium --version 2>/dev/null | sed -n 's/^Chromium \([0-9.]*\).*/\1/p')
  major=${v%%.*}
  [ -n "$major" ] && [ "$major" -ge "$CHROMIUM_MIN_MAJOR" ] ||
    die "chromium '$v' found, the console's browser tests need major $CHROMIUM_MIN_MAJOR or later: apt-get install chromium (Debian's current build)"
  command -v chromium
}

case "${1:-}" in
  path) [ $# -eq 2 ] || die "usage: tools.sh path helm|promtool"; tool_path "$2" ;;
  install) tool_path helm >/dev/null; tool_path promtool >/dev/null; docker_compose >/dev/null; chromium_browser >/dev/null ;;
  docker-compose) docker_compose ;;
  chromium) chromium_browser ;;
  *) die "usage: tools.sh path helm|promtool | install | docker-compose | chromium" ;;
esac
