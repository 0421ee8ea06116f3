#!/bin/bash
# "In use" is decided by identity, never by a name: every shape of a target whose data a mounted
# filesystem or a loop device still uses is refused with exit 3 and not one byte changed. The
# shapes are the ones a name-based check misses: a newline, spaces or tabs in the image's name, a
# hard link whose original name was deleted, a symlink chain, a bind mount, a lazily unmounted
# filesystem, a mount in another mount namespace, and loop devices stacked on loop devices.
. "$(dirname "$0")/../lib.sh"
require_root
require_cmd mkfs.ext4 losetup unshare
. "$(dirname "$0")/luks-lib.sh"

# refused NAME TARGET HASHED_FILE MESSAGE [VMCRYPT_ARGS...]: encrypt (with a detached header, the
# case that writes no signature of its own first) exits 3, says MESSAGE, changes nothing, and
# creates no header file.
n_refused=0
refused() {
	local name=$1 target=$2 file=$3 msg=$4 before after out rc hdr
	shift 4
	n_refused=$((n_refused + 1))
	hdr=$WORK/hdr.$n_refused
	before=$(sha256sum <"$file")
	out=$("$VMCRYPT" encrypt --key-file "$KEY" --header "$hdr" "$@" "$target" 2>&1)
	rc=$?
	after=$(sha256sum <"$file")
	check_eq "$name: exit code 3" 3 "$rc"
	check_contains "$name: message" "$msg" "$out"
	check_eq "$name: target unchanged" "$before" "$after"
	check "$name: no header file made" [ ! -e "$hdr" ]
}

# mounted_ok: the filesystem on $MNT still reads every file back.
mounted_ok() { [ "$(tree_sums "$MNT")" = "$(cat "$base.sums")" ]; }

base=$WORK/base.img
make_ext4 "$base" 96M 8
mkdir -p "$WORK/x"

# An image whose name holds a newline, attached and mounted (the repro of the data loss).
nl=$WORK/x/$'nl\nm.img'
cp "$base" "$nl"
dev=$(new_loop "$nl")
mount -o ro "$dev" "$MNT"
refused "newline in the name" "$nl" "$nl" "in use: attached to $dev"
check "newline in the name: the mounted filesystem still reads" mounted_ok
umount "$MNT"; losetup -d "$dev"; rm -f "$nl"

# Spaces and tabs (mountinfo and sysfs escape or keep them differently).
sp=$WORK/x/$'sp ace\ttab .img'
cp "$base" "$sp"
dev=$(new_loop "$sp")
mount -o ro "$dev" "$MNT"
refused "spaces and tabs in the name" "$sp" "$sp" "in use: attached to $dev"
umount "$MNT"; losetup -d "$dev"; rm -f "$sp"

# A hard link to an attached, mounted image whose original name was deleted: the kernel shows
# "... (deleted)" as the backing file.
orig=$WORK/x/orig.img
cp "$base" "$orig"
ln "$orig" "$WORK/x/link.img"
dev=$(new_loop "$orig")
mount -o ro "$dev" "$MNT"
rm -f "$orig"
refused "hard link, original name deleted" "$WORK/x/link.img" "$WORK/x/link.img" "in use: attached to $dev"
check "hard link: the mounted filesystem still reads" mounted_ok
umount "$MNT"; losetup -d "$dev"

# A symlink chain to an attached image. (Each group starts from a fresh copy, so a failure of one
# shows in its own checks only.)
img=$WORK/x/img
cp "$base" "$img"
ln -s "$img" "$WORK/x/s2"
ln -s "$WORK/x/s2" "$WORK/x/s1"
dev=$(new_loop "$img")
mount -o ro "$dev" "$MNT"
refused "symlink chain to the image" "$WORK/x/s1" "$img" "in use: attached to $dev"

# The same image reached through a bind-mounted directory.
mkdir -p "$WORK/bound"
mount --bind "$WORK/x" "$WORK/bound"
at_exit "umount -l '$WORK/bound'"
refused "image through a bind-mounted directory" "$WORK/bound/img" "$img" "in use: attached to $dev"
umount "$WORK/bound"

