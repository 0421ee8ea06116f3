#!/bin/bash
# vmcrypt status without a target: ADE's three lines and the volume table, computed from the disks;
# the journal adds targets discovery cannot see (image files), and where it disagrees with a disk
# (a header wiped by hand, a crashed run) the disk wins and a note says so.
. "$(dirname "$0")/../lib.sh"
require_root
require_cmd mkfs.ext4 jq wipefs cryptsetup resize2fs

mkdir -p "$VMCRYPT_STATE_DIR" "$VMCRYPT_RUN_DIR"
head -c 64 /dev/urandom >"$WORK/key"; chmod 600 "$WORK/key"
row() { jq -c --arg d "$1" '.volumes[] | select(.device==$d)'; }

# The three lines come first, in ADE's order and spelling, then the table.
out=$("$VMCRYPT" status); rc=$?
check_eq "status exits 0" 0 "$rc"
check_eq "ADE's three lines in order" "OsVolumeEncrypted DataVolumesEncrypted ProgressMessage" \
	"$(head -n 3 <<<"$out" | awk '{print $1}' | xargs)"
check "values are ADE's" grep -Eq '^OsVolumeEncrypted    : (Encrypted|NotEncrypted|EncryptionInProgress|DecryptionInProgress|VMRestartPending|Unknown)$' <<<"$out"
check "the volume table has its columns" grep -q '^DEVICE *MOUNT *FS *STATE *PERCENT *MiB/s *ETA *HEADER$' <<<"$out"

# A fixture VM (nothing encrypted): the aggregate lines are deterministic there.
json=$(VMCRYPT_TEST_ROOT=$TOP/tests/data/roots/healthy "$VMCRYPT" status --json)
check_eq "fixture: OS and data not encrypted" "NotEncrypted NotEncrypted No volume is encrypted" \
	"$(jq -r '"\(.OsVolumeEncrypted) \(.DataVolumesEncrypted) \(.ProgressMessage)"' <<<"$json")"
check_eq "fixture: /data is a data volume" "Data NotEncrypted" \
	"$(jq -r '.volumes[] | select(.mountpoint=="/data") | "\(.role) \(.state)"' <<<"$json")"

# vmcrypt encrypt an image file: the journal makes it visible, the disk says Encrypted.
truncate -s 64M "$WORK/a.img"; mkfs.ext4 -q -F "$WORK/a.img"
"$VMCRYPT" encrypt --key-file "$WORK/key" "$WORK/a.img" >"$WORK/enc.log" 2>&1
check_eq "encrypt succeeds" 0 "$?"
r=$("$VMCRYPT" status --json | row "$WORK/a.img")
check_eq "the encrypted image is listed as Encrypted" Encrypted "$(jq -r .state <<<"$r")"
check_eq "its header is on the device" "on device" "$(jq -r .header <<<"$r")"
check_eq "its filesystem is known" ext4 "$(jq -r .filesystem <<<"$r")"
check_eq "it counts as a data volume" true "$(jq -r .data_volume <<<"$r")"
check "the text table lists it" grep -Eq "^$WORK/a.img +- +ext4 +Encrypted +- +- +- +on device$" <<<"$("$VMCRYPT" status)"

# Someone removes the LUKS header by hand: the journal still says encrypted, the disk wins.
wipefs -q -a "$WORK/a.img"
json=$("$VMCRYPT" status --json)
check_eq "after wipefs the disk says NotEncrypted" NotEncrypted "$(row "$WORK/a.img" <<<"$json" | jq -r .state)"
check_contains "a note says the journal disagrees and the disks win" \
	"$WORK/a.img: the journal says 'vmcrypt encrypt' succeeded at" "$(jq -r '.notes[]' <<<"$json")"
check_contains "the text output says so too" "The disks win: shown as NotEncrypted." "$("$VMCRYPT" status)"

# A crashed encrypt: LUKS2 reencryption initialised on the disk, the journal says running for a
# dead pid, nobody holds the lock. Shown as Interrupted, with the command to finish it.
truncate -s 64M "$WORK/b.img"; mkfs.ext4 -q -F "$WORK/b.img"
resize2fs "$WORK/b.img" 30M >/dev/null 2>&1; truncate -s 64M "$WORK/b.img"
# (In $WORK: cryptsetup keeps a temporary LUKS2-temp-*.new header in its working directory.)
(cd "$WORK" && cryptsetup reencrypt --encrypt --init-only --reduce-device-size 32M --key-file "$WORK/key" \
	--pbkdf pbkdf2 --pbkdf-force-iterations 1000 -q "$WORK/b.img" >/dev/null 2>&1) ||
	skip_all "cryptsetup cannot initialise reencryption here"
sh -c 'exit 0' & dead=$!; wait "$dead"
now=$(date +%s)
jq --arg t "$WORK/b.img" --argjson p "$dead" --argjson now "$now" \
	'.entries += [{"command":"encrypt","target":$t,"uuid":"","started":$now,"updated":$now,"percent":0,"rate":0,"result":"running","error":0,"pid":$p}]' \
	"$VMCRYPT_STATE_DIR/journal.json" >"$WORK/j" && mv "$WORK/j" "$VMCRYPT_STATE_DIR/journal.json"
json=$("$VMCRYPT" status --json)
check_eq "the crashed conversion is Interrupted" Interrupted "$(row "$WORK/b.img" <<<"$json" | jq -r .state)"
check_contains "the note names the dead run" "the journal says 'vmcrypt encrypt' (pid $dead) is running, but no vmcrypt process holds the VM lock" \
	"$(jq -r '.notes[]' <<<"$json")"
check_contains "ProgressMessage says how to finish it" "run 'vmcrypt resume $WORK/b.img'" "$(jq -r .ProgressMessage <<<"$json")"
check_eq "DataVolumesEncrypted is EncryptionInProgress" EncryptionInProgress "$(jq -r .DataVolumesEncrypted <<<"$json")"

# vmcrypt resume finishes it; then the disk says Encrypted and the message follows ADE's sequence.
"$VMCRYPT" resume --key-file "$WORK/key" "$WORK/b.img" >"$WORK/resume.log" 2>&1; rc=$?
if [ "$rc" = 0 ]; then
	json=$("$VMCRYPT" status --json)
	check_eq "after resume the disk says Encrypted" Encrypted "$(row "$WORK/b.img" <<<"$json" | jq -r .state)"
	check "no interrupted note remains for it" test -z "$(jq -r '.notes[]' <<<"$json" | grep -F "$WORK/b.img")"
else
	skip "vmcrypt resume does not finish a cryptsetup-initialised conversion (exit $rc)"
fi

# An unreadable journal does not stop status: the disks alone decide.
echo 'not json' >"$VMCRYPT_STATE_DIR/journal.json"
json=$("$VMCRYPT" status --json); rc=$?
check_eq "status works with a corrupt journal" 0 "$rc"
check_contains "and says the journal could not be read" "could not be read" "$(jq -r '.notes[]' <<<"$json")"

finish
