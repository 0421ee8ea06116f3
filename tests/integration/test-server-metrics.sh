#!/bin/bash
# GET /metrics (docs/vmcryptd.md "Metrics"): who may scrape it (the admin token, a named token of
# the metrics role or higher; nobody else), that every scrape is valid text format 0.0.4
# (promparse.py, strict; promtool too when installed), and that the numbers move exactly as the
# requests driven here say: VMs by state, drift and ADE status, conversions and their bytes from
# reports, secret reads and writes (also from parallel clients), authentication failures by route
# and reason, lockouts, request latency histograms by route, method and status class (unmatched
# paths folded into one route label), store latency by operation; no VM name or raw URL ever
# becomes a label. Then the fleet count's interval: a long one serves the same count.
. "$(dirname "$0")/server-lib.sh"
require_cmd python3
PARSE="python3 $(dirname "$0")/promparse.py"

# The failures driven here would lock 127.0.0.1 out; the lockout is tested after the restart,
# from a guesser of its own.
check "start" start_server --metrics-fleet-interval 0 --auth-free-failures 100000
auth_file admin "$DATA/admin.token"
(umask 077; admin token create prom --role metrics >"$WORK/prom.tok" 2>/dev/null)
(umask 077; admin token create watcher --role reader >"$WORK/watcher.tok" 2>/dev/null)
auth_file prom "$WORK/prom.tok"
auth_file watcher "$WORK/watcher.tok"

N=0
# scrape [AUTH]: GET /metrics into $WORK/mN.txt (N counts up; LAST names it), checked strictly.
scrape() {
	N=$((N + 1))
	LAST=$WORK/m$N.txt
	STATUS=$(curl -sS --cacert "$DATA/tls.crt" -H "@${1:-$WORK/prom.hdr}" -D "$WORK/m$N.hdr" -o "$LAST" \
		-w '%{http_code}' "https://$ADDR/metrics")
	[ "$STATUS" = 200 ] || { echo "scrape: $STATUS $(cat "$LAST")"; return 1; }
	$PARSE check "$LAST" || return 1
	if command -v promtool >/dev/null; then
		# promtool's lint wants _total on counters and units on names, as we do.
		promtool check metrics <"$LAST" || return 1
	fi
}
# m FILE SERIES: the value of SERIES in a scrape (0 when absent).
m() { $PARSE get "$1" "$2"; }
# delta NAME SERIES EXPECTED: SERIES grew by exactly EXPECTED from the scrape before the last one.
PREV=
delta() {
	local a b
	a=$(m "$PREV" "$2")
	b=$(m "$LAST" "$2")
	check_eq "$1" "$3" "$(python3 -c "print(round($b - $a, 9))" | sed 's/\.0$//')"
}
mark() { PREV=$LAST; }

# --- who may scrape ---
api GET /metrics -
check_eq "no token: 401" 401 "$STATUS"
printf 'Authorization: Bearer garbage\n' >"$WORK/garbage.hdr"
api GET /metrics "$WORK/garbage.hdr"
check_eq "a malformed token: 401" 401 "$STATUS"
check "VM A" new_vm vma
api GET /metrics "$WORK/vma.hdr"
check_eq "a VM credential: 403" 403 "$STATUS"
check_contains "  ... saying what it needs" "needs the admin token or a named token with the metrics role" "$BODY"
check "the metrics token scrapes" scrape "$WORK/prom.hdr"
check_contains "  ... as text format 0.0.4" "Content-Type: text/plain; version=0.0.4; charset=utf-8" \
	"$(tr -d '\r' <"$WORK/m$N.hdr")"
check "a reader token scrapes" scrape "$WORK/watcher.hdr"
check "the admin token scrapes" scrape "$WORK/admin.hdr"
api GET /v1/admin/vms "$WORK/prom.hdr"
check_eq "the metrics token reads nothing else: 403" 403 "$STATUS"
check_contains "  ... naming both roles" "needs the reader role; token 'prom' has metrics" "$BODY"
admin token revoke prom >/dev/null
api GET /metrics "$WORK/prom.hdr"
check_eq "a revoked metrics token: 401" 401 "$STATUS"
(umask 077; admin token create prom2 --role metrics >"$WORK/prom.tok" 2>/dev/null)
auth_file prom "$WORK/prom.tok"

