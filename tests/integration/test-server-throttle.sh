#!/bin/bash
# Failed authentication is throttled, logged and audited, on vmcryptd's defaults: a source that
# keeps presenting wrong tokens gets 401 a few times, then 429 with Retry-After, while callers
# from other addresses are served at once; wrong secrets for one VM id spread over addresses
# lock each address out at its first try; the log has one aggregated warning per source and no
# token; every audit event carries its source; --result filters; retention prunes and says so.
# Addresses: admin and setup 127.0.0.1 (vmcrypt-admin), legitimate callers 127.0.0.2, attackers
# 127.0.0.3 and up (loopback routes all of 127/8 to the server on 127.0.0.1).
. "$(dirname "$0")/server-lib.sh"

check "start (defaults)" start_server
auth_file admin "$DATA/admin.token"
check "VM A" new_vm vma
id=$(cut -d- -f3 "$WORK/vma.cred")
rand_hex() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
(umask 077
 printf 'vmc-admin-%s\n' "$(rand_hex)" >"$WORK/wrong-admin.tok"
 printf 'vmc-vm-%s-%s\n' "$id" "$(rand_hex)" >"$WORK/wrong-vm.tok")
auth_file wrong-admin "$WORK/wrong-admin.tok"
auth_file wrong-vm "$WORK/wrong-vm.tok"
for f in wrong-admin.tok wrong-vm.tok vma.cred; do secret_pattern "$WORK/tokens" "$(head -n 1 "$WORK/$f" | cut -c 12-)"; done
secret_pattern "$WORK/tokens" "$(cut -c 11- "$DATA/admin.token")"

# flood FROM HEADER N PATH: N requests on one connection; prints one "STATUS RETRY-AFTER" line each.
flood() {
	local from=$1 hdr=$2 n=$3 path=$4 args=() i
	for ((i = 0; i < n; i++)); do args+=(-o /dev/null "https://$ADDR$path"); done
	curl -s --cacert "$DATA/tls.crt" --interface "$from" -H "@$hdr" -w '%{http_code} %header{retry-after}\n' "${args[@]}"
}
# call FROM HEADER PATH: one request; sets STATUS and SECS (time taken).
call() {
	read -r STATUS SECS < <(curl -s --cacert "$DATA/tls.crt" --interface "$1" -H "@$2" -o "$WORK/resp" \
		-w '%{http_code} %{time_total}\n' "https://$ADDR$3")
}

# 200 wrong admin tokens from one address.
start=$(date +%s.%N)
flood 127.0.0.3 "$WORK/wrong-admin.hdr" 200 /v1/admin/vms >"$WORK/flood1"
n401=$(grep -c '^401' "$WORK/flood1"); n429=$(grep -c '^429' "$WORK/flood1")
echo "# 200 wrong admin tokens: $n401 got 401, $n429 got 429, in $(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }') s"
check "the first wrong tokens get 401 ($n401)" test "$n401" -ge 10
check "then the source is slowed down: at most a few more 401 ($n401)" test "$n401" -le 13
check_eq "every other one is 429" 200 $((n401 + n429))
check "429 carries Retry-After in seconds" grep -qE '^429 [1-9][0-9]*$' "$WORK/flood1"
call 127.0.0.3 "$WORK/admin.hdr" /v1/admin/vms
check_eq "while locked out, even the right token from that source gets 429" 429 "$STATUS"
check_contains "the 429 says why and when" "too many failed authentications from 127.0.0.3; retry in" "$(cat "$WORK/resp")"

# During a flood from 127.0.0.3, callers elsewhere are served at once.
start=$(date +%s.%N)
flood 127.0.0.3 "$WORK/wrong-admin.hdr" 10000 /v1/admin/vms >"$WORK/flood2" &
flood_pid=$!
sleep 0.2
call 127.0.0.2 "$WORK/vma.hdr" /v1/vm/goal
check_eq "during the flood: VM A from another address: 200" 200 "$STATUS"
check "during the flood: VM A answered fast (${SECS} s)" awk -v s="$SECS" 'BEGIN { exit !(s < 1.5) }'
call 127.0.0.2 "$WORK/admin.hdr" /v1/admin/vms
check_eq "during the flood: admin from another address: 200" 200 "$STATUS"
check "during the flood: admin answered fast (${SECS} s)" awk -v s="$SECS" 'BEGIN { exit !(s < 1.5) }'
(umask 077; printf '{"value":"%s"}' "$(b64 a-secret)" >"$WORK/put.json")
STATUS=$(curl -s --cacert "$DATA/tls.crt" --interface 127.0.0.2 -H "@$WORK/vma.hdr" -X PUT \
	-H 'Content-Type: application/json' --data-binary "@$WORK/put.json" -o /dev/null -w '%{http_code}' \
	"https://$ADDR/v1/vm/secrets/os")
