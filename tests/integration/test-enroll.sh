#!/bin/bash
# vmcrypt enroll, and the vault check and status lines it enables, against a private vmcryptd on
# loopback: the files enroll writes and their modes, no credential or token in any output, a used
# token, a wrong CA, the vault check's PASS and its FAILs naming the hop (server stopped,
# credential revoked, proxy down, proxy refusing CONNECT), and the way through an HTTPS proxy
# (connect-proxy.py, from agent.conf's Proxy= and from $https_proxy).
. "$(dirname "$0")/server-lib.sh"
require_cmd jq openssl python3
[ -x "$VMCRYPT" ] || skip_all "vmcrypt not built in $BUILD"
PROXY_PY=$TESTS_DIR/integration/connect-proxy.py
CONF=$VMCRYPT_CONF_DIR
unset https_proxy HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY

# vault_check [ENV...]: runs vmcrypt check --json (with ENV) and sets VSTATUS, VMSG, VREMEDY and
# CHECK_RC from its vault result; AVSTATUS, AVMSG from agent-version.
vault_check() {
	env "$@" "$VMCRYPT" check --json >"$WORK/check.json" 2>"$WORK/check.err"
	CHECK_RC=$?
	VSTATUS=$(jq -r '.checks[] | select(.id=="vault") | .status' "$WORK/check.json")
	VMSG=$(jq -r '.checks[] | select(.id=="vault") | .message' "$WORK/check.json")
	VREMEDY=$(jq -r '.checks[] | select(.id=="vault") | .remedy' "$WORK/check.json")
	AVSTATUS=$(jq -r '.checks[] | select(.id=="agent-version") | .status' "$WORK/check.json")
	AVMSG=$(jq -r '.checks[] | select(.id=="agent-version") | .message' "$WORK/check.json")
	cat "$WORK/check.json" "$WORK/check.err" >>"$WORK/all-output"
}

# enroll ARGS...: vmcrypt enroll; its stdout+stderr in OUT (and collected for the leak check), exit
# status in RC.
enroll() {
	"$VMCRYPT" enroll "$@" >"$WORK/enroll.out" 2>&1
	RC=$?
	OUT=$(cat "$WORK/enroll.out")
	cat "$WORK/enroll.out" >>"$WORK/all-output"
}

mode_of() { stat -c %a "$1"; }

# start_proxy NAME [--deny]: starts connect-proxy.py, sets PROXY_URL and PROXY_PID.
start_proxy() {
	local name=$1; shift
	rm -f "$WORK/$name.port"
	python3 "$PROXY_PY" "$WORK/$name.port" "$WORK/$name.log" --lifetime 120 "$@" &
	PROXY_PID=$!
	at_exit "kill $PROXY_PID"
	local i
	for ((i = 0; i < 100; i++)); do
		[ -s "$WORK/$name.port" ] && break
		sleep 0.05
	done
	PROXY_URL=http://127.0.0.1:$(cat "$WORK/$name.port")
	touch "$WORK/$name.log"
}

