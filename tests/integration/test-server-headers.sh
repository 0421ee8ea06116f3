#!/bin/bash
# LUKS2 header backups in vmcryptd: a VM stores a 16 MiB header and reads it back byte for byte,
# no other VM reaches it, the admin reads it into a new 0600 file; bodies over 32 MiB are refused
# from the request's headers and an anonymous upload before a byte of its body; new versions keep
# the previous ones (three in all); a row altered in the store is refused on read instead of sent;
# the VM's KEK wraps the data key; an acknowledged upload survives kill -9; what is not a LUKS2
# header is refused with 400 and pushes no version out. Every upload is a real LUKS2 header
# (cryptsetup luksFormat --header), as the agent sends.
. "$(dirname "$0")/server-lib.sh"
require_cmd sha256sum python3 cryptsetup
require_store_sql

# The refusals below are deliberate failed authentications from one address: more than the
# throttle's free allowance (test-server-throttle.sh tests the throttle itself).
check "start" start_server --auth-free-failures 1000
auth_file admin "$DATA/admin.token"
check "VM A" new_vm vma
check "VM B" new_vm vmb
RAW=$(dirname "$0")/rawtls.py

# put FILE AUTH VOLUME [SHA]: PUT FILE as a header backup (its own SHA-256 unless SHA is given);
# AUTH is a header file or "-" for none. Sets STATUS, BODY, TIME (seconds) and UP (bytes curl sent).
put() {
	local sha=${4:-$(sha256sum "$1" | cut -d' ' -f1)} out auth=()
	[ "$2" = - ] || auth=(-H "@$2")
	out=$(curl -sS --cacert "$DATA/tls.crt" "${auth[@]}" -H "Vmcrypt-SHA256: $sha" \
		-H 'Content-Type: application/octet-stream' -X PUT --data-binary "@$1" -o "$WORK/resp" \
		-w '%{http_code} %{time_total} %{size_upload}' "https://$ADDR/v1/vm/headers/$3" 2>"$WORK/curl.err")
	read -r STATUS TIME UP <<<"$out"
	BODY=$(cat "$WORK/resp" 2>/dev/null)
}
# get PATH AUTH: GET into $WORK/got (headers in $WORK/got.hdr). Sets STATUS, TIME, GOT (its SHA-256).
get() {
	local out
	rm -f "$WORK/got"
	out=$(curl -sS --cacert "$DATA/tls.crt" -H "@$2" -D "$WORK/got.hdr" -o "$WORK/got" -w '%{http_code} %{time_total}' \
		"https://$ADDR$1" 2>"$WORK/curl.err")
	read -r STATUS TIME <<<"$out"
	GOT=$(sha256sum "$WORK/got" 2>/dev/null | cut -d' ' -f1)
	BODY=$(head -c 2000 "$WORK/got" 2>/dev/null | tr -d '\0')
}
field() { sed -n "s/^$1: *\([^\r]*\)\r*$/\1/Ip" "$WORK/got.hdr" | head -n 1; }
# raw REQUEST-FILE: sends the request (headers only, no body) as it is; RAW_OUT is the answer,
# RAW_TIME how long it took.
raw() {
	local t0=$(date +%s%N)
	RAW_OUT=$(python3 "$RAW" "$ADDR" "$DATA/tls.crt" <"$1" 2>/dev/null | tr -d '\r' | head -c 4000)
	RAW_TIME=$((($(date +%s%N) - t0) / 1000000))
}
# head_only FILE AUTH-FILE|- LENGTH: a PUT of a header backup announcing LENGTH bytes, and none of them.
head_only() {
	(umask 077
	 {
		printf 'PUT /v1/vm/headers/os HTTP/1.1\r\nHost: %s\r\nContent-Length: %s\r\n' "$ADDR" "$3"
		printf 'Vmcrypt-SHA256: %064d\r\n' 0
		[ "$2" = - ] || printf '%s\r\n' "$(tr -d '\n' <"$2")"
		printf '\r\n'
	 } >"$1")
}

luks2_header "$WORK/h1"
sha1=$(sha256sum "$WORK/h1" | cut -d' ' -f1)

