#!/bin/bash
# The agent on this host (no device-mapper: data volumes convert offline), against a private
# vmcryptd on loopback: enrollment; the goal None changes nothing; a vault that refuses the secret
# (disabled KEK) or that is down at the escrow leaves the volume byte-identical; escrow is read back
# before conversion (both secrets in the vault, the key and the recovery passphrase open the
# volume); kill -9 of the agent at every step of an offline encryption and decryption, then a
# restart: data intact and the vault's key opens the volume; crypttab/fstab edited and restored
# with foreign lines kept; a mounted volume is refused with the dm_crypt remedy; status, progress
# messages and drift as vmcrypt-admin shows them; the LUKS2 header backed up in the vault once
# encrypted, and it opens the volume; extension remove after disable.
. "$(dirname "$0")/server-lib.sh"
require_root
require_cmd cryptsetup mkfs.ext4 losetup jq
. "$(dirname "$0")/luks-lib.sh"
[ -x "$VMCRYPT" ] || skip_all "vmcrypt not built in $BUILD"
unset https_proxy HTTPS_PROXY
CONF=$VMCRYPT_CONF_DIR

check "start vmcryptd" start_server
SERVER=https://$ADDR

# --- the data volume: an ext4 image on a loop device, not mounted ----------------------------
make_ext4 "$WORK/pristine.img" 160M 60
cp --sparse=always "$WORK/pristine.img" "$WORK/data.img"
DEV=$(new_loop "$WORK/data.img")
NAME=$(basename "$DEV")
SUMS=$WORK/pristine.img.sums
image_sum() { sha256sum "$WORK/data.img" | cut -d' ' -f1; }
PRISTINE_SUM=$(image_sum)

cat >"$WORK/fstab" <<EOF
# /etc/fstab: static file system information.
UUID=11111111-2222-3333-4444-555555555555 /               ext4    errors=remount-ro 0       1
tmpfs	/scratch	tmpfs	size=10m	0 0
EOF
cat >"$WORK/crypttab" <<'EOF'
# <target name> <source device> <key file> <options>
swapcrypt /dev/disk/by-partlabel/swap /dev/urandom swap,cipher=aes-xts-plain64
EOF
cp "$WORK/fstab" "$WORK/fstab.orig"
cp "$WORK/crypttab" "$WORK/crypttab.orig"

# --- before enrollment -------------------------------------------------------------------------
"$VMCRYPT" agent --once >"$WORK/noenroll.out" 2>&1
check_eq "not enrolled: agent exits 4" 4 $?
check_contains "not enrolled: says to enroll" "vmcrypt enroll" "$(cat "$WORK/noenroll.out")"

# --- enrollment --------------------------------------------------------------------------------
admin vm register vm1 >"$WORK/enroll.token" 2>/dev/null
chmod 600 "$WORK/enroll.token"
"$VMCRYPT" enroll --server "$SERVER" --token-file "$WORK/enroll.token" --ca-file "$DATA/tls.crt" \
	>"$WORK/enroll.out" 2>&1
check_eq "enroll: exit 0" 0 $?
check_eq "enroll: credential mode 0600" 600 "$(stat -c %a "$CONF/credential")"
cat >>"$CONF/agent.conf" <<EOF
Include=$DEV
PollInterval=1
ReportInterval=1
ProgressInterval=1
Crypttab=$WORK/crypttab
Fstab=$WORK/fstab
UnitDir=$WORK/units
EOF
DROPIN="$WORK/units/systemd-cryptsetup@vmcrypt\\x2d$NAME.service.d/50-vmcrypt-network.conf"

cp "$CONF/agent.conf" "$WORK/agent.conf.good"
echo "StopUnit=auto" >>"$CONF/agent.conf"
"$VMCRYPT" agent --once >"$WORK/badconf.out" 2>&1
check_eq "agent.conf with an unknown key: exit 2" 2 $?
check_contains "agent.conf with an unknown key: names the line" "agent.conf:" "$(cat "$WORK/badconf.out")"
cp "$WORK/agent.conf.good" "$CONF/agent.conf"

