#!/bin/bash
# The VM flow over HTTPS: enroll, goal, store and fetch volume secrets without a KEK and with RSA
# (RSA-OAEP-256, RSA-OAEP) and AES (A256KW) KEKs, status reports.
. "$(dirname "$0")/server-lib.sh"

check "start" start_server
admin vm register vm1 >"$WORK/vm1.enroll" 2>/dev/null
auth_file vm1.enroll "$WORK/vm1.enroll"
api POST /v1/enroll "$WORK/vm1.enroll.hdr" '{"hostname":"vm1.example","agentVersion":"0.1"}'
check_eq "enroll: 200" 200 "$STATUS"
check_contains "enroll returns a VM credential" '"credential":"vmc-vm-' "$BODY"
(umask 077; json_field credential >"$WORK/vm1.cred")
auth_file vm1 "$WORK/vm1.cred"
api POST /v1/enroll "$WORK/vm1.enroll.hdr" '{"hostname":"again"}'
check_eq "the enrollment token works once" 401 "$STATUS"
api POST /v1/enroll "$WORK/vm1.hdr" '{"hostname":"x"}'
check_eq "a VM credential cannot enroll" 403 "$STATUS"

api GET /v1/vm/goal "$WORK/vm1.hdr"
check_eq "goal: 200" 200 "$STATUS"
check_contains "goal before any setting: sequence 0" '"sequence":0' "$BODY"
check_contains "goal: operation None" '"EncryptionOperation":"None"' "$BODY"

# Without a KEK: content type BEK.
v0=$(head -c 127 /dev/urandom | base64 -w 0)
api PUT /v1/vm/secrets/os "$WORK/vm1.hdr" "{\"value\":\"$(b64 "$v0")\",\"fileName\":\"LinuxPassPhraseFileName\"}"
check_eq "store a secret without KEK: 201" 201 "$STATUS"
check_contains "content type BEK" '"contentType":"BEK"' "$BODY"
check "no value in the store response" not_contains "$(b64 "$v0")" "$BODY"
api GET /v1/vm/secrets/os "$WORK/vm1.hdr"
check_eq "fetch: 200" 200 "$STATUS"
check_eq "fetch returns the value" "$(b64 "$v0")" "$(json_field value)"
check_contains "tag DiskEncryptionKeyFileName" '"DiskEncryptionKeyFileName":"LinuxPassPhraseFileName"' "$BODY"
check_contains "tag MachineName" '"MachineName":"vm1"' "$BODY"

api PUT /v1/vm/secrets/os "$WORK/vm1.hdr" "{\"value\":\"$(b64 second)\"}"
check_contains "storing again makes version 2" '"version":2' "$BODY"
api GET /v1/vm/secrets/os "$WORK/vm1.hdr"
check_eq "fetch returns the newest version" "$(b64 second)" "$(json_field value)"
api GET /v1/vm/secrets/nothing "$WORK/vm1.hdr"
check_eq "fetch an unknown volume: 404" 404 "$STATUS"

# RSA KEK, default RSA-OAEP-256.
admin key create rsa1 >/dev/null
admin vm encryption enable --vm vm1 --volume-type Data --kek rsa1 >/dev/null
api GET /v1/vm/goal "$WORK/vm1.hdr"
check_contains "goal: sequence 1 after enable" '"sequence":1' "$BODY"
check_contains "goal: EnableEncryption" '"EncryptionOperation":"EnableEncryption"' "$BODY"
check_contains "goal: VolumeType" '"VolumeType":"Data"' "$BODY"
check_contains "goal: KEK URL" '"KeyEncryptionKeyURL":"vmcryptd:keys/rsa1"' "$BODY"
check_contains "goal: KEK algorithm" '"KeyEncryptionAlgorithm":"RSA-OAEP-256"' "$BODY"
v1=$(head -c 127 /dev/urandom | base64 -w 0)   # a 172-character ADE-style passphrase
api PUT /v1/vm/secrets/data0 "$WORK/vm1.hdr" "{\"value\":\"$(b64 "$v1")\"}"
check_eq "store with RSA KEK: 201" 201 "$STATUS"
check_contains "content type Wrapped BEK" '"contentType":"Wrapped BEK"' "$BODY"
check_contains "tag names the KEK version" '"DiskEncryptionKeyEncryptionKeyURL":"vmcryptd:keys/rsa1/1"' "$BODY"
check_contains "tag names the algorithm" '"DiskEncryptionKeyEncryptionAlgorithm":"RSA-OAEP-256"' "$BODY"
api GET /v1/vm/secrets/data0 "$WORK/vm1.hdr"
check_eq "fetch unwraps (RSA-OAEP-256)" "$(b64 "$v1")" "$(json_field value)"
api PUT /v1/vm/secrets/big "$WORK/vm1.hdr" "{\"value\":\"$(head -c 300 /dev/urandom | base64 -w 0)\"}"
check_eq "too long for RSA-2048 OAEP: 400" 400 "$STATUS"
check_contains "too long: says why" "too long for the RSA key" "$BODY"

