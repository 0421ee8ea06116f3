#!/bin/bash
# Strict request parsing: NUL bytes (encoded in the target, raw in the body), encoded slashes and
# non-canonical paths, duplicate or conflicting Content-Length, control and bidi characters in
# names; and names already in a store shown escaped by vmcrypt-admin.
. "$(dirname "$0")/server-lib.sh"
require_cmd python3
RAW=$TESTS_DIR/integration/rawtls.py

check "start" start_server
check "VM" new_vm v1
auth_file admin "$DATA/admin.token"
A=$WORK/admin.hdr H=$WORK/v1.hdr
umask 077
check "VM vmC registered" admin vm register vmC >/dev/null 2>&1

expect() { # NAME STATUS NEEDLE METHOD PATH AUTH [BODY]
	local name=$1 status=$2 needle=$3; shift 3
	api "$@"
	check_eq "$name: $status" "$status" "$STATUS"
	check_contains "$name: message" "$needle" "$BODY"
}

contains_vm() { [[ "$(admin --json vm list)" == *"\"$1\""* ]]; }

# raw: sends $WORK/raw.req (mode 0600: it holds the token) as one request over TLS; sets STATUS
# and BODY. Not in a pipeline: its variables must survive.
raw() {
	python3 "$RAW" "$ADDR" "$DATA/tls.crt" <"$WORK/raw.req" >"$WORK/raw.resp" 2>"$WORK/raw.err"
	STATUS=$(head -n 1 "$WORK/raw.resp" | cut -d' ' -f2)
	BODY=$(sed -n '/^\r$/,$p' "$WORK/raw.resp" | tail -n +2)
}
# Request head with the admin token, built in a file so the token stays off command lines.
admin_head() { # METHOD TARGET [EXTRA-HEADER-LINES]
	printf '%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n' "$1" "$2"
	printf 'Authorization: Bearer %s\r\n' "$(head -n 1 "$DATA/admin.token")"
	printf '%b' "${3:-}"
	printf 'Connection: close\r\n'
}

# --- NUL in the request target ---
api DELETE "/v1/admin/vms/vmC%00/ignored" "$A"
check_eq "DELETE vmC%00/ignored: 400" 400 "$STATUS"
check_contains "DELETE vmC%00/ignored: message" "encoded NUL" "$BODY"
check "vmC still registered" admin vm show vmC
secret=$(b64 "strict-secret-$$")
api PUT "/v1/vm/secrets/os%00evil" "$H" "{\"value\":\"$secret\"}"
check_eq "PUT os%00evil: 400" 400 "$STATUS"
api GET /v1/vm/secrets/os "$H"
check_eq "no secret os written" 404 "$STATUS"
check "secret list shows no os" not_contains "v1/os" "$(admin secret list)"
expect "NUL in a query value" 400 "encoded NUL" GET "/v1/admin/audit?since=1d%00x" "$A"
expect "NUL in a query name" 400 "encoded NUL" GET "/v1/admin/audit?%00=1" "$A"
expect "NUL before the admin token is looked at" 400 "encoded NUL" GET "/v1/admin/vms/vmC%00" -

# --- one canonical path ---
expect "encoded slash %2f" 404 "encoded slash" GET "/v1/admin%2fvms" "$A"
expect "encoded slash %2F in a name" 404 "encoded slash" DELETE "/v1/admin/vms/vmC%2F" "$A"
expect "trailing slash" 404 "trailing slash" GET "/v1/admin/vms/" "$A"
expect "trailing slash after a name" 404 "no such route" DELETE "/v1/admin/vms/vmC/" "$A"
expect "empty segment" 404 "no such route" GET "/v1//vm/goal" "$H"
STATUS=$(curl -sS --path-as-is --cacert "$DATA/tls.crt" -o "$WORK/resp" -w '%{http_code}' -H "@$H" \
	"https://$ADDR/v1/vm/./goal" 2>/dev/null)
check_eq "dot segment: 404" 404 "$STATUS"
STATUS=$(curl -sS --path-as-is --cacert "$DATA/tls.crt" -o "$WORK/resp" -w '%{http_code}' -H "@$A" \
	"https://$ADDR/v1/admin/vms/x/../vmC" 2>/dev/null)
check_eq "dot-dot segment: 404" 404 "$STATUS"
check "vmC still registered after all paths" admin vm show vmC

