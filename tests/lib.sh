# Shared helpers for vmcrypt's shell tests (integration and vm). Source it, call check/skip, end
# with `finish`. Each check counts once in the summary; the script prints
# "RESULT passed=N failed=N skipped=N" at the end.
set -u
TESTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOP=$(cd "$TESTS_DIR/.." && pwd)
BUILD=${VMCRYPT_BUILD:-$TOP/build-asan}
VMCRYPT=$BUILD/vmcrypt
VMCRYPTD=$BUILD/vmcryptd
VMCRYPT_ADMIN=$BUILD/vmcrypt-admin
_passed=0 _failed=0 _skipped=0
_cleanups=()

# A private scratch directory per script, removed at exit (loop devices first).
WORK=$(mktemp -d /tmp/vmcrypt-test.XXXXXX)
_run_cleanups() {
	local i dev
	for ((i = ${#_cleanups[@]} - 1; i >= 0; i--)); do eval "${_cleanups[$i]}" >/dev/null 2>&1; done
	# Loop devices are recorded in a file: new_loop usually runs in a $(...) subshell, where
	# an at_exit would be lost.
	if [ -f "$WORK/.loops" ]; then
		while read -r dev; do
			umount "$dev" >/dev/null 2>&1
			losetup -d "$dev" >/dev/null 2>&1
		done <"$WORK/.loops"
	fi
	rm -rf "$WORK"
}
trap _run_cleanups EXIT
# Each script gets its own state, lock and configuration directories, so tests never touch the machine's own.
export VMCRYPT_STATE_DIR=${VMCRYPT_STATE_DIR:-$WORK/state}
export VMCRYPT_RUN_DIR=${VMCRYPT_RUN_DIR:-$WORK/run}
export VMCRYPT_CONF_DIR=${VMCRYPT_CONF_DIR:-$WORK/conf}
at_exit() { _cleanups+=("$1"); }

ok() { _passed=$((_passed + 1)); echo "ok - $*"; }
not_ok() { _failed=$((_failed + 1)); echo "not ok - $*"; }
skip() { _skipped=$((_skipped + 1)); echo "skip - $*"; }

# check NAME CMD...: passes when CMD exits 0.
check() {
	local name=$1; shift
	if "$@"; then ok "$name"; else not_ok "$name"; fi
}

# check_eq NAME EXPECTED ACTUAL
check_eq() {
	if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1: expected [$2], got [$3]"; fi
}

# check_contains NAME NEEDLE HAYSTACK
check_contains() {
	if [[ "$3" == *"$2"* ]]; then ok "$1"; else not_ok "$1: [$2] not in [$3]"; fi
}

# Skips the whole script (exit 77) with a reason.
skip_all() { echo "SKIP: $*"; exit 77; }

require_root() { [ "$(id -u)" = 0 ] || skip_all "needs root"; }
require_cmd() { local c; for c in "$@"; do command -v "$c" >/dev/null || skip_all "needs $c"; done; }

# new_loop FILE: attaches FILE to a free loop device, detached at exit; prints the device.
new_loop() {
	local dev
	dev=$(losetup --find --show "$1") || return 1
	echo "$dev" >>"$WORK/.loops"
	echo "$dev"
}

# sha256 of every regular file under DIR, sorted by path: a content fingerprint for round trips.
tree_sums() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0 -r sha256sum); }

# fill_random DIR MIB [FILES]: writes MIB MiB of random data in FILES files (default 8) plus
# a few small ones and a directory tree.
fill_random() {
	local dir=$1 mib=$2 n=${3:-8} i per
	per=$((mib * 1024 / n))
	mkdir -p "$dir/sub/deeper"
	for ((i = 0; i < n; i++)); do
		head -c "${per}K" /dev/urandom >"$dir/file$i.bin"
	done
	echo "hello vmcrypt" >"$dir/sub/hello.txt"
	head -c 3000 /dev/urandom >"$dir/sub/deeper/small.bin"
}

finish() {
	echo "RESULT passed=$_passed failed=$_failed skipped=$_skipped"
	[ "$_failed" -eq 0 ]
	exit $?
}