# --- a VM stores its header and reads it back ---
put "$WORK/h1" "$WORK/vma.hdr" os
check_eq "VM A stores 16 MiB: 201" 201 "$STATUS"
check_contains "the answer names version 1" '"version":1' "$BODY"
check_contains "the answer names the size" '"size":16777216' "$BODY"
check_contains "the answer names the SHA-256" "\"sha256\":\"$sha1\"" "$BODY"
put_time=$TIME
get /v1/vm/headers/os "$WORK/vma.hdr"
check_eq "VM A reads it back: 200" 200 "$STATUS"
check_eq "byte for byte (SHA-256)" "$sha1" "$GOT"
check_eq "Vmcrypt-SHA256 says the recorded hash" "$sha1" "$(field Vmcrypt-SHA256)"
check_eq "Vmcrypt-Version: 1" 1 "$(field Vmcrypt-Version)"
check_contains "raw bytes, not JSON" "application/octet-stream" "$(field Content-Type)"
echo "16 MiB: upload ${put_time} s, download ${TIME} s"
put "$WORK/h1" "$WORK/vma.hdr" os
check_eq "the same bytes again: 200, no new version" 200 "$STATUS"
check_contains "  ... said unchanged" '"unchanged":true' "$BODY"

# --- nobody else reaches it ---
get /v1/vm/headers/os "$WORK/vmb.hdr"
check_eq "VM B asking for 'os' gets its own namespace: 404" 404 "$STATUS"
check "  ... and none of A's bytes" test "$GOT" != "$sha1"
get /v1/admin/headers/vma/os "$WORK/vmb.hdr"
check_eq "VM B on the route that names A's header: 403" 403 "$STATUS"
api GET /v1/admin/headers "$WORK/vmb.hdr"
check_eq "VM B cannot list header backups: 403" 403 "$STATUS"
luks2_header "$WORK/hb" 1m
hb_size=$(stat -c %s "$WORK/hb")
put "$WORK/hb" "$WORK/vmb.hdr" os
check_eq "VM B's PUT of 'os' stores B's own: 201" 201 "$STATUS"
get /v1/vm/headers/os "$WORK/vma.hdr"
check_eq "  ... A's is untouched" "$sha1" "$GOT"
put "$WORK/hb" "$WORK/admin.hdr" os
check_eq "the admin token cannot write one: 403" 403 "$STATUS"
put "$WORK/hb" - os
check_eq "no credential: 401" 401 "$STATUS"

# --- the admin reads it into a new 0600 file ---
out=$(admin header list --vm vma)
check_contains "header list shows A's os" "vma/os" "$out"
check_contains "  ... with its SHA-256" "$sha1" "$out"
check "  ... and not B's" not_contains "vmb/os" "$out"
check "header get writes the file" admin header get --vm vma --volume os --output "$WORK/os.luks"
check_eq "  ... byte for byte" "$sha1" "$(sha256sum "$WORK/os.luks" | cut -d' ' -f1)"
check_eq "  ... mode 0600" 600 "$(stat -c %a "$WORK/os.luks")"
admin header get --vm vma --volume os --output "$WORK/os.luks" 2>"$WORK/admin.err"
check_eq "an existing file is refused without --force (exit 12)" 12 "$?"
check_contains "  ... saying so" "add --force" "$(cat "$WORK/admin.err")"
: >"$WORK/other.luks"
check "--force replaces it" admin header get --vm vma --volume os --output "$WORK/other.luks" --force >/dev/null 2>&1
check_eq "  ... with the header" "$sha1" "$(sha256sum "$WORK/other.luks" | cut -d' ' -f1)"
out=$(admin --json header get --vm vma --volume os --output "$WORK/json.luks" 2>/dev/null)
check_contains "--json names the hash" "\"sha256\": \"$sha1\"" "$out"
admin header get --vm vma --volume nothing --output "$WORK/none.luks" 2>"$WORK/admin.err"
check_eq "a volume without a backup: exit 13" 13 "$?"
check "  ... and no file" test ! -e "$WORK/none.luks"

# --- what is refused, and how early ---
put "$WORK/hb" "$WORK/vma.hdr" os "$(printf '%064d' 0)"
check_eq "a body that does not match its SHA-256: 400" 400 "$STATUS"
check_contains "  ... says nothing was stored" "nothing was stored" "$BODY"
STATUS=$(curl -sS --cacert "$DATA/tls.crt" -H "@$WORK/vma.hdr" -X PUT --data-binary "@$WORK/hb" -o "$WORK/resp" -w '%{http_code}' "https://$ADDR/v1/vm/headers/os" 2>/dev/null)
check_eq "no Vmcrypt-SHA256: 400" 400 "$STATUS"
STATUS=$(curl -sS --cacert "$DATA/tls.crt" -H "@$WORK/vma.hdr" -H "Vmcrypt-SHA256: $sha1" -H 'Transfer-Encoding: chunked' -X PUT --data-binary "@$WORK/hb" -o "$WORK/resp" -w '%{http_code}' "https://$ADDR/v1/vm/headers/os" 2>/dev/null)
check_eq "chunked, length unknown: 411" 411 "$STATUS"