# --- headers a proxy could read differently ---
{ admin_head POST /v1/admin/vms 'Content-Type: application/json\r\nContent-Length: 14\r\nContent-Length: 40\r\n'
	printf '\r\n{"name":"vmE"}'; } >"$WORK/raw.req"; raw
check_eq "two different Content-Length: 400" 400 "$STATUS"
check_contains "two Content-Length: message" "Content-Length given more than once" "$BODY"
{ admin_head POST /v1/admin/vms 'Content-Length: 14\r\nContent-Length: 14\r\n'
	printf '\r\n{"name":"vmE"}'; } >"$WORK/raw.req"; raw
check_eq "two identical Content-Length: 400 too" 400 "$STATUS"
{ admin_head POST /v1/admin/vms 'Content-Length: 14\r\nTransfer-Encoding: chunked\r\n'
	printf '\r\ne\r\n{"name":"vmE"}\r\n0\r\n\r\n'; } >"$WORK/raw.req"; raw
check_eq "Content-Length beside Transfer-Encoding: 400" 400 "$STATUS"
{ admin_head POST /v1/admin/vms 'Transfer-Encoding: gzip, chunked\r\n'
	printf '\r\ne\r\n{"name":"vmE"}\r\n0\r\n\r\n'; } >"$WORK/raw.req"; raw
check_eq "a Transfer-Encoding other than chunked: 400" 400 "$STATUS"
{ admin_head GET /v1/admin/vms 'X-Note: a\033[2Jb\r\n'; printf '\r\n'; } >"$WORK/raw.req"; raw
check_eq "a control character in a header value: 400" 400 "$STATUS"
check_contains "control character: message" "control character" "$BODY"
check "vmE never registered" not_contains '"vmE"' "$(admin --json vm list)"
{ admin_head POST /v1/admin/vms 'Content-Type: application/json\r\nContent-Length: 14\r\n'
	printf '\r\n{"name":"vmF"}'; } >"$WORK/raw.req"; raw
check_eq "the same request with one Content-Length: 201" 201 "$STATUS"

# A raw NUL inside the request line: libmicrohttpd 0.9.75 hands the target on cut at the NUL;
# vmcryptd sees that the version does not follow the target's end. (1.0 refuses it itself.)
{ printf 'DELETE /v1/admin/vms/vmC\0/ignored HTTP/1.1\r\n'; admin_head GET x | tail -n +2; printf '\r\n'; } >"$WORK/raw.req"; raw
check_eq "raw NUL in the request line: 400" 400 "$STATUS"
check "raw NUL in the request line: vmC still there" contains_vm vmC
{ printf 'GET /v1/admin/vms\0x HTTP/1.1\r\n'; admin_head GET x | tail -n +2; printf '\r\n'; } >"$WORK/raw.req"; raw
check_eq "raw NUL at the end of the target: 400" 400 "$STATUS"
{ admin_head GET /v1/admin/vms; printf '\r\n'; } >"$WORK/raw.req"; raw
check_eq "the same request line without the NUL: 200" 200 "$STATUS"
# A raw NUL in a header value: 0.9.75 keeps header values as C strings and shows nothing after
# the NUL; 1.0 refuses the request itself.
mhd=$(pkg-config --modversion libmicrohttpd 2>/dev/null || echo 0)
if [ "${mhd%%.*}" -ge 1 ]; then
	{ admin_head GET /v1/admin/vms 'X-Note: a\0b\r\n'; printf '\r\n'; } >"$WORK/raw.req"; raw
	check_eq "raw NUL in a header value: 400" 400 "$STATUS"
else
	skip "raw NUL in a header value: libmicrohttpd $mhd cuts it unseen (1.0 refuses)"
fi

# --- NUL in the body ---
printf '{"value":"%s"}\0{"value":"x"}' "$secret" >"$WORK/nul-body"
STATUS=$(curl -sS --cacert "$DATA/tls.crt" -o "$WORK/resp" -w '%{http_code}' -H "@$H" -X PUT \
	--data-binary "@$WORK/nul-body" "https://$ADDR/v1/vm/secrets/nul" 2>/dev/null)
check_eq "raw NUL inside a JSON body: 400" 400 "$STATUS"
check_contains "raw NUL in the body: message" "NUL byte at offset" "$(cat "$WORK/resp")"
api GET /v1/vm/secrets/nul "$H"
check_eq "nothing stored from the NUL body" 404 "$STATUS"

