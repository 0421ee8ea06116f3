#!/bin/bash
# Crash safety: kill -9 at every recorded step and at random moments of encrypt and decrypt,
# SIGINT at a safe point, a kill inside the filesystem shrink; `vmcrypt resume` must finish the
# job each time with every file intact.
. "$(dirname "$0")/../lib.sh"
require_root
require_cmd cryptsetup mkfs.ext4 losetup
. "$(dirname "$0")/luks-lib.sh"

pristine=$WORK/pristine.img
make_ext4 "$pristine" 128M 70
img=$WORK/img
sums=$pristine.sums

fresh() { rm -rf "$img" "$VMCRYPT_STATE_DIR/volumes"; cp --sparse=always "$pristine" "$img"; }
resume() { "$VMCRYPT" resume --key-file "$KEY" "$img" >>"$WORK/resume.log" 2>&1; }
state() { status_field "$img" state; }

# --- every recorded step ---------------------------------------------------------------------
fresh
for step in shrinking shrunk init placing-header converting convert-50 convert-97; do
	VMCRYPT_TEST_KILL_AT=$step "$VMCRYPT" encrypt --key-file "$KEY" "$img" >/dev/null 2>&1
	rc=$?
	check_eq "encrypt killed at '$step': died by SIGKILL" 137 "$rc"
	check_eq "encrypt killed at '$step': status says interrupted" interrupted "$(state)"
	if [ "$step" = convert-50 ]; then
		pct=$(status_field "$img" percent)
		check "encrypt killed at 50%: status shows ${pct}% (40-65)" awk -v p="$pct" 'BEGIN { exit !(p >= 40 && p <= 65) }'
	fi
	resume
	check_eq "encrypt killed at '$step': resume exits 0" 0 $?
	check_eq "encrypt killed at '$step': encrypted" encrypted "$(state)"
	check "encrypt killed at '$step': key opens it" cryptsetup open --test-passphrase --key-file "$KEY" "$img"
	"$VMCRYPT" decrypt --key-file "$KEY" "$img" >/dev/null 2>&1
	check "encrypt killed at '$step': files intact after decrypt" sums_match "$img" "$sums"
done
# convert-99 and convert-100: after the last hotzone (libcryptsetup 2.6.1 cannot finish from
# there; vmcrypt's "all data is decrypted; finishing" path does).
for step in backup wiping converting convert-50 convert-97 convert-99 convert-100 growing; do
	"$VMCRYPT" encrypt --key-file "$KEY" "$img" >/dev/null 2>&1
	VMCRYPT_TEST_KILL_AT=$step "$VMCRYPT" decrypt --key-file "$KEY" "$img" >/dev/null 2>&1
	check_eq "decrypt killed at '$step': died by SIGKILL" 137 $?
	check_eq "decrypt killed at '$step': status says interrupted" interrupted "$(state)"
	if [ "$step" = convert-50 ]; then
		pct=$(status_field "$img" percent)
		check "decrypt killed at 50%: status shows ${pct}% (40-65)" awk -v p="$pct" 'BEGIN { exit !(p >= 40 && p <= 65) }'
	fi
	resume
	check_eq "decrypt killed at '$step': resume exits 0" 0 $?
	check_eq "decrypt killed at '$step': plain" plain "$(state)"
	check "decrypt killed at '$step': e2fsck clean" fsck_clean "$img"
	check "decrypt killed at '$step': files intact" sums_match "$img" "$sums"
done

