#!/bin/bash
# One operation at a time: a second volume-changing command fails at once with exit 9 and a message
# naming the running operation (pid, command, target, start time, progress); a holder without a
# vmcrypt record is named through /proc/locks; a lock left by a killed holder is taken over; two
# real conversions started together.
. "$(dirname "$0")/../lib.sh"
require_root
require_cmd flock mkfs.ext4 jq

pids=()
at_exit 'for p in "${pids[@]}"; do kill -9 "$p"; done; for p in "${pids[@]}"; do wait "$p"; done'

mkdir -p "$VMCRYPT_RUN_DIR" "$VMCRYPT_STATE_DIR"
LOCK=$VMCRYPT_RUN_DIR/operation.lock
head -c 64 /dev/urandom >"$WORK/key"; chmod 600 "$WORK/key"
truncate -s 64M "$WORK/img"; mkfs.ext4 -q -F "$WORK/img"

# start_holder COMMAND TARGET PERCENT: flock(1) holds the lock (and only it: -o keeps the fd out of
# the child) and a record names it, as a running vmcrypt would. Sets $hpid.
start_holder() {
	flock -o -x "$LOCK" sleep 600 &
	hpid=$!; pids+=("$hpid")
	for _ in $(seq 50); do grep -q " FLOCK .* $hpid " /proc/locks && break; sleep 0.1; done
	printf '{"pid":%d,"command":"%s","target":"%s","started":1800000000,"percent":%s}' \
		"$hpid" "$1" "$2" "$3" >"$VMCRYPT_RUN_DIR/operation.json"
}

start_holder encrypt /dev/sdz 37.5
expected="An operation is already in progress: 'vmcrypt encrypt /dev/sdz' (pid $hpid), started at 2027-01-15 08:00:00 UTC, 37.5% done."
for verb in encrypt decrypt resume; do
	start=$(date +%s%N)
	out=$("$VMCRYPT" $verb --key-file "$WORK/key" "$WORK/img" 2>&1); rc=$?
	ms=$((($(date +%s%N) - start) / 1000000))
	check_eq "$verb while locked exits 9 (EXIT_LOCKED)" 9 "$rc"
	check_contains "$verb names the running operation" "$expected" "$out"
	check "$verb fails at once (${ms} ms)" test "$ms" -lt 3000
done
check_contains "the busy message says what to do" "Please wait for it to complete" "$out"
out=$("$VMCRYPT" encrypt --json --key-file "$WORK/key" "$WORK/img" 2>/dev/null); rc=$?
check_eq "--json while locked exits 9 too" 9 "$rc"
check_contains "--json carries the message" "'vmcrypt encrypt /dev/sdz' (pid $hpid)" "$out"

out=$("$VMCRYPT" check -t Data 2>&1); rc=$?
check_eq "check fails while an operation runs" 10 "$rc"
check_contains "concurrent-operation names it" "FAIL  concurrent-operation  -  $expected" "$out"
out=$("$VMCRYPT" status 2>&1)
check_contains "status shows the running operation" "Operation: $expected" "$out"
check_eq "status --json names the holder" "$hpid encrypt /dev/sdz" \
	"$("$VMCRYPT" status --json | jq -r '.operation | "\(.pid) \(.command) \(.target)"')"
check_eq "the image was not touched" "" "$(blkid -p -s TYPE -o value "$WORK/img" | grep -v ext4)"

# The holder dies (kill -9): the kernel drops the flock, its record stays; nothing is busy any more.
kill -9 "$hpid"; wait "$hpid" 2>/dev/null
check "a killed holder leaves its record" test -e "$VMCRYPT_RUN_DIR/operation.json"
out=$("$VMCRYPT" status 2>&1)
check "status no longer reports an operation" test -z "$(grep '^Operation:' <<<"$out")"
out=$("$VMCRYPT" check -t Data 2>&1)
check_contains "check no longer reports a concurrent operation" "PASS  concurrent-operation" "$out"
"$VMCRYPT" encrypt --key-file "$WORK/key" "$WORK/img" >"$WORK/enc.log" 2>&1; rc=$?
check_eq "the stale lock is taken over: encrypt succeeds" 0 "$rc"
check "the lock record is gone after a clean release" test ! -e "$VMCRYPT_RUN_DIR/operation.json"
check_eq "the journal recorded the encrypt" "encrypt succeeded" \
	"$(jq -r --arg t "$WORK/img" '[.entries[] | select(.target==$t)] | last | "\(.command) \(.result)"' "$VMCRYPT_STATE_DIR/journal.json")"

# A holder without a vmcrypt record (an administrator's flock during maintenance).
flock -o -x "$LOCK" sleep 600 &
fpid=$!; pids+=("$fpid")
for _ in $(seq 50); do grep -q " FLOCK .* $fpid " /proc/locks && break; sleep 0.1; done
out=$("$VMCRYPT" decrypt --key-file "$WORK/key" "$WORK/img" 2>&1); rc=$?
check_eq "a foreign holder also gives exit 9" 9 "$rc"
check_contains "the foreign holder is named from /proc/locks" "is held by pid $fpid (flock), which is not a vmcrypt operation" "$out"
kill -9 "$fpid"; wait "$fpid" 2>/dev/null

# Two real operations at once: the second fails while the first converts.
truncate -s 1G "$WORK/big"; mkfs.ext4 -q -F "$WORK/big"
"$VMCRYPT" encrypt --key-file "$WORK/key" "$WORK/big" >"$WORK/big.log" 2>&1 &
epid=$!; pids+=("$epid")
for _ in $(seq 500); do
	[ -s "$VMCRYPT_RUN_DIR/operation.json" ] && break
	kill -0 "$epid" 2>/dev/null || break
	sleep 0.01
done
out=$("$VMCRYPT" decrypt --key-file "$WORK/key" "$WORK/img" 2>&1); rc=$?
running=$(kill -0 "$epid" 2>/dev/null && echo yes || echo no)
if [ "$rc" = 9 ] || [ "$running" = yes ]; then
	check_eq "a second real operation exits 9" 9 "$rc"
	check_contains "it names the first: command, target, pid" "'vmcrypt encrypt $WORK/big' (pid $epid), started at " "$out"
	check "it shows the first's progress" grep -Eq '([0-9.]+% done|progress unknown)\.' <<<"$out"
else
	skip "the first conversion finished before the second started"
fi
wait "$epid"; rc=$?
check_eq "the first operation completes" 0 "$rc"

finish
