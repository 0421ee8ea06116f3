#!/bin/bash
# The authorization matrix: every route of the route table (`vmcryptd --list-routes`, which prints
# the table itself, so a new route without a row here fails this test) for every caller: no token,
# a malformed one, wrong admin, VM and named tokens, an unknown and a revoked named token, VMs A
# and B, a revoked VM, an enrollment token, named tokens with the metrics, reader, operator and admin
# roles, and the admin token. Role routes take the admin token or a named token of at least the route's
# role (403 below it, naming both roles; 401 for a wrong, unknown or revoked one); VM routes only
# a VM credential, and a VM sees only its own secrets; a revoked VM reads nothing.
. "$(dirname "$0")/server-lib.sh"
require_cmd cryptsetup sha256sum

# The matrix makes a few hundred refused authentications from 127.0.0.1 within seconds, on
# purpose: exactly what the failed-authentication throttle locks out. It checks the decisions, not
# the rate, so it raises the free allowance; test-server-throttle.sh tests the throttle's defaults.
check "start" start_server --auth-free-failures 100000
auth_file admin "$DATA/admin.token"
check "VM A" new_vm vma
check "VM B" new_vm vmb
check "VM R" new_vm vmr
admin vm register victim >/dev/null 2>&1
admin vm register pending >"$WORK/pending.enroll" 2>/dev/null
auth_file pending.enroll "$WORK/pending.enroll"
admin key create k1 >/dev/null
admin key create kvictim >/dev/null
api PUT /v1/vm/secrets/a-only "$WORK/vma.hdr" "{\"value\":\"$(b64 secret-of-a)\"}"
api PUT /v1/vm/secrets/shared "$WORK/vma.hdr" "{\"value\":\"$(b64 a-shared)\"}"
api PUT /v1/vm/secrets/shared "$WORK/vmb.hdr" "{\"value\":\"$(b64 b-shared)\"}"
api PUT /v1/vm/secrets/r-vol "$WORK/vmr.hdr" "{\"value\":\"$(b64 secret-of-r)\"}"
check_eq "VM R stores before revocation" 201 "$STATUS"
# Header backups (a real LUKS2 header with its SHA-256) of A, B and R, for the GET rows below.
luks2_header "$WORK/hdr.bin" 1m
hsha=$(sha256sum "$WORK/hdr.bin" | cut -d' ' -f1)
put_header() { # AUTH-FILE|-: PUT of hdr.bin as the header backup "os"; sets STATUS and BODY
	local auth=()
	[ "$1" = - ] || auth=(-H "@$1")
	STATUS=$(curl -sS --cacert "$DATA/tls.crt" "${auth[@]}" -H "Vmcrypt-SHA256: $hsha" -X PUT \
		--data-binary "@$WORK/hdr.bin" -o "$WORK/resp" -w '%{http_code}' "https://$ADDR/v1/vm/headers/os")
	BODY=$(cat "$WORK/resp")
}
for vm in vma vmb vmr; do
	put_header "$WORK/$vm.hdr"
	check_eq "$vm stores a header backup" 201 "$STATUS"
done
admin vm revoke vmr >/dev/null

# Named tokens, made by the admin through vmcrypt-admin: one of each role, one revoked, one to
# be revoked by the token row below.
for t in metrics:metrics reader:reader operator:operator adminrole:admin revoked:reader victim-token:reader; do
	(umask 077; admin token create "${t%%:*}" --role "${t#*:}" >"$WORK/${t%%:*}.tok" 2>/dev/null)
	auth_file "${t%%:*}" "$WORK/${t%%:*}.tok"
done
check "reader token made" grep -q '^vmc-named-' "$WORK/reader.tok"
admin token revoke revoked >/dev/null

# Wrong tokens: well-formed, right kind, wrong secret (for VMs and named tokens, a real id); a
# named token whose id nobody holds.
rand_hex() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
(umask 077
 printf 'vmc-admin-%s\n' "$(rand_hex)" >"$WORK/wrong-admin.tok"
 printf 'vmc-vm-%s-%s\n' "$(cut -d- -f3 "$WORK/vma.cred")" "$(rand_hex)" >"$WORK/wrong-vm.tok"
 printf 'vmc-named-%s-%s\n' "$(cut -d- -f3 "$WORK/reader.tok")" "$(rand_hex)" >"$WORK/wrong-named.tok"
 printf 'vmc-named-%s-%s\n' "$(rand_hex | head -c 32)" "$(rand_hex)" >"$WORK/unknown-named.tok"
 printf 'garbage\n' >"$WORK/garbage.tok")
