#!/bin/bash
# The authorization matrix on every route: admin, VM A, VM B, a revoked VM, no token, a wrong
# token. Admin routes take only the admin token; VM routes only a VM credential, and a VM sees
# only its own secrets; a revoked VM reads nothing.
. "$(dirname "$0")/server-lib.sh"

# The matrix makes about 70 refused authentications from 127.0.0.1 within seconds, on purpose:
# exactly what the failed-authentication throttle locks out. It checks the decisions, not the
# rate, so it raises the free allowance; test-server-throttle.sh tests the throttle's defaults.
check "start" start_server --auth-free-failures 1000
auth_file admin "$DATA/admin.token"
check "VM A" new_vm vma
check "VM B" new_vm vmb
check "VM R" new_vm vmr
admin vm register victim >/dev/null 2>&1
admin key create k1 >/dev/null
admin key create kvictim >/dev/null
api PUT /v1/vm/secrets/a-only "$WORK/vma.hdr" "{\"value\":\"$(b64 secret-of-a)\"}"
api PUT /v1/vm/secrets/shared "$WORK/vma.hdr" "{\"value\":\"$(b64 a-shared)\"}"
api PUT /v1/vm/secrets/shared "$WORK/vmb.hdr" "{\"value\":\"$(b64 b-shared)\"}"
api PUT /v1/vm/secrets/r-vol "$WORK/vmr.hdr" "{\"value\":\"$(b64 secret-of-r)\"}"
check_eq "VM R stores before revocation" 201 "$STATUS"
# Header backups (raw bytes with their SHA-256) of A, B and R, for the GET rows below.
luks2_header "$WORK/hdr.bin" 1m
hsha=$(sha256sum "$WORK/hdr.bin" | cut -d' ' -f1)
for vm in vma vmb vmr; do
	STATUS=$(curl -sS --cacert "$DATA/tls.crt" -H "@$WORK/$vm.hdr" -H "Vmcrypt-SHA256: $hsha" -X PUT \
		--data-binary "@$WORK/hdr.bin" -o /dev/null -w '%{http_code}' "https://$ADDR/v1/vm/headers/os")
	check_eq "$vm stores a header backup" 201 "$STATUS"
done
admin vm revoke vmr >/dev/null

# Wrong tokens: well-formed, right kind, wrong secret (and, for VMs, a real VM id).
(umask 077
 printf 'vmc-admin-%s\n' "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$WORK/wrong-admin.tok"
 id=$(cut -d- -f3 "$WORK/vma.cred")
 printf 'vmc-vm-%s-%s\n' "$id" "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$WORK/wrong-vm.tok"
 printf 'garbage\n' >"$WORK/garbage.tok")
auth_file wrong-admin "$WORK/wrong-admin.tok"
auth_file wrong-vm "$WORK/wrong-vm.tok"
auth_file garbage "$WORK/garbage.tok"

