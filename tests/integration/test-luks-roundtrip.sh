#!/bin/bash
# In-place conversion round trips on real filesystems: encrypt, prove the result with stock
# cryptsetup, decrypt, and compare every file's SHA-256 with the original.
. "$(dirname "$0")/../lib.sh"
require_root
require_cmd cryptsetup mkfs.ext4 mkfs.xfs losetup
. "$(dirname "$0")/luks-lib.sh"

# --- ext4 on an image file, header on the device, new key file -------------------------------
img=$WORK/ext4.img
make_ext4 "$img" 256M 150
newkey=$WORK/new.key
out=$("$VMCRYPT" encrypt --new-key-file "$newkey" "$img" 2>&1)
check "ext4 file: encrypt exits 0" [ $? = 0 ]
check_contains "ext4 file: reports header on the device" "header on the device, filesystem shrunk by 32.0 MiB" "$out"
check "new key file: 64 bytes" [ "$(stat -c %s "$newkey")" = 64 ]
check_eq "new key file: mode 0600" 600 "$(stat -c %a "$newkey")"
check "ext4 file: cryptsetup isLuks" cryptsetup isLuks "$img"
check "ext4 file: cryptsetup open --test-passphrase" cryptsetup open --test-passphrase --key-file "$newkey" "$img"
check "ext4 file: another key does not open it" not_cmd cryptsetup open --test-passphrase --key-file "$KEY" "$img" 2>/dev/null
dump=$(cryptsetup luksDump "$img")
check_contains "luksDump: aes-xts-plain64" "aes-xts-plain64" "$dump"
check "luksDump: 512-bit key" grep -q -E 'Key: +512 bits' <<<"$dump"
check_contains "luksDump: pbkdf2 keyslot" "PBKDF:      pbkdf2" "$dump"
check_contains "luksDump: vmcrypt-convert token" "vmcrypt-convert" "$dump"
check_contains "luksDump: data offset 16 MiB" "offset: 16777216 [bytes]" "$dump"
check_eq "status: encrypted" encrypted "$(status_field "$img" state)"
check_eq "status: 512-byte sectors for a 1 KiB-block ext4" 512 "$(status_field "$img" sector_size)"
check_eq "status: header on the device" false "$(status_field "$img" header_detached)"
check "no state left behind" [ -z "$(ls -A "$VMCRYPT_STATE_DIR/volumes" 2>/dev/null)" ]
check_eq "plaintext marker gone from the image" 0 "$(grep -c -a 'hello vmcrypt' "$img")"
"$VMCRYPT" decrypt --key-file "$newkey" "$img" >/dev/null 2>&1
check "ext4 file: decrypt exits 0" [ $? = 0 ]
check "ext4 file: no LUKS signature left" not_cmd cryptsetup isLuks "$img"
check "ext4 file: e2fsck clean" fsck_clean "$img"
check_eq "ext4 file: filesystem grown back to the whole image" 262144 \
	"$(dumpe2fs -h "$img" 2>/dev/null | sed -n 's/^Block count: *//p')"
check "ext4 file: every file's SHA-256 matches" sums_match "$img" "$img.sums"
check_eq "status after decrypt: plain" plain "$(status_field "$img" state)"

# --- a small ext4 with 1 KiB blocks and a resize inode ---------------------------------------
# e2fsprogs 1.47.0 cannot shrink these with an undo file; vmcrypt falls back to a safety copy.
img=$WORK/ext4-small.img
make_ext4 "$img" 160M 60
"$VMCRYPT" encrypt --key-file "$KEY" "$img" >/dev/null 2>&1
check "ext4 160 MiB, 1 KiB blocks: encrypt exits 0" [ $? = 0 ]
check "ext4 160 MiB: no safety copy left behind" [ -z "$(ls -A "$VMCRYPT_STATE_DIR/volumes" 2>/dev/null)" ]
"$VMCRYPT" decrypt --key-file "$KEY" "$img" >/dev/null 2>&1
check "ext4 160 MiB: decrypt exits 0" [ $? = 0 ]
check "ext4 160 MiB: e2fsck clean" fsck_clean "$img"
check "ext4 160 MiB: every file's SHA-256 matches" sums_match "$img" "$img.sums"

# --- ext4 with 4 KiB blocks, 80% full, on a loop device; --json ------------------------------
img=$WORK/ext4-full.img
make_ext4 "$img" 600M 460 -b 4096
used=$(dumpe2fs -h "$img" 2>/dev/null | awk -F: '/^Block count/{c=$2} /^Free blocks/{f=$2} END{printf "%d", (c-f)*100/c}')
check "ext4 80%: at least 78% full" [ "$used" -ge 78 ]
est=$(resize2fs -P "$img" 2>/dev/null | sed -n 's/.*filesystem: //p')
check "ext4 80%: resize2fs's estimate says it cannot shrink by 32 MiB" [ "$est" -gt $((600 * 256 - 8192)) ]
dev=$(new_loop "$img")
json=$("$VMCRYPT" encrypt --json --key-file "$KEY" "$dev")
check "ext4 80% on $dev: encrypt exits 0" [ $? = 0 ]
check "--json: every line is a JSON object" python3 -c '
import json,sys
for l in sys.stdin.read().splitlines(): json.loads(l)' <<<"$json"
last=$(tail -n 1 <<<"$json")
check_eq "--json: last line is the result" result "$(json_field "$last" event)"
check_eq "--json: result success" success "$(json_field "$last" result)"
check_eq "--json: 4096-byte sectors" 4096 "$(json_field "$last" sector_size)"
check "--json: progress events before it" grep -q '"event":"progress".*"phase":"convert"' <<<"$json"
check_eq "--json: no key material in output" 0 "$(grep -c -F "$(od -An -tx1 "$KEY" | tr -d ' \n' | head -c 16)" <<<"$json")"
check "ext4 80%: cryptsetup open --test-passphrase" cryptsetup open --test-passphrase --key-file "$KEY" "$dev"
"$VMCRYPT" decrypt --key-file "$KEY" "$dev" >/dev/null 2>&1
check "ext4 80%: decrypt exits 0" [ $? = 0 ]
check "ext4 80%: e2fsck clean" fsck_clean "$dev"
check "ext4 80%: every file's SHA-256 matches" sums_match "$dev" "$img.sums"

