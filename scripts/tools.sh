#!/usr/bin/env bash
# tools.sh: the pinned tools that the deployment checks need, installed once into
# ~/.cache/reversald/<tool>-<version>/ (outside the repo) and reused from there.
#
#   scripts/tools.sh path helm|promtool   install if missing, print the binary's path
#   scripts/tools.sh install              install every tool that is missing
#   scripts/tools.sh docker-compose       install Debian's docker-compose (apt) if missing
#
# helm and promtool are built from source with `go install` at pinned versions (the Go module
# proxy is the one registry they come from). docker-compose is Debian's package: its
# `docker-compose config -q` checks docker-compose.yml without a Docker engine.
set -euo pipefail

HELM_VERSION=v3.22.0
PROMTOOL_VERSION=v0.316.0
# Debian bookworm's docker-compose; another version is refused rather than trusted silently.
DOCKER_COMPOSE_VERSION=1.29.2

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

tool_path() {
  case "$1" in
    helm) go_tool helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION" ;;
    promtool) go_tool promtool github.com/prometheus/prometheus/cmd/promtool "$PROMTOOL_VERSION" ;;
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

case "${1:-}" in
  path) [ $# -eq 2 ] || die "usage: tools.sh path helm|promtool"; tool_path "$2" ;;
  install) tool_path helm >/dev/null; tool_path promtool >/dev/null; docker_compose >/dev/null ;;
  docker-compose) docker_compose ;;
  *) die "usage: tools.sh path helm|promtool | install | docker-compose" ;;
esac
