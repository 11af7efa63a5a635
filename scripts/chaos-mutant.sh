#!/usr/bin/env bash
# chaos-mutant.sh: proof that the chaos suite can fail. It copies this tree to a temporary
# directory, applies a patch that reintroduces a known bug (testdata/chaos/*.patch; default
# mutant-blind-resend.patch: a reclaimed attempt whose cancel answer was never written sends
# the cancel again instead of querying), builds that daemon, and runs the chaos suite against
# it with CHAOS_EXPECT=red: the run passes only if a check fails. The tree itself is never
# patched. Settings: MUTANT=<patch file>, and the CHAOS_* variables of make chaos.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PATCH=${MUTANT:-$REPO/testdata/chaos/mutant-blind-resend.patch}
[ -f "$PATCH" ] || { echo "chaos-mutant: no patch $PATCH" >&2; exit 1; }
tmp=$(mktemp -d /tmp/reversald-mutant-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
# The tracked files as they are in the work tree (uncommitted changes included).
(cd "$REPO" && git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$tmp")
(cd "$tmp" && patch -p1 --no-backup-if-mismatch <"$PATCH" >/dev/null) || { echo "chaos-mutant: $PATCH does not apply" >&2; exit 1; }
echo "chaos-mutant: building the daemon with $(basename "$PATCH") applied"
(cd "$tmp" && CGO_ENABLED=0 go build -o "$tmp/reversald-mutant" ./cmd/reversald)
cd "$REPO"
CHAOS_BIN="$tmp/reversald-mutant" CHAOS_EXPECT=red \
  go test -run='^$' -bench='^BenchmarkChaos$' -benchtime=1x -timeout="${CHAOS_TIMEOUT:-60m}" ./cmd/reversald
