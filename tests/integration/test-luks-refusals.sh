#!/bin/bash
# Every refusal of encrypt/decrypt/resume: the exact message, the documented exit code, and a
# SHA-256 of the whole target before and after proving that not one byte changed.
. "$(dirname "$0")/../lib.sh"
require_root
require_cmd cryptsetup mkfs.ext4 mkfs.xfs losetup debugfs
. "$(dirname "$0")/luks-lib.sh"

# refuses NAME EXIT_CODE MESSAGE HASHED_FILE VMCRYPT_ARGS...
refuses() {
	local name=$1 code=$2 msg=$3 file=$4 before after out rc
	shift 4
	before=$(sha256sum <"$file")
	# Bounded: a refusal that hangs (a FIFO waiting for a writer) fails instead of stalling.
	out=$(timeout 60 "$VMCRYPT" "$@" 2>&1)
	rc=$?
	after=$(sha256sum <"$file")
	check_eq "$name: exit code $code" "$code" "$rc"
	check_contains "$name: message" "$msg" "$out"
	check_eq "$name: target unchanged" "$before" "$after"
}

img=$WORK/ext4.img
make_ext4 "$img" 128M 40

# Mounted (read-only, so that the mount itself changes nothing).
dev=$(new_loop "$img")
mount -o ro "$dev" "$MNT"
refuses "mounted" 3 "$dev: in use: mounted on $MNT" "$img" encrypt --key-file "$KEY" "$dev"
refuses "mounted, new key file, detached header" 3 "$dev: in use: mounted on $MNT" "$img" \
	encrypt --new-key-file "$WORK/fresh.key" --header "$WORK/fresh.hdr" "$dev"
check "refused: the new key file is removed again" [ ! -e "$WORK/fresh.key" ]
check "refused: no header file was made" [ ! -e "$WORK/fresh.hdr" ]
umount "$MNT"

# Attached to a loop device (the file is then in use, whoever holds the loop device).
refuses "file behind a loop device" 3 "in use: attached to $dev (losetup -d $dev)" "$img" encrypt --key-file "$KEY" "$img"
losetup -d "$dev"

# Held open by a process.
sleep 60 <"$img" &
holder=$!
at_exit "kill $holder"
sleep 0.2
refuses "held open" 3 "in use: held open by pid $holder (sleep)" "$img" encrypt --key-file "$KEY" "$img"
kill "$holder"; wait "$holder" 2>/dev/null

# Key files.
refuses "missing key file" 5 "$WORK/nokey: cannot use the key file: No such file or directory" "$img" \
	encrypt --key-file "$WORK/nokey" "$img"
: >"$WORK/empty.key"
refuses "empty key file" 5 "$WORK/empty.key: cannot use the key file: it is empty" "$img" \
	encrypt --key-file "$WORK/empty.key" "$img"
cp "$KEY" "$WORK/existing.key"
refuses "new key file exists" 12 "$WORK/existing.key: cannot create the new key file (it already exists; vmcrypt never overwrites a key)" \
	"$img" encrypt --new-key-file "$WORK/existing.key" "$img"
check "existing key file kept" cmp -s "$KEY" "$WORK/existing.key"

# Key files and targets that are not files: a named FIFO would block the open forever while the
# VM operation lock is held; a pipe given as /dev/fd/N or /dev/stdin is bounded in time.
mkfifo "$WORK/fifo"
refuses "key file is a FIFO" 5 "$WORK/fifo: cannot use the key file: it is a named pipe (FIFO), a terminal or another special file" \
	"$img" encrypt --key-file "$WORK/fifo" "$img"
refuses "target is a FIFO" 1 "$WORK/fifo: not a block device or regular file" "$img" encrypt --key-file "$KEY" "$WORK/fifo"
refuses "detached header is a FIFO" 4 "$img: no valid LUKS header in $WORK/fifo" "$img" \
	decrypt --key-file "$KEY" --header "$WORK/fifo" "$img"
out=$(timeout 60 "$VMCRYPT" status --header "$WORK/fifo" "$img" 2>&1); rc=$?
check_eq "status with a FIFO header: exit 1" 1 "$rc"
check_contains "status with a FIFO header: message" "neither a block device nor a regular file" "$out"
# A pipe that never delivers: the read gives up after 10 s, and the lock was never taken meanwhile.
before=$(sha256sum <"$img")
(sleep 30 | timeout 60 "$VMCRYPT" encrypt --key-file /dev/stdin "$img" >"$WORK/pipe.out" 2>&1; echo $? >"$WORK/pipe.rc") &
waiter=$!
at_exit "kill $waiter"
sleep 1
out=$(timeout 60 "$VMCRYPT" resume --key-file "$KEY" "$img" 2>&1); rc=$?
check_eq "while a key is awaited the VM lock is free: exit 4, not 9" 4 "$rc"
wait "$waiter"
check_eq "silent pipe: exit 5" 5 "$(cat "$WORK/pipe.rc")"
check_contains "silent pipe: message" "/dev/stdin: cannot use the key file: nothing arrived through the pipe within 10 seconds" "$(cat "$WORK/pipe.out")"
check_eq "silent pipe: target unchanged" "$before" "$(sha256sum <"$img")"

# Header file that already exists.
echo precious >"$WORK/hdr"
refuses "header file exists" 12 "$img: the header file $WORK/hdr already exists" "$img" \
	encrypt --key-file "$KEY" --header "$WORK/hdr" "$img"
check_eq "existing header file kept" precious "$(cat "$WORK/hdr")"