# KIND METHOD PATH BODY: admin routes run last with the admin token, so their changes (revoke,
# delete, disable) hit objects no other row needs.
routes=(
	"vm GET /v1/vm/goal -"
	"vm PUT /v1/vm/secrets/x {\"value\":\"$(b64 v)\"}"
	"vm GET /v1/vm/secrets/shared -"
	"vm POST /v1/vm/status {\"OsVolumeEncrypted\":\"NotEncrypted\",\"DataVolumesEncrypted\":\"NotMounted\"}"
	"vm GET /v1/vm/headers/os -"
	"admin POST /v1/admin/vms {\"name\":\"newvm\"}"
	"admin GET /v1/admin/vms -"
	"admin GET /v1/admin/vms/vma -"
	"admin POST /v1/admin/vms/victim/revoke -"
	"admin DELETE /v1/admin/vms/victim -"
	"admin POST /v1/admin/vms/vmb/encryption/enable {\"volumeType\":\"Data\"}"
	"admin POST /v1/admin/vms/vmb/encryption/disable {\"volumeType\":\"Data\"}"
	"admin GET /v1/admin/vms/vma/encryption -"
	"admin POST /v1/admin/vms/vmb/extension/remove -"
	"admin POST /v1/admin/keys {\"name\":\"k2\"}"
	"admin GET /v1/admin/keys -"
	"admin GET /v1/admin/keys/k1 -"
	"admin POST /v1/admin/keys/k1/rotate -"
	"admin POST /v1/admin/keys/kvictim/disable -"
	"admin POST /v1/admin/keys/kvictim/enable -"
	"admin GET /v1/admin/secrets -"
	"admin GET /v1/admin/secrets/vma/a-only?reveal=true -"
	"admin GET /v1/admin/headers -"
	"admin GET /v1/admin/headers/vma/os -"
	"admin GET /v1/admin/audit -"
)
for row in "${routes[@]}"; do
	read -r kind method path body <<<"$row"
	send() { if [ "$body" = - ]; then api "$method" "$path" "$1"; else api "$method" "$path" "$1" "$body"; fi; }
	send -;                     check_eq "$method $path, no token: 401" 401 "$STATUS"
	send "$WORK/garbage.hdr";   check_eq "$method $path, malformed token: 401" 401 "$STATUS"
	send "$WORK/vmr.hdr";       check_eq "$method $path, revoked VM: 403" 403 "$STATUS"
	if [ "$kind" = vm ]; then
		send "$WORK/wrong-vm.hdr"; check_eq "$method $path, wrong VM token: 401" 401 "$STATUS"
		send "$WORK/admin.hdr";    check_eq "$method $path, admin token: 403" 403 "$STATUS"
		check_contains "$method $path, admin token: says why" "needs a VM credential" "$BODY"
		send "$WORK/vmb.hdr";      check "$method $path, VM B: allowed ($STATUS)" test "${STATUS:0:1}" = 2
		send "$WORK/vma.hdr";      check "$method $path, VM A: allowed ($STATUS)" test "${STATUS:0:1}" = 2
	else
		send "$WORK/wrong-admin.hdr"; check_eq "$method $path, wrong admin token: 401" 401 "$STATUS"
		send "$WORK/vma.hdr";      check_eq "$method $path, VM A: 403" 403 "$STATUS"
		send "$WORK/vmb.hdr";      check_eq "$method $path, VM B: 403" 403 "$STATUS"
		check "$method $path: no secret in a refusal" not_contains "$(b64 secret-of-a)" "$BODY"
		send "$WORK/admin.hdr";    check "$method $path, admin: allowed ($STATUS)" test "${STATUS:0:1}" = 2
	fi
done

curl -sS --cacert "$DATA/tls.crt" -o /dev/null -D "$WORK/headers" "https://$ADDR/v1/vm/goal"
check "401 carries a Bearer challenge (RFC 6750)" grep -qi '^WWW-Authenticate: Bearer' "$WORK/headers"

# Enrollment takes only an enrollment token.
admin vm register late >"$WORK/late.enroll" 2>/dev/null
auth_file late.enroll "$WORK/late.enroll"
for cred in admin vma vmr wrong-vm; do
	api POST /v1/enroll "$WORK/$cred.hdr" '{"hostname":"h"}'
	check "POST /v1/enroll with $cred: refused ($STATUS)" test "$STATUS" = 401 -o "$STATUS" = 403
done
api POST /v1/enroll - '{"hostname":"h"}'
check_eq "POST /v1/enroll, no token: 401" 401 "$STATUS"
admin vm revoke late >/dev/null
api POST /v1/enroll "$WORK/late.enroll.hdr" '{"hostname":"h"}'
check_eq "enrollment token of a revoked VM: 401" 401 "$STATUS"

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

out=$(admin audit)
check_contains "auth failures are audited" "denied: missing credential" "$out"
check_contains "revoked access is audited" "denied: the credential of VM 'vmr' is revoked" "$out"
check_contains "wrong admin tokens are audited" "denied: invalid admin token" "$out"
check "no token text in the audit trail" not_contains "$(cut -d- -f4 "$WORK/vma.cred")" "$(admin audit --json)"
stop_server TERM
check_eq "clean stop" 0 "$SERVER_RC"
finish