# --- kill at the Nth fsync: every durable write is a point where power can go ---------------------
# strace injects SIGKILL at vmcrypt's Nth fsync (libcryptsetup's metadata and hotzone commits,
# our state records); every 5th one of each direction here.
if strace -f -o /dev/null -e trace=fsync -e inject=fsync:signal=SIGKILL:when=65535 true 2>/dev/null; then
	count_fsyncs() { strace -f -o "$WORK/strace.out" -e trace=fsync "$@" >/dev/null 2>&1; grep -c 'fsync(' "$WORK/strace.out"; }
	fresh
	n_enc=$(count_fsyncs "$VMCRYPT" encrypt --key-file "$KEY" "$img")
	cp --sparse=always "$img" "$WORK/enc.img"
	n_dec=$(count_fsyncs "$VMCRYPT" decrypt --key-file "$KEY" "$img")
	echo "# encrypt makes $n_enc fsyncs, decrypt $n_dec"
	for ((n = 3; n <= n_enc; n += 5)); do
		fresh
		strace -f -o /dev/null -e trace=fsync -e inject=fsync:signal=SIGKILL:when=$n \
			"$VMCRYPT" encrypt --key-file "$KEY" "$img" >/dev/null 2>&1
		resume
		s=$(state)
		[ "$s" = plain ] && "$VMCRYPT" encrypt --key-file "$KEY" "$img" >/dev/null 2>&1 && s=$(state)
		"$VMCRYPT" decrypt --key-file "$KEY" "$img" >/dev/null 2>&1
		check "encrypt killed at fsync $n: resumed ($s), files intact" sums_match "$img" "$sums"
	done
	for ((n = 3; n <= n_dec; n += 5)); do
		rm -rf "$img" "$VMCRYPT_STATE_DIR/volumes"
		cp --sparse=always "$WORK/enc.img" "$img"
		strace -f -o /dev/null -e trace=fsync -e inject=fsync:signal=SIGKILL:when=$n \
			"$VMCRYPT" decrypt --key-file "$KEY" "$img" >/dev/null 2>&1
		resume
		s=$(state)
		[ "$s" = encrypted ] && "$VMCRYPT" decrypt --key-file "$KEY" "$img" >/dev/null 2>&1 && s=$(state)
		if [ "$s" = plain ] && fsck_clean "$img" && sums_match "$img" "$sums"; then
			ok "decrypt killed at fsync $n: resumed, files intact"
		else
			not_ok "decrypt killed at fsync $n: state '$s', or files differ"
		fi
	done
else
	skip "strace cannot inject faults here"
fi

# --- a detached header (xfs): every step of encrypt and decrypt -----------------------------------
xfs=$WORK/xfs.img
make_xfs "$xfs" 300M 100
hdr=$WORK/xfs.hdr
for step in init converting convert-50; do
	rm -f "$hdr"
	VMCRYPT_TEST_KILL_AT=$step "$VMCRYPT" encrypt --key-file "$KEY" --header "$hdr" "$xfs" >/dev/null 2>&1
	check_eq "detached encrypt killed at '$step': died by SIGKILL" 137 $?
	"$VMCRYPT" resume --key-file "$KEY" "$xfs" >>"$WORK/resume.log" 2>&1
	check_eq "detached encrypt killed at '$step': resume finds the header on its own" 0 $?
	check_eq "detached encrypt killed at '$step': encrypted" encrypted "$(status_field "$xfs" state --header "$hdr")"
	VMCRYPT_TEST_KILL_AT=$step "$VMCRYPT" decrypt --key-file "$KEY" --header "$hdr" "$xfs" >/dev/null 2>&1
	check_eq "detached decrypt killed at '$step': died by SIGKILL" 137 $?
	"$VMCRYPT" resume --key-file "$KEY" --header "$hdr" "$xfs" >>"$WORK/resume.log" 2>&1
	check_eq "detached decrypt killed at '$step': resume exits 0" 0 $?
	check "detached, killed at '$step': every file intact" sums_match "$xfs" "$xfs.sums"
done

