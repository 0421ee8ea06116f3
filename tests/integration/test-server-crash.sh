#!/bin/bash
# kill -9 of vmcryptd while parallel clients store 1,000 secrets; after a restart every
# acknowledged secret is present and unwraps to exactly what was sent.
. "$(dirname "$0")/server-lib.sh"

check "start" start_server
admin key create crash-rsa >/dev/null
admin key create crash-aes --kty AES >/dev/null
vms=(c1 c2 c3 c4)
for vm in "${vms[@]}"; do new_vm "$vm" || not_ok "new_vm $vm"; done
admin vm encryption enable --vm c1 --volume-type All --kek crash-rsa >/dev/null
admin vm encryption enable --vm c2 --volume-type All --kek crash-aes >/dev/null
admin vm encryption enable --vm c3 --volume-type All --kek crash-rsa --kek-algorithm RSA-OAEP >/dev/null
# c4 stores plain BEKs.

# One curl config per VM, 250 transfers each, run with --parallel: the values are in files, not
# in any command line.
mkdir -p "$WORK/got"
: >"$WORK/expected"
for vm in "${vms[@]}"; do
	cfg=$WORK/$vm.put.cfg
	: >"$cfg"
	for ((i = 0; i < 250; i++)); do
		v=$(head -c 48 /dev/urandom | base64 -w 0)
		echo "$vm vol$i $v" >>"$WORK/expected"
		# Options do not carry over "next": each transfer names its CA file.
		[ "$i" = 0 ] || echo next >>"$cfg"
		printf 'url = "https://%s/v1/vm/secrets/vol%d"\ncacert = "%s"\nrequest = "PUT"\nheader = "@%s"\nheader = "Content-Type: application/json"\ndata-binary = "{\\"value\\":\\"%s\\"}"\noutput = "/dev/null"\nwrite-out = "%%{http_code} %s vol%d\\n"\n' \
			"$ADDR" "$i" "$DATA/tls.crt" "$WORK/$vm.hdr" "$v" "$vm" "$i" >>"$cfg"
	done
	chmod 600 "$cfg"
done
pids=()
for vm in "${vms[@]}"; do
	# Line-buffered, so acknowledgements can be counted while the clients run.
	stdbuf -oL curl -s --parallel --parallel-max 4 -K "$WORK/$vm.put.cfg" >"$WORK/$vm.acks" 2>/dev/null &
	pids+=($!)
done
acked() { cat "$WORK"/c?.acks 2>/dev/null | grep -c '^201 '; }
for ((i = 0; i < 600; i++)); do
	[ "$(acked)" -ge 150 ] && break
	sleep 0.01
done
kill -9 "$SERVER_PID"
at_kill=$(acked)
wait "$SERVER_PID" 2>/dev/null
for p in "${pids[@]}"; do wait "$p"; done
total=$(acked)
echo "acknowledged at kill: $at_kill, in all: $total"
check "kill -9 landed mid-stream (150 <= $total acknowledged < 1000)" test "$total" -ge 150 -a "$total" -lt 1000

check "restart after kill -9" start_server
for vm in "${vms[@]}"; do
	cfg=$WORK/$vm.get.cfg
	: >"$cfg"
	for ((i = 0; i < 250; i++)); do
		[ "$i" = 0 ] || echo next >>"$cfg"
		printf 'url = "https://%s/v1/vm/secrets/vol%d"\ncacert = "%s"\nheader = "@%s"\noutput = "%s/got/%s.vol%d"\nwrite-out = "%%{http_code} %s vol%d\\n"\n' \
			"$ADDR" "$i" "$DATA/tls.crt" "$WORK/$vm.hdr" "$WORK" "$vm" "$i" "$vm" "$i" >>"$cfg"
	done
	curl -s --parallel --parallel-max 8 -K "$cfg" >"$WORK/$vm.gets" 2>/dev/null
done

lost=0 wrong=0 present=0 extra_ok=0 extra_bad=0
while read -r vm vol v; do
	st=$(grep -E "^[0-9]+ $vm $vol\$" "$WORK/$vm.gets" | cut -d' ' -f1)
	got=$(sed -n 's/.*"value":"\([^"]*\)".*/\1/p' "$WORK/got/$vm.$vol" 2>/dev/null)
	if grep -qx "201 $vm $vol" "$WORK/$vm.acks"; then
		if [ "$st" != 200 ]; then lost=$((lost + 1)); echo "LOST: $vm/$vol ($st)";
		elif [ "$got" != "$v" ]; then wrong=$((wrong + 1)); echo "WRONG: $vm/$vol";
		else present=$((present + 1)); fi
	elif [ "$st" = 200 ]; then
		# Committed but the acknowledgement died with the server: it must still be exact.
		if [ "$got" = "$v" ]; then extra_ok=$((extra_ok + 1)); else extra_bad=$((extra_bad + 1)); fi
	fi
done <"$WORK/expected"
echo "present: $present, lost: $lost, wrong: $wrong, unacknowledged but stored: $extra_ok (bad: $extra_bad)"
check_eq "every acknowledged secret is present and unwraps" "$total" "$present"
check_eq "no acknowledged secret lost" 0 "$lost"
check_eq "no secret unwraps to a wrong value" 0 "$wrong"
check_eq "unacknowledged secrets that were stored are exact" 0 "$extra_bad"
check "wrapped secrets survived (c1, RSA-OAEP-256)" grep -q '"contentType":"Wrapped BEK"' "$WORK/got/c1.vol0"
check "wrapped secrets survived (c2, A256KW)" grep -q 'A256KW' "$WORK/got/c2.vol0"
c1_acks=$(grep -c '^201 ' "$WORK/c1.acks")
c1_audit=$(admin audit --vm c1 | grep -c 'secret.write')
check "every acknowledged write of c1 is in the audit trail ($c1_audit >= $c1_acks)" test "$c1_audit" -ge "$c1_acks"
# A secret read's audit event is committed before the value is sent (without a disk flush of its
# own): a kill -9 right after the answer keeps it.
api GET /v1/vm/secrets/vol0 "$WORK/c4.hdr"
check_eq "read before the second kill" 200 "$STATUS"
before=$(admin audit --vm c4 | grep -c 'secret.read .*vm/c4/secret/vol0 ')
stop_server KILL
check "restart after the second kill -9" start_server
after=$(admin audit --vm c4 | grep -c 'secret.read .*vm/c4/secret/vol0 ')
check_eq "the read's audit event survived kill -9" "$before" "$after"
check "the read is on record at all" test "$after" -ge 2
stop_server TERM
check_eq "clean stop" 0 "$SERVER_RC"
finish