# --- names with control and format characters ---
admin vm register v2 >"$WORK/v2.enroll" 2>/dev/null
auth_file v2.enroll "$WORK/v2.enroll"
expect "bidi override (U+202E) in a hostname" 400 'field \"hostname\" must be printable text (no control or format characters' \
	POST /v1/enroll "$WORK/v2.enroll.hdr" '{"hostname":"web\u202egpj.exe"}'
expect "raw RLO bytes in a hostname" 400 "hostname" POST /v1/enroll "$WORK/v2.enroll.hdr" $'{"hostname":"web\xe2\x80\xaegpj"}'
expect "C1 control (U+009B CSI) in a hostname" 400 "hostname" POST /v1/enroll "$WORK/v2.enroll.hdr" '{"hostname":"a\u009b2Jb"}'
expect "zero-width space in a hostname" 400 "hostname" POST /v1/enroll "$WORK/v2.enroll.hdr" '{"hostname":"a\u200bb"}'
expect "bidi isolate in a fileName" 400 'field \"fileName\" must be printable' PUT /v1/vm/secrets/os "$H" \
	"{\"value\":\"$secret\",\"fileName\":\"key\u2066.bek\"}"
expect "C1 NEL in a fileName" 400 "fileName" PUT /v1/vm/secrets/os "$H" "{\"value\":\"$secret\",\"fileName\":\"a\u0085b\"}"
api POST /v1/enroll "$WORK/v2.enroll.hdr" '{"hostname":"hôte-02"}'
check_eq "a printable non-ASCII hostname is fine" 200 "$STATUS"
api PUT /v1/vm/secrets/os "$H" "{\"value\":\"$secret\",\"fileName\":\"os.bek\"}"
check_eq "secret os with a plain fileName" 201 "$STATUS"

# --- names an old store already holds are shown escaped ---
stop_server TERM
check_eq "clean stop" 0 "$SERVER_RC"
if [ "$STORE_KIND" = postgresql ]; then
	store_sql "UPDATE vms SET hostname = 'evil' || chr(8238) || 'gpj.exe' || chr(27) || '[31m' || chr(10) || 'FAKE row' || chr(133) WHERE name = 'v1'" >/dev/null
	store_sql "UPDATE secrets SET file_name = 'k' || chr(8238) || 'yek.bek' || chr(7) WHERE vm = 'v1' AND volume = 'os'" >/dev/null
else
python3 - "$DATA/vmcryptd.db" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("UPDATE vms SET hostname = ? WHERE name = 'v1'", ("evil\u202egpj.exe\x1b[31m\nFAKE row\u0085",))
db.execute("UPDATE secrets SET file_name = ? WHERE vm = 'v1' AND volume = 'os'", ("k\u202eyek.bek\x07",))
db.commit()
EOF
fi
check "restart on the doctored store" start_server
admin vm list >"$WORK/list" 2>&1
check_contains "vm list: the hostname escaped" 'evil\u202egpj.exe\x1b[31m\nFAKE row\u0085' "$(cat "$WORK/list")"
check "vm list: no raw RLO, ESC, NEL or extra line" python3 -c '
import sys
t = open(sys.argv[1], "rb").read()
sys.exit(any(b in t for b in (b"\xe2\x80\xae", b"\x1b", b"\xc2\x85", b"\nFAKE")))' "$WORK/list"
admin vm show v1 >"$WORK/show" 2>&1
check_contains "vm show: the hostname escaped" 'Hostname            : evil\u202egpj.exe\x1b[31m\nFAKE row\u0085' "$(cat "$WORK/show")"
admin secret show v1/os >"$WORK/sshow" 2>&1
check_contains "secret show: the fileName tag escaped" 'DiskEncryptionKeyFileName = k\u202eyek.bek\x07' "$(cat "$WORK/sshow")"
check "secret show: no raw RLO or BEL" python3 -c '
import sys
t = open(sys.argv[1], "rb").read()
sys.exit(b"\xe2\x80\xae" in t or b"\x07" in t)' "$WORK/sshow"
admin --json vm list >"$WORK/json"
check_contains "--json keeps the data (JSON-escaped controls)" '\u001B[31m\nFAKE' "$(cat "$WORK/json")"

api GET /v1/vm/goal "$H"
check_eq "still serving after all of it" 200 "$STATUS"
secret_pattern "$WORK/leak" "$secret"
check "no secret in the server log" no_leak "$WORK/leak" "$WORK/vmcryptd.log"
stop_server TERM
check_eq "clean stop at the end" 0 "$SERVER_RC"
finish
