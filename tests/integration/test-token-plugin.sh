#!/bin/bash
# The LUKS2 token plugin (libcryptsetup-token-vmcrypt.so) inside the stock cryptsetup: a vmcrypt
# token opens a LUKS2 image with its key from a private vmcryptd on loopback; luksDump shows the
# token's references and no secret; a vault that is stopped, frozen (no TLS handshake: the 5 s
# connect bound) or silent (TLS, then no answer: the 15 s total bound) fails with -EAGAIN and
# cryptsetup then asks for the passphrase; a wrong credential, a token for another VM and a
# machine that is not enrolled fail with -ENOENT; agent.conf's CAFile= and Proxy= are used;
# `cryptsetup token import` refuses malformed tokens and `vmcrypt encrypt` still works.
#
# THIS TEST WRITES OUTSIDE ITS SCRATCH DIRECTORY: libcryptsetup 2.6.1 loads token plugins only
# from its compiled-in directory (no run-time override before 2.7), so the test copies the plugin
# to $TOKEN_DIR/libcryptsetup-token-vmcrypt.so for its run and removes it at exit (also after
# SIGINT/SIGTERM/SIGHUP; only a SIGKILL leaves it behind). It refuses to run when a file of that
# name is there already that it did not put there (an installed vmcrypt, say).
#
# The plugin runs inside cryptsetup and reads agent.conf and the credential from /etc/vmcrypt,
# unless $VMCRYPT_CONF_DIR names another directory: the test points it at its scratch directory.
. "$(dirname "$0")/server-lib.sh"
require_root
require_cmd cryptsetup nm timeout openssl mkfs.ext4 python3

PLUGIN=$BUILD/libcryptsetup-token-vmcrypt.so
[ -f "$PLUGIN" ] && [ -x "$VMCRYPT" ] || skip_all "$PLUGIN or $VMCRYPT not built"
TOKEN_DIR=/usr/lib/x86_64-linux-gnu/cryptsetup
[ -d "$TOKEN_DIR" ] || skip_all "no libcryptsetup token directory $TOKEN_DIR"
DEST=$TOKEN_DIR/libcryptsetup-token-vmcrypt.so
[ -e "$DEST" ] && skip_all "$DEST exists and this test did not put it there (an installed vmcrypt?); remove it to run this test"

# The exported interface: exactly the five functions, all at CRYPTSETUP_TOKEN_1.0, and nothing
# of the vmcrypt library (secret_alloc, json helpers) that could bind to the host's symbols.
syms=$(nm -D --defined-only "$PLUGIN" | awk '{print $3}' | grep -v '^CRYPTSETUP_TOKEN_1.0$' | sort | tr '\n' ' ')
check_eq "the plugin exports the five token functions and nothing else" \
	"cryptsetup_token_buffer_free@@CRYPTSETUP_TOKEN_1.0 cryptsetup_token_dump@@CRYPTSETUP_TOKEN_1.0 cryptsetup_token_open@@CRYPTSETUP_TOKEN_1.0 cryptsetup_token_validate@@CRYPTSETUP_TOKEN_1.0 cryptsetup_token_version@@CRYPTSETUP_TOKEN_1.0 " "$syms"

trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
cp "$PLUGIN" "$DEST.tmp.$$" && mv "$DEST.tmp.$$" "$DEST" || { not_ok "install the plugin into $TOKEN_DIR"; finish; }
at_exit "rm -f '$DEST' '$DEST.tmp.$$'"

# must NAME CMD...: a step the checks build on, not a check: its failure ends the test.
must() {
	local name=$1; shift
	if "$@"; then echo "# $name"; else not_ok "$name"; finish; fi
}

must "start" start_server
must "VM vm1" new_vm vm1

# The volume key: 64 random bytes, stored in the vault as the VM would (base64 in the JSON).
KEY=$WORK/key
head -c 64 /dev/urandom >"$KEY"
chmod 600 "$KEY"
api PUT /v1/vm/secrets/data "$WORK/vm1.hdr" "{\"value\":\"$(base64 -w 0 "$KEY")\"}"
must "store the volume key: 201" test "$STATUS" = 201
LEAK=$WORK/leak
secret_pattern "$LEAK" "$(base64 -w 0 "$KEY")"
secret_pattern "$LEAK" "$(od -An -tx1 -v "$KEY" | tr -d ' \n')"
secret_pattern "$LEAK" "$(od -An -tx1 -v "$KEY" | tr -d '\n' | sed 's/^ //')"   # "ab cd ..." as a hexdump shows it
secret_pattern "$LEAK" "$(head -n 1 "$WORK/vm1.cred")"
RECOVERY=$WORK/recovery
(umask 077; printf 'recovery-%s' "$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$RECOVERY")
secret_pattern "$LEAK" "$(cat "$RECOVERY")"

