#!/bin/bash
# Bad input: malformed JSON, wrong types, unknown and missing fields, huge and deep bodies, bad
# names, unknown routes and methods. Each gets a 4xx with a message; the server keeps serving and
# never echoes a secret.
. "$(dirname "$0")/server-lib.sh"

check "start" start_server
check "VM" new_vm bad1
auth_file admin "$DATA/admin.token"
secret=$(b64 "top-secret-value-$$")
H=$WORK/bad1.hdr

expect() { # NAME STATUS NEEDLE METHOD PATH AUTH [BODY]
	local name=$1 status=$2 needle=$3; shift 3
	api "$@"
	check_eq "$name: $status" "$status" "$STATUS"
	check_contains "$name: message" "$needle" "$BODY"
	check "$name: no secret echoed" not_contains "$secret" "$BODY"
}

expect "malformed JSON" 400 "malformed JSON" PUT /v1/vm/secrets/v "$H" "{\"value\":\"$secret\""
expect "not JSON at all" 400 "malformed JSON" POST /v1/vm/status "$H" "hello"
expect "JSON array instead of object" 400 "must be a JSON object" POST /v1/vm/status "$H" '[1,2]'
expect "wrong type: number for string" 400 "must be a string" PUT /v1/vm/secrets/v "$H" '{"value":42}'
expect "wrong type: bool field" 400 "true or false" POST /v1/admin/vms/bad1/encryption/enable "$WORK/admin.hdr" '{"volumeType":"OS","encryptFormatAll":"yes"}'
expect "wrong type: integer field" 400 "must be an integer" POST /v1/admin/keys "$WORK/admin.hdr" '{"name":"k","size":"2048"}'
expect "unknown field" 400 'unknown field \"extra\"' PUT /v1/vm/secrets/v "$H" "{\"value\":\"$secret\",\"extra\":1}"
expect "unknown field in a volume row" 400 'unknown field \"oops\"' POST /v1/vm/status "$H" '{"OsVolumeEncrypted":"Encrypted","DataVolumesEncrypted":"Encrypted","Volumes":[{"name":"a","state":"Encrypted","oops":1}]}'
expect "missing field" 400 'missing field \"DataVolumesEncrypted\"' POST /v1/vm/status "$H" '{"OsVolumeEncrypted":"Encrypted"}'
expect "bad enum value" 400 "one of Encrypted" POST /v1/vm/status "$H" '{"OsVolumeEncrypted":"Maybe","DataVolumesEncrypted":"Encrypted"}'
expect "duplicate keys" 400 "duplicate" PUT /v1/vm/secrets/v "$H" "{\"value\":\"$secret\",\"value\":\"$secret\"}"
expect "not base64" 400 "base64" PUT /v1/vm/secrets/v "$H" '{"value":"!!!not base64!!!"}'
expect "empty secret" 400 "base64" PUT /v1/vm/secrets/v "$H" '{"value":""}'
expect "NUL in a string" 400 "malformed JSON" POST /v1/vm/status "$H" '{"OsVolumeEncrypted":"Encrypted","DataVolumesEncrypted":"Encrypted","ProgressMessage":"a\u0000b"}'
expect "missing body" 400 "body missing" POST /v1/vm/status "$H"
expect "body on a route without one" 400 "no request body" GET /v1/vm/goal "$H" '{"a":1}'
expect "bad VM name" 400 "name in the path" GET /v1/admin/vms/bad%20name "$WORK/admin.hdr"
expect "bad volume name" 400 "name in the path" GET "/v1/vm/secrets/a%21b" "$H"
expect "path traversal is no route" 404 "no such route" GET "/v1/vm/secrets/..%2Fetc" "$H"
expect "name too long" 400 "name in the path" GET "/v1/vm/secrets/$(printf 'a%.0s' {1..65})" "$H"
expect "bad name in a body" 400 'field \"name\" must be' POST /v1/admin/vms "$WORK/admin.hdr" '{"name":"-dash"}'
expect "unknown route" 404 "no such route" GET /v1/nothing "$H"
expect "wrong method" 405 "not allowed" DELETE /v1/vm/goal "$H"
expect "bad --since" 400 "since" GET "/v1/admin/audit?since=yesterday" "$WORK/admin.hdr"