# --- killed after the last hotzone, then again while vmcrypt finishes what libcryptsetup 2.6.1
# cannot (see moved_conversion_complete() in src/shared/luks/convert.c) ----------------------------
fresh
VMCRYPT_TEST_KILL_AT=convert-99 "$VMCRYPT" encrypt --key-file "$KEY" "$img" >/dev/null 2>&1
VMCRYPT_TEST_KILL_AT=finalizing "$VMCRYPT" resume --key-file "$KEY" "$img" >/dev/null 2>&1
check_eq "killed while finishing the encryption: died by SIGKILL" 137 $?
resume
check_eq "killed while finishing: resume exits 0" 0 $?
check_eq "killed while finishing: encrypted" encrypted "$(state)"
check "killed while finishing: no reencryption left in the header" not_cmd grep -q online-reencrypt <<<"$(cryptsetup luksDump "$img")"
check "killed while finishing: the key opens it" cryptsetup open --test-passphrase --key-file "$KEY" "$img"
check_eq "killed while finishing: no plaintext left in the image" 0 "$(grep -c -a 'hello vmcrypt' "$img")"
"$VMCRYPT" decrypt --key-file "$KEY" "$img" >/dev/null 2>&1
check "killed while finishing: files intact after decrypt" sums_match "$img" "$sums"