check "scrape" scrape
for name in vmcryptd_build_info process_start_time_seconds process_cpu_seconds_total vmcryptd_vms \
	vmcryptd_vms_drift vmcryptd_vms_encryption vmcryptd_conversions_in_progress \
	vmcryptd_conversion_done_bytes vmcryptd_conversion_size_bytes vmcryptd_secret_reads_total \
	vmcryptd_secret_writes_total vmcryptd_auth_failures_total vmcryptd_auth_lockouts_total \
	vmcryptd_http_request_duration_seconds vmcryptd_store_operation_duration_seconds; do
	check "TYPE of $name" grep -q "^# TYPE $name " "$LAST"
done
check_eq "build info names the version" 1 \
	"$(m "$LAST" "vmcryptd_build_info{version=\"$("$VMCRYPTD" --version | awk '{print $NF}')\"}")"
start=$(m "$LAST" process_start_time_seconds)
check "start time is within the last minutes" test $(($(date +%s) - start)) -lt 600

# --- the fleet, from the store ---
mark
admin vm register vmr >/dev/null 2>&1
check "VM B" new_vm vmb
check "scrape" scrape
delta "one more registered VM" 'vmcryptd_vms{state="registered"}' 1
delta "one more enrolled VM" 'vmcryptd_vms{state="enrolled"}' 1
check_eq "two enrolled VMs" 2 "$(m "$LAST" 'vmcryptd_vms{state="enrolled"}')"
check_eq "  ... neither has reported" 2 "$(m "$LAST" 'vmcryptd_vms_drift{drift="never-reported"}')"

admin vm encryption enable --vm vma --volume-type Data >/dev/null
api POST /v1/vm/status "$WORK/vma.hdr" '{"OsVolumeEncrypted":"NotEncrypted","DataVolumesEncrypted":"EncryptionInProgress",
 "ProgressMessage":"Encrypting data volume 1/2: 25%","SequenceVersion":1,"Volumes":[
 {"name":"data0","state":"EncryptionInProgress","progress":25,"bytesDone":1073741824,"bytesTotal":4294967296},
 {"name":"data1","state":"EncryptionInProgress","progress":0,"bytesDone":0,"bytesTotal":1048576},
 {"name":"os","state":"NotEncrypted"}]}'
check_eq "a report with bytesDone and bytesTotal: 200" 200 "$STATUS"
api POST /v1/vm/status "$WORK/vmb.hdr" '{"OsVolumeEncrypted":"Encrypted","DataVolumesEncrypted":"DecryptionInProgress",
 "Volumes":[{"name":"d","state":"DecryptionInProgress","bytesDone":5,"bytesTotal":10},{"name":"e","state":"DecryptionInProgress"}]}'
check_eq "vmb reports a decryption: 200" 200 "$STATUS"
api POST /v1/vm/status "$WORK/vmb.hdr" '{"OsVolumeEncrypted":"NotEncrypted","DataVolumesEncrypted":"Encrypted","Volumes":[{"name":"x","state":"Encrypted","bytesDone":-1}]}'
check_eq "a negative bytesDone: 400" 400 "$STATUS"
check "scrape" scrape
check_eq "encrypting volumes" 2 "$(m "$LAST" 'vmcryptd_conversions_in_progress{direction="encrypt"}')"
check_eq "  ... their bytes done" 1073741824 "$(m "$LAST" 'vmcryptd_conversion_done_bytes{direction="encrypt"}')"
check_eq "  ... of (4 GiB and 1 MiB)" 4296015872 "$(m "$LAST" 'vmcryptd_conversion_size_bytes{direction="encrypt"}')"
check_eq "decrypting volumes (one without bytes)" 2 "$(m "$LAST" 'vmcryptd_conversions_in_progress{direction="decrypt"}')"
check_eq "  ... their bytes done" 5 "$(m "$LAST" 'vmcryptd_conversion_done_bytes{direction="decrypt"}')"
check_eq "  ... of" 10 "$(m "$LAST" 'vmcryptd_conversion_size_bytes{direction="decrypt"}')"
check_eq "drift: vma agrees with its settings" 1 "$(m "$LAST" 'vmcryptd_vms_drift{drift="none"}')"
check_eq "drift: vmb's OS volume is encrypted though nobody enabled it, at the sequence it has" 1 \
	"$(m "$LAST" 'vmcryptd_vms_drift{drift="drift"}')"