# The VM's configuration, as `vmcrypt enroll` leaves it.
export VMCRYPT_CONF_DIR=$WORK/conf
mkdir -p "$VMCRYPT_CONF_DIR"
write_conf() {
	printf 'Server=https://%s\nCAFile=%s\nProxy=none\nVM=vm1\n' "$ADDR" "$DATA/tls.crt" >"$VMCRYPT_CONF_DIR/agent.conf"
}
write_conf
(umask 077; cp "$WORK/vm1.cred" "$VMCRYPT_CONF_DIR/credential")

IMG=$WORK/img
truncate -s 32M "$IMG"
PBKDF=(--pbkdf pbkdf2 --pbkdf-force-iterations 1000)
must "luksFormat with the vault's key" cryptsetup luksFormat -q --type luks2 "${PBKDF[@]}" --key-file "$KEY" "$IMG"
must "a recovery passphrase in keyslot 1" cryptsetup luksAddKey -q "${PBKDF[@]}" --key-file "$KEY" --key-slot 1 "$IMG" "$RECOVERY"

token_json() { # SERVER VM VOLUME [EXTRA]
	printf '{"type":"vmcrypt","keyslots":["0"],"server":"%s","vm":"%s","volume":"%s","version":1%s}' "$1" "$2" "$3" "${4:-}"
}
OUTS=()
# refused ERRNO [MAX_MS]: for check, the last run failed, the plugin's open returned -ERRNO
# (libcryptsetup's debug line) and, with MAX_MS, it took less than that.
refused() {
	[ "$RC" != 0 ] && [ "$RC" != 124 ] && [[ "$OUT" == *"Token 0 (vmcrypt) open failed with -$1."* ]] &&
		{ [ $# -lt 2 ] || [ "$ELAPSED" -lt "$2" ]; }
}
# run NAME CMD...: runs CMD with stdout and stderr in $WORK/NAME.out; sets RC, OUT and ELAPSED (ms).
run() {
	local name=$1 t0 t1; shift
	t0=$(date +%s%N)
	"$@" >"$WORK/$name.out" 2>&1
	RC=$?
	t1=$(date +%s%N)
	ELAPSED=$(((t1 - t0) / 1000000))
	OUT=$(cat "$WORK/$name.out")
	OUTS+=("$WORK/$name.out")
}

# plugin_lines NAME: the plugin's error lines of a run, into the log.
plugin_lines() { grep -a '^vmcrypt token\|^Invalid vmcrypt' "$WORK/$1.out" | sed 's/^/# /'; }

# validate: `cryptsetup token import` calls the plugin's validate before it writes the header.
cp "$IMG" "$WORK/scratch"
token_json "https://$ADDR" vm1 data ',"extra":1' >"$WORK/t-extra.json"
run import-extra cryptsetup token import --json-file "$WORK/t-extra.json" "$WORK/scratch"
plugin_lines import-extra
check "import refuses a token with an unknown key" test "$RC" != 0
check_contains "import: the plugin says why (unknown key)" "Invalid vmcrypt token: unknown key" "$OUT"
token_json "http://$ADDR" vm1 data >"$WORK/t-http.json"
run import-http cryptsetup token import --json-file "$WORK/t-http.json" "$WORK/scratch"
check "import refuses a server that is not https" test "$RC" != 0
check_contains "import: the plugin says why (https)" "Invalid vmcrypt token: \"server\" is not an https:// URL" "$OUT"
token_json "https://$ADDR/v1/vm" vm1 data >"$WORK/t-path.json"
run import-path cryptsetup token import --json-file "$WORK/t-path.json" "$WORK/scratch"
check_contains "import refuses a server URL with a path" "has a path" "$OUT"
printf '{"type":"vmcrypt","keyslots":["0"],"server":"https://%s","vm":"vm1","volume":"../data","version":1}' "$ADDR" >"$WORK/t-name.json"
run import-name cryptsetup token import --json-file "$WORK/t-name.json" "$WORK/scratch"
check_contains "import refuses a bad volume name" "\"volume\" is not a valid name" "$OUT"
printf '{"type":"vmcrypt","keyslots":["0"],"server":"https://%s","vm":"vm1","volume":"data","version":"1"}' "$ADDR" >"$WORK/t-ver.json"
run import-version cryptsetup token import --json-file "$WORK/t-ver.json" "$WORK/scratch"
check_contains "import refuses a version that is not an integer" "\"version\" is missing or not an integer" "$OUT"
check "the refused imports left the header without a token" \
	bash -c "! cryptsetup luksDump '$WORK/scratch' | grep -q vmcrypt"
# The conversion record of volumes converted before it got its own type ("vmcrypt-convert",
# luks.h) has the type "vmcrypt": the plugin must still accept that legacy shape.
printf '{"type":"vmcrypt","keyslots":[],"version":1,"operation":"encrypt","started":1764633600,"fs_type":"ext4","fs_size":33554432,"data_shift":16777216}' >"$WORK/t-conv.json"
run import-conv cryptsetup token import --json-file "$WORK/t-conv.json" "$WORK/scratch"
run dump-conv cryptsetup luksDump "$WORK/scratch"
check_contains "the conversion state token is accepted and shown as such" "vmcrypt conversion state" "$OUT"
# `vmcrypt encrypt` works with the plugin installed; its record is a "vmcrypt-convert" token,
# which never reaches the plugin.
truncate -s 64M "$WORK/conv.img"
mkfs.ext4 -q -F "$WORK/conv.img"
run convert "$VMCRYPT" encrypt --key-file "$KEY" "$WORK/conv.img"
conv_rc=$RC
run dump-convert cryptsetup luksDump "$WORK/conv.img"
check "vmcrypt encrypt with the plugin installed: its record is a vmcrypt-convert token" \
	test "$conv_rc" = 0 -a -n "$(grep -E '^ +[0-9]+: vmcrypt-convert$' "$WORK/dump-convert.out")"

# The real token, on keyslot 0.
token_json "https://$ADDR" vm1 data >"$WORK/token.json"
must "import the vmcrypt token" cryptsetup token import --json-file "$WORK/token.json" --key-slot 0 "$IMG"

run open cryptsetup open --test-passphrase --token-only --debug "$IMG"
check_eq "open --token-only: the key comes from the vault" 0 "$RC"
check_contains "open: libcryptsetup loaded our plugin" "Token handler vmcrypt-" "$OUT"
check_contains "open: keyslot 0 opened through the token" "Key slot 0 unlocked" "$(cryptsetup open --test-passphrase --token-only -v "$IMG" 2>&1)"

run dump cryptsetup luksDump "$IMG"
check_contains "luksDump: server" "	Server:     https://$ADDR" "$OUT"
check_contains "luksDump: VM" "	VM:         vm1" "$OUT"
check_contains "luksDump: volume" "	Volume:     data" "$OUT"
check_contains "luksDump: version" "	Version:    1" "$OUT"
check_contains "luksDump: libcryptsetup's own keyslot line follows" "Version:    1
	Keyslot:    0" "$OUT"

# A token for another VM: refused before anything is sent.
cp "$IMG" "$WORK/other"
cryptsetup token remove --token-id 0 "$WORK/other"
token_json "https://$ADDR" vm2 data >"$WORK/t-vm2.json"
cryptsetup token import --json-file "$WORK/t-vm2.json" "$WORK/other" >/dev/null 2>&1
run other-vm cryptsetup open --test-passphrase --token-only --debug "$WORK/other"
plugin_lines other-vm
check "a token for another VM does not open: -ENOENT (this token cannot work here)" refused 2
check_contains "another VM: the plugin says so" "the token is for VM vm2, this machine is enrolled as vm1" "$OUT"

# A wrong credential: the vault refuses it.
# The right form, one character off (printf is a builtin: the credential is in no argv).
(umask 077; cred=$(head -n 1 "$WORK/vm1.cred"); [ "${cred: -1}" = a ] && c=b || c=a
 printf '%s\n' "${cred%?}$c" >"$VMCRYPT_CONF_DIR/credential")
run wrong-cred cryptsetup open --test-passphrase --token-only --debug "$IMG"
plugin_lines wrong-cred
check "a wrong credential does not open: -ENOENT" refused 2
check_contains "wrong credential: the plugin's line names the server and the refusal" "vmcrypt token 0 (volume data): cannot get the key from https://$ADDR: vmcryptd https://$ADDR refused the VM credential (HTTP 401" "$OUT"
check_eq "wrong credential: exactly one error line from the plugin" 1 "$(grep -c '^vmcrypt token 0' "$WORK/wrong-cred.out")"
(umask 077; cp "$WORK/vm1.cred" "$VMCRYPT_CONF_DIR/credential")

# agent.conf's CAFile= and Proxy= are what the plugin uses: a CA that did not sign the vault's
# certificate fails TLS verification, an unreachable proxy fails at the proxy.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=other -days 1 \
	-addext subjectAltName=IP:127.0.0.1 -keyout "$WORK/other-ca.key" -out "$WORK/other-ca.crt" >/dev/null 2>&1
printf 'Server=https://%s\nCAFile=%s\nProxy=none\nVM=vm1\n' "$ADDR" "$WORK/other-ca.crt" >"$VMCRYPT_CONF_DIR/agent.conf"
run other-ca cryptsetup open --test-passphrase --token-only --debug "$IMG"
plugin_lines other-ca
check "another CA: TLS verification fails, -EAGAIN" refused 11
check_contains "another CA: the plugin's line says TLS verification failed against that CA" \
	"TLS verification of server 127.0.0.1:${ADDR##*:} failed against CA $WORK/other-ca.crt" "$OUT"
closed=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
printf 'Server=https://%s\nCAFile=%s\nProxy=http://127.0.0.1:%s\nVM=vm1\n' "$ADDR" "$DATA/tls.crt" "$closed" >"$VMCRYPT_CONF_DIR/agent.conf"
run proxy cryptsetup open --test-passphrase --token-only --debug "$IMG"
plugin_lines proxy
check "an unreachable proxy: -EAGAIN" refused 11
check_contains "unreachable proxy: the plugin's line names the proxy" "proxy http://127.0.0.1:$closed unreachable" "$OUT"
write_conf

# Not enrolled: no agent.conf.
mv "$VMCRYPT_CONF_DIR/agent.conf" "$WORK/agent.conf.away"
run unenrolled cryptsetup open --test-passphrase --token-only --debug "$IMG"
plugin_lines unenrolled
check "not enrolled: no open, -ENOENT" refused 2
check_contains "not enrolled: the plugin names agent.conf" "$VMCRYPT_CONF_DIR/agent.conf" "$OUT"
mv "$WORK/agent.conf.away" "$VMCRYPT_CONF_DIR/agent.conf"
run open-again cryptsetup open --test-passphrase --token-only "$IMG"
check_eq "enrolled again: opens" 0 "$RC"

# A frozen vault (the kernel accepts the TCP connection, the TLS handshake never completes):
# the connect bound (5 s, which covers the handshake) ends the wait.
kill -STOP "$SERVER_PID"
run frozen timeout 60 cryptsetup open --test-passphrase --token-only --debug "$IMG"
kill -CONT "$SERVER_PID"
echo "# frozen vault: the token open gave up after $ELAPSED ms"
plugin_lines frozen
check "frozen vault: no open, -EAGAIN (try again later)" refused 11
check "frozen vault: gave up at the connect bound (4.5-8 s; took $ELAPSED ms)" test "$ELAPSED" -ge 4500 -a "$ELAPSED" -lt 8000
check_contains "frozen vault: the plugin's line names the server" "cannot get the key from https://$ADDR" "$OUT"

# A vault that completes TLS and never answers the request (openssl s_server with vmcryptd's
# certificate; its input is a FIFO opened read-write, which never ends): the total bound (15 s)
# ends the wait.
mkfifo "$WORK/hang.in"
openssl s_server -accept 127.0.0.1:0 -cert "$DATA/tls.crt" -key "$DATA/tls.key" <>"$WORK/hang.in" >"$WORK/hang.log" 2>&1 &
HANG_PID=$!
at_exit "kill $HANG_PID"
for ((i = 0; i < 100; i++)); do
	HANG=$(sed -n 's/^ACCEPT //p' "$WORK/hang.log")
	[ -n "$HANG" ] && break
	sleep 0.05
done
cp "$IMG" "$WORK/hang.img"
cryptsetup token remove --token-id 0 "$WORK/hang.img"
token_json "https://$HANG" vm1 data >"$WORK/t-hang.json"
cryptsetup token import --json-file "$WORK/t-hang.json" --key-slot 0 "$WORK/hang.img" >/dev/null 2>&1
run hang timeout 60 cryptsetup open --test-passphrase --token-only --debug "$WORK/hang.img"
echo "# silent vault: the token open gave up after $ELAPSED ms"
plugin_lines hang
check "silent vault: no open, -EAGAIN" refused 11
check "silent vault: gave up at the total bound (14-20 s; took $ELAPSED ms)" test "$ELAPSED" -ge 14000 -a "$ELAPSED" -lt 20000
kill "$HANG_PID"

# A stopped vault: cryptsetup then asks for the passphrase, and the recovery passphrase opens.
stop_server
run stopped cryptsetup open --test-passphrase --token-only --debug "$IMG"
plugin_lines stopped
echo "# stopped vault: the token open gave up after $ELAPSED ms"
check "stopped vault: --token-only fails at once with -EAGAIN (took $ELAPSED ms)" refused 11 2000
run fallback bash -c "cryptsetup open --test-passphrase -v '$IMG' <'$RECOVERY'"
fallback_ok() {
	[ "$RC" = 0 ] && [[ "$OUT" == *"vmcrypt token 0 (volume data): cannot get the key"*"Key slot 1 unlocked"* ]]
}
check "stopped vault: the token fails, cryptsetup asks, the recovery passphrase opens keyslot 1" fallback_ok

# No output of any of these commands holds the key (base64 or hex), the recovery passphrase or
# the credential, and they do hold the plugin's messages.
leak_free() { grep -q -F "vmcrypt token 0" "${OUTS[@]}" && no_leak "$LEAK" "${OUTS[@]}"; }
check "no key, passphrase or credential in the ${#OUTS[@]} outputs that hold the plugin's messages" leak_free

finish