AGENT_PID=
# agent_once [ENV...]: one pass of the agent; output appended to agent.log, exit status in RC
# (124: it did not end within $ONCE_TIMEOUT seconds, default 600, and was killed).
agent_once() {
	timeout -s KILL "${ONCE_TIMEOUT:-600}" env "$@" "$VMCRYPT" agent --once >>"$WORK/agent.log" 2>&1
	RC=$?
	[ "$RC" = 137 ] && [ -n "${ONCE_TIMEOUT:-}" ] && RC=124 # timeout's own KILL, not a test hook's
}
# agent_bg [ENV...]: the agent in the background (AGENT_PID).
agent_bg() {
	env "$@" "$VMCRYPT" agent >>"$WORK/agent.log" 2>&1 &
	AGENT_PID=$!
	at_exit "kill -9 $AGENT_PID"
}
# show FIELD: a field of vmcrypt-admin vm encryption show --json.
show() { admin --json vm encryption show --vm vm1 2>/dev/null | jq -r "$1"; }
# wait_for JQ VALUE SECONDS: polls the VM's status view until JQ gives VALUE.
wait_for() {
	local i
	for ((i = 0; i < $3 * 5; i++)); do
		[ "$(show "$1")" = "$2" ] && return 0
		sleep 0.2
	done
	echo "waited ${3}s for $1 = $2; it is $(show "$1")"
	return 1
}
state_of() { status_field "$DEV" state; }

# --- goal None: nothing changes ----------------------------------------------------------------
agent_once
check_eq "goal None: agent --once exits 0" 0 "$RC"
check_eq "goal None: image unchanged" "$PRISTINE_SUM" "$(image_sum)"
check_eq "goal None: reported NotEncrypted" NotEncrypted "$(show .DataVolumesEncrypted)"
check_eq "goal None: ProgressMessage" "Encryption is not enabled for this VM" "$(show .ProgressMessage)"

# --- a vault that refuses the secret: a disabled KEK ---------------------------------------------
admin key create kek1 >/dev/null 2>&1
admin vm encryption enable --vm vm1 --volume-type Data --kek kek1 >/dev/null 2>&1
admin key disable kek1 >/dev/null 2>&1
agent_once
check_eq "vault refuses: image byte-identical" "$PRISTINE_SUM" "$(image_sum)"
check_contains "vault refuses: ProgressMessage says the escrow failed" "could not be escrowed" "$(show .ProgressMessage)"
check_eq "vault refuses: still NotEncrypted" NotEncrypted "$(show .DataVolumesEncrypted)"
check_eq "vault refuses: crypttab untouched" "$(cat "$WORK/crypttab.orig")" "$(cat "$WORK/crypttab")"
admin key enable kek1 >/dev/null 2>&1

# --- a vault that is down at the escrow ----------------------------------------------------------
agent_bg VMCRYPT_TEST_AGENT_PAUSE_AT=before-escrow VMCRYPT_TEST_AGENT_PAUSE_FILE="$WORK/go"
for ((i = 0; i < 100; i++)); do grep -q "paused at before-escrow" "$WORK/agent.log" && break; sleep 0.1; done
check "vault down: the agent reached the escrow" grep -q "paused at before-escrow" "$WORK/agent.log"
stop_server KILL
touch "$WORK/go"
sleep 3
check_eq "vault down: image byte-identical" "$PRISTINE_SUM" "$(image_sum)"
check "vault down: agent says it could not escrow" grep -q "could not be escrowed" "$WORK/agent.log"
check "vault down: agent still runs" kill -0 "$AGENT_PID"
check "vault back" start_server --listen "$ADDR"
# The agent retries at its next poll and converts (offline here) once the vault answers.
check "vault back: the agent encrypts" wait_for .DataVolumesEncrypted Encrypted 120
check_eq "vault back: ProgressMessage" "Encryption succeeded for data volumes" "$(show .ProgressMessage)"
check_eq "vault back: drift none" none "$(show .Drift.state)"
# The header's second home: once the volume is encrypted the agent backs its LUKS2 header up in
# the vault (at its next pass, every second here).
header_versions() {
	admin --json header list --vm vm1 2>/dev/null | jq -r --arg v "$NAME" '[.headers[]? | select(.volume == $v)] | length'
}
header_backed_up() {
	local i
	for ((i = 0; i < 100; i++)); do
		[ "$(header_versions)" = 1 ] && return 0
		sleep 0.2
	done
	echo "header list: $(admin --json header list --vm vm1 2>&1)"
	return 1
}
check "header backup: the agent stored the volume's LUKS2 header in the vault" header_backed_up
sleep 2
check_eq "header backup: once, not at every pass" 1 "$(header_versions)"
kill -TERM "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
check_eq "agent: SIGTERM exits 0" 0 $?

