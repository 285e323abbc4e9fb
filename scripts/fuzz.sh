#!/usr/bin/env bash
# Runs every fuzz target for a while: scripts/fuzz.sh [duration per target, default 30s].
# make test runs it briefly (each target's seed corpus also runs as an ordinary test); make fuzz longer.
# A failing input is written under the package's testdata/fuzz/ and should be committed with the fix.
set -euo pipefail
cd "$(dirname "$0")/.."
time=${1:-30s}
targets=(
	"./services/push-server/internal/wsconn FuzzFrames"
	"./pkg/client FuzzDispatch"
	"./pkg/token FuzzVerify"
	"./services/push-route FuzzPushRequest"
	"./services/auth FuzzTokenRequest"
)
for t in "${targets[@]}"; do
	read -r pkg name <<<"$t"
	echo "fuzz $name ($pkg) for $time"
	go test -run '^$' -fuzz "^${name}\$" -fuzztime "$time" "$pkg"
done