for t in wrong-admin wrong-vm wrong-named unknown-named garbage; do auth_file "$t" "$WORK/$t.tok"; done

# The matrix: "METHOD PATTERN" as --list-routes prints it -> "NEEDS METHOD PATH BODY". NEEDS is
# what the route must need (this test's copy of the matrix, checked against the table's own);
# PATH a concrete request. Rows that change something name objects no other row needs.
declare -A ROW=(
	["POST /v1/enroll"]="enroll POST /v1/enroll {\"hostname\":\"h\"}"
	["GET /v1/vm/goal"]="vm GET /v1/vm/goal -"
	["PUT /v1/vm/secrets/{volume}"]="vm PUT /v1/vm/secrets/x {\"value\":\"$(b64 v)\"}"
	["GET /v1/vm/secrets/{volume}"]="vm GET /v1/vm/secrets/shared -"
	["POST /v1/vm/status"]="vm POST /v1/vm/status {\"OsVolumeEncrypted\":\"NotEncrypted\",\"DataVolumesEncrypted\":\"NotMounted\"}"
	["PUT /v1/vm/headers/{volume}"]="vm PUT /v1/vm/headers/os @header"
	["GET /v1/vm/headers/{volume}"]="vm GET /v1/vm/headers/os -"
	["POST /v1/admin/vms"]="operator POST /v1/admin/vms {\"name\":\"newvm\"}"
	["GET /v1/admin/vms"]="reader GET /v1/admin/vms -"
	["GET /v1/admin/vms/{vm}"]="reader GET /v1/admin/vms/vma -"
	["POST /v1/admin/vms/{vm}/revoke"]="operator POST /v1/admin/vms/victim/revoke -"
	["DELETE /v1/admin/vms/{vm}"]="admin DELETE /v1/admin/vms/victim -"
	["POST /v1/admin/vms/{vm}/encryption/enable"]="operator POST /v1/admin/vms/vmb/encryption/enable {\"volumeType\":\"Data\"}"
	["POST /v1/admin/vms/{vm}/encryption/disable"]="operator POST /v1/admin/vms/vmb/encryption/disable {\"volumeType\":\"Data\"}"
	["GET /v1/admin/vms/{vm}/encryption"]="reader GET /v1/admin/vms/vma/encryption -"
	["POST /v1/admin/vms/{vm}/extension/remove"]="operator POST /v1/admin/vms/vmb/extension/remove -"
	["POST /v1/admin/keys"]="admin POST /v1/admin/keys {\"name\":\"k2\"}"
	["GET /v1/admin/keys"]="reader GET /v1/admin/keys -"
	["GET /v1/admin/keys/{key}"]="reader GET /v1/admin/keys/k1 -"
	["POST /v1/admin/keys/{key}/rotate"]="admin POST /v1/admin/keys/k1/rotate -"
	["POST /v1/admin/keys/{key}/disable"]="admin POST /v1/admin/keys/kvictim/disable -"
	["POST /v1/admin/keys/{key}/enable"]="admin POST /v1/admin/keys/kvictim/enable -"
	["GET /v1/admin/secrets"]="reader GET /v1/admin/secrets -"
	["GET /v1/admin/secrets/{vm}/{volume}"]="reader GET /v1/admin/secrets/vma/a-only -"
	["GET /v1/admin/secrets/{vm}/{volume}?reveal=true"]="admin GET /v1/admin/secrets/vma/a-only?reveal=true -"
	["GET /v1/admin/audit"]="reader GET /v1/admin/audit -"
	["GET /v1/admin/headers"]="reader GET /v1/admin/headers -"
	["GET /v1/admin/headers/{vm}/{volume}"]="admin GET /v1/admin/headers/vma/os -"
	["POST /v1/admin/tokens"]="admin POST /v1/admin/tokens {\"name\":\"t-new\",\"role\":\"reader\"}"
	["GET /v1/admin/tokens"]="reader GET /v1/admin/tokens -"
	["POST /v1/admin/tokens/{token}/revoke"]="admin POST /v1/admin/tokens/victim-token/revoke -"
	["GET /metrics"]="metrics GET /metrics -"
)
rank() { case "$1" in metrics) echo 1 ;; reader) echo 2 ;; operator) echo 3 ;; admin) echo 4 ;; *) echo 0 ;; esac; }

