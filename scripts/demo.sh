#!/usr/bin/env bash
# demo.sh: reversald end to end on the dev stack and the QFPay sandbox (see internal/demo).
# `make demo` runs it with .stack/env sourced, after `make up`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec go run ./internal/demo