# --- escrow read back: both secrets are in the vault and open the volume -------------------------
admin --json secret show "vm1/$NAME" --reveal 2>/dev/null | jq -r .value | base64 -d >"$WORK/vault.key"
admin --json secret show "vm1/$NAME-recovery" --reveal 2>/dev/null | jq -r .value | base64 -d >"$WORK/vault.rec"
chmod 600 "$WORK/vault.key" "$WORK/vault.rec"
check_eq "escrow: the key is 64 bytes" 64 "$(stat -c %s "$WORK/vault.key")"
check "escrow: the recovery passphrase is 8 groups of 6 digits" grep -qE '^[0-9]{6}(-[0-9]{6}){7}$' "$WORK/vault.rec"
check "escrow: the vault's key opens the volume" cryptsetup open --test-passphrase --key-file "$WORK/vault.key" "$DEV"
check "escrow: the recovery passphrase opens it" cryptsetup open --test-passphrase --key-file "$WORK/vault.rec" "$DEV"
admin header get --vm vm1 --volume "$NAME" --output "$WORK/header.bak" >"$WORK/header-get.out" 2>&1
check_eq "header backup: vmcrypt-admin header get, the volume's UUID" "$(cryptsetup luksUUID "$DEV")" \
	"$(cryptsetup luksUUID "$WORK/header.bak" 2>&1)"
check "header backup: the recovery passphrase opens the volume through it" \
	cryptsetup open --test-passphrase --header "$WORK/header.bak" --key-file "$WORK/vault.rec" "$DEV"
check_eq "agent.json: the UUID backed up" "$(cryptsetup luksUUID "$DEV")" \
	"$(jq -r --arg n "$NAME" '.volumes[] | select(.name == $n) | .headerBackupUuid' "$VMCRYPT_STATE_DIR/agent.json")"
dump=$(cryptsetup luksDump "$DEV")
token=$(cryptsetup token export --token-id 1 "$DEV" 2>/dev/null)
check_eq "token: type vmcrypt on keyslot 0" 'vmcrypt ["0"]' "$(jq -cj '.type, " ", .keyslots' <<<"$token")"
check_eq "token: names the server, VM and volume" "$SERVER vm1 $NAME" "$(jq -j '.server, " ", .vm, " ", .volume' <<<"$token")"
check "token: no secret in luksDump" no_leak <(base64 -w0 "$WORK/vault.key"; echo; cat "$WORK/vault.rec"; echo) <(echo "$dump")
check "crypttab: the agent's line" grep -qE "^vmcrypt-$NAME UUID=[0-9a-f-]+ none luks,_netdev,nofail" "$WORK/crypttab"
check "crypttab: foreign lines kept" grep -qxF "swapcrypt /dev/disk/by-partlabel/swap /dev/urandom swap,cipher=aes-xts-plain64" "$WORK/crypttab"
check "crypttab: backup kept" cmp -s "$WORK/crypttab.vmcrypt-bak" "$WORK/crypttab.orig"
check "the cryptsetup unit waits for the network (drop-in)" grep -qx "After=network-online.target" "$DROPIN"
check "the cryptsetup unit runs before the agent (drop-in)" grep -qx "Before=vmcrypt-agent.service" "$DROPIN"
check_eq "agent.json: the goal's sequence applied" "$(show .settings.SequenceVersion)" "$(jq -r .appliedSequence "$VMCRYPT_STATE_DIR/agent.json")"
check "no key in the agent's log or state" no_leak <(base64 -w0 "$WORK/vault.key"; echo; cat "$WORK/vault.rec"; echo) "$WORK/agent.log" "$VMCRYPT_STATE_DIR/agent.json"

