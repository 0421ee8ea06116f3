#!/bin/bash
# The agent's additions to encrypt: a recovery passphrase in keyslot 1 and a LUKS2 token set at
# format time. Both must exist on the finished volume, also after a kill -9 and resume (including
# the finish vmcrypt does itself, which rebuilds the header), and the recovery passphrase alone
# must decrypt and resume.
. "$(dirname "$0")/../lib.sh"
require_root
require_cmd cryptsetup mkfs.ext4 mkfs.xfs losetup
. "$(dirname "$0")/luks-lib.sh"

REC=$WORK/recovery
printf '%s' "123456-234567-345678-456789-567890-678901-789012-890123" >"$REC"
chmod 600 "$REC"
TOK=$WORK/token.json
printf '%s' '{"type":"vmcrypt","keyslots":["0"],"server":"https://10.0.2.100:8443","vm":"vm1","volume":"data","version":1}' >"$TOK"

pristine=$WORK/pristine.img
make_ext4 "$pristine" 256M 120
img=$WORK/img
fresh() { rm -rf "$img" "$VMCRYPT_STATE_DIR/volumes"; cp --sparse=always "$pristine" "$img"; }

# keyslots DEV [--header H]: the numbers of the luks2 keyslots, space-separated.
keyslots() {
	local t=$1; shift
	cryptsetup luksDump --dump-json-metadata "$@" "$t" | python3 -c '
import json,sys
m=json.load(sys.stdin)
print(" ".join(sorted(k for k,v in m["keyslots"].items() if v["type"]=="luks2")))'
}
# agent_token DEV [--header H]: the token with a "server" member, keys sorted, or "".
agent_token() {
	local t=$1; shift
	cryptsetup luksDump --dump-json-metadata "$@" "$t" | python3 -c '
import json,sys
m=json.load(sys.stdin)
t=[v for v in m["tokens"].values() if "server" in v]
print(json.dumps(t[0],sort_keys=True) if len(t)==1 else "")'
}
want_token=$(python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1])),sort_keys=True))' "$TOK")
opens() { cryptsetup open --test-passphrase "$@" >/dev/null 2>&1; }
# what_opens DEV [--header H]: "key+recovery", "key", "recovery" or "none"
what_opens() {
	local k=no r=no t=$1; shift
	opens --key-file "$KEY" "$@" "$t" && k=yes
	opens --key-file "$REC" "$@" "$t" && r=yes
	case $k$r in yesyes) echo key+recovery;; yesno) echo key;; noyes) echo recovery;; *) echo none;; esac
}
# check_result NAME DEV [--header H]: encrypted, keyslots 0 and 1, the token on keyslot 0.
check_result() {
	local name=$1 t=$2; shift 2
	check_eq "$name: encrypted" encrypted "$(status_field "$t" state "$@")"
	check_eq "$name: keyslots 0 and 1" "0 1" "$(keyslots "$t" "$@")"
	check_eq "$name: key and recovery passphrase open it" key+recovery "$(what_opens "$t" "$@")"
	check_eq "$name: the token is there as given" "$want_token" "$(agent_token "$t" "$@")"
	check "$name: no reencryption left in the header" not_cmd grep -q online-reencrypt <<<"$(cryptsetup luksDump "$@" "$t")"
}

# --- encrypt with both, then decrypt with the recovery passphrase alone ------------------------
fresh
"$VMCRYPT" encrypt --key-file "$KEY" --recovery-file "$REC" --token-json-file "$TOK" "$img" >"$WORK/out" 2>&1
check_eq "encrypt --recovery-file --token-json-file exits 0" 0 $?
check_result "encrypted" "$img"
dump=$(cryptsetup luksDump "$img")
check "luksDump: 2 keyslots" [ "$(grep -c -E '^  [0-9]+: luks2' <<<"$dump")" = 2 ]
check "luksDump: the token on keyslot 0" grep -Pzq 'vmcrypt\n\tKeyslot:    0' <<<"$dump"
check "the typed recovery passphrase opens it (stdin, as at a prompt)" \
	bash -c 'cat "$1"; echo' _ "$REC" | cryptsetup open --test-passphrase "$img"
check_eq "status still reads the conversion token: fs_type" ext4 "$(status_field "$img" fs_type)"
"$VMCRYPT" decrypt --recovery-file "$REC" "$img" >"$WORK/out" 2>&1
check_eq "decrypt with the recovery passphrase alone exits 0" 0 $?
check "decrypted: e2fsck clean" fsck_clean "$img"
check_eq "decrypted: filesystem grown back (the conversion token's size was used)" 262144 \
	"$(dumpe2fs -h "$img" 2>/dev/null | sed -n 's/^Block count: *//p' | awk '{print $1 * 1}')"
check "decrypted: every file's SHA-256 matches" sums_match "$img" "$pristine.sums"