check_eq "during the flood: VM A stores a secret from another address: 201" 201 "$STATUS"
check "the flood was still running" kill -0 $flood_pid
wait $flood_pid
took=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
echo "# 10,000 requests from a locked-out source: $(grep -c '^429' "$WORK/flood2") got 429 in $took s"
# Each try that gets through doubles the lockout, which was at least 1 s: k tries need at least
# 1 + 2 + ... + 2^(k-2) = 2^(k-1) - 1 s of flooding, so a flood of T s lets at most
# 1 + log2(T + 1) through (2 for a flood under 3 s; a slow run under the sanitizers may see 3).
tries=$(grep -vc '^429' "$WORK/flood2") || true
most=$(awk -v t="$took" 'BEGIN { printf "%d", 1 + log(t + 1) / log(2) }')
check "a locked-out flood gets 429, and one try per lockout ($tries not 429 in $took s; at most $most)" \
	test "$tries" -le "$most"

# A guess at one VM's token spread over addresses: once the id has had its free failures, each
# new address is locked out at its first wrong secret; the VM's own token still works.
flood 127.0.0.4 "$WORK/wrong-vm.hdr" 10 /v1/vm/goal >"$WORK/flood3"
check_eq "10 wrong secrets for VM A's id from 127.0.0.4: 401" 10 "$(grep -c '^401' "$WORK/flood3")"
flood 127.0.0.5 "$WORK/wrong-vm.hdr" 3 /v1/vm/goal >"$WORK/flood4"
check_eq "from a fresh address: the first wrong secret for that id is 401, then 429" "401 429 429" \
	"$(cut -d' ' -f1 "$WORK/flood4" | tr '\n' ' ' | sed 's/ $//')"
call 127.0.0.2 "$WORK/vma.hdr" /v1/vm/goal
check_eq "VM A's own credential still passes: a token id is never locked" 200 "$STATUS"
flood 127.0.0.6 "$WORK/wrong-admin.hdr" 1 /v1/admin/vms >"$WORK/flood5"
check_eq "the admin id too has had its free failures: a new address is locked out at once" \
	"401" "$(cut -d' ' -f1 "$WORK/flood5")"
call 127.0.0.6 "$WORK/admin.hdr" /v1/admin/vms
check_eq "... so even its next request is refused" 429 "$STATUS"
call 127.0.0.7 "$WORK/admin.hdr" /v1/admin/vms
check_eq "the right admin token from yet another address: 200" 200 "$STATUS"

# Refusals that guess nothing still cost an audit row each: they count too, or one source could
# flood the audit trail until the retention drops the real events.
check "VM R" new_vm vmr
admin vm revoke vmr >/dev/null
flood 127.0.0.8 "$WORK/vmr.hdr" 30 /v1/vm/goal >"$WORK/flood6"
check_eq "a revoked VM's credential, 30 times: 10 refused with 403, then 429" "10 20" \
	"$(grep -c '^403' "$WORK/flood6") $(grep -c '^429' "$WORK/flood6")"
flood 127.0.0.9 "$WORK/admin.hdr" 30 /v1/vm/goal >"$WORK/flood7"
check_eq "the admin token on a VM route, 30 times: 10 refused with 403, then 429" "10 20" \
	"$(grep -c '^403' "$WORK/flood7") $(grep -c '^429' "$WORK/flood7")"
flood 127.0.0.10 /dev/null 30 /v1/vm/goal >"$WORK/flood8"
check_eq "no token at all, 30 times: 10 refused with 401, then 429" "10 20" \
	"$(grep -c '^401' "$WORK/flood8") $(grep -c '^429' "$WORK/flood8")"

# audit_json [QUERY]: the audit events as compact JSON.
audit_json() { api GET "/v1/admin/audit${1:-}" "$WORK/admin.hdr"; printf '%s' "$BODY"; }