# Plain target for decrypt, nothing to resume.
refuses "decrypt of a plain target" 4 "$img: not a LUKS volume (it holds ext4" "$img" decrypt --key-file "$KEY" "$img"
refuses "resume with nothing to resume" 4 "$img: no interrupted conversion found" "$img" resume --key-file "$KEY" "$img"

# Already LUKS.
luks=$WORK/luks.img
truncate -s 64M "$luks"
cryptsetup luksFormat -q --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file "$KEY" "$luks"
refuses "encrypt of a LUKS target" 4 "$luks: already a LUKS volume" "$luks" encrypt --key-file "$KEY" "$luks"
head -c 64 /dev/urandom >"$WORK/wrong.key"
refuses "decrypt with a wrong key" 5 "$luks: the key does not open this volume" "$luks" decrypt --key-file "$WORK/wrong.key" "$luks"

# Too small for a header on the device.
small=$WORK/small.img
truncate -s 24M "$small"
mkfs.ext4 -q -F "$small"
refuses "too small" 6 "$small: too small (25165824 bytes) for a LUKS2 volume with its 16 MiB header on the device" \
	"$small" encrypt --key-file "$KEY" "$small"

# A filesystem that fails its check: an inode whose link count is wrong.
bad=$WORK/bad.img
make_ext4 "$bad" 96M 10
debugfs -w -R "sif <12> links_count 7" "$bad" >/dev/null 2>&1
refuses "filesystem fails its check" 7 "$bad: the ext4 filesystem failed its check (e2fsck -f -n)" "$bad" \
	encrypt --key-file "$KEY" "$bad"

# No room to shrink: 98% full.
full=$WORK/full.img
truncate -s 128M "$full"
mkfs.ext4 -q -F -m 0 "$full"
mount -o loop "$full" "$MNT"
dd if=/dev/urandom of="$MNT/big" bs=1M status=none 2>/dev/null
umount "$MNT"
refuses "no room to shrink" 6 "$full: no room to shrink the ext4 filesystem by 32.0 MiB for the LUKS2 header" \
	"$full" encrypt --key-file "$KEY" "$full"

# xfs cannot shrink: --header is required.
xfs=$WORK/xfs.img
make_xfs "$xfs" 300M 10
refuses "xfs without --header" 11 "$xfs: xfs cannot shrink to make room for the LUKS2 header on the device" \
	"$xfs" encrypt --key-file "$KEY" "$xfs"
out=$("$VMCRYPT" encrypt --key-file "$KEY" "$xfs" 2>&1)
check_contains "xfs: remedy names --header" "Use --header FILE" "$out"
check_contains "xfs: remedy names growing the device" "grow the device by 32 MiB" "$out"

# A raw device whose end holds data.
raw=$WORK/raw.img
head -c 64M /dev/urandom >"$raw"
refuses "raw device with data at its end" 6 "$raw: there is no filesystem on it, so vmcrypt cannot shrink anything to make room for the LUKS2 header, and its last 32 MiB hold data" \
	"$raw" encrypt --key-file "$KEY" "$raw"

# Bad sector size for a 1 KiB-block filesystem.
refuses "4096-byte sectors on 1 KiB blocks" 1 "the filesystem uses 1024-byte blocks, smaller than the 4096-byte encryption sectors" \
	"$img" encrypt --key-file "$KEY" --sector-size 4096 "$img"

# An interrupted encrypt waits for resume: a new encrypt is refused, and the program (not the
# library) words the remedy, in the text and in the --json result alike.
pend=$WORK/pending.img
cp --sparse=always "$img" "$pend"
VMCRYPT_TEST_KILL_AT=shrunk "$VMCRYPT" encrypt --key-file "$KEY" "$pend" >/dev/null 2>&1
check_eq "encrypt killed after the shrink: died by SIGKILL" 137 "$?"
refuses "encrypt while an interrupted one waits" 4 "$pend: an interrupted encrypt (since " "$pend" \
	encrypt --key-file "$KEY" "$pend"
out=$(timeout 60 "$VMCRYPT" encrypt --key-file "$KEY" "$pend" 2>&1)
check_contains "interrupted one waits: remedy" \
	"  what to do: Run 'vmcrypt resume --key-file FILE TARGET' to finish it." "$out"
out=$(timeout 60 "$VMCRYPT" encrypt --json --key-file "$KEY" "$pend" 2>/dev/null | tail -n 1)
check_contains "interrupted one waits: --json remedy" \
	"\"remedy\":\"Run 'vmcrypt resume --key-file FILE TARGET' to finish it.\"" "$out"
check_contains "interrupted one waits: --json exit_code" '"exit_code":4' "$out"
timeout 120 "$VMCRYPT" resume --key-file "$KEY" "$pend" >/dev/null 2>&1
check_eq "interrupted one waits: resume finishes it" 0 "$?"
rm -f "$pend"

# Usage errors.
out=$("$VMCRYPT" encrypt "$img" 2>&1); rc=$?
check_eq "no key option: usage exit 2" 2 "$rc"
out=$("$VMCRYPT" encrypt --key-file "$KEY" --new-key-file "$WORK/x" "$img" 2>&1); rc=$?
check_eq "both key options: usage exit 2" 2 "$rc"
check_contains "both key options: message" "give either --key-file or --new-key-file, not both" "$out"

# A key file others can read: a warning, and the conversion goes ahead.
cp "$KEY" "$WORK/open.key"
chmod 644 "$WORK/open.key"
out=$("$VMCRYPT" encrypt --key-file "$WORK/open.key" "$img" 2>&1)
check_eq "world-readable key: encrypt still works" 0 $?
check_contains "world-readable key: warning" "warning: $WORK/open.key: the key file can be read by group or others; run 'chmod 600 $WORK/open.key'" "$out"

finish