check_eq "  ... nobody is never-reported now" 0 "$(m "$LAST" 'vmcryptd_vms_drift{drift="never-reported"}')"
check_eq "ADE status: data EncryptionInProgress" 1 \
	"$(m "$LAST" 'vmcryptd_vms_encryption{volume_type="data",status="EncryptionInProgress"}')"
check_eq "ADE status: OS NotEncrypted for vma" 1 \
	"$(m "$LAST" 'vmcryptd_vms_encryption{volume_type="os",status="NotEncrypted"}')"
check_eq "  ... Encrypted for vmb" 1 \
	"$(m "$LAST" 'vmcryptd_vms_encryption{volume_type="os",status="Encrypted"}')"
check_eq "ADE status: data DecryptionInProgress for vmb" 1 \
	"$(m "$LAST" 'vmcryptd_vms_encryption{volume_type="data",status="DecryptionInProgress"}')"
admin vm encryption enable --vm vmb --volume-type Data >/dev/null
check "scrape" scrape
check_eq "vmb's new settings are not applied yet: pending" 1 "$(m "$LAST" 'vmcryptd_vms_drift{drift="pending"}')"
admin vm revoke vmb >/dev/null
check "scrape" scrape
check_eq "a revoked VM counts as revoked" 1 "$(m "$LAST" 'vmcryptd_vms{state="revoked"}')"
check_eq "  ... and no more in the drift or the conversions" 0 "$(m "$LAST" 'vmcryptd_vms_drift{drift="pending"}')"
check_eq "  ... " 0 "$(m "$LAST" 'vmcryptd_conversions_in_progress{direction="decrypt"}')"
check "the fleet scan has a time" test "$(m "$LAST" vmcryptd_fleet_scan_timestamp_seconds)" -gt 0
check_eq "  ... and succeeded" 1 "$(m "$LAST" vmcryptd_fleet_scan_ok)"

# --- secrets ---
mark
api PUT /v1/vm/secrets/data0 "$WORK/vma.hdr" "{\"value\":\"$(b64 s1)\"}"
check_eq "secret stored" 201 "$STATUS"
api PUT /v1/vm/secrets/data0 "$WORK/vma.hdr" "{\"value\":\"$(b64 s2)\"}"
for i in 1 2 3; do api GET /v1/vm/secrets/data0 "$WORK/vma.hdr"; done
check_eq "secret read" 200 "$STATUS"
api GET /v1/vm/secrets/nosuch "$WORK/vma.hdr"
check_eq "no such secret: 404" 404 "$STATUS"
api GET "/v1/admin/secrets/vma/data0?reveal=true" "$WORK/admin.hdr"
check_eq "revealed" 200 "$STATUS"
api GET /v1/admin/secrets/vma/data0 "$WORK/admin.hdr"
check_eq "metadata only" 200 "$STATUS"
check "scrape" scrape
delta "2 secret writes" 'vmcryptd_secret_writes_total{operation="write"}' 2
delta "3 secret reads (the 404 is none)" 'vmcryptd_secret_reads_total{operation="read"}' 3
delta "1 reveal (metadata is none)" 'vmcryptd_secret_reads_total{operation="reveal"}' 1
R='route="/v1/vm/secrets/{volume}"'
delta "latency: 3 GETs answered 2xx" "vmcryptd_http_request_duration_seconds_count{$R,method=\"GET\",code=\"2xx\"}" 3
delta "  ... 1 answered 4xx" "vmcryptd_http_request_duration_seconds_count{$R,method=\"GET\",code=\"4xx\"}" 1
delta "  ... 2 PUTs" "vmcryptd_http_request_duration_seconds_count{$R,method=\"PUT\",code=\"2xx\"}" 2
delta "  ... no 5xx" "vmcryptd_http_request_duration_seconds_count{$R,method=\"GET\",code=\"5xx\"}" 0
check "  ... the 4 GETs all took under 10 s" test "$(m "$LAST" "vmcryptd_http_request_duration_seconds_bucket{$R,method=\"GET\",code=\"2xx\",le=\"10\"}")" = \
	"$(m "$LAST" "vmcryptd_http_request_duration_seconds_count{$R,method=\"GET\",code=\"2xx\"}")"