head -c 33554433 /dev/zero >"$WORK/over"
put "$WORK/over" "$WORK/vma.hdr" over
check_eq "32 MiB + 1 byte: 413" 413 "$STATUS"
check_eq "  ... with this message" '{"error":{"code":413,"message":"a header backup has at most 33554432 bytes (32 MiB); this request announces 33554433"}}' "$BODY"
check_eq "  ... before curl sent a byte of it (Expect: 100-continue)" 0 "$UP"
head_only "$WORK/over.req" "$WORK/vma.hdr" 33554433
raw "$WORK/over.req"
check_contains "announced and never sent: 413 at once" "HTTP/1.1 413" "$RAW_OUT"
check "  ... within 3 s ($RAW_TIME ms): the server did not wait for the body" test "$RAW_TIME" -lt 3000
luks2_header "$WORK/big"
truncate -s 33554432 "$WORK/big" # a header followed by zeros, to the cap
put "$WORK/big" "$WORK/vma.hdr" big
check_eq "exactly 32 MiB: 201" 201 "$STATUS"

head -c 33554432 /dev/urandom >"$WORK/anon"
STATUS=$(curl -sS --cacert "$DATA/tls.crt" -X PUT --data-binary "@$WORK/anon" -o "$WORK/resp" -w '%{http_code} %{size_upload}' "https://$ADDR/v1/vm/headers/os" 2>/dev/null)
check_eq "an anonymous 32 MiB upload: 401 before its body (nothing sent)" "401 0" "$STATUS"
head_only "$WORK/anon.req" - 33554432
raw "$WORK/anon.req"
check_contains "anonymous, body announced and never sent: 401 at once" "HTTP/1.1 401" "$RAW_OUT"
check "  ... within 3 s ($RAW_TIME ms)" test "$RAW_TIME" -lt 3000
(umask 077; printf 'Authorization: Bearer vmc-vm-%s-%s\n' "$(cut -d- -f3 "$WORK/vma.cred")" "$(printf '%064d' 7)" >"$WORK/wrong.hdr")
head_only "$WORK/wrong.req" "$WORK/wrong.hdr" 33554432
raw "$WORK/wrong.req"
check_contains "a wrong credential, body announced and never sent: 401 at once" "HTTP/1.1 401" "$RAW_OUT"

# Four uploads under way (VMs A to D) hold every transfer slot: a fifth VM's is refused at once,
# not queued, and so is a second one of a VM that has one under way.
for vm in vmc vmd vme; do new_vm "$vm" || not_ok "new_vm $vm"; done
python3 - "$ADDR" "$DATA/tls.crt" "$WORK"/vm{a,b,c,d,e}.cred >"$WORK/slots.out" 2>&1 <<'EOF'
import socket, ssl, sys, time
addr, ca, creds = sys.argv[1], sys.argv[2], sys.argv[3:]
host, port = addr.rsplit(":", 1)
ctx = ssl.create_default_context(cafile=ca)
ctx.check_hostname = False
def start(cred, n):
    token = open(cred).read().split()[0]
    s = ctx.wrap_socket(socket.create_connection((host, int(port)), timeout=10), server_hostname=host)
    s.sendall(("PUT /v1/vm/headers/slot HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
               "Vmcrypt-SHA256: %s\r\nContent-Length: %d\r\n\r\n" % (token, "0" * 64, n)).encode())
    return s
def answer(s):
    got = b""
    while True:  # the head, then as much body as Content-Length says
        head, sep, body = got.partition(b"\r\n\r\n")
        if sep and len(body) >= int(head.lower().split(b"content-length:")[1].split()[0]):
            return got.decode(errors="replace").replace("\r", "").replace("\n", " ")
        chunk = s.recv(4096)
        if not chunk:
            return got.decode(errors="replace")
        got += chunk
held = [start(c, 1 << 20) for c in creds[:4]]
for s in held:
    s.sendall(b"x" * 1000)
time.sleep(1)
print("fifth:", answer(start(creds[4], 1000)))
print("second:", answer(start(creds[0], 1000)))
for s in held:
    s.close()
