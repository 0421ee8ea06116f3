#!/bin/bash
# A store error other than "not found" is reported as what it is: with every WAL read lock of
# vmcryptd.db held by another process (on PostgreSQL: the tables locked), reads fail busy, and
# the answer is 503 "store unavailable", not a 404-style "no VM named ..." (issue 8). The four
# requests run at once: each waits out SQLite's ~10 s of WAL retries (PostgreSQL's lock_timeout).
. "$(dirname "$0")/server-lib.sh"
require_cmd python3

# A thread per connection: in a pool, a connection queued behind a blocked handler would miss
# its header deadline.
check "server starts" start_server --threads 0
check "new_vm web1" new_vm web1
check "key create kek1" admin key create kek1
auth_file admin "$DATA/admin.token"

if [ "$STORE_KIND" = postgresql ]; then
	# PostgreSQL: an ACCESS EXCLUSIVE lock on the tables keeps every reader waiting, and
	# vmcryptd's lock_timeout (10 s, SQLite's busy timeout) makes that -EBUSY.
	pg_psql "$PG_DB" >/dev/null 2>&1 <<SQL &
SET application_name = 'locker';
BEGIN;
LOCK TABLE vms, settings, keys IN ACCESS EXCLUSIVE MODE;
\! touch $WORK/locked
SELECT pg_sleep(40);
SQL
	LOCKER=$!
	unlock() { pg_psql postgres -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'locker'" >/dev/null; }
else
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
	unlock() { :; }
fi
at_exit "kill $LOCKER"
at_exit unlock
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
unlock
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