delta "store: 4 secret_get by the VM GETs, 2 by the admin" 'vmcryptd_store_operation_duration_seconds_count{operation="secret_get"}' 6
delta "store: 2 secret_insert" 'vmcryptd_store_operation_duration_seconds_count{operation="secret_insert"}' 2

# Parallel clients: the counters lose nothing (C11 atomics across the server's threads).
mark
pids=()
for j in 1 2 3 4; do
	(for i in $(seq 10); do
		curl -sS --cacert "$DATA/tls.crt" -H "@$WORK/vma.hdr" -o /dev/null "https://$ADDR/v1/vm/secrets/data0"
	done) &
	pids+=($!)
done
wait "${pids[@]}" # not a bare wait: the server is a background job of this shell too
check "scrape" scrape
delta "40 parallel reads, all counted" 'vmcryptd_secret_reads_total{operation="read"}' 40
delta "  ... and timed" "vmcryptd_http_request_duration_seconds_count{$R,method=\"GET\",code=\"2xx\"}" 40

# --- failed authentication, by the route table's pattern ---
mark
api GET /v1/vm/goal -
api GET /v1/vm/goal -
cut -d- -f3 "$WORK/vma.cred" >"$WORK/id"
printf 'Authorization: Bearer vmc-vm-%s-%064d\n' "$(cat "$WORK/id")" 0 >"$WORK/wrong.hdr"
api GET /v1/vm/goal "$WORK/wrong.hdr"
check_eq "wrong VM token: 401" 401 "$STATUS"
api GET /v1/vm/goal "$WORK/admin.hdr"
check_eq "admin token on a VM route: 403" 403 "$STATUS"
api GET /v1/vm/secrets/data0 -
api GET /v1/vm/secrets/other-volume -
api GET /metrics -
check "scrape" scrape
G='route="/v1/vm/goal",method="GET"'
delta "2 missing credentials on the goal" "vmcryptd_auth_failures_total{$G,reason=\"missing\"}" 2
delta "1 invalid" "vmcryptd_auth_failures_total{$G,reason=\"invalid\"}" 1
delta "1 forbidden" "vmcryptd_auth_failures_total{$G,reason=\"forbidden\"}" 1
delta "2 on the secret route, whatever the volume" "vmcryptd_auth_failures_total{$R,method=\"GET\",reason=\"missing\"}" 2
delta "1 on /metrics" 'vmcryptd_auth_failures_total{route="/metrics",method="GET",reason="missing"}' 1
delta "refusals are timed too, as 4xx" "vmcryptd_http_request_duration_seconds_count{$G,code=\"4xx\"}" 4
check "no volume name became a label" not_contains "other-volume" "$(cat "$LAST")"