EOF
out=$(cat "$WORK/slots.out")
check_contains "a fifth VM's upload while four are under way: 503" "fifth: HTTP/1.1 503" "$out"
check_contains "  ... saying so" "4 header backup transfers are under way" "$out"
check_contains "a second upload of a VM with one under way: 503" "second: HTTP/1.1 503" "$out"
check_contains "  ... saying so" "VM 'vma' has a header backup transfer under way already" "$out"
ok=
for ((i = 0; i < 50; i++)); do
	put "$WORK/hb" "$WORK/vma.hdr" slot
	[ "$STATUS" = 201 ] && { ok=1; break; }
	sleep 0.1
done
check "the slots come back when those connections close" test -n "$ok"

# --- versions ---
luks2_header "$WORK/h2" 1m
sha2=$(sha256sum "$WORK/h2" | cut -d' ' -f1)
h2_size=$(stat -c %s "$WORK/h2")
put "$WORK/h2" "$WORK/vma.hdr" os
check_eq "a new version: 201" 201 "$STATUS"
check_contains "  ... version 2" '"version":2' "$BODY"
out=$(admin header list --vm vma)
check "list shows version 1 ($sha1)" grep -Eq "^vma/os +1 +16777216 .*$sha1" <<<"$out"
check "list shows version 2 ($sha2)" grep -Eq "^vma/os +2 +$h2_size .*$sha2" <<<"$out"
get /v1/vm/headers/os "$WORK/vma.hdr"
check_eq "the newest is version 2" "$sha2" "$GOT"
get "/v1/vm/headers/os?version=1" "$WORK/vma.hdr"
check_eq "version 1 is intact" "$sha1" "$GOT"
for n in 3 4; do
	luks2_header "$WORK/h$n" 1m
	put "$WORK/h$n" "$WORK/vma.hdr" os
done
versions=$(admin --json header list --vm vma |
	python3 -c 'import json, sys; print(*[h["version"] for h in json.load(sys.stdin)["headers"] if h["volume"] == "os"])')
check_eq "versions 2, 3 and 4 kept, 1 dropped with the commit of 4" "2 3 4" "$versions"

# --- what is not a LUKS2 header is refused and pushes no good version out ---
sha4=$(sha256sum "$WORK/h4" | cut -d' ' -f1)
before=$(admin --json header list --vm vma)
head -c 1M /dev/urandom >"$WORK/garbage"
for i in 1 2 3; do
	put "$WORK/garbage" "$WORK/vma.hdr" os
	check_eq "garbage upload $i: 400" 400 "$STATUS"
done
check_contains "  ... saying it is no LUKS2 header" "not a LUKS2 header: it does not start with the LUKS magic; nothing was stored" "$BODY"
check_eq "  ... the stored versions untouched (metadata)" "$before" "$(admin --json header list --vm vma)"
get /v1/vm/headers/os "$WORK/vma.hdr"
check_eq "  ... the newest is still version 4's bytes" "$sha4" "$GOT"
head -c 4M "$WORK/h1" >"$WORK/luks1"
printf '\x00\x01' | dd of="$WORK/luks1" bs=1 seek=6 conv=notrunc status=none
put "$WORK/luks1" "$WORK/vma.hdr" os
check_eq "a LUKS1 header: 400" 400 "$STATUS"
check_contains "  ... saying so" "LUKS version 1" "$BODY"
head -c 8192 "$WORK/h1" >"$WORK/cut"
put "$WORK/cut" "$WORK/vma.hdr" os
check_eq "a header cut inside its 16 KiB header area: 400" 400 "$STATUS"
check_contains "  ... saying so" "a LUKS2 header cut short: 8192 bytes, fewer than its header area of 16384" "$BODY"
put "$WORK/garbage" "$WORK/vma.hdr" fresh
check_eq "garbage for a volume with no backup yet: 400 too" 400 "$STATUS"
check "  ... and no version of it" not_contains "vma/fresh" "$(admin header list --vm vma)"

# --- a row altered in the store is refused, never sent ---
if [ "$STORE_KIND" = sqlite ]; then
	store_sql "UPDATE headers SET data = CAST(substr(data, 1, 5000) || (CASE WHEN substr(data, 5001, 1) = X'00' THEN X'01' ELSE X'00' END) || substr(data, 5002) AS BLOB) WHERE vm = 'vma' AND volume = 'os' AND version = 4;"
else
	store_sql "UPDATE headers SET data = overlay(data placing (CASE WHEN get_byte(data, 5000) = 0 THEN '\\x01'::bytea ELSE '\\x00'::bytea END) from 5001 for 1) WHERE vm = 'vma' AND volume = 'os' AND version = 4;" >/dev/null
