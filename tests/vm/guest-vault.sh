# shellcheck shell=bash
# Sourced by tests/vm/test-vm-agent.sh and bench/online: vmcryptd on the host's loopback with a
# certificate the Debian guest verifies. The guest reaches it only as https://10.0.2.100:8443
# (QEMU's guestfwd, tests/vm/debian-guest boot --port), vmcrypt-admin as 127.0.0.1: the
# certificate names both, from a throwaway test CA.
#
# Set before use: VMCRYPTD and VMCRYPT_ADMIN (the programs), VAULT_DIR (a directory of ours:
# pki/ holds ca.pem, srv.pem, srv.key; data/ is vmcryptd's --data-dir; vmcryptd.log, pki.log).
#   vault_pki             makes the CA and the server certificate; 1 on failure (see pki.log)
#   vault_start           starts vmcryptd on 127.0.0.1:$VAULT_PORT (0 or unset: any port, then
#                         VAULT_PORT is the one it took, so a restart keeps it); sets VAULT_PID
#   vault_stop            stops it (the caller's exit handler kills $VAULT_PID if set)
#   vault_admin ARGS...   vmcrypt-admin against it, with the CA and the admin token
VAULT_PID=
VAULT_PORT=${VAULT_PORT:-0}

vault_pki() {
	mkdir -p "$VAULT_DIR/pki" "$VAULT_DIR/data"
	(
		cd "$VAULT_DIR/pki" &&
			openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem \
				-days 2 -subj /CN=vmcrypt-test-CA &&
			openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout srv.key -out srv.csr \
				-subj /CN=10.0.2.100 &&
			printf 'subjectAltName=IP:10.0.2.100,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >ext.cnf &&
			openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 2 -extfile ext.cnf
	) >"$VAULT_DIR/pki.log" 2>&1
}

vault_start() {
	local d=$VAULT_DIR/data i
	rm -f "$d/vmcryptd.listen"
	"$VMCRYPTD" --data-dir "$d" --listen "127.0.0.1:$VAULT_PORT" --tls-cert "$VAULT_DIR/pki/srv.pem" \
		--tls-key "$VAULT_DIR/pki/srv.key" >>"$VAULT_DIR/vmcryptd.log" 2>&1 &
	VAULT_PID=$!
	for ((i = 0; i < 200; i++)); do
		[ -s "$d/vmcryptd.listen" ] && { VAULT_PORT=$(sed 's/.*://' "$d/vmcryptd.listen"); return 0; }
		kill -0 "$VAULT_PID" 2>/dev/null || break
		sleep 0.05
	done
	cat "$VAULT_DIR/vmcryptd.log" >&2
	return 1
}

vault_stop() {
	[ -n "$VAULT_PID" ] || return 0
	kill "$VAULT_PID" 2>/dev/null
	wait "$VAULT_PID" 2>/dev/null
	VAULT_PID=
}

vault_admin() {
	"$VMCRYPT_ADMIN" --server "https://127.0.0.1:$VAULT_PORT" --ca-file "$VAULT_DIR/pki/ca.pem" \
		--token-file "$VAULT_DIR/data/admin.token" "$@"
}