# Audit: every event has its source; the flood left a handful of rows, not 10,200.
audit_json >"$WORK/audit.json"
check_contains "audit events carry the source address" '"source":"127.0.0.3"' "$(cat "$WORK/audit.json")"
check_contains "... of VMs too" '"actor":"vm:vma","source":"127.0.0.2","action":"secret.write"' "$(cat "$WORK/audit.json")"
check_contains "... and of the admin" '"actor":"admin","source":"127.0.0.1"' "$(cat "$WORK/audit.json")"
rows=$(grep -o '"result":"denied: invalid admin token' "$WORK/audit.json" | wc -l)
check "10,200 wrong admin tokens made few audit rows ($rows)" test "$rows" -le 15
check_contains "the lockout is audited" "denied: invalid admin token; source locked out for" "$(cat "$WORK/audit.json")"
out=$(admin audit)
check_contains "vmcrypt-admin audit prints the source" "127.0.0.3" "$out"
denied=$(audit_json "?result=denied")
check_contains "--result denied: refusals" '"result":"denied: invalid admin token' "$denied"
check "--result denied: nothing ok" not_contains '"result":"ok' "$denied"
ok_only=$(audit_json "?result=ok")
check_contains "--result ok: the enrollment" '"action":"vm.enroll"' "$ok_only"
check "--result ok: no refusal" not_contains 'denied' "$ok_only"
admin audit --result denied >"$WORK/denied.txt"
check "vmcrypt-admin audit --result denied: refusals" grep -q 'denied: invalid admin token' "$WORK/denied.txt"
check "vmcrypt-admin audit --result denied: no ok row" bash -c "! grep -qE ' ok(: .*)?$' '$WORK/denied.txt'"
admin audit --result maybe >/dev/null 2>"$WORK/err"
check_eq "--result maybe: usage error" 2 "$?"
api GET "/v1/admin/audit?result=maybe" "$WORK/admin.hdr"
check_eq "?result=maybe: 400" 400 "$STATUS"

stop_server TERM
check_eq "clean stop" 0 "$SERVER_RC"
# The log: the failures of each source as a warning, aggregated (the first line at once, the
# rest summed up when the interval ends or the server stops), and never a token.
lines=$(grep -c 'warning: Failed authentication from 127.0.0.3' "$WORK/vmcryptd.log")
check "the log has a warning for the flooding source, aggregated ($lines lines for 10,200 requests)" \
	test "$lines" -ge 1 -a "$lines" -le 3
check "the warning counts what was refused while locked out" \
	grep -qE 'warning: Failed authentication from 127.0.0.3: [0-9]+ refused \(last: invalid admin token\), [0-9]{4,} refused unchecked while locked out' \
	"$WORK/vmcryptd.log"
check "the warning names the reason" grep -q 'from 127.0.0.4: .*invalid credential' "$WORK/vmcryptd.log"
grep 'warning: Failed authentication' "$WORK/vmcryptd.log" | sed 's/^/# /'
check "no token in the log" no_leak "$WORK/tokens" "$WORK/vmcryptd.log"

# Retention by age, then by size: the events that go are replaced by one that says what went.
if [ "$STORE_KIND" = postgresql ] || command -v sqlite3 >/dev/null; then
	store_sql "UPDATE audit SET time = time - 400 * 86400 WHERE id <= 3" >/dev/null
	check "restart with --audit-max-rows 0 (age only, 365 days by default)" start_server --audit-max-rows 0
	for ((i = 0; i < 50; i++)); do
		out=$(audit_json)
		[[ "$out" == *audit.prune* ]] && break
		sleep 0.1
	done
	check "the 3 events older than 365 days went at the start, and the prune says so" \
		grep -qE '"action":"audit.prune","object":"audit","result":"ok: dropped 3 events from 20[0-9-]+T[0-9:]+Z to 20[0-9-]+T[0-9:]+Z' <<<"$out"
	check_contains "... by the server itself" '"actor":"vmcryptd","source":""' "$out"
	check "... and the rest stayed" test "$(grep -o '"id":' <<<"$out" | wc -l)" -ge 20
	stop_server TERM
else
	skip "retention by age (needs sqlite3 to back-date events)"
fi
check "restart with --audit-max-rows 20" start_server --audit-max-rows 20
for ((i = 0; i < 30; i++)); do admin vm register "r$i" >/dev/null || break; done
check_eq "30 more audited changes" 30 "$i"
for ((i = 0; i < 50; i++)); do
	n=$(audit_json | grep -o '"id":' | wc -l)
	[ "$n" -le 20 ] && break
	sleep 0.1
done
check "the audit trail is cut back to 20 events ($n)" test "$n" -le 20
out=$(audit_json)
check_contains "the last event that is left is the one newest registration" '"object":"vm/r29"' "$out"
check "a pruning by size leaves an audit.prune event that says what went" \
	grep -qE '"action":"audit.prune","object":"audit","result":"ok: dropped [0-9]+ events from ' <<<"$out"
grep -o '"result":"ok: dropped[^"]*"' <<<"$out" | tail -n 1 | sed 's/^/# /'
stop_server TERM
check_eq "clean stop" 0 "$SERVER_RC"
finish
