#!/bin/bash
# vmcryptd under slow clients (issue 7, item 2): 1000 connections trickling a TLS ClientHello from
# 127.0.0.1 while a client on 127.0.0.2 still gets answers; the per-address limit refuses the
# excess; the header and request deadlines close clients that trickle headers or a body, in both
# threading models; a keep-alive client that keeps answering is not cut, nor a slow handler; the
# descriptor limit is raised for --max-conns, and --threads 0 serves descriptors above 1024. All on loopback, bounded to about 30 seconds.
. "$(dirname "$0")/server-lib.sh"
require_cmd python3
TRICKLE=$TESTS_DIR/integration/trickle.py
# The attacking script holds 1000 sockets; vmcryptd raises its own limit (checked below).
ulimit -S -n 4096 2>/dev/null
[ "$(ulimit -S -n)" -ge 4096 ] || skip_all "needs 4096 file descriptors (ulimit -n)"

# admin_from SOURCE: GET /v1/admin/vms from source address SOURCE (5 s at most); sets STATUS.
admin_from() {
	STATUS=$(curl -sS --interface "$1" --max-time 5 --cacert "$DATA/tls.crt" -H "@$WORK/admin.hdr" -o /dev/null \
		-w '%{http_code}' "https://$ADDR/v1/admin/vms" 2>>"$WORK/curl.err")
}
# json_get FILE KEY: a top-level number from a trickle.py summary.
json_get() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }
# closes_between FILE LOW HIGH: every close time in FILE lies in [LOW, HIGH] seconds, and none is left open.
closes_between() {
	python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); t=s["close_times"]
sys.exit(not (t and s["still_open"] == 0 and min(t) >= float(sys.argv[2]) and max(t) <= float(sys.argv[3])))' "$@"
}
attack() { python3 "$TRICKLE" attack --connect "$ADDR" "$@"; }

# Defaults (64 connections per address, headers within 10 s), started with a soft descriptor
# limit of 1024 as under systemd: vmcryptd must raise it for its 1000 connections.
ulimit -S -n 1024
check "start with the defaults" start_server
ulimit -S -n 4096
auth_file admin "$DATA/admin.token"
soft=$(awk '/^Max open files/ {print $4}' "/proc/$SERVER_PID/limits")
check "vmcryptd raised its soft descriptor limit for 1000 connections ($soft)" test "$soft" -ge 1256

attack --source 127.0.0.1 --count 1000 --duration 13 --refused-within 2 --ready "$WORK/ready" --out "$WORK/hello.json" &
attacker=$!
for ((i = 0; i < 100; i++)); do [ -e "$WORK/ready" ] && break; sleep 0.1; done
sleep 1
answered=0
for i in 1 2 3 4 5; do
	admin_from 127.0.0.2
	[ "$STATUS" = 200 ] && answered=$((answered + 1))
done
check_eq "127.0.0.2 is answered while 1000 connections from 127.0.0.1 trickle" 5 "$answered"
admin_from 127.0.0.1
check "127.0.0.1 itself is over its limit: refused" test "$STATUS" != 200
wait "$attacker"
check_eq "the per-address limit refused all but 64 of 127.0.0.1's connections" 936 "$(json_get "$WORK/hello.json" refused)"
check "the 64 admitted ClientHello tricklers were closed at the 10 s header deadline" \
	closes_between "$WORK/hello.json" 9.5 12
admin_from 127.0.0.1
check_eq "127.0.0.1 is answered again once its tricklers are gone" 200 "$STATUS"
stop_server TERM
check_eq "clean stop after the attack" 0 "$SERVER_RC"

# Short deadlines, so headers and bodies trickled one byte every 0.5 s (which the 20 s idle
# timeout never catches) are cut by the header deadline (3 s) and the request deadline (5 s).
for threads in 2 0; do
	check "start with --threads $threads, 3 s header and 5 s request deadlines" \
		start_server --threads "$threads" --header-timeout 3 --request-timeout 5 --idle-timeout 20
	attack --source 127.0.0.3 --phase headers --count 5 --interval 0.5 --duration 7 --out "$WORK/headers.json" &
	a1=$!
	attack --source 127.0.0.4 --phase body --count 5 --interval 0.5 --duration 7 --out "$WORK/body.json" &
	a2=$!
	python3 "$TRICKLE" keepalive --connect "$ADDR" --source 127.0.0.5 --path /v1/admin/vms \
		--auth-file "$DATA/admin.token" --ca-file "$DATA/tls.crt" --count 4 --interval 2 --out "$WORK/keepalive.json"
	wait "$a1" "$a2"
	check "threads $threads: trickled headers closed at the header deadline" closes_between "$WORK/headers.json" 2.5 4.5
	check "threads $threads: a trickled body closed at the request deadline" closes_between "$WORK/body.json" 4.5 6.5
	check_eq "threads $threads: a keep-alive client answered every 2 s for 6 s is not cut" 4 \
		"$(json_get "$WORK/keepalive.json" answered)"
	stop_server TERM
	check_eq "threads $threads: clean stop" 0 "$SERVER_RC"
done

# A thread per connection, with every socket numbered above 1024 (vmcryptd inherits 1100 open
# descriptors): libmicrohttpd must poll() them, as select() cannot take descriptors >= FD_SETSIZE.
fds=()
for ((i = 0; i < 1100; i++)); do
	exec {fd}</dev/null
	fds+=("$fd")
done
check "start with --threads 0 and 1100 descriptors in use" start_server --threads 0
for fd in "${fds[@]}"; do exec {fd}<&-; done
admin_from 127.0.0.2
check_eq "--threads 0 answers on a descriptor above 1024" 200 "$STATUS"
stop_server TERM

# Time in a handler is vmcryptd's, not the client's: an RSA-4096 key takes 1 to 2 s to generate
# under ASan, past a 1 s request deadline, and must still be answered.
check "start with 1 s deadlines" start_server --header-timeout 1 --request-timeout 1
slow=0 failed=0
for i in 1 2 3; do
	t0=$(date +%s%N)
	admin key create "big$i" --size 4096 >/dev/null 2>>"$WORK/keys.err" || failed=$((failed + 1))
	[ $(($(date +%s%N) - t0)) -gt 1200000000 ] && slow=$((slow + 1))
done
if [ "$failed" -gt 0 ] || [ "$slow" -gt 0 ]; then
	check_eq "RSA-4096 key creations past the 1 s request deadline ($slow of 3) are answered" 0 "$failed"
else
	skip "every RSA-4096 key was made within 1.2 s: nothing tested the handler's exemption"
fi
stop_server TERM

# Option checks.
"$VMCRYPTD" --data-dir "$DATA" --header-timeout 0 >/dev/null 2>"$WORK/err"
check_eq "--header-timeout 0: usage error" 2 "$?"
"$VMCRYPTD" --data-dir "$DATA" --header-timeout 40 >/dev/null 2>"$WORK/err"
check_eq "a header deadline after the request deadline: usage error" 2 "$?"
check_contains "its message" "cannot be longer than --request-timeout" "$(cat "$WORK/err")"
"$VMCRYPTD" --data-dir "$DATA" --max-conns 10 --max-conns-per-address 11 >/dev/null 2>"$WORK/err"
check_eq "more per address than in all: usage error" 2 "$?"
help=$("$VMCRYPTD" --help)
for opt in --max-conns --max-conns-per-address --header-timeout --request-timeout --idle-timeout; do
	check_contains "--help lists $opt" "$opt " "$help"
done
finish