fi
get /v1/vm/headers/os "$WORK/vma.hdr"
check_eq "one byte of version 4 changed in the database: 500" 500 "$STATUS"
check_contains "  ... saying it is damaged" "the stored header backup vma/os version 4 is damaged" "$BODY"
check_contains "  ... and where an intact one may be" "header list --vm vma" "$BODY"
check "  ... as a JSON error, no header bytes" test "$(stat -c %s "$WORK/got")" -lt 1000
if [ "$STORE_KIND" = sqlite ]; then
	store_sql "UPDATE headers SET sha256 = X'$sha4' WHERE vm = 'vma' AND volume = 'os' AND version = 3;"
else
	store_sql "UPDATE headers SET sha256 = decode('$sha4', 'hex') WHERE vm = 'vma' AND volume = 'os' AND version = 3;" >/dev/null
fi
get "/v1/vm/headers/os?version=3" "$WORK/vma.hdr"
check_eq "version 3's recorded SHA-256 changed: 500" 500 "$STATUS"
get "/v1/vm/headers/os?version=2" "$WORK/vma.hdr"
check_eq "version 2 is still intact" "$sha2" "$GOT"
admin header get --vm vma --volume os --output "$WORK/bad.luks" 2>"$WORK/admin.err"
check_eq "admin header get of the damaged version: exit 13" 13 "$?"
check_contains "  ... saying why" "damaged" "$(cat "$WORK/admin.err")"
check "  ... and no file" test ! -e "$WORK/bad.luks"

# --- the audit trail has size and hash, never the content ---
out=$(admin audit --vm vma)
check_contains "PUT audited with size and hash" "header.write         vm/vma/header/os                     ok: version 1, 16777216 bytes, sha256 $sha1" "$out"
check_contains "the VM's GET audited" "vm:vma           127.0.0.1       header.read          vm/vma/header/os                     ok: version 1" "$out"
check_contains "the admin's GET audited" "admin            127.0.0.1       header.read          vm/vma/header/os" "$out"
check_contains "the damaged read audited" "failed: version 4, $(stat -c %s "$WORK/h4") bytes" "$out"
check_contains "the oversized upload audited" "denied: body of 33554433 bytes" "$out"
check_contains "the hash mismatch audited" "denied: $hb_size bytes whose SHA-256 is not the one sent with them" "$out"
check_contains "the garbage audited" "denied: not a LUKS2 header: it does not start with the LUKS magic" "$out"

# --- the VM's KEK wraps the data key: disabling it stops reads, enabling brings them back ---
admin key create hk >/dev/null
admin vm encryption enable --vm vma --volume-type Data --kek hk >/dev/null
put "$WORK/h2" "$WORK/vma.hdr" wrapped
check_eq "stored under the VM's KEK: 201" 201 "$STATUS"
check_contains "  ... its data key wrapped by hk version 1" '"keyEncryptionKeyUrl":"vmcryptd:keys/hk/1"' "$BODY"
admin key disable hk >/dev/null
get /v1/vm/headers/wrapped "$WORK/vma.hdr"
check_eq "KEK disabled: 409" 409 "$STATUS"
check_contains "  ... saying which key" "wrapped with key 'hk' version 1" "$BODY"
admin key enable hk >/dev/null
get /v1/vm/headers/wrapped "$WORK/vma.hdr"
check_eq "KEK enabled again: byte for byte" "$sha2" "$GOT"

# --- kill -9 right after an acknowledged upload loses nothing ---
luks2_header "$WORK/h5"
sha5=$(sha256sum "$WORK/h5" | cut -d' ' -f1)
put "$WORK/h5" "$WORK/vma.hdr" data0
check_eq "an upload acknowledged (201)" 201 "$STATUS"
stop_server KILL
check "restart after kill -9" start_server --auth-free-failures 1000
get /v1/vm/headers/data0 "$WORK/vma.hdr"
check_eq "  ... the acknowledged header is there" 200 "$STATUS"
check_eq "  ... byte for byte" "$sha5" "$GOT"
get "/v1/vm/headers/os?version=2" "$WORK/vma.hdr"
check_eq "  ... and the older ones too" "$sha2" "$GOT"

# Deleting the VM deletes its header backups.
admin vm delete vmb >/dev/null 2>&1
check "VM B deleted" test "$?" = 0
check "  ... and its header backup with it" not_contains "vmb/" "$(admin header list)"
stop_server TERM
check_eq "clean stop" 0 "$SERVER_RC"
finish
