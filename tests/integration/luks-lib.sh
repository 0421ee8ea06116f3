# Helpers for the conversion tests: images with real filesystems and their fingerprints.
# Sourced after tests/lib.sh.

KEY=$WORK/key
head -c 64 /dev/urandom >"$KEY"
chmod 600 "$KEY"
MNT=$WORK/mnt
mkdir -p "$MNT"

# make_ext4 IMG SIZE DATA_MIB [MKFS_OPTS]: an ext4 image holding DATA_MIB of random files; writes
# the per-file checksums to IMG.sums.
make_ext4() {
	local img=$1 size=$2 mib=$3
	shift 3
	rm -f "$img"
	truncate -s "$size" "$img"
	mkfs.ext4 -q -F "$@" "$img" || return 1
	mount -o loop "$img" "$MNT" || return 1
	fill_random "$MNT" "$mib" 8
	tree_sums "$MNT" >"$img.sums"
	umount "$MNT"
}

# make_xfs IMG SIZE DATA_MIB
make_xfs() {
	local img=$1 size=$2 mib=$3
	rm -f "$img"
	truncate -s "$size" "$img"
	mkfs.xfs -q -f "$img" || return 1
	mount -o loop "$img" "$MNT" || return 1
	fill_random "$MNT" "$mib" 8
	tree_sums "$MNT" >"$img.sums"
	umount "$MNT"
}

# sums_match IMG_OR_DEV SUMS_FILE: mounts read-only and compares every file's SHA-256.
sums_match() {
	local got rc
	mount -o ro,loop "$1" "$MNT" 2>/dev/null || mount -o ro "$1" "$MNT" || return 1
	got=$(tree_sums "$MNT")
	umount "$MNT"
	[ "$got" = "$(cat "$2")" ]
}

# fsck_clean DEV: e2fsck -f -n finds nothing.
fsck_clean() { e2fsck -f -n "$1" >/dev/null 2>&1; }

json_field() { # JSON FIELD
	python3 -c 'import json,sys; v=json.loads(sys.argv[1]).get(sys.argv[2]); print("" if v is None else (str(v).lower() if isinstance(v,bool) else v))' "$1" "$2"
}

status_field() { # TARGET FIELD [--header H]
	local t=$1 f=$2
	shift 2
	json_field "$("$VMCRYPT" status --json "$@" "$t")" "$f"
}

# not_cmd CMD...: succeeds when CMD fails.
not_cmd() { ! "$@" >/dev/null 2>&1; }
