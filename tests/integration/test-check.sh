#!/bin/bash
# vmcrypt check on the live system: a loop-device filesystem with a process holding a file on it,
# a process holding an unmounted device open, nested mounts in a private mount namespace, an LVM
# physical volume signature, JSON output, and proof that the check changes nothing.
. "$(dirname "$0")/../lib.sh"
require_root
require_cmd losetup mkfs.ext4 mount umount unshare jq sha256sum

# Holders are killed by pid at exit, never by name. new_loop runs in $(...), where its own at_exit
# is lost with the subshell, so each loop device is detached here (after its unmount: reverse order).
pids=()
at_exit 'for p in "${pids[@]}"; do kill -9 "$p"; done; for p in "${pids[@]}"; do wait "$p"; done'

truncate -s 96M "$WORK/a.img"
mkfs.ext4 -q -F "$WORK/a.img"
mkdir -p "$WORK/mnt" "$WORK/inner"
A=$(new_loop "$WORK/a.img") || skip_all "no loop device"
at_exit "losetup -d $A"
mount "$A" "$WORK/mnt" || skip_all "cannot mount a loop device"
at_exit "umount -l '$WORK/mnt'"
echo data >"$WORK/mnt/held"

# A process holding a file open on the mounted volume.
(exec 3<"$WORK/mnt/held"; exec sleep 600) &
holder=$!; pids+=("$holder")
for _ in $(seq 50); do [ "$(readlink /proc/$holder/fd/3 2>/dev/null)" = "$WORK/mnt/held" ] && break; sleep 0.1; done

out=$("$VMCRYPT" check --volume-type Data 2>&1); rc=$?
check_eq "open-files FAIL gives EXIT_CHECK" 10 "$rc"
line=$(grep '^FAIL  open-files' <<<"$out")
check_contains "open-files names the volume" "$A ($WORK/mnt)" "$line"
check_contains "open-files names pid, command, path" "pid $holder (sleep) fd $WORK/mnt/held" "$line"
check_contains "open-files gives the remedy" "Remedy: Stop these processes" "$line"

json=$("$VMCRYPT" check --volume-type Data --json); rc=$?
check_eq "--json exits 10 too" 10 "$rc"
check_eq "--json ok is false" false "$(jq -r .ok <<<"$json")"
check_eq "--json lists the holder" "sleep fd" \
	"$(jq -r --argjson p "$holder" '.checks[] | select(.id=="open-files") | .details.users[] | select(.pid==$p) | "\(.command) \(.how)"' <<<"$json")"
check_eq "--json has all 17 ids" 17 "$(jq '[.checks[].id] | unique | length' <<<"$json")"
check_eq "--json vault is SKIP" SKIP "$(jq -r '.checks[] | select(.id=="vault") | .status' <<<"$json")"

# Once the holder is gone, our volume is no longer named.
kill -9 "$holder"; wait "$holder" 2>/dev/null
json=$("$VMCRYPT" check --volume-type Data --json)
check_eq "open-files clears after the holder exits" "" \
	"$(jq -r --arg v "$A ($WORK/mnt)" '.checks[] | select(.id=="open-files") | .volumes[] | select(.==$v)' <<<"$json")"
check_contains "device check describes the loop volume" "$A ($WORK/mnt): 96.0 MiB loop, writable, not encrypted" \
	"$(jq -r '.checks[] | select(.id=="device") | .message' <<<"$json")"

# A process holding an unmounted device node open.
truncate -s 80M "$WORK/b.img"
B=$(new_loop "$WORK/b.img")
at_exit "losetup -d $B"
(exec 3<"$B"; exec sleep 600) &
devholder=$!; pids+=("$devholder")
for _ in $(seq 50); do [ "$(readlink /proc/$devholder/fd/3 2>/dev/null)" = "$B" ] && break; sleep 0.1; done
out=$("$VMCRYPT" check -t Data 2>&1)
check_contains "open-files names a process holding the device node" "pid $devholder (sleep) fd $B" \
	"$(grep '^FAIL  open-files' <<<"$out")"