deep=$(printf '[%.0s' {1..40})1$(printf ']%.0s' {1..40})
expect "JSON nested too deep" 400 "deeper than 16" POST /v1/vm/status "$H" "{\"Volumes\":$deep}"
deep=$(printf '[%.0s' {1..60000})
expect "60000 open brackets" 400 "deeper than 16" POST /v1/vm/status "$H" "$deep"

head -c 100000 /dev/zero | tr '\0' 'a' >"$WORK/huge"
STATUS=$(curl -sS --cacert "$DATA/tls.crt" -o "$WORK/resp" -w '%{http_code}' -H "@$H" -X PUT --data-binary "@$WORK/huge" "https://$ADDR/v1/vm/secrets/v" 2>/dev/null)
check_eq "huge body with Content-Length: 413" 413 "$STATUS"
check_contains "huge body: message" "larger than 65536" "$(cat "$WORK/resp")"
STATUS=$(curl -sS --cacert "$DATA/tls.crt" -o "$WORK/resp" -w '%{http_code}' -H "@$H" -H 'Transfer-Encoding: chunked' -X PUT --data-binary "@$WORK/huge" "https://$ADDR/v1/vm/secrets/v" 2>/dev/null)
check_eq "huge chunked body: 413" 413 "$STATUS"
head -c 65536 /dev/zero | tr '\0' ' ' >"$WORK/big-ok"
printf '{}' >>"$WORK/big-ok"
STATUS=$(curl -sS --cacert "$DATA/tls.crt" -o "$WORK/resp" -w '%{http_code}' -H "@$H" -X POST --data-binary "@$WORK/big-ok" "https://$ADDR/v1/vm/status" 2>/dev/null)
check_eq "a body just over the cap: 413" 413 "$STATUS"
head -c 65000 /dev/zero | tr '\0' ' ' >"$WORK/big-ok"
printf '{"OsVolumeEncrypted":"Encrypted","DataVolumesEncrypted":"Encrypted"}' >>"$WORK/big-ok"
STATUS=$(curl -sS --cacert "$DATA/tls.crt" -o "$WORK/resp" -w '%{http_code}' -H "@$H" -X POST --data-binary "@$WORK/big-ok" "https://$ADDR/v1/vm/status" 2>/dev/null)
check_eq "a body under the cap is accepted" 200 "$STATUS"
api GET "/v1/vm/secrets/v" "$H"
check_eq "unauthenticated body errors come after auth: 404 for an unstored volume" 404 "$STATUS"
api PUT /v1/vm/secrets/v - '{"value":'
check_eq "malformed body without a token: 401 first" 401 "$STATUS"

# Garbage on the TLS port and half-open connections do not stop the server.
printf 'GET / HTTP/1.1\r\n\r\n' | timeout 5 bash -c "cat >/dev/tcp/127.0.0.1/${ADDR##*:}" 2>/dev/null
head -c 5000 /dev/urandom | timeout 5 bash -c "cat >/dev/tcp/127.0.0.1/${ADDR##*:}" 2>/dev/null
curl -sS --max-time 5 --cacert "$DATA/tls.crt" -o /dev/null "https://$ADDR/v1/vm/goal" -H "@$H" --http1.1 -H "Content-Length: 10" -X POST --data-binary "abc" >/dev/null 2>&1
api GET /v1/vm/goal "$H"
check_eq "still serving after all of it" 200 "$STATUS"
secret_pattern "$WORK/leak" "$secret"
check "no secret in the server log" no_leak "$WORK/leak" "$WORK/vmcryptd.log"
stop_server TERM
check_eq "clean stop" 0 "$SERVER_RC"
finish
