#!/usr/bin/env bash
# demo.sh: end-to-end demo of reversald against the dev stack and the QFPay sandbox.
# Placeholder: the lead wires the real demo here. `make demo` runs it with .stack/env sourced.
set -euo pipefail
echo "demo: not yet wired" >&2
exit 1