# The filesystem bind-mounted elsewhere and its first mount point gone: the source stays the loop
# device.
mkdir -p "$WORK/m2"
mount --bind "$MNT" "$WORK/m2"
umount "$MNT"
refused "bind mount left after the first mount point went" "$dev" "$img" "in use: mounted on $WORK/m2"
refused "bind mount left: the image" "$img" "$img" "in use: attached to $dev"
umount "$WORK/m2"
losetup -d "$dev"

# Lazily unmounted while a process still works in it: no longer in any mount table, but the
# filesystem is alive and the kernel still claims the device.
cp "$base" "$img"
dev=$(new_loop "$img")
mount -o ro "$dev" "$MNT"
(cd "$MNT" && exec sleep 60) &
inside=$!
at_exit "kill $inside"
sleep 0.2
umount -l "$MNT"
refused "lazily unmounted, still in use: the device" "$dev" "$img" "in use: claimed exclusively"
refused "lazily unmounted, still in use: the image" "$img" "$img" "in use: attached to $dev"
kill "$inside"; wait "$inside" 2>/dev/null
sleep 0.2
losetup -d "$dev"

# Mounted only in another mount namespace: absent from our mountinfo.
cp "$base" "$img"
dev=$(new_loop "$img")
unshare -m --propagation private sh -c "mount -o ro '$dev' '$MNT' && exec sleep 60" &
ns=$!
at_exit "kill $ns"
for _ in $(seq 50); do grep -q " $MNT " /proc/$ns/mountinfo 2>/dev/null && break; sleep 0.1; done
refused "mounted in another mount namespace: the device" "$dev" "$img" "in use: claimed exclusively"
refused "mounted in another mount namespace: the image" "$img" "$img" "in use: attached to $dev"
kill "$ns"; wait "$ns" 2>/dev/null
sleep 0.2
losetup -d "$dev"

# Loop devices stacked on loop devices: image -> loopA -> loopB, loopB mounted.
cp "$base" "$img"
loopa=$(new_loop "$img")
loopb=$(new_loop "$loopa")
mount -o ro "$loopb" "$MNT"
refused "loop on loop: the image" "$img" "$img" "in use: attached to $loopa"
refused "loop on loop: the lower loop device" "$loopa" "$img" "in use: attached to $loopb"
check "loop on loop: the mounted filesystem still reads" mounted_ok
umount "$MNT"
losetup -d "$loopb"

# The image attached twice, mounted through one: the other loop device is the same data.
cp "$base" "$img"
blockdev --flushbufs "$loopa"
loopc=$(new_loop "$img")
mount -o ro "$loopa" "$MNT"
refused "second loop device of a mounted image" "$loopc" "$img" "its backing file $img is also attached to $loopa"
umount "$MNT"
losetup -d "$loopc"

# A process holding the image open while its loop device is the target.
cp "$base" "$img"
blockdev --flushbufs "$loopa"
sleep 60 <"$img" &
holder=$!
at_exit "kill $holder"
sleep 0.2
refused "loop device whose image a process holds" "$loopa" "$img" "held open by pid $holder (sleep)"
kill "$holder"; wait "$holder" 2>/dev/null
losetup -d "$loopa"

# With every use gone, the same image converts: the refusals above were about use, not shape.
# The key arrives through a pipe (/dev/fd/3), the way an agent hands one over.
out=$(cat "$KEY" | "$VMCRYPT" encrypt --key-file /dev/fd/3 --header "$WORK/final.hdr" "$WORK/x/s1" 3<&0 2>&1)
check_eq "unused image through the symlink chain, key through a pipe: encrypts" 0 $?
check "unused image: a LUKS2 header" cryptsetup isLuks "$WORK/final.hdr"
check "unused image: the piped key opens it" cryptsetup open --test-passphrase --key-file "$KEY" \
	--header "$WORK/final.hdr" "$img"
echo "refusal cases: $n_refused"
finish
