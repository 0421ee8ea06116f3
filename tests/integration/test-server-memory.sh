#!/bin/bash
# vmcryptd's memory (issue 7, item 5): all of it locked against swap (mlockall; skipped, with a log
# line, in AddressSanitizer builds), and no copy of a bearer credential or secret value left in its
# memory after the requests that carried them ended. ASan builds (the normal suite) check
# libmicrohttpd's connection memory only: ASan keeps freed memory unwiped in quarantine and ignores
# M_PERTURB. Run with VMCRYPT_BUILD=build for the locked-memory and whole-process checks.
. "$(dirname "$0")/server-lib.sh"
require_cmd python3
[ "$(id -u)" = 0 ] || skip_all "needs root (reads /proc/PID/mem of a non-dumpable process)"
TRICKLE=$TESTS_DIR/integration/trickle.py
MEMSCAN=$TESTS_DIR/integration/memscan.py

check "start" start_server
asan=false
grep -q "Built with AddressSanitizer: not locking memory" "$WORK/vmcryptd.log" && asan=true
locked=$(awk '/^VmLck:/ {print $2}' "/proc/$SERVER_PID/status")
if $asan; then
	# ASan reserves terabytes of shadow memory: mlockall() is skipped, and the log says so.
	ok "AddressSanitizer build: mlockall() skipped with a log line"
	skip "VmLck > 0 needs a build without AddressSanitizer (VMCRYPT_BUILD=build)"
else
	check "all memory locked (VmLck ${locked:-?} kB)" test "${locked:-0}" -gt 1024
fi

auth_file admin "$DATA/admin.token"
check "a VM" new_vm vm1
admin key create kek1 >/dev/null
admin vm encryption enable --vm vm1 --volume-type All --kek kek1 >/dev/null
value=$(b64 "$(head -c 48 /dev/urandom | base64 -w 0)")
api PUT /v1/vm/secrets/os "$WORK/vm1.hdr" "{\"value\":\"$value\"}"
check_eq "secret stored" 201 "$STATUS"
api GET /v1/vm/secrets/os "$WORK/vm1.hdr"
check_eq "secret fetched" 200 "$STATUS"
secret_pattern "$WORK/patterns" "$(cat "$WORK/vm1.cred")"
secret_pattern "$WORK/patterns" "$value"
secret_pattern "$WORK/patterns" "$(cat "$DATA/admin.token")"
# Requests that die after their headers: libmicrohttpd destroys the connection's memory without
# resetting it. Its header values are NUL-terminated in place, which tells its copy from others.
for i in 1 2 3; do
	python3 "$TRICKLE" abort --connect "$ADDR" --source 127.0.0.1 --auth-file "$WORK/vm1.cred"
done
api GET /v1/vm/goal "$WORK/vm1.hdr"
check_eq "the VM is still answered" 200 "$STATUS"
sleep 0.5
check "no copy of the credential left in libmicrohttpd's connection memory" \
	python3 "$MEMSCAN" "$SERVER_PID" "$WORK/patterns" --followed-by 0
if $asan; then
	skip "no credential, admin token or secret value anywhere in memory: needs a build without ASan"
else
	check "no credential, admin token or secret value anywhere in vmcryptd's memory" \
		python3 "$MEMSCAN" "$SERVER_PID" "$WORK/patterns"
fi
stop_server TERM
check_eq "clean stop" 0 "$SERVER_RC"
finish