kill -9 "$devholder"; wait "$devholder" 2>/dev/null

# Nested mounts, made in a private mount namespace so the host never sees them.
truncate -s 80M "$WORK/c.img"; mkfs.ext4 -q -F "$WORK/c.img"
C=$(new_loop "$WORK/c.img")
at_exit "losetup -d $C"
out=$(unshare -m --propagation private bash -c '
	mkdir -p "$1/mnt/sub" && mount "$2" "$1/mnt/sub" && "$3" check -t Data' _ "$WORK" "$C" "$VMCRYPT" 2>&1)
line=$(grep 'nested-mounts' <<<"$out")
check_contains "nested-mounts WARN" "WARN  nested-mounts" "$line"
check_contains "nested-mounts names the pair" "unsupported mount scheme [$WORK/mnt $WORK/mnt/sub]" "$line"
out=$("$VMCRYPT" check -t Data 2>&1)
check "outside the namespace there is no nesting" \
	test -z "$(grep 'nested-mounts' <<<"$out" | grep -F "$WORK/mnt/sub")"

# An LVM physical volume signature (no device-mapper here: only the label, nothing activated).
# A private LVM configuration keeps lvm's hints, locks and backups out of /run and /etc.
if command -v pvcreate >/dev/null; then
	truncate -s 64M "$WORK/pv.img"
	P=$(new_loop "$WORK/pv.img")
	at_exit "losetup -d $P"
	mkdir -p "$WORK/lvm/lock"
	cat >"$WORK/lvm/lvm.conf" <<-CONF
	devices { hints = "none" obtain_device_list_from_udev = 0 use_devicesfile = 0 }
	global { locking_dir = "$WORK/lvm/lock" }
	activation { udev_sync = 0 udev_rules = 0 monitoring = 0 }
	backup { backup = 0 archive = 0 }
	CONF
	if LVM_SYSTEM_DIR=$WORK/lvm pvcreate -ff -y "$P" </dev/null >/dev/null 2>&1 &&
		blkid -p "$P" | grep -q LVM2_member; then
		json=$("$VMCRYPT" check -t Data --json)
		check_contains "lvm names the physical volume" "$P is an LVM physical volume" \
			"$(jq -r '.checks[] | select(.id=="lvm") | .message' <<<"$json")"
		check_eq "lvm is WARN" WARN "$(jq -r '.checks[] | select(.id=="lvm") | .status' <<<"$json")"
		check_contains "the PV is not a volume to convert" "$P: LVM2_member member" \
			"$(jq -r '.checks[] | select(.id=="device") | .message' <<<"$json")"
	else
		skip "pvcreate cannot write a label here"
	fi
else
	skip "no pvcreate (lvm2)"
fi

# The check changes nothing: a read-only mounted image keeps its bytes; no state is created.
umount "$WORK/mnt"
mount -o ro "$A" "$WORK/mnt"
before=$(sha256sum <"$WORK/a.img")
VMCRYPT_STATE_DIR=$WORK/never-state VMCRYPT_RUN_DIR=$WORK/never-run "$VMCRYPT" check >/dev/null 2>&1
VMCRYPT_STATE_DIR=$WORK/never-state VMCRYPT_RUN_DIR=$WORK/never-run "$VMCRYPT" check --json >/dev/null 2>&1
check_eq "check leaves the volume's bytes alone" "$before" "$(sha256sum <"$WORK/a.img")"
check "check creates no state or run directory" test ! -e "$WORK/never-state" -a ! -e "$WORK/never-run"

"$VMCRYPT" check --volume-type bogus >/dev/null 2>&1
check_eq "an unknown volume type is a usage error" 2 "$?"
"$VMCRYPT" check /dev/sda >/dev/null 2>&1
check_eq "check takes no target" 2 "$?"

finish
