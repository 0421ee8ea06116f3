#!/bin/bash
# The vault client's VM routes (src/shared/client/vault-client.c) against a private vmcryptd:
# the live cases of tests/unit/test-vault-client.c, run in a VM enrolled with vmcrypt enroll:
# secrets put and read back byte for byte (binary, 4096 bytes, versions), 404 as -ENOENT, header
# backups (16 MiB there and back, versions, the same bytes again), the goal and its sequence,
# status reports and the server's 400 as -EINVAL with its message.
. "$(dirname "$0")/server-lib.sh"
UNIT=$BUILD/tests/test-vault-client
[ -x "$VMCRYPT" ] && [ -x "$UNIT" ] || skip_all "vmcrypt or tests/test-vault-client not built in $BUILD"

# live SEQUENCE: runs the live cases expecting the goal's sequence SEQUENCE; checks that both ran.
live() {
	VMCRYPT_TEST_LIVE=1 VMCRYPT_TEST_LIVE_SEQUENCE=$1 CMOCKA_MESSAGE_OUTPUT=stdout "$UNIT" >"$WORK/live.log" 2>&1
	LIVE_RC=$?
	LIVE=$(cat "$WORK/live.log")
}

check "start" start_server
admin vm register vm1 >"$WORK/vm1.token" 2>/dev/null
check "enroll" "$VMCRYPT" enroll --server "https://$ADDR" --token-file "$WORK/vm1.token" --ca-file "$DATA/tls.crt"

live 0
check_eq "live cases pass (sequence 0)" 0 "$LIVE_RC"
check_contains "secrets case ran" "[       OK ] test_live_secrets" "$LIVE"
check_contains "goal/status case ran" "[       OK ] test_live_goal_and_status" "$LIVE"
check_contains "header backup case ran" "[       OK ] test_live_headers" "$LIVE"
check "nothing skipped" not_contains "SKIPPED" "$LIVE"
[ "$LIVE_RC" = 0 ] || cat "$WORK/live.log"
check_contains "vmcryptd holds version 2 of data" "Version     : 2" "$(admin secret show vm1/data 2>&1)"

admin vm encryption enable --vm vm1 --volume-type Data >/dev/null
live 1
check_eq "live cases pass after enable (sequence 1)" 0 "$LIVE_RC"
[ "$LIVE_RC" = 0 ] || cat "$WORK/live.log"
check_contains "vmcryptd took the report" "Encrypting data volume 1/1" "$(admin vm encryption show --vm vm1 2>&1)"
finish