# --- kill -9 at 50%, resume with the recovery passphrase alone ---------------------------------
fresh
VMCRYPT_TEST_KILL_AT=convert-50 "$VMCRYPT" encrypt --key-file "$KEY" --recovery-file "$REC" \
	--token-json-file "$TOK" "$img" >/dev/null 2>&1
check_eq "killed at 50%: died by SIGKILL" 137 $?
"$VMCRYPT" resume --recovery-file "$REC" "$img" >"$WORK/out" 2>&1
check_eq "killed at 50%: resume --recovery-file exits 0" 0 $?
check_result "killed at 50%, resumed" "$img"
VMCRYPT_TEST_KILL_AT=convert-50 "$VMCRYPT" decrypt --key-file "$KEY" "$img" >/dev/null 2>&1
"$VMCRYPT" resume --recovery-file "$REC" "$img" >"$WORK/out" 2>&1
check_eq "decrypt killed at 50%: resume --recovery-file exits 0" 0 $?
check "decrypt killed at 50%, resumed: every file's SHA-256 matches" sums_match "$img" "$pristine.sums"

# --- kill -9 after the last hotzone: vmcrypt rebuilds the header itself ------------------------
fresh
VMCRYPT_TEST_KILL_AT=convert-99 "$VMCRYPT" encrypt --key-file "$KEY" --recovery-file "$REC" \
	--token-json-file "$TOK" "$img" >/dev/null 2>&1
check_eq "killed at 99%: died by SIGKILL" 137 $?
out=$("$VMCRYPT" resume --key-file "$KEY" "$img" 2>&1)
check_eq "killed at 99%: resume with the key alone cannot rebuild keyslot 1: exit 5" 5 $?
check_contains "killed at 99%: says it needs every passphrase" "needs the passphrase of every keyslot" "$out"
"$VMCRYPT" resume --key-file "$KEY" --recovery-file "$REC" "$img" >"$WORK/out" 2>&1
check_eq "killed at 99%: resume with both exits 0" 0 $?
check_result "killed at 99%, finished by vmcrypt" "$img"
"$VMCRYPT" decrypt --key-file "$KEY" "$img" >/dev/null 2>&1
check "killed at 99%: every file's SHA-256 matches after decrypt" sums_match "$img" "$pristine.sums"

# --- xfs, detached header, killed after the last hotzone ---------------------------------------
xfs=$WORK/xfs.img
make_xfs "$xfs" 300M 60
hdr=$WORK/xfs.header
VMCRYPT_TEST_KILL_AT=convert-99 "$VMCRYPT" encrypt --key-file "$KEY" --recovery-file "$REC" \
	--token-json-file "$TOK" --header "$hdr" "$xfs" >/dev/null 2>&1
check_eq "xfs detached, killed at 99%: died by SIGKILL" 137 $?
"$VMCRYPT" resume --key-file "$KEY" --recovery-file "$REC" --header "$hdr" "$xfs" >"$WORK/out" 2>&1
check_eq "xfs detached, killed at 99%: resume exits 0" 0 $?
check_result "xfs detached, finished by vmcrypt" "$xfs" --header "$hdr"
"$VMCRYPT" decrypt --recovery-file "$REC" --header "$hdr" "$xfs" >/dev/null 2>&1
check_eq "xfs detached: decrypt with the recovery passphrase exits 0" 0 $?
check "xfs detached: every file's SHA-256 matches" sums_match "$xfs" "$xfs.sums"

# --- refusals before anything changes -----------------------------------------------------------
fresh
before=$(sha256sum <"$img")
for bad in 'not json' '{"keyslots":["0"]}' '{"type":"x","keyslots":["1"]}' \
	'{"type":"vmcrypt","keyslots":[],"operation":"encrypt"}'; do
	printf '%s' "$bad" >"$WORK/bad.json"
	"$VMCRYPT" encrypt --key-file "$KEY" --token-json-file "$WORK/bad.json" "$img" >"$WORK/out" 2>&1
	check "bad token $bad: refused" [ $? != 0 ]
done
check_eq "bad tokens: the image is byte-identical" "$before" "$(sha256sum <"$img")"
"$VMCRYPT" encrypt --recovery-file "$REC" "$img" >/dev/null 2>&1
check_eq "encrypt with only a recovery passphrase: usage error (exit 2)" 2 $?
"$VMCRYPT" encrypt --key-file "$KEY" "$img" >/dev/null 2>&1
"$VMCRYPT" decrypt --recovery-file "$KEY.nope" "$img" >/dev/null 2>&1
check_eq "decrypt with a missing recovery file: exit 5" 5 $?
printf 'wrong' >"$WORK/wrong"
"$VMCRYPT" decrypt --recovery-file "$WORK/wrong" "$img" >/dev/null 2>&1
check_eq "decrypt with a wrong recovery passphrase: exit 5" 5 $?
check_eq "a volume encrypted without them: one keyslot" "0" "$(keyslots "$img")"

finish