# RSA-OAEP (SHA-1).
admin vm encryption enable --vm vm1 --volume-type All --kek rsa1 --kek-algorithm RSA-OAEP >/dev/null
v2=$(head -c 127 /dev/urandom | base64 -w 0)
api PUT /v1/vm/secrets/data1 "$WORK/vm1.hdr" "{\"value\":\"$(b64 "$v2")\"}"
check_contains "store with RSA-OAEP" '"DiskEncryptionKeyEncryptionAlgorithm":"RSA-OAEP"' "$BODY"
api GET /v1/vm/secrets/data1 "$WORK/vm1.hdr"
check_eq "fetch unwraps (RSA-OAEP)" "$(b64 "$v2")" "$(json_field value)"

# AES KEK, A256KW: a multiple of 8 bytes (RFC 3394) and not (RFC 5649 padding).
admin key create aes1 --kty AES >/dev/null
admin vm encryption enable --vm vm1 --volume-type All --kek aes1 >/dev/null
v3=$(head -c 64 /dev/urandom | base64 -w 0)
printf '%s' "$v3" | base64 -d >"$WORK/v3.bin"
api PUT /v1/vm/secrets/data2 "$WORK/vm1.hdr" "{\"value\":\"$v3\"}"
check_contains "store with A256KW (64 bytes)" '"DiskEncryptionKeyEncryptionAlgorithm":"A256KW"' "$BODY"
api GET /v1/vm/secrets/data2 "$WORK/vm1.hdr"
check_eq "fetch unwraps (A256KW, RFC 3394)" "$v3" "$(json_field value)"
v4=$(head -c 4001 /dev/urandom | base64 -w 0)
api PUT /v1/vm/secrets/data3 "$WORK/vm1.hdr" "{\"value\":\"$v4\"}"
check_eq "store 4001 bytes with A256KW" 201 "$STATUS"
api GET /v1/vm/secrets/data3 "$WORK/vm1.hdr"
check_eq "fetch unwraps (A256KW, RFC 5649 padding)" "$v4" "$(json_field value)"
api PUT /v1/vm/secrets/data4 "$WORK/vm1.hdr" "{\"value\":\"$(head -c 4097 /dev/urandom | base64 -w 0)\"}"
check_eq "a secret over 4096 bytes: 400" 400 "$STATUS"
api GET /v1/vm/secrets/data0 "$WORK/vm1.hdr"
check_eq "older secrets keep their own KEK" "$(b64 "$v1")" "$(json_field value)"

admin vm encryption enable --vm vm1 --volume-type All --kek aes1 --encrypt-format-all >/dev/null
api GET /v1/vm/goal "$WORK/vm1.hdr"
check_contains "goal: --encrypt-format-all" '"EncryptionOperation":"EnableEncryptionFormatAll"' "$BODY"

# A disabled KEK stops wrap and unwrap.
admin key disable aes1 >/dev/null
api GET /v1/vm/secrets/data2 "$WORK/vm1.hdr"
check_eq "fetch with a disabled KEK: 409" 409 "$STATUS"
check_contains "disabled KEK: message names the key" "key 'aes1'" "$BODY"
check "disabled KEK: no value" not_contains "$v3" "$BODY"
api PUT /v1/vm/secrets/data5 "$WORK/vm1.hdr" "{\"value\":\"$(b64 x)\"}"
check_eq "store with a disabled KEK: 409" 409 "$STATUS"
check_contains "disabled KEK: next command" "vmcrypt-admin vm encryption enable --vm vm1" "$BODY"
api GET /v1/vm/secrets/data2 "$WORK/vm1.hdr"
check_contains "the refused fetch says to re-enable the key" "re-enable it" "$BODY"

