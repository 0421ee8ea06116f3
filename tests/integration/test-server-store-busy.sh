#!/bin/bash
# A store error other than "not found" is reported as what it is: with every WAL read lock of
# vmcryptd.db held by another process, reads fail busy, and the answer is 503 "store unavailable",
# not a 404-style "no VM named ..." (issue 8). The four requests run at once: each waits out
# SQLite's ~10 s of WAL retries.
. "$(dirname "$0")/server-lib.sh"
require_cmd python3

# A thread per connection: in a pool, a connection queued behind a blocked handler would miss
# its header deadline.
check "server starts" start_server --threads 0
check "new_vm web1" new_vm web1
check "key create kek1" admin key create kek1
auth_file admin "$DATA/admin.token"

# SQLite's WAL read-mark locks are bytes 123-127 of the -shm file (sqlite.org/walformat.html,
# "2.3.1 How the locks work"); holding them all exclusively keeps every reader out.
python3 - "$DATA/vmcryptd.db-shm" "$WORK/locked" <<'PY' &
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 5, 123)
open(sys.argv[2], "w").close()
time.sleep(40)
PY
LOCKER=$!
at_exit "kill $LOCKER"
for ((i = 0; i < 100; i++)); do [ -e "$WORK/locked" ] && break; sleep 0.05; done
check "the read locks are held" test -e "$WORK/locked"

callers=()
busy_call() { # NAME PATH AUTH: runs api in a subshell, leaves "STATUS BODY" in $WORK/NAME.out
	# Each in its own WORK: api keeps the response in $WORK/resp.
	(mkdir "$WORK/$1" && WORK=$WORK/$1 && api GET "$2" "$3" && printf '%s %s\n' "$STATUS" "$BODY" >"$WORK.out") &
	callers+=($!)
}
busy_call vm-show /v1/admin/vms/web1 "$WORK/admin.hdr"
busy_call encryption-show /v1/admin/vms/web1/encryption "$WORK/admin.hdr"
busy_call key-show /v1/admin/keys/kek1 "$WORK/admin.hdr"
busy_call goal /v1/vm/goal "$WORK/web1.hdr"
wait "${callers[@]}"
kill "$LOCKER" 2>/dev/null

for n in vm-show encryption-show key-show goal; do
	out=$(cat "$WORK/$n.out" 2>/dev/null)
	check_eq "$n: 503 while the store is busy" 503 "${out%% *}"
	check_contains "$n: says the store is unavailable" '"message":"store unavailable"' "$out"
	check "$n: does not claim the object is missing" not_contains "no " "${out#* }"
done

api GET /v1/admin/vms/web1 "$WORK/admin.hdr"
check_eq "after the locks go: vm show 200" 200 "$STATUS"
api GET /v1/admin/vms/nosuch "$WORK/admin.hdr"
check_eq "a missing VM is still 404" 404 "$STATUS"
check_contains "a missing VM is still named" "no VM named 'nosuch'" "$BODY"
stop_server
finish
