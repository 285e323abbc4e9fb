#!/usr/bin/env bash
# Runs tools/chaos once per fault, each on a fresh local stack of its own (ports from 18080, so a
# `make run` on the default ports can stay up; the cluster-shaped stack for cluster- faults), and
# prints every report. Usage:
#   scripts/chaos.sh                      # every fault
#   scripts/chaos.sh redis-down kill-auth # these
# Reports (text and JSON) are written to .herald/chaos/.
set -euo pipefail
cd "$(dirname "$0")/.."

base=${CHAOS_BASE_PORT:-18080}
out=.herald/chaos
bin=$out/bin
mkdir -p "$bin"
go build -o "$bin/" ./services/admin ./services/auth ./services/push-route ./services/push-server ./tools/stack ./tools/chaos

faults=("$@")
if [ ${#faults[@]} -eq 0 ]; then
	mapfile -t faults < <("$bin/chaos" -list | awk '{print $1}')
fi

stack_pid=
cleanup() {
	if [ -n "$stack_pid" ]; then
		kill -TERM "$stack_pid" 2>/dev/null || true
		wait "$stack_pid" 2>/dev/null || true
	fi
}
trap cleanup EXIT

status=0
for f in "${faults[@]}"; do
	dir=$out/stack-$f
	rm -rf "$dir"
	shape=()
	# cluster- faults need the cluster-shaped stack (make run-cluster's).
	[[ $f == cluster-* ]] && shape=(-cluster)
	"$bin/stack" -bin "$bin" -dir "$dir" -base-port "$base" -log-level warn "${shape[@]}" >"$out/$f.stack.log" 2>&1 &
	stack_pid=$!
	# stack.json appears once every service is ready.
	for _ in $(seq 1 180); do
		[ -f "$dir/stack.json" ] && break
		kill -0 "$stack_pid" 2>/dev/null || { echo "chaos: the stack for $f exited, see $out/$f.stack.log" >&2; exit 1; }
		sleep 1
	done
	echo "== $f"
	if ! "$bin/chaos" -stack "$dir/stack.json" -fault "$f" -json "$out/$f.json" ${CHAOS_ARGS:-} | tee "$out/$f.txt"; then
		status=1
	fi
	cleanup
	stack_pid=
done
exit $status
