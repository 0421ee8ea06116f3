#!/bin/bash
# vmcryptd with the operator's certificate (--tls-cert/--tls-key), TLS versions, and vmcrypt-admin's
# certificate verification (wrong CA, wrong host name).
. "$(dirname "$0")/server-lib.sh"
require_cmd openssl

mkdir -p "$WORK/pki"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=ca -keyout "$WORK/pki/ca.key" -out "$WORK/pki/ca.crt" \
	-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=vmcryptd -keyout "$WORK/pki/srv.key" -out "$WORK/pki/srv.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$WORK/pki/ext"
openssl x509 -req -in "$WORK/pki/srv.csr" -CA "$WORK/pki/ca.crt" -CAkey "$WORK/pki/ca.key" -CAcreateserial -days 2 \
	-extfile "$WORK/pki/ext" -out "$WORK/pki/srv.crt" 2>/dev/null
chmod 600 "$WORK/pki/srv.key"
check "operator's certificate made" test -s "$WORK/pki/srv.crt"

check "start with --tls-cert/--tls-key" start_server --tls-cert "$WORK/pki/srv.crt" --tls-key "$WORK/pki/srv.key"
check "no self-signed certificate when one is given" test ! -e "$DATA/tls.crt"
tok=(--server "https://$ADDR" --token-file "$DATA/admin.token")
check "vmcrypt-admin verifies against the operator's CA" "$VMCRYPT_ADMIN" "${tok[@]}" --ca-file "$WORK/pki/ca.crt" vm list
"$VMCRYPT_ADMIN" "${tok[@]}" --ca-file "$WORK/pki/srv.key" vm list >/dev/null 2>&1
check_eq "a file that is not a CA: exit 13" 13 "$?"
"$VMCRYPT_ADMIN" --server "https://localhost:${ADDR##*:}" --token-file "$DATA/admin.token" --ca-file "$WORK/pki/ca.crt" vm list >/dev/null 2>"$WORK/err"
check_eq "a host name the certificate does not name: exit 13" 13 "$?"
"$VMCRYPT_ADMIN" --server "http://$ADDR" --token-file "$DATA/admin.token" vm list >/dev/null 2>"$WORK/err"
check_eq "an http:// server URL is refused" 2 "$?"
check "TLS 1.2 works" curl -sS -o /dev/null --cacert "$WORK/pki/ca.crt" --tlsv1.2 --tls-max 1.2 "https://$ADDR/v1/vm/goal"
check "TLS 1.3 works" curl -sS -o /dev/null --cacert "$WORK/pki/ca.crt" --tlsv1.3 "https://$ADDR/v1/vm/goal"
# TLS 1.2 offers only ECDHE with AEAD ciphers (Mozilla "intermediate"): CBC suites (padding
# oracles) and static RSA key exchange (no forward secrecy) are refused.
tls12() { # CIPHER: the suite negotiated over TLS 1.2, empty when the handshake fails
	openssl s_client -brief -connect "$ADDR" -tls1_2 -cipher "$1" </dev/null 2>&1 | sed -n 's/^Ciphersuite: //p'
}
for c in ECDHE-RSA-AES128-GCM-SHA256 ECDHE-RSA-AES256-GCM-SHA384 ECDHE-RSA-CHACHA20-POLY1305; do
	check_eq "TLS 1.2 $c (AEAD) works" "$c" "$(tls12 "$c")"
done
for c in ECDHE-RSA-AES128-SHA ECDHE-RSA-AES256-SHA ECDHE-RSA-AES128-SHA256 AES128-SHA256 AES128-SHA AES128-GCM-SHA256 AES256-GCM-SHA384; do
	check_eq "TLS 1.2 $c (CBC or static RSA) is refused" "" "$(tls12 "$c")"
done
stop_server TERM
check_eq "clean stop" 0 "$SERVER_RC"

# --listen errors.
"$VMCRYPTD" --data-dir "$DATA" "${STORE_ARGS[@]}" --listen nonsense >/dev/null 2>"$WORK/err"
check_eq "bad --listen: usage error exit" 2 "$?"
check_contains "bad --listen: message" "expected ADDRESS:PORT" "$(cat "$WORK/err")"
check "start on the self-signed default" start_server
check_eq "ECDSA certificate: TLS 1.2 ECDHE-ECDSA-AES128-GCM-SHA256 works" ECDHE-ECDSA-AES128-GCM-SHA256 \
	"$(tls12 ECDHE-ECDSA-AES128-GCM-SHA256)"
check_eq "ECDSA certificate: TLS 1.2 ECDHE-ECDSA-AES128-SHA (CBC) is refused" "" "$(tls12 ECDHE-ECDSA-AES128-SHA)"
"$VMCRYPTD" --data-dir "$DATA" "${STORE_ARGS[@]}" --listen 127.0.0.1:0 >/dev/null 2>"$WORK/err"
check_eq "a second vmcryptd on the same data directory: exit 9" 9 "$?"
check_contains "second vmcryptd: message" "Another vmcryptd is serving" "$(cat "$WORK/err")"
check "the first one still serves" "$VMCRYPT_ADMIN" --server "https://$ADDR" --ca-file "$DATA/tls.crt" --token-file "$DATA/admin.token" vm list
"$VMCRYPTD" --data-dir "$WORK/data2" --listen "$ADDR" >/dev/null 2>"$WORK/err"
check_eq "address in use: exit 3" 3 "$?"
"$VMCRYPTD" >/dev/null 2>&1
check_eq "no --data-dir: exit 2" 2 "$?"
stop_server TERM
finish