"$VMCRYPTD" --list-routes >"$WORK/routes" 2>&1
check "vmcryptd --list-routes" test -s "$WORK/routes"
seen=0
while read -r rmethod rpattern rneeds; do
	key="$rmethod $rpattern"
	row=${ROW[$key]:-}
	if [ -z "$row" ]; then
		not_ok "route $key (needs $rneeds) has no row in this matrix"
		continue
	fi
	seen=$((seen + 1))
	read -r needs method path body <<<"$row"
	check_eq "$key: the table says it needs $needs" "$needs" "$rneeds"
	[ "$needs" = enroll ] && continue # below, with the enrollment tokens
	send() {
		if [ "$body" = @header ]; then put_header "$1"
		elif [ "$body" = - ]; then api "$method" "$path" "$1"
		else api "$method" "$path" "$1" "$body"; fi
	}
	send -;                           check_eq "$key, no token: 401" 401 "$STATUS"
	send "$WORK/garbage.hdr";         check_eq "$key, malformed token: 401" 401 "$STATUS"
	send "$WORK/vmr.hdr";             check_eq "$key, revoked VM: 403" 403 "$STATUS"
	send "$WORK/pending.enroll.hdr";  check_eq "$key, enrollment token: 403" 403 "$STATUS"
	if [ "$needs" = vm ]; then
		send "$WORK/wrong-vm.hdr";    check_eq "$key, wrong VM token: 401" 401 "$STATUS"
		send "$WORK/admin.hdr";       check_eq "$key, admin token: 403" 403 "$STATUS"
		check_contains "$key, admin token: says why" "needs a VM credential (from POST /v1/enroll); the admin token was presented" "$BODY"
		for t in metrics reader operator adminrole revoked wrong-named; do
			send "$WORK/$t.hdr";      check_eq "$key, named token $t: 403" 403 "$STATUS"
		done
		check_contains "$key, named token: says why" "needs a VM credential (from POST /v1/enroll); a named token was presented" "$BODY"
		send "$WORK/vmb.hdr";         check "$key, VM B: allowed ($STATUS)" test "${STATUS:0:1}" = 2
		send "$WORK/vma.hdr";         check "$key, VM A: allowed ($STATUS)" test "${STATUS:0:1}" = 2
		continue
	fi
	for t in wrong-admin wrong-named unknown-named revoked; do
		send "$WORK/$t.hdr";          check_eq "$key, $t token: 401" 401 "$STATUS"
	done
	check_contains "$key, a revoked token fails like a wrong one" '"message":"invalid credential"' "$BODY"
	send "$WORK/vma.hdr";             check_eq "$key, VM A: 403" 403 "$STATUS"
	check_contains "$key, VM A: says why" "needs the admin token or a named token with the $needs role; a VM credential was presented" "$BODY"
	check "$key: no secret in a refusal" not_contains "$(b64 secret-of-a)" "$BODY"
	# The least role allowed goes first and must succeed; those above it must pass
	# authorization (a change already made may answer 404 or 409 the second time).
	first=1
	for t in metrics:metrics reader:reader operator:operator adminrole:admin admin:admin; do
		caller=${t%%:*} role=${t#*:}
		send "$WORK/$caller.hdr"
		if [ "$(rank "$role")" -lt "$(rank "$needs")" ]; then
			check_eq "$key, $caller: 403" 403 "$STATUS"
			[ "$caller" = admin ] || check_contains "$key, $caller: names both roles" \
				"needs the $needs role; token '$caller' has $role" "$BODY"
			check "$key, $caller: no secret in the refusal" not_contains "$(b64 secret-of-a)" "$BODY"
		elif [ -n "$first" ]; then
			check "$key, $caller: allowed ($STATUS)" test "${STATUS:0:1}" = 2
			first=
		else
			check "$key, $caller: authorized ($STATUS)" test "$STATUS" != 401 -a "$STATUS" != 403
		fi
	done
done <"$WORK/routes"
check_eq "every row of this matrix is a route of the table" "${#ROW[@]}" "$seen"

curl -sS --cacert "$DATA/tls.crt" -o /dev/null -D "$WORK/headers" "https://$ADDR/v1/vm/goal"
check "401 carries a Bearer challenge (RFC 6750)" grep -qi '^WWW-Authenticate: Bearer' "$WORK/headers"

# Enrollment takes only an enrollment token.
admin vm register late >"$WORK/late.enroll" 2>/dev/null
auth_file late.enroll "$WORK/late.enroll"
for cred in admin vma vmr wrong-vm metrics reader adminrole revoked; do
	api POST /v1/enroll "$WORK/$cred.hdr" '{"hostname":"h"}'
	check "POST /v1/enroll with $cred: refused ($STATUS)" test "$STATUS" = 401 -o "$STATUS" = 403
done
api POST /v1/enroll - '{"hostname":"h"}'
check_eq "POST /v1/enroll, no token: 401" 401 "$STATUS"
admin vm revoke late >/dev/null
api POST /v1/enroll "$WORK/late.enroll.hdr" '{"hostname":"h"}'
check_eq "enrollment token of a revoked VM: 401" 401 "$STATUS"
api POST /v1/enroll "$WORK/pending.enroll.hdr" '{"hostname":"h"}'
check_eq "the enrollment token the matrix refused everywhere still enrolls" 200 "$STATUS"

# A VM sees only its own secrets.
api GET /v1/vm/secrets/a-only "$WORK/vmb.hdr"
check_eq "VM B cannot read VM A's volume: 404" 404 "$STATUS"
check "VM B gets no value of A" not_contains "$(b64 secret-of-a)" "$BODY"
api GET /v1/vm/secrets/shared "$WORK/vmb.hdr"
check_eq "same volume name: VM B gets its own" "$(b64 b-shared)" "$(json_field value)"
api GET /v1/vm/secrets/shared "$WORK/vma.hdr"
check_eq "same volume name: VM A gets its own" "$(b64 a-shared)" "$(json_field value)"
api GET /v1/vm/secrets/r-vol "$WORK/vmr.hdr"
check_eq "a revoked VM reads nothing, not even its own" 403 "$STATUS"
check "revoked: no value" not_contains "$(b64 secret-of-r)" "$BODY"

# What a reader reads of a secret: its metadata, never the value.
api GET /v1/admin/secrets/vma/a-only "$WORK/reader.hdr"
check_eq "reader: secret metadata 200" 200 "$STATUS"
check "  ... without the value" not_contains "$(b64 secret-of-a)" "$BODY"
api GET "/v1/admin/secrets/vma/a-only?reveal=1" "$WORK/operator.hdr"
check_eq "operator: ?reveal=1 is a reveal too: 403" 403 "$STATUS"
check_contains "  ... saying what it needs" "?reveal=true needs the admin role; token 'operator' has operator" "$BODY"
api GET "/v1/admin/secrets/vma/a-only?reveal=true" "$WORK/adminrole.hdr"
check_eq "admin-role token reveals: the value" "$(b64 secret-of-a)" "$(json_field value)"
api GET /v1/admin/keys/k1 "$WORK/reader.hdr"
check "reader: a key's public part, never private material" not_contains "PRIVATE" "$BODY"

out=$(admin audit)
check_contains "auth failures are audited" "denied: missing credential" "$out"
check_contains "revoked access is audited" "denied: the credential of VM 'vmr' is revoked" "$out"
check_contains "wrong admin tokens are audited" "denied: invalid admin token" "$out"
check_contains "a missing role is audited under the token's name" "token:reader" "$out"
check_contains "  ... saying what was missing" "denied: this route needs the operator role; token 'reader' has reader" "$out"
check_contains "a revoked token's use is audited as such" "denied: invalid credential (token 'revoked', revoked)" "$out"
check_contains "a change by the operator token is audited under its name" "token:operator" "$(admin audit --vm vmb)"
check_contains "the reveal by the admin-role token too" "token:adminrole" "$(admin audit --vm vma)"
check "no token text in the audit trail" not_contains "$(cut -d- -f4 "$WORK/vma.cred")" "$(admin audit --json)"
check "  ... nor a named token's" not_contains "$(cut -d- -f4 "$WORK/reader.tok")" "$(admin audit --json)"
stop_server TERM
check_eq "clean stop" 0 "$SERVER_RC"
finish
