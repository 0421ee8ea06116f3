#!/bin/bash
# Two vmcryptd replicas on one PostgreSQL store (docs/vmcryptd.md "Replicas"): a replica with
# another master key is refused at start; a VM enrolls through one and reads its secret through
# the other; one enrollment token raced through both works once; then 8 clients store secrets
# through both for 20 s while one replica is killed with SIGKILL halfway: every write either
# replica acknowledged is read back, value for value, through the survivor, which kept serving.
export VMCRYPT_TEST_STORE=postgresql
. "$(dirname "$0")/server-lib.sh"
require_cmd curl base64

CLIENTS=8
LOAD_SECONDS=20
KILL_AFTER=8

check "replica A starts" start_server --auth-free-failures 10000
ADDR_A=$ADDR PID_A=$SERVER_PID
DATA_A=$DATA

# B on a data directory of its own. With the master key it would make itself, it would seal
# what it writes so that A cannot open it: refused.
DATA_B=$WORK/data-b
mkdir -m 0700 "$DATA_B"
timeout 30 "$VMCRYPTD" --data-dir "$DATA_B" --listen 127.0.0.1:0 "${STORE_ARGS[@]}" >/dev/null 2>"$WORK/b.err"
check_eq "replica B with its own new master key: exit 5" 5 "$?"
check_contains "  ... saying to copy the first one's" "is not the master key of this store" "$(cat "$WORK/b.err")"

