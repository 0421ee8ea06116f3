#!/bin/bash
# vmcryptd first start, the full admin flow through vmcrypt-admin, clean shutdown and restart.
. "$(dirname "$0")/server-lib.sh"

check "first start serves" start_server
mode() { stat -c %a "$1"; }
check_eq "master key is 0600" 600 "$(mode "$DATA/master.key")"
check_eq "admin token is 0600" 600 "$(mode "$DATA/admin.token")"
check_eq "TLS key is 0600" 600 "$(mode "$DATA/tls.key")"
check_eq "data dir is 0700" 700 "$(mode "$DATA")"
check "master key is 32 bytes" test "$(stat -c %s "$DATA/master.key")" = 32
check "self-signed cert names 127.0.0.1" sh -c "openssl x509 -in '$DATA/tls.crt' -noout -ext subjectAltName | grep -q 127.0.0.1"
if [ "$STORE_KIND" = sqlite ]; then
	check "SQLite store in WAL mode" test -e "$DATA/vmcryptd.db-wal"
else
	skip "SQLite store in WAL mode (the store is PostgreSQL)"
fi
check_eq "plain HTTP gets no HTTP answer" 000 "$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' "http://$ADDR/v1/vm/goal")"
check "server cert verified with --ca-file" admin vm list

out=$(admin vm register web1 2>"$WORK/register.err")
check_contains "register prints a one-time enrollment token" "vmc-enroll-" "$out"
check_contains "register explains the token" "One-time enrollment token" "$(cat "$WORK/register.err")"
admin vm register web1 >/dev/null 2>"$WORK/err"
check_eq "register twice: exit 4 (conflict)" 4 "$?"
check_contains "register twice names the VM" "'web1' is already registered" "$(cat "$WORK/err")"
check "vm list shows it" sh -c "'$VMCRYPT_ADMIN' --server https://$ADDR --ca-file '$DATA/tls.crt' --token-file '$DATA/admin.token' vm list | grep -q '^web1 *registered'"
check "vm list --json" sh -c "'$VMCRYPT_ADMIN' --server https://$ADDR --ca-file '$DATA/tls.crt' --token-file '$DATA/admin.token' --json vm list | grep -q '\"name\": \"web1\"'"

check "new_vm db1 (register + enroll)" new_vm db1
out=$(admin vm show db1)
check_contains "vm show: enrolled" "State               : enrolled" "$out"
check_contains "vm show: hostname from enrollment" "host-db1" "$out"
check_contains "vm show --json" '"state": "enrolled"' "$(admin vm show db1 --json)"

out=$(admin key create kek-rsa)
check_contains "key create: RSA 2048 by default" "Type    : RSA 2048" "$out"
check_contains "key create AES" "Type    : AES 256" "$(admin key create kek-aes --kty AES)"
check_contains "key create RSA 3072" "Type    : RSA 3072" "$(admin key create kek-3072 --kty RSA --size 3072)"
admin key create bad --kty RSA --size 1024 >/dev/null 2>"$WORK/err"
check_eq "RSA 1024 refused (exit 13)" 13 "$?"
check_contains "RSA 1024 message" "2048, 3072 or 4096" "$(cat "$WORK/err")"
check_contains "key list" "kek-aes" "$(admin key list)"
out=$(admin key show kek-rsa)
check_contains "key show: public key only" "BEGIN PUBLIC KEY" "$out"
check "key show: never a private key" not_contains PRIVATE "$out"
check_contains "key list --json" '"kty": "AES"' "$(admin --json key list)"

out=$(admin vm encryption enable --vm db1 --volume-type Data --kek kek-rsa)
check_contains "enable: operation" "EncryptionOperation    : EnableEncryption" "$out"
check_contains "enable: default algorithm RSA-OAEP-256" "RSA-OAEP-256" "$out"
check_contains "enable: sequence 1" "SequenceVersion        : 1" "$out"
admin vm encryption enable --vm db1 --volume-type All --kek kek-rsa --kek-algorithm RSA1_5 >/dev/null 2>"$WORK/err"
check_eq "RSA1_5 refused" 13 "$?"
check_contains "RSA1_5 message says why" "padding-oracle" "$(cat "$WORK/err")"
check_contains "RSA1_5 message says what to use" "RSA-OAEP-256" "$(cat "$WORK/err")"
admin vm encryption enable --vm db1 --volume-type All --kek kek-aes --kek-algorithm RSA-OAEP >/dev/null 2>"$WORK/err"
check_contains "RSA-OAEP with an AES key refused" "does not fit" "$(cat "$WORK/err")"
admin vm encryption enable --vm db1 --volume-type Sideways >/dev/null 2>&1
check_eq "bad --volume-type is a usage error" 2 "$?"
admin vm encryption enable --vm nosuchvm --volume-type OS >/dev/null 2>"$WORK/err"
check_contains "enable on an unknown VM" "no VM named 'nosuchvm'" "$(cat "$WORK/err")"

