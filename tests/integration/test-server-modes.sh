#!/bin/bash
# StrictModes: vmcryptd refuses to start (exit 4) on a data directory others can write to, and on
# a master.key, admin.token or TLS key that group or others can read or write, that another user
# owns, that is a symbolic link inside the data directory or not a regular file. Each refusal
# names the file and the command that fixes it; first start and fixed modes pass.
. "$(dirname "$0")/server-lib.sh"

check "first start makes its files" start_server
stop_server TERM
check_eq "clean stop" 0 "$SERVER_RC"
check_eq "master.key made 0600" 600 "$(stat -c %a "$DATA/master.key")"
check_eq "admin.token made 0600" 600 "$(stat -c %a "$DATA/admin.token")"
check_eq "tls.key made 0600" 600 "$(stat -c %a "$DATA/tls.key")"

# refused NAME MESSAGE [OPTIONS...]: vmcryptd exits 4 at once with MESSAGE on stderr.
refused() {
	local name=$1 msg=$2; shift 2
	timeout 10 "$VMCRYPTD" --data-dir "$DATA" --listen 127.0.0.1:0 "${STORE_ARGS[@]}" "$@" >/dev/null 2>"$WORK/err"
	check_eq "$name: exit 4" 4 "$?"
	check_contains "$name: message" "error: Refusing to start: $msg" "$(cat "$WORK/err")"
	check_eq "$name: one line" 1 "$(wc -l <"$WORK/err")"
	check "$name: nothing served" test ! -e "$DATA/vmcryptd.listen"
}

chmod 0777 "$DATA"
refused "world-writable data directory" "$DATA is writable by group or others (mode 0777); run: chmod go-w '$DATA'"
chmod 0770 "$DATA"
refused "group-writable data directory" "$DATA is writable by group or others (mode 0770); run: chmod go-w '$DATA'"
chmod 1777 "$DATA"
refused "sticky world-writable data directory" "$DATA is writable by group or others (mode 1777); run: chmod go-w '$DATA'"
chmod 0750 "$DATA"
check "a group-readable data directory is fine" start_server
stop_server TERM
chmod 0700 "$DATA"

for f in master.key admin.token tls.key; do
	chmod 0644 "$DATA/$f"
	refused "$f 0644" "$DATA/$f is open to group or others (mode 0644); run: chmod 600 '$DATA/$f'"
	chmod 0620 "$DATA/$f"
	refused "$f 0620 (group-writable)" "$DATA/$f is open to group or others (mode 0620); run: chmod 600 '$DATA/$f'"
	chmod 0600 "$DATA/$f"
done
chmod 0400 "$DATA/master.key"
check "a 0400 master.key is fine" start_server
stop_server TERM
chmod 0600 "$DATA/master.key"

if [ "$(id -u)" = 0 ]; then
	chown 65534 "$DATA/admin.token"
	refused "admin.token owned by another user" \
		"$DATA/admin.token is owned by uid 65534, not by uid 0 that runs vmcryptd; run: chown 0 '$DATA/admin.token'"
	chown 0 "$DATA/admin.token"
	chown 65534 "$DATA"
	refused "data directory owned by another user" \
		"$DATA is owned by uid 65534, not by uid 0 that runs vmcryptd; run: chown 0 '$DATA'"
	chown 0 "$DATA"
else
	skip "ownership refusals need root to chown"
fi

mv "$DATA/master.key" "$WORK/master.key"
ln -s "$WORK/master.key" "$DATA/master.key"
refused "master.key a symbolic link" "$DATA/master.key is a symbolic link; put the file itself there"
rm "$DATA/master.key"
mkdir "$DATA/master.key"
refused "master.key a directory" "$DATA/master.key is not a regular file"
rmdir "$DATA/master.key"
mv "$WORK/master.key" "$DATA/master.key"

# An operator's --tls-key is checked too; a link to a private key (certbot's layout) is fine.
mkdir -p "$WORK/pki"
cp "$DATA/tls.key" "$WORK/pki/real.key"
ln -s "$WORK/pki/real.key" "$WORK/pki/link.key"
chmod 0644 "$WORK/pki/real.key"
refused "--tls-key 0644 through a link" "$WORK/pki/link.key is open to group or others (mode 0644); run: chmod 600 '$WORK/pki/link.key'" \
	--tls-cert "$DATA/tls.crt" --tls-key "$WORK/pki/link.key"
chmod 0600 "$WORK/pki/real.key"
check "--tls-key as a link to a 0600 key starts" start_server --tls-cert "$DATA/tls.crt" --tls-key "$WORK/pki/link.key"
stop_server TERM

check "every mode fixed: starts again" start_server
api GET /v1/vm/goal -
check_eq "and serves" 401 "$STATUS"
stop_server TERM
check_eq "clean stop at the end" 0 "$SERVER_RC"
finish