# --- a decryption's start cut short after it parked the header and wiped the signature ---------
# (before agent.json named the parked header): the device looks plain, but the data is still
# encrypted behind header.img. The agent must neither report NotEncrypted nor touch the device.
uuid=$(cryptsetup luksUUID "$DEV")
parked="$VMCRYPT_STATE_DIR/volumes/$uuid/header.img"
mkdir -p "${parked%/*}"
cryptsetup luksHeaderBackup "$DEV" --header-backup-file "$parked"
wipefs -q -a "$DEV"
check "parked header: the device no longer looks like LUKS" sh -c "! cryptsetup isLuks '$DEV'"
before=$(sha256sum <"$DEV")
agent_once
check_eq "parked header: agent --once exits 0" 0 "$RC"
check_eq "parked header: still reported Encrypted" Encrypted "$(show .DataVolumesEncrypted)"
check_eq "parked header: the device is byte-identical" "$before" "$(sha256sum <"$DEV")"
cryptsetup luksHeaderRestore -q "$DEV" --header-backup-file "$parked"
rm -rf "${parked%/*}"
check "parked header: restored, the vault's key opens it" cryptsetup open --test-passphrase --key-file "$WORK/vault.key" "$DEV"

# --- disable: decrypted, crypttab restored, every file intact ------------------------------------
admin vm encryption disable --vm vm1 --volume-type Data >/dev/null 2>&1
agent_once
check_eq "disable: agent --once exits 0" 0 "$RC"
check_eq "disable: NotEncrypted" NotEncrypted "$(show .DataVolumesEncrypted)"
check_eq "disable: ProgressMessage" "Decryption succeeded" "$(show .ProgressMessage)"
check "disable: crypttab back byte for byte" cmp -s "$WORK/crypttab" "$WORK/crypttab.orig"
check "disable: the drop-in is gone" [ ! -e "$DROPIN" ]
check "disable: files intact" sums_match "$DEV" "$SUMS"
check_eq "disable: secrets stay in the vault" 2 "$(admin --json secret list --vm vm1 2>/dev/null | jq '.secrets | length')"

# --- a process that has the device open for a moment: --once tries again ------------------------
# (udev's probe after a change, another tool's scan). The step is refused while it holds the
# device; `--once` ends a run only at a refusal that held for three tries in a row.
admin vm encryption enable --vm vm1 --volume-type Data >/dev/null 2>&1
(exec 9<"$DEV"; exec sleep 1.5) &
holder=$!
sleep 0.2
ONCE_TIMEOUT=120 agent_once
wait "$holder"
check_eq "held for a moment: agent --once exits 0" 0 "$RC"
check_eq "held for a moment: encrypted once the holder let go" encrypted "$(state_of)"
check "held for a moment: the refusal named the holder" grep -q "pid $holder" "$WORK/agent.log"
admin vm encryption disable --vm vm1 --volume-type Data >/dev/null 2>&1
agent_once
check "held for a moment: files intact after disable" sums_match "$DEV" "$SUMS"