# The VM stores a secret and reports.
api PUT /v1/vm/secrets/data0 "$WORK/db1.hdr" "{\"value\":\"$(b64 'passphrase-db1-data0')\",\"fileName\":\"data0.bek\"}"
check_eq "VM stores a wrapped secret" 201 "$STATUS"
report db1 NotEncrypted Encrypted 1 "Encryption succeeded for data volumes"
check_eq "VM reports" 200 "$STATUS"

out=$(admin vm encryption show --vm db1)
check_contains "show: OsVolumeEncrypted" "OsVolumeEncrypted          : NotEncrypted" "$out"
check_contains "show: DataVolumesEncrypted" "DataVolumesEncrypted       : Encrypted" "$out"
check_contains "show: settings are references" "OsVolumeEncryptionSettings : vmcryptd:secrets/db1/data0/1 (Wrapped BEK); KEK vmcryptd:keys/kek-rsa RSA-OAEP-256" "$out"
check_contains "show: ProgressMessage" "ProgressMessage            : Encryption succeeded for data volumes" "$out"
check "show: LastReport with age" grep -Eq '^LastReport                 : [0-9T:-]+Z \([0-9]+ s ago\)$' <<<"$out"
check_contains "show: no drift" "Drift                      : none" "$out"
check "show: no secret value" not_contains "$(b64 passphrase-db1-data0)" "$out"
check_contains "show --json" '"OsVolumeEncrypted": "NotEncrypted"' "$(admin vm encryption show --vm db1 --json)"

out=$(admin secret list)
check_contains "secret list" "db1/data0" "$out"
check_contains "secret list --vm" "Wrapped BEK" "$(admin secret list --vm db1)"
out=$(admin secret show db1/data0)
check_contains "secret show hides the value" "(hidden" "$out"
check_contains "secret show: tags" "DiskEncryptionKeyFileName = data0.bek" "$out"
check_contains "secret show: KEK tag" "DiskEncryptionKeyEncryptionKeyURL = vmcryptd:keys/kek-rsa/1" "$out"
check_contains "secret show: algorithm tag" "DiskEncryptionKeyEncryptionAlgorithm = RSA-OAEP-256" "$out"
check_contains "secret show: MachineName tag" "MachineName = db1" "$out"
out=$(admin secret show db1/data0 --reveal)
check_contains "secret show --reveal unwraps" "Value       : $(b64 passphrase-db1-data0)" "$out"
check_contains "reveal is audited" "secret.reveal" "$(admin audit --vm db1)"
check_contains "VM secret write is audited under the VM" "secret.write" "$(admin audit --vm db1)"
check_contains "enrollment is audited" "vm.enroll" "$(admin audit --vm db1)"
check_contains "settings change is audited" "encryption.enable" "$(admin audit --vm db1)"
check_contains "key operations are audited" "key.create" "$(admin audit)"
check_contains "audit --since TIME" "secret.reveal" "$(admin audit --since 2000-01-01T00:00:00Z)"
check_eq "audit --since the future is empty" 1 "$(admin audit --since 2999-01-01T00:00:00Z | wc -l)"
check_contains "audit --json" '"action": "secret.reveal"' "$(admin audit --vm db1 --json)"

out=$(admin key rotate kek-rsa)
check_contains "key rotate: version 2" "Version : 2" "$out"
check_contains "key rotate re-wraps existing secrets" "Re-wrapped 1 secrets" "$out"
out=$(admin secret show db1/data0)
check_contains "re-wrapped secret: new version" "Version     : 2" "$out"
check_contains "re-wrapped secret: under the new key version" "vmcryptd:keys/kek-rsa/2" "$out"
check_contains "re-wrap is audited" "secret.rewrap" "$(admin audit --vm db1)"
api PUT /v1/vm/secrets/data1 "$WORK/db1.hdr" "{\"value\":\"$(b64 'passphrase-db1-data1')\"}"
check_contains "after rotation new secrets use version 2" "vmcryptd:keys/kek-rsa/2" "$BODY"
api GET /v1/vm/secrets/data0 "$WORK/db1.hdr"
check_contains "after rotation old secrets still unwrap" "$(b64 passphrase-db1-data0)" "$BODY"
check_contains "key disable" "disabled" "$(admin key disable kek-3072)"
check_contains "key list shows disabled" "no" "$(admin key list | grep kek-3072)"