# --- a kill during the shrink of a 1 KiB-block filesystem, protected by a safety copy ----------
small=$WORK/small.img
make_ext4 "$small" 160M 60
rm -rf "$img" "$VMCRYPT_STATE_DIR/volumes"
cp --sparse=always "$small" "$img"
VMCRYPT_TEST_KILL_AT=shrink-backup "$VMCRYPT" encrypt --key-file "$KEY" "$img" >/dev/null 2>&1
check_eq "1 KiB blocks, killed after the safety copy: died by SIGKILL" 137 $?
check "1 KiB blocks: the safety copy is in the state directory" ls "$VMCRYPT_STATE_DIR"/volumes/*/backup.img
# Make the worst of it: scribble over the filesystem as a half-done resize2fs might have.
dd if=/dev/urandom of="$img" bs=1k seek=2000 count=4000 conv=notrunc status=none
resume
check_eq "1 KiB blocks: resume exits 0" 0 $?
check_eq "1 KiB blocks: encrypted" encrypted "$(state)"
"$VMCRYPT" decrypt --key-file "$KEY" "$img" >/dev/null 2>&1
check "1 KiB blocks: e2fsck clean" fsck_clean "$img"
check "1 KiB blocks: files intact" sums_match "$img" "$small.sums"

# --- random moments --------------------------------------------------------------------------
# Measure each direction once, then kill at a uniformly random time within it, until at least
# ten kills per direction landed while the operation was still running.
timed() { local t0 t1; t0=$(date +%s%N); "$@" >/dev/null 2>&1; t1=$(date +%s%N); echo $(((t1 - t0) / 1000000)); }
fresh
t_enc=$(timed "$VMCRYPT" encrypt --key-file "$KEY" "$img")
t_dec=$(timed "$VMCRYPT" decrypt --key-file "$KEY" "$img")
echo "# encrypt takes ${t_enc} ms, decrypt ${t_dec} ms"

# kill_randomly MAX_MS CMD...: runs CMD, kills it with SIGKILL after a random time below
# MAX_MS; returns 0 when the kill landed while it ran.
kill_randomly() {
	local max=$1 pid delay
	shift
	"$@" >/dev/null 2>&1 &
	pid=$!
	delay=$(awk -v m="$max" -v s="$RANDOM" 'BEGIN { srand(s); printf "%.3f", rand() * m / 1000 }')
	sleep "$delay"
	if kill -9 "$pid" 2>/dev/null; then
		wait "$pid" 2>/dev/null
		echo "# killed after ${delay}s"
		return 0
	fi
	wait "$pid" 2>/dev/null
	return 1
}

enc_kills=0 dec_kills=0 rounds=0
while { [ $enc_kills -lt 10 ] || [ $dec_kills -lt 10 ]; } && [ $rounds -lt 40 ]; do
	rounds=$((rounds + 1))
	fresh
	if kill_randomly "$t_enc" "$VMCRYPT" encrypt --key-file "$KEY" "$img"; then
		enc_kills=$((enc_kills + 1))
		resume
	fi
	s=$(state)
	# Killed before it changed anything: the volume is still plain; encrypt again.
	[ "$s" = plain ] && "$VMCRYPT" encrypt --key-file "$KEY" "$img" >/dev/null 2>&1 && s=$(state)
	if [ "$s" != encrypted ]; then
		not_ok "round $rounds: encrypt then resume left state '$s'"
		cat "$WORK/resume.log"
		continue
	fi
	if kill_randomly "$t_dec" "$VMCRYPT" decrypt --key-file "$KEY" "$img"; then
		dec_kills=$((dec_kills + 1))
		resume
	fi
	s=$(state)
	[ "$s" = encrypted ] && "$VMCRYPT" decrypt --key-file "$KEY" "$img" >/dev/null 2>&1 && s=$(state)
	if [ "$s" = plain ] && fsck_clean "$img" && sums_match "$img" "$sums"; then
		ok "round $rounds: random kills, resumed, every file intact"
	else
		# Everything needed to find out why, kept outside the scratch directory.
		keep=${VMCRYPT_TEST_KEEP:-/tmp}/vmcrypt-crash-round-$rounds.$$
		mkdir -p "$keep" && cp --sparse=always "$img" "$keep/" && cp -a "$WORK/resume.log" "$keep/" &&
			cp -a "$VMCRYPT_STATE_DIR" "$keep/state" 2>/dev/null
		not_ok "round $rounds: state '$s' after decrypt and resume, or files differ (kept in $keep)"
		e2fsck -f -n "$img" 2>&1 | tail -n 5
		tail -n 20 "$WORK/resume.log"
	fi
	: >"$WORK/resume.log" # each round's own log
done
check "at least 10 kills landed during encrypt ($enc_kills)" [ $enc_kills -ge 10 ]
check "at least 10 kills landed during decrypt ($dec_kills)" [ $dec_kills -ge 10 ]

# --- a kill inside the shrink: resize2fs moving blocks out of the end --------------------------
# Fill the filesystem so that its last groups hold data, then kill vmcrypt (and with it
# resize2fs) while resize2fs runs. Resume rolls the shrink back with e2undo and starts again.
tailfull=$WORK/tailfull.img
make_ext4 "$tailfull" 320M 250
cp --sparse=always "$tailfull" "$img"
"$VMCRYPT" encrypt --key-file "$KEY" "$img" >/dev/null 2>&1 &
pid=$!
caught=0
for _ in $(seq 1 2000); do
	if pgrep -x resize2fs >/dev/null; then
		sleep 0.0$((RANDOM % 5))
		kill -9 "$pid" 2>/dev/null && caught=1
		break
	fi
	sleep 0.002
done
wait "$pid" 2>/dev/null
if [ $caught = 1 ]; then
	for _ in $(seq 1 100); do pgrep -x resize2fs >/dev/null || break; sleep 0.05; done
	check "killed during resize2fs: resize2fs died with it" not_cmd pgrep -x resize2fs
	resume
	check_eq "killed during resize2fs: resume exits 0" 0 $?
	check_eq "killed during resize2fs: encrypted" encrypted "$(state)"
	"$VMCRYPT" decrypt --key-file "$KEY" "$img" >/dev/null 2>&1
	check "killed during resize2fs: files intact" sums_match "$img" "$tailfull.sums"
else
	skip "resize2fs finished before it could be caught"
fi

# --- SIGINT stops at a safe point --------------------------------------------------------------
fresh
"$VMCRYPT" encrypt --key-file "$KEY" "$img" >"$WORK/int.log" 2>&1 &
pid=$!
sleep "$(awk -v m="$t_enc" 'BEGIN { printf "%.3f", m / 3000 }')"
kill -INT "$pid"
wait "$pid"
rc=$?
if [ $rc = 0 ]; then
	skip "encrypt finished before SIGINT"
else
	check_eq "SIGINT: exit code 8 (interrupted)" 8 "$rc"
	check "SIGINT: says how to resume" grep -q "stopped at a safe point" "$WORK/int.log"
	check "SIGINT: names the resume command" grep -q "vmcrypt resume --key-file FILE TARGET" "$WORK/int.log"
	resume
	check_eq "SIGINT: resume finishes" encrypted "$(state)"
fi
"$VMCRYPT" decrypt --key-file "$KEY" "$img" >/dev/null 2>&1
check "SIGINT: files intact" sums_match "$img" "$sums"

finish