# Set up as docs/vmcryptd.md says: the same master key and TLS key pair; the admin token is
# the one in the store (A's file).
rm -f "$DATA_B"/*
cp -p "$DATA_A/master.key" "$DATA_A/tls.crt" "$DATA_A/tls.key" "$DATA_A/admin.token" "$DATA_B/"
"$VMCRYPTD" --data-dir "$DATA_B" --listen 127.0.0.1:0 "${STORE_ARGS[@]}" --auth-free-failures 10000 \
	>>"$WORK/vmcryptd-b.log" 2>&1 &
PID_B=$!
at_exit "kill -9 $PID_B"
for ((i = 0; i < 200; i++)); do [ -s "$DATA_B/vmcryptd.listen" ] && break; sleep 0.05; done
ADDR_B=$(cat "$DATA_B/vmcryptd.listen" 2>/dev/null)
check "replica B starts with A's master key" test -n "$ADDR_B"

# on A|B: later calls (api, admin) go to that replica. Both present one certificate.
on() { if [ "$1" = A ]; then ADDR=$ADDR_A; else ADDR=$ADDR_B; fi; }

# --- a VM enrolls through one and reads its secret through the other ---
on A
admin vm register vm1 >"$WORK/vm1.enroll" 2>/dev/null
check "register vm1 through A" test -s "$WORK/vm1.enroll"
auth_file vm1.enroll "$WORK/vm1.enroll"
on B
api POST /v1/enroll "$WORK/vm1.enroll.hdr" '{"hostname":"host-vm1","agentVersion":"test-1"}'
check_eq "enroll vm1 through B" 200 "$STATUS"
(umask 077; json_field credential >"$WORK/vm1.cred")
auth_file vm1 "$WORK/vm1.cred"
value=$(head -c 32 /dev/urandom | base64 -w 0)
on A
api PUT /v1/vm/secrets/os "$WORK/vm1.hdr" "{\"value\":\"$value\"}"
check_eq "vm1 stores its secret through A" 201 "$STATUS"
on B
api GET /v1/vm/secrets/os "$WORK/vm1.hdr"
check_eq "vm1 reads it through B" 200 "$STATUS"
check_eq "  ... the same value" "$value" "$(json_field value)"
check_contains "B shows the enrollment A's admin never saw" "host-vm1" "$(admin vm show vm1)"
on A
check_contains "A audits the read made through B" "secret.read" "$(admin audit --vm vm1)"

# --- one enrollment token, raced through both replicas: it works once ---
on A
admin vm register vm2 >"$WORK/vm2.enroll" 2>/dev/null
auth_file vm2.enroll "$WORK/vm2.enroll"
race() { # REPLICA: enrolls vm2 there, leaves the status in $WORK/race.REPLICA
	curl -sS --cacert "$DATA/tls.crt" -o /dev/null -w '%{http_code}' -X POST -H "@$WORK/vm2.enroll.hdr" \
		-H 'Content-Type: application/json' --data-binary '{"hostname":"h"}' "https://$2/v1/enroll" >"$WORK/race.$1"
}
race A "$ADDR_A" & r1=$!
race B "$ADDR_B" & r2=$!
wait $r1 $r2
check_eq "the raced enrollment succeeded once" "1" "$(cat "$WORK/race.A" "$WORK/race.B" | grep -o 200 | wc -l)"

# --- 8 clients for 20 s, A killed with SIGKILL after 8 s ---
for ((c = 1; c <= CLIENTS; c++)); do
	on A
	new_vm "load$c" >/dev/null || not_ok "new_vm load$c"
done
# client N: stores a new secret (a new volume each time) as VM loadN, on A for odd N and B for
# even N; on a failure it moves to the other replica, as an agent retries. Every 201 is recorded
# with its value; every failure too.
client() {
	local n=$1 end=$2 i=0 prefer val code
	prefer=$((n % 2))
	local addrs=("$ADDR_B" "$ADDR_A")
	while [ "$SECONDS" -lt "$end" ]; do
		i=$((i + 1))
		val=$(head -c 24 /dev/urandom | base64 -w 0)
		(umask 077; printf '{"value":"%s"}' "$val" >"$WORK/body.$n")
		code=$(curl -sS --max-time 10 --cacert "$DATA/tls.crt" -o /dev/null -w '%{http_code}' -X PUT \
			-H "@$WORK/load$n.hdr" -H 'Content-Type: application/json' --data-binary "@$WORK/body.$n" \
			"https://${addrs[$prefer]}/v1/vm/secrets/v$n-$i" 2>/dev/null)
		if [ "$code" = 201 ]; then
			echo "v$n-$i $val ${addrs[$prefer]} $SECONDS" >>"$WORK/acked.$n"
		else
			echo "v$n-$i $code ${addrs[$prefer]} $SECONDS" >>"$WORK/failed.$n"
			prefer=$((1 - prefer))
		fi
	done
}
start=$SECONDS
end=$((start + LOAD_SECONDS))
pids=()
for ((c = 1; c <= CLIENTS; c++)); do
	client "$c" "$end" &
	pids+=($!)
done
sleep "$KILL_AFTER"
kill -9 "$PID_A"
killed_at=$SECONDS
wait "$PID_A" 2>/dev/null
wait "${pids[@]}"
cat "$WORK"/acked.* >"$WORK/acked" 2>/dev/null
cat "$WORK"/failed.* >"$WORK/failed" 2>/dev/null
touch "$WORK/failed"
acked=$(wc -l <"$WORK/acked")
via_a=$(grep -c " $ADDR_A " "$WORK/acked")
b_after=$(awk -v a="$ADDR_B" -v t="$killed_at" '$3 == a && $4 > t' "$WORK/acked" | wc -l)
echo "# $acked writes acknowledged in ${LOAD_SECONDS}s ($via_a through A before its kill -9 at ${KILL_AFTER}s," \
	"$b_after through B after it), $(wc -l <"$WORK/failed") failed and retried"
check "writes were acknowledged through A before the kill" test "$via_a" -gt 0
check "B kept serving after A died: writes acknowledged after the kill" test "$b_after" -gt 0
check "every client got on after the kill (its last write acknowledged)" \
	test "$(for ((c = 1; c <= CLIENTS; c++)); do tail -n 1 "$WORK/acked.$c" | awk -v t="$killed_at" '$4 > t'; done | wc -l)" = "$CLIENTS"
check "the failures are A's refused connections (000), none from B" \
	test "$(awk -v a="$ADDR_B" '$3 == a' "$WORK/failed" | wc -l)" = 0

# Read every acknowledged write back through B: one curl per VM over one kept-alive connection.
lost=0
for ((c = 1; c <= CLIENTS; c++)); do
	[ -s "$WORK/acked.$c" ] || continue
	mkdir -p "$WORK/read.$c"
	while read -r vol val _; do
		printf 'url = "https://%s/v1/vm/secrets/%s"\noutput = "%s/read.%s/%s"\n' "$ADDR_B" "$vol" "$WORK" "$c" "$vol"
	done <"$WORK/acked.$c" >"$WORK/read.$c.cfg"
	curl -sS --cacert "$DATA/tls.crt" -H "@$WORK/load$c.hdr" -K "$WORK/read.$c.cfg" 2>>"$WORK/read.err"
	while read -r vol val _; do
		BODY=$(cat "$WORK/read.$c/$vol" 2>/dev/null)
		[ "$(json_field value)" = "$val" ] || { lost=$((lost + 1)); echo "# lost or changed: $vol"; }
	done <"$WORK/acked.$c"
done
check_eq "every acknowledged write is read back through B, value for value ($acked)" 0 "$lost"

# A restarts on its data directory and sees what B wrote meanwhile.
check "A restarts after kill -9" start_server --auth-free-failures 10000
last=$(awk -v a="$ADDR_B" '$3 == a' "$WORK/acked.2" | tail -n 1)
api GET "/v1/vm/secrets/${last%% *}" "$WORK/load2.hdr"
check_eq "A reads the last write B acknowledged" "$(cut -d' ' -f2 <<<"$last")" "$(json_field value)"
check "no secret value in either log" no_leak <(cut -d' ' -f2 "$WORK/acked") "$WORK/vmcryptd.log" "$WORK/vmcryptd-b.log"
stop_server TERM
kill -TERM "$PID_B"
wait "$PID_B"
check_eq "B stops cleanly" 0 "$?"
finish