admin vm delete db1 >/dev/null 2>"$WORK/err"
check_eq "delete while enabled: exit 4" 4 "$?"
check_contains "delete says disable first" "vmcrypt-admin vm encryption disable --vm db1" "$(cat "$WORK/err")"
check_contains "revoke" "revoked" "$(admin vm revoke web1)"
check_contains "vm list shows revoked" "revoked" "$(admin vm list | grep web1)"
check_contains "delete a revoked VM" "deleted" "$(admin vm delete web1)"
check "deleted VM is gone" sh -c "! '$VMCRYPT_ADMIN' --server https://$ADDR --ca-file '$DATA/tls.crt' --token-file '$DATA/admin.token' vm list | grep -q web1"

# Client-side failures.
"$VMCRYPT_ADMIN" --server "https://$ADDR" --token-file "$DATA/admin.token" vm list >/dev/null 2>"$WORK/err"
check_eq "unknown CA: exit 13" 13 "$?"
check_contains "unknown CA: says --ca-file" "--ca-file" "$(cat "$WORK/err")"
printf 'vmc-admin-%064d\n' 0 >"$WORK/wrong.token"; chmod 600 "$WORK/wrong.token"
"$VMCRYPT_ADMIN" --server "https://$ADDR" --ca-file "$DATA/tls.crt" --token-file "$WORK/wrong.token" vm list >/dev/null 2>"$WORK/err"
check_eq "wrong admin token: exit 13" 13 "$?"
check_contains "wrong admin token: 401" "HTTP 401" "$(cat "$WORK/err")"
"$VMCRYPT_ADMIN" --server "https://$ADDR" --ca-file "$DATA/tls.crt" vm list >/dev/null 2>&1
check_eq "no token file: usage error" 2 "$?"
"$VMCRYPT_ADMIN" --server "https://127.0.0.1:1" --ca-file "$DATA/tls.crt" --token-file "$DATA/admin.token" vm list >/dev/null 2>&1
check_eq "unreachable server: exit 13" 13 "$?"
mkdir -p "$WORK/home/.config/vmcrypt"
printf 'server = https://%s\ntoken-file = %s\nca-file = %s\n' "$ADDR" "$DATA/admin.token" "$DATA/tls.crt" >"$WORK/home/.config/vmcrypt/admin.conf"
check "defaults from ~/.config/vmcrypt/admin.conf" env HOME="$WORK/home" "$VMCRYPT_ADMIN" vm list
printf 'sever = x\n' >"$WORK/bad.conf"
"$VMCRYPT_ADMIN" --config "$WORK/bad.conf" vm list >/dev/null 2>&1
check_eq "a typo in the configuration is an error" 2 "$?"

# Clean shutdown and restart with everything kept.
token_before=$(sha256sum <"$DATA/admin.token")
stop_server TERM
check_eq "SIGTERM: clean exit 0" 0 "$SERVER_RC"
check_contains "shutdown is logged" "Stopped." "$(cat "$WORK/vmcryptd.log")"
check "listen file removed on shutdown" test ! -e "$DATA/vmcryptd.listen"
check "restart" start_server
check_eq "admin token kept across restarts" "$token_before" "$(sha256sum <"$DATA/admin.token")"
check_contains "VMs kept across restarts" "db1" "$(admin vm list)"
api GET /v1/vm/secrets/data1 "$WORK/db1.hdr"
check_contains "VM credential and secrets kept across restarts" "$(b64 passphrase-db1-data1)" "$BODY"
secret_pattern "$WORK/leak" "$(b64 passphrase-db1-data0)"
secret_pattern "$WORK/leak" "$(b64 passphrase-db1-data1)"
secret_pattern "$WORK/leak" "$(cut -d- -f4 "$WORK/db1.cred")"       # the credential's secret part
secret_pattern "$WORK/leak" "$(cut -d- -f3 "$DATA/admin.token")"     # the admin token's secret part
secret_pattern "$WORK/leak" "$(cut -d- -f4 "$WORK/db1.enroll")"     # the enrollment token's
check "no secret value or token in the log" no_leak "$WORK/leak" "$WORK/vmcryptd.log"
check "no secret value or token in the database files" no_leak "$WORK/leak" $(store_files)
secret_pattern "$WORK/leak2" passphrase-db1
check "no plaintext passphrase in the database files" no_leak "$WORK/leak2" $(store_files)
stop_server TERM
check_eq "final SIGTERM" 0 "$SERVER_RC"
finish