check "start" start_server
SERVER=https://$ADDR
PORT=${ADDR##*:}
cp "$DATA/tls.crt" "$WORK/ca-src.pem"

# --- before enrollment
vault_check
check_eq "not enrolled: vault SKIP" SKIP "$VSTATUS"
check_contains "not enrolled: says run vmcrypt enroll" "not enrolled: run vmcrypt enroll" "$VMSG"
check_contains "not enrolled: agent-version not compared" "not compared: not enrolled" "$AVMSG"
check_contains "not enrolled: status says so" "Server               : not enrolled (run vmcrypt enroll)" \
	"$("$VMCRYPT" status)"

# --- enroll
admin vm register vm1 >"$WORK/vm1.token" 2>/dev/null
secret_pattern "$WORK/secrets" "$(head -n 1 "$WORK/vm1.token")"
enroll --server "$SERVER" --token-file "$WORK/vm1.token" --ca-file "$WORK/ca-src.pem"
check_eq "enroll: exit 0" 0 "$RC"
check_contains "enroll: names the VM" "Enrolled as VM 'vm1'" "$OUT"
check_eq "credential is 0600" 600 "$(mode_of "$CONF/credential")"
check_eq "agent.conf is 0644" 644 "$(mode_of "$CONF/agent.conf")"
check_eq "ca.pem is 0644" 644 "$(mode_of "$CONF/ca.pem")"
check "ca.pem is a copy of the CA file" cmp -s "$CONF/ca.pem" "$DATA/tls.crt"
check "credential is a VM credential" grep -q '^vmc-vm-' "$CONF/credential"
secret_pattern "$WORK/secrets" "$(cat "$CONF/credential")"
# the credential must be the one vmcryptd accepts: use it by hand
auth_file vm1 "$CONF/credential"
api GET /v1/vm/goal "$WORK/vm1.hdr"
check_eq "the stored credential works" 200 "$STATUS"
conf=$(cat "$CONF/agent.conf")
check_contains "agent.conf: Server=" "Server=$SERVER" "$conf"
check_contains "agent.conf: CAFile= names the copy" "CAFile=$CONF/ca.pem" "$conf"
check_contains "agent.conf: VM=" "VM=vm1" "$conf"
check_contains "agent.conf: Proxy= empty" $'\nProxy=\n' "$conf"
check_contains "vmcryptd knows the hostname" "$(hostname)" "$(admin vm show vm1 2>&1)"
check "no temporary file left in the conf dir" test "$(ls "$CONF" | wc -l)" = 3
rm "$WORK/ca-src.pem" # the copy is what counts from now on

# --- the vault check after enrollment
vault_check
check_eq "enrolled: vault PASS" PASS "$VSTATUS"
check_contains "vault PASS: credential accepted" "credential accepted (VM vm1" "$VMSG"
check_contains "vault PASS: TLS verified against the copied CA" "TLS verified against $CONF/ca.pem" "$VMSG"
check "vault PASS: no proxy named" not_contains "proxy" "$VMSG"
check_eq "agent-version PASS" PASS "$AVSTATUS"
check_contains "agent-version names the version" "vmcrypt $("$VMCRYPT" --version | cut -d' ' -f2)" "$AVMSG"

# --- status: server and the applied sequence
st=$("$VMCRYPT" status)
check_contains "status: server" "Server               : $SERVER (VM vm1)" "$st"
check_contains "status: nothing applied yet" "AppliedSequence      : none" "$st"
mkdir -p "$VMCRYPT_STATE_DIR"
printf '{"appliedSequence": 3, "server": "%s", "volumes": {}}\n' "$SERVER" >"$VMCRYPT_STATE_DIR/agent.json"
check_contains "status: applied sequence from agent.json" "AppliedSequence      : 3" "$("$VMCRYPT" status)"
js=$("$VMCRYPT" status --json)
check_eq "status --json: appliedSequence" 3 "$(jq -r .agent.appliedSequence <<<"$js")"
check_eq "status --json: server" "$SERVER" "$(jq -r .agent.server <<<"$js")"
check_eq "status --json: enrolled" true "$(jq -r .agent.enrolled <<<"$js")"
echo '{"appliedSequence": "x"}' >"$VMCRYPT_STATE_DIR/agent.json"
check_contains "status: a broken agent.json is named" "AppliedSequence      : unknown ($VMCRYPT_STATE_DIR/agent.json" \
	"$("$VMCRYPT" status)"
rm "$VMCRYPT_STATE_DIR/agent.json"

# --- enrolling again
sha_before=$(sha256sum <"$CONF/credential")
enroll --server "$SERVER" --token-file "$WORK/vm1.token" --ca-file "$CONF/ca.pem"
check_eq "enroll again without --force: exit 12 (EXISTS)" 12 "$RC"
check_contains "enroll again: says already enrolled and --force" "already enrolled as vm1" "$OUT"
check_contains "enroll again: remedy --force" "--force" "$OUT"
enroll --server "$SERVER" --token-file "$WORK/vm1.token" --ca-file "$CONF/ca.pem" --force
check_eq "a used token: exit 13 (REMOTE)" 13 "$RC"
check_contains "a used token: refused, 401" "refused the enrollment token (HTTP 401" "$OUT"
check_contains "a used token: remedy" "a token works once" "$OUT"
check_eq "a failed enroll leaves the credential" "$sha_before" "$(sha256sum <"$CONF/credential")"
echo "not a token" >"$WORK/bad.token"
enroll --server "$SERVER" --token-file "$WORK/bad.token" --force
check_eq "a file without a token: exit 5 (KEY)" 5 "$RC"
enroll --server "$SERVER" --token-file "$WORK/missing.token" --force
check_eq "a missing token file: exit 5 (KEY)" 5 "$RC"
check_contains "a missing token file: named" "$WORK/missing.token" "$OUT"

# --- a wrong CA: TLS fails before the token is sent, so the token still works afterwards
admin vm register vm2 >"$WORK/vm2.token" 2>/dev/null
secret_pattern "$WORK/secrets" "$(head -n 1 "$WORK/vm2.token")"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/other.key" \
	-out "$WORK/other.pem" -days 1 -subj /CN=127.0.0.1 >/dev/null 2>&1
CONF2=$WORK/conf2
VMCRYPT_CONF_DIR=$CONF2 enroll --server "$SERVER" --token-file "$WORK/vm2.token" --ca-file "$WORK/other.pem"
check_eq "wrong CA: exit 13 (REMOTE)" 13 "$RC"
check_contains "wrong CA: names TLS and the CA file" \
	"TLS verification of server 127.0.0.1:$PORT failed against CA $WORK/other.pem" "$OUT"
check_contains "wrong CA: remedy --ca-file" "--ca-file" "$OUT"
check "wrong CA: no credential written" test ! -e "$CONF2/credential"
VMCRYPT_CONF_DIR=$CONF2 enroll --server "$SERVER" --token-file "$WORK/vm2.token"
check_eq "system store does not know vmcryptd's CA: exit 13" 13 "$RC"
check_contains "system store: named" "failed against the system CA store" "$OUT"

# --- through an HTTPS proxy (enroll --proxy)
start_proxy proxy
VMCRYPT_CONF_DIR=$CONF2 enroll --server "$SERVER" --token-file "$WORK/vm2.token" --ca-file "$DATA/tls.crt" \
	--proxy "$PROXY_URL"
check_eq "enroll through the proxy: exit 0" 0 "$RC"
check_contains "enroll went through the proxy" "CONNECT 127.0.0.1:$PORT " "$(cat "$WORK/proxy.log")"
check_contains "agent.conf keeps the proxy" "Proxy=$PROXY_URL" "$(cat "$CONF2/agent.conf")"
secret_pattern "$WORK/secrets" "$(cat "$CONF2/credential")"
: >"$WORK/proxy.log"
vault_check VMCRYPT_CONF_DIR="$CONF2"
check_eq "through the proxy: vault PASS" PASS "$VSTATUS"
check_contains "through the proxy: named" "reachable through proxy $PROXY_URL" "$VMSG"
check_contains "the check went through the proxy" "CONNECT 127.0.0.1:$PORT " "$(cat "$WORK/proxy.log")"

# Proxy= empty takes $https_proxy; Proxy=none ignores it.
: >"$WORK/proxy.log"
vault_check https_proxy="$PROXY_URL"
check_eq "\$https_proxy: vault PASS" PASS "$VSTATUS"
check_contains "\$https_proxy: named" "through proxy $PROXY_URL" "$VMSG"
check_contains "\$https_proxy: used" "CONNECT 127.0.0.1:$PORT " "$(cat "$WORK/proxy.log")"
sed -i 's|^Proxy=.*|Proxy=none|' "$CONF/agent.conf"
: >"$WORK/proxy.log"
vault_check https_proxy="$PROXY_URL"
check_eq "Proxy=none: vault PASS direct" PASS "$VSTATUS"
check_eq "Proxy=none: the proxy saw nothing" "" "$(cat "$WORK/proxy.log")"
sed -i 's|^Proxy=.*|Proxy=|' "$CONF/agent.conf"

# The proxy down: FAIL naming the proxy, not the server.
kill "$PROXY_PID"; wait "$PROXY_PID" 2>/dev/null
vault_check VMCRYPT_CONF_DIR="$CONF2"
check_eq "proxy down: vault FAIL" FAIL "$VSTATUS"
check_eq "proxy down: check exits 10" 10 "$CHECK_RC"
check_contains "proxy down: names the proxy" "proxy $PROXY_URL unreachable" "$VMSG"
check_contains "proxy down: remedy names the proxy" "Check the proxy $PROXY_URL" "$VREMEDY"

# A proxy that refuses the tunnel.
start_proxy deny --deny
sed -i "s|^Proxy=.*|Proxy=$PROXY_URL|" "$CONF2/agent.conf"
vault_check VMCRYPT_CONF_DIR="$CONF2"
check_eq "proxy refuses CONNECT: vault FAIL" FAIL "$VSTATUS"
check_contains "proxy refuses CONNECT: named" "proxy $PROXY_URL refused CONNECT to 127.0.0.1:$PORT (HTTP 403)" "$VMSG"
kill "$PROXY_PID"; wait "$PROXY_PID" 2>/dev/null

# --- the credential refused
admin vm revoke vm1 >/dev/null 2>&1
vault_check
check_eq "revoked: vault FAIL" FAIL "$VSTATUS"
check_contains "revoked: the credential refused, 403" "refused the VM credential (HTTP 403" "$VMSG"
check_contains "revoked: remedy enroll --force" "vmcrypt enroll --force" "$VREMEDY"
chmod 0644 "$CONF/credential"
vault_check
check_eq "credential readable by others: vault FAIL" FAIL "$VSTATUS"
check_contains "credential readable by others: remedy chmod" "chmod 0600" "$VMSG"
chmod 0600 "$CONF/credential"

# --- the server stopped
stop_server
vault_check
check_eq "server stopped: vault FAIL" FAIL "$VSTATUS"
check_contains "server stopped: names the server" "server 127.0.0.1:$PORT unreachable" "$VMSG"
check_contains "server stopped: remedy" "Check that vmcryptd runs at $SERVER" "$VREMEDY"
check_contains "agent-version: not compared when unreachable" "not compared: the vault check failed" "$AVMSG"

# --- nothing secret in any output: tokens and credentials
check "no token or credential in any output" no_leak "$WORK/secrets" "$WORK/all-output"
check "no token or credential in agent.conf" no_leak "$WORK/secrets" "$CONF/agent.conf" "$CONF2/agent.conf"
finish