# --- xfs on a loop device, detached header ----------------------------------------------------
img=$WORK/xfs.img
make_xfs "$img" 300M 120
dev=$(new_loop "$img")
hdr=$WORK/xfs.header
"$VMCRYPT" encrypt --key-file "$KEY" --header "$hdr" "$dev" >/dev/null 2>&1
check "xfs: encrypt with --header exits 0" [ $? = 0 ]
check "xfs: the header file is LUKS" cryptsetup isLuks "$hdr"
check "xfs: the device itself carries no LUKS signature" not_cmd cryptsetup isLuks "$dev"
check "xfs: cryptsetup open --test-passphrase --header" cryptsetup open --test-passphrase --header "$hdr" --key-file "$KEY" "$dev"
check_eq "xfs: status with --header: encrypted" encrypted "$(status_field "$dev" state --header "$hdr")"
check_eq "xfs: status: detached" true "$(status_field "$dev" header_detached --header "$hdr")"
"$VMCRYPT" decrypt --key-file "$KEY" --header "$hdr" "$dev" >/dev/null 2>&1
check "xfs: decrypt exits 0" [ $? = 0 ]
check "xfs: xfs_repair -n clean" not_cmd not_cmd xfs_repair -n "$dev"
check "xfs: every file's SHA-256 matches" sums_match "$dev" "$img.sums"

# --- xfs on a device grown by 32 MiB: the header goes on the device, no shrink needed -----------
img=$WORK/xfs-grown.img
make_xfs "$img" 300M 100
truncate -s 332M "$img"
"$VMCRYPT" encrypt --key-file "$KEY" "$img" >/dev/null 2>&1
check "xfs on a grown device: encrypt without --header exits 0" [ $? = 0 ]
check "xfs on a grown device: LUKS header on the device" cryptsetup isLuks "$img"
"$VMCRYPT" decrypt --key-file "$KEY" "$img" >/dev/null 2>&1
check "xfs on a grown device: decrypt exits 0" [ $? = 0 ]
check "xfs on a grown device: every file's SHA-256 matches" sums_match "$img" "$img.sums"

# --- btrfs that its owner shrank while mounted -------------------------------------------------
if command -v mkfs.btrfs >/dev/null; then
	img=$WORK/btrfs.img
	truncate -s 400M "$img"
	mkfs.btrfs -q "$img" >/dev/null 2>&1
	mount -o loop "$img" "$MNT"
	fill_random "$MNT" 100 5
	tree_sums "$MNT" >"$img.sums"
	umount "$MNT"
	out=$("$VMCRYPT" encrypt --key-file "$KEY" "$img" 2>&1)
	check_eq "btrfs unshrunk: refused with exit 11" 11 $?
	check_contains "btrfs unshrunk: remedy" "btrfs filesystem resize -32M MOUNTPOINT" "$out"
	mount -o loop "$img" "$MNT"
	btrfs filesystem resize -32M "$MNT" >/dev/null
	umount "$MNT"
	"$VMCRYPT" encrypt --key-file "$KEY" "$img" >/dev/null 2>&1
	check "btrfs shrunk by its owner: encrypt exits 0" [ $? = 0 ]
	"$VMCRYPT" decrypt --key-file "$KEY" "$img" >/dev/null 2>&1
	check "btrfs: decrypt exits 0" [ $? = 0 ]
	check "btrfs: btrfs check clean" btrfs check --readonly "$img"
	check "btrfs: every file's SHA-256 matches" sums_match "$img" "$img.sums"
else
	skip "btrfs: mkfs.btrfs not installed"
fi

# --- a raw device without a filesystem whose end is unused (zeros) ----------------------------
img=$WORK/raw.img
truncate -s 96M "$img"
dd if=/dev/urandom of="$img" bs=1M count=60 conv=notrunc status=none
want=$(head -c 62914560 "$img" | sha256sum)
dev=$(new_loop "$img")
"$VMCRYPT" encrypt --key-file "$KEY" "$dev" >/dev/null 2>&1
check "raw: encrypt exits 0" [ $? = 0 ]
check "raw: cryptsetup open --test-passphrase" cryptsetup open --test-passphrase --key-file "$KEY" "$dev"
check_eq "raw: 512-byte sectors (unknown contents)" 512 "$(status_field "$dev" sector_size)"
"$VMCRYPT" decrypt --key-file "$KEY" "$dev" >/dev/null 2>&1
check "raw: decrypt exits 0" [ $? = 0 ]
check_eq "raw: the data is back byte for byte" "$want" "$(head -c 62914560 "$dev" | sha256sum)"

finish