# ... and `key enable` brings it back: the same secrets unwrap again, new ones wrap.
out=$(admin key enable aes1)
check_eq "key enable: exit 0" 0 "$?"
check_contains "key enable says so" "Key 'aes1' enabled" "$out"
check_contains "key show: enabled again" "Enabled : yes" "$(admin key show aes1)"
api GET /v1/vm/secrets/data2 "$WORK/vm1.hdr"
check_eq "fetch after key enable: 200" 200 "$STATUS"
check_eq "fetch after key enable: the value" "$v3" "$(json_field value)"
api PUT /v1/vm/secrets/data5 "$WORK/vm1.hdr" "{\"value\":\"$(b64 x)\"}"
check_eq "store after key enable: 201" 201 "$STATUS"
auth_file admin "$DATA/admin.token"
api POST /v1/admin/keys/aes1/enable "$WORK/admin.hdr"
check_eq "enabling an enabled key is fine: 200" 200 "$STATUS"
check_contains "the API answers with the key's state" '"enabled":true' "$BODY"
admin key enable nosuchkey >/dev/null 2>"$WORK/err"
check_eq "key enable of an unknown key: exit 13" 13 "$?"
check_contains "key enable of an unknown key: says so" "no key named 'nosuchkey'" "$(cat "$WORK/err")"
check_contains "key enable is audited" "key.enable" "$(admin audit)"
check "key enable and disable are audited with the admin as actor" \
	grep -qE 'admin +127\.0\.0\.1 +key\.enable +key/aes1 +ok' <<<"$(admin audit)"

# Status reports.
api POST /v1/vm/status "$WORK/vm1.hdr" '{"OsVolumeEncrypted":"EncryptionInProgress","DataVolumesEncrypted":"Encrypted","ProgressMessage":"OS disk encryption started","AgentVersion":"0.2","SequenceVersion":4,"Volumes":[{"name":"data0","device":"/dev/vdb","mountPoint":"/data","volumeType":"Data","state":"Encrypted","progress":100,"downtimeMs":812},{"name":"os","volumeType":"OS","state":"EncryptionInProgress","progress":12,"rate":10485760,"eta":90,"message":"resumed"}]}'
check_eq "status report: 200" 200 "$STATUS"
check_contains "status report acknowledges the current sequence" '"sequence":4' "$BODY"
out=$(admin vm encryption show --vm vm1 --json)
check_contains "report stored: ProgressMessage" '"ProgressMessage": "OS disk encryption started"' "$out"
check_contains "report stored: per-volume table" '"mountPoint": "/data"' "$out"
out=$(admin vm encryption show --vm vm1)
check "show prints the per-volume table, with the cut-over's downtime" grep -Eq '^data0 +Data +Encrypted +100% +0\.8 s +/dev/vdb +/data$' <<<"$out"
check "show: a row without device or mount point, with rate and ETA" grep -Eq '^os +OS +EncryptionInProgress +12% 10\.0 MiB/s ETA 1m30s +- +- +-$' <<<"$out"
check "show: a volume's message under its row" grep -Eq '^  os: resumed$' <<<"$out"
check_contains "agent version recorded" '"agentVersion": "0.2"' "$(admin vm show vm1 --json)"

# Secret values are sealed at rest.
secret_pattern "$WORK/leak" "$v0"
secret_pattern "$WORK/leak" "$v1"
secret_pattern "$WORK/leak" "$(b64 "$v1")"
secret_pattern "$WORK/leak" "$v3"
check "values are not stored in clear" no_leak "$WORK/leak" $(store_files)
check "values are not in the log" no_leak "$WORK/leak" "$WORK/vmcryptd.log"
check_contains "every secret read is audited" "secret.read" "$(admin audit --vm vm1)"
check_contains "failed reads are audited" "failed" "$(admin audit --vm vm1 | grep secret.read)"
stop_server TERM
check_eq "clean stop" 0 "$SERVER_RC"
finish