# --- requests no route matches: one label, never the raw URL ---
mark
api GET /nope/vmsecret-in-url -
check_eq "no route: 404" 404 "$STATUS"
api GET /v1/admin/vms/ "$WORK/admin.hdr"
check_eq "non-canonical path: 404" 404 "$STATUS"
api DELETE /v1/vm/goal "$WORK/vma.hdr"
check_eq "wrong method: 405" 405 "$STATUS"
STATUS=$(curl -sS --cacert "$DATA/tls.crt" -X BREW -o /dev/null -w '%{http_code}' "https://$ADDR/coffee")
check "a made-up method: refused ($STATUS)" test "${STATUS:0:1}" = 4
check "scrape" scrape
delta "unmatched GETs" 'vmcryptd_http_request_duration_seconds_count{route="unmatched",method="GET",code="4xx"}' 2
delta "unmatched DELETE" 'vmcryptd_http_request_duration_seconds_count{route="unmatched",method="DELETE",code="4xx"}' 1
delta "a made-up method is \"other\"" 'vmcryptd_http_request_duration_seconds_count{route="unmatched",method="other",code="4xx"}' 1
check "no raw URL became a label" not_contains "vmsecret-in-url" "$(cat "$LAST")"
check "  ... nor a made-up method" not_contains "BREW" "$(cat "$LAST")"
check "no VM name or id in any label" not_contains "vma" "$(cat "$LAST")"
check "  ... nor a VM id" not_contains "$(cat "$WORK/id")" "$(cat "$LAST")"
check "no token text" not_contains "$(cut -d- -f4 "$WORK/vma.cred")" "$(cat "$LAST")"
check "  ... nor a named token's" not_contains "$(cut -d- -f4 "$WORK/prom.tok")" "$(cat "$LAST")"
series=$($PARSE series "$LAST" | wc -l)
check "bounded: $series series after all this" test "$series" -lt 1500
check "the scrapes themselves are timed" test "$(m "$LAST" 'vmcryptd_http_request_duration_seconds_count{route="/metrics",method="GET",code="2xx"}')" -ge $((N - 2))
check "metrics reads are not audited" not_contains "metrics.read" "$(admin audit --result ok)"
check_contains "metrics refusals are" "metrics.read" "$(admin audit --result denied)"

# --- the fleet count's interval ---
stop_server TERM
check_eq "clean stop" 0 "$SERVER_RC"
check "restart with a 1 h fleet interval" start_server --metrics-fleet-interval 3600 --auth-free-failures 3
check "scrape" scrape
first=$(m "$LAST" vmcryptd_fleet_scan_timestamp_seconds)
check_eq "counters start again at 0 with the process" 0 "$(m "$LAST" 'vmcryptd_secret_reads_total{operation="read"}')"
check_eq "the fleet is counted from the store" 1 "$(m "$LAST" 'vmcryptd_vms{state="enrolled"}')"
admin vm register late >/dev/null 2>&1
sleep 1.1
check "scrape" scrape
check_eq "within the interval: the same count" 1 "$(m "$LAST" 'vmcryptd_vms{state="registered"}')"
check_eq "  ... from the same scan" "$first" "$(m "$LAST" vmcryptd_fleet_scan_timestamp_seconds)"

# Lockout of a guesser on 127.0.0.3 (3 free failures): the 3rd failure starts one, the next two
# requests are refused unread; the scraper on 127.0.0.1 is not slowed.
G='route="/v1/vm/goal",method="GET"'
mark
for i in 1 2 3 4 5; do
	curl -sS --cacert "$DATA/tls.crt" --interface 127.0.0.3 -o /dev/null -w '%{http_code}\n' \
		"https://$ADDR/v1/vm/goal" >>"$WORK/guesser"
done
check_eq "the guesser: 401 3 times, then 429" "401 401 401 429 429" "$(tr '\n' ' ' <"$WORK/guesser" | sed 's/ $//')"
check "scrape" scrape
delta "one lockout started" vmcryptd_auth_lockouts_total 1
delta "two requests refused unread" vmcryptd_auth_locked_out_requests_total 2
delta "3 failures counted on the goal (the refused ones are not failures)" "vmcryptd_auth_failures_total{$G,reason=\"missing\"}" 3

stop_server TERM
check_eq "clean stop" 0 "$SERVER_RC"
"$VMCRYPTD" --data-dir "$DATA" --metrics-fleet-interval x >/dev/null 2>&1
check_eq "a bad --metrics-fleet-interval: exit 2" 2 "$?"
finish