# --- kill -9 at every step of an offline encryption, then a restart ------------------------------
admin vm encryption enable --vm vm1 --volume-type Data >/dev/null 2>&1
for step in escrowed shrinking shrunk init placing-header converting convert-50 convert-97; do
	if [ "$step" = escrowed ]; then
		agent_once VMCRYPT_TEST_AGENT_CRASH_AT="$step"
	else
		agent_once VMCRYPT_TEST_KILL_AT="$step"
	fi
	check_eq "encrypt, agent killed at '$step': died by SIGKILL" 137 "$RC"
	agent_once
	check_eq "encrypt, killed at '$step': the restart exits 0" 0 "$RC"
	check_eq "encrypt, killed at '$step': encrypted" encrypted "$(state_of)"
	[ "$(state_of)" = encrypted ] || tail -n 15 "$WORK/agent.log" | sed 's/^/    agent: /'

	check_eq "encrypt, killed at '$step': reported Encrypted" Encrypted "$(show .DataVolumesEncrypted)"
	admin --json secret show "vm1/$NAME" --reveal 2>/dev/null | jq -r .value | base64 -d >"$WORK/vault.key"
	check "encrypt, killed at '$step': the vault's key opens it" cryptsetup open --test-passphrase --key-file "$WORK/vault.key" "$DEV"
	admin vm encryption disable --vm vm1 --volume-type Data >/dev/null 2>&1
	agent_once
	check "encrypt, killed at '$step': files intact after disable" sums_match "$DEV" "$SUMS"
	admin vm encryption enable --vm vm1 --volume-type Data >/dev/null 2>&1
done

# --- kill -9 at every step of an offline decryption --------------------------------------------
agent_once
check_eq "encrypted again for the decrypt crashes" encrypted "$(state_of)"
for step in backup wiping converting convert-50 convert-97 growing; do
	admin vm encryption disable --vm vm1 --volume-type Data >/dev/null 2>&1
	agent_once VMCRYPT_TEST_KILL_AT="$step"
	check_eq "decrypt, agent killed at '$step': died by SIGKILL" 137 "$RC"
	agent_once
	check_eq "decrypt, killed at '$step': the restart exits 0" 0 "$RC"
	check_eq "decrypt, killed at '$step': plain" plain "$(state_of)"
	check "decrypt, killed at '$step': files intact" sums_match "$DEV" "$SUMS"
	check "decrypt, killed at '$step': crypttab restored" cmp -s "$WORK/crypttab" "$WORK/crypttab.orig"
	admin vm encryption enable --vm vm1 --volume-type Data >/dev/null 2>&1
	agent_once
done

# --- a mounted volume on a kernel without device-mapper: refused, untouched ----------------------
admin vm encryption disable --vm vm1 --volume-type Data >/dev/null 2>&1
agent_once
mkdir -p "$WORK/mnt-data"
mount -o ro "$DEV" "$WORK/mnt-data" # ro: a rw mount rewrites the superblock by itself
at_exit "umount $WORK/mnt-data"
mounted_sum=$(sha256sum "$DEV" | cut -d' ' -f1)
sed -i "s|^Include=.*|Include=$WORK/mnt-data|" "$CONF/agent.conf"
admin vm encryption enable --vm vm1 --volume-type Data >/dev/null 2>&1
agent_once
if grep -q " device-mapper$" /proc/misc; then
	skip "mounted volume without dm-crypt: this host has device-mapper"
else
	check_contains "mounted, no dm-crypt: refused with the remedy" "modprobe dm_crypt" "$(show .ProgressMessage)"
	check_eq "mounted, no dm-crypt: device unchanged" "$mounted_sum" "$(sha256sum "$DEV" | cut -d' ' -f1)"
	check "mounted, no dm-crypt: still mounted" mountpoint -q "$WORK/mnt-data"
fi
umount "$WORK/mnt-data"

# --- extension remove after disable --------------------------------------------------------------
admin vm encryption disable --vm vm1 --volume-type Data >/dev/null 2>&1
agent_once
check "extension remove after disable" admin vm extension remove --vm vm1
check_eq "files intact at the end" 0 "$(sums_match "$DEV" "$SUMS"; echo $?)"
finish
