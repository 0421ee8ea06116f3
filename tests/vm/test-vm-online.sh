#!/bin/bash
# Online conversion through a real kernel's dm-crypt: in a QEMU guest (stock Debian kernel,
# busybox initramfs with vmcrypt), mounted ext4 and xfs volumes are encrypted while a writer
# appends to a file, the guest loses power in the middle of a conversion, the next boot resumes
# it, then both are decrypted online and mount as plain filesystems with every file.
#
# Two boots:
#   1. /srv (xfs, detached header in the state disk): `vmcrypt encrypt --online` to the end;
#      /data (ext4, header on the device, shrunk): `vmcrypt encrypt --online`, power cut
#      (sysrq b) once 30% is converted.
#   2. `vmcrypt resume --online` of /data with the recovery passphrase alone, the mapping mounted
#      while it runs; then `vmcrypt decrypt --online` of both, with the writer running.
# The guest checks the mappings (dmsetup table, cryptsetup status), every pre-existing file's
# SHA-256 and the writer's numbered lines (all there, in order) and prints one line per check;
# the host checks the images after the last boot.
# The guest runs a plain build (build-vm/vmcrypt, made here): an ASan build needs more memory
# than the guest has to spare.
source "$(dirname "$0")/../lib.sh"
export LC_ALL=C # tree_sums' order must be byte order, as in the guest's busybox sort

require_root
require_cmd mkfs.ext4 mkfs.xfs cryptsetup losetup sha256sum tar
command -v qemu-system-x86_64 >/dev/null || skip_all "needs qemu-system-x86_64 (scripts/install-deps test)"
VM=$TESTS_DIR/vm
not_cmd() { ! "$@" >/dev/null 2>&1; }
make -C "$TOP" -s BUILD=build-vm build-vm/vmcrypt >"$WORK/make.log" 2>&1 || { cat "$WORK/make.log"; skip_all "cannot build build-vm/vmcrypt"; }
GUEST_VMCRYPT=$TOP/build-vm/vmcrypt
rc=0
assets=$("$VM/build-assets" --print --online "$GUEST_VMCRYPT") || rc=$?
[ $rc = 77 ] && skip_all "kernel package or initramfs tools unavailable (see build-assets output)"
[ $rc = 0 ] || { not_ok "build-assets --online failed (exit $rc)"; finish; }
ok "build-assets --online: kernel and initramfs with vmcrypt ready"
KERNEL=$(sed -n 's/^KERNEL=//p' <<<"$assets")
INITRD=$(sed -n 's/^INITRD=//p' <<<"$assets")

MNT=$WORK/mnt
mkdir -p "$MNT"
head -c 64 /dev/urandom >"$WORK/key"
printf '%s' "111111-222222-333333-444444-555555-666666-777777-888888" >"$WORK/recovery"
chmod 600 "$WORK/key" "$WORK/recovery"

# The disks: state (ext4, /var/lib/vmcrypt, survives the power cut), data (ext4), srv (xfs).
truncate -s 256M "$WORK/state.img" # headers, and the shrink's undo file
mkfs.ext4 -q -F "$WORK/state.img"
mount -o loop "$WORK/state.img" "$MNT" && mkdir -p "$MNT/headers" && umount "$MNT"
truncate -s 200M "$WORK/data.img"
mkfs.ext4 -q -F -b 4096 "$WORK/data.img"
mount -o loop "$WORK/data.img" "$MNT"
fill_random "$MNT" 80 8
tree_sums "$MNT" >"$WORK/data.sums"
mkdir "$MNT/w" # the writer's directory: absent on the mount point below, so no line is lost there
umount "$MNT"
truncate -s 320M "$WORK/srv.img"
mkfs.xfs -q -f "$WORK/srv.img"
mount -o loop "$WORK/srv.img" "$MNT"
fill_random "$MNT" 48 8
tree_sums "$MNT" >"$WORK/srv.sums"
umount "$MNT"

# The guest's common part: checks, the writer, the checksums.
cat >"$WORK/lib.sh" <<'GUEST'
ck() { # NAME CMD...
	n=$1; shift
	if "$@"; then echo "===CHECK ok $n==="; else echo "===CHECK fail $n==="; fi
}
sums_ok() { # DIR SUMS
	(cd "$1" && find . -type f ! -path './w/*' -print0 | sort -z | xargs -0 -r sha256sum) >/tmp/got.sums
	cmp -s /tmp/got.sums "$2"
}
# writer DIR: appends "line N" every 50 ms while DIR/w exists (it vanishes while unmounted)
writer() {
	i=$(wc -l <"$1/w/log" 2>/dev/null || echo 0)
	while [ ! -f /tmp/writer.stop ]; do
		if echo "line $i" >>"$1/w/log" 2>/dev/null; then i=$((i + 1)); fi
		usleep 50000
	done
}
start_writer() { rm -f /tmp/writer.stop; writer "$1" 2>/dev/null & WRITER=$!; }
stop_writer() { touch /tmp/writer.stop; wait "$WRITER"; }
# lines_ok FILE: "line 0" .. "line N-1", every one, in order (and at least MIN of them)
lines_ok() {
	awk -v min="$2" '$0 != ("line " (NR - 1)) { bad = NR; exit }
		END { if (bad) print "first bad line " bad ": [" $0 "]"; else if (NR < min) print "only " NR " lines"; exit bad || NR < min }' "$1"
}
# mapped_crypt NAME: NAME or one of the helper mappings libcryptsetup stacks under it while it
# converts (NAME-hotzone-*, NAME-overlay) maps through dm-crypt
mapped_crypt() { dmsetup table 2>/dev/null | grep "^$1" | tee /tmp/table | grep -q ' crypt '; }
mounted_from() { grep -q "^$1 $2 " /proc/mounts; }
# avg_rate JSON: MiB/s of the data conversion, over its progress events (bytes and elapsed time)
avg_rate() {
	grep '"phase":"convert"' "$1" | awk '{
		e = $0; sub(/.*"elapsed_seconds":/, "", e); sub(/[,}].*/, "", e)
		d = $0; sub(/.*"bytes_done":/, "", d); sub(/[,}].*/, "", d)
		e += 0; d += 0
		if (!n++) { e0 = e; d0 = d } e1 = e; d1 = d
	} END { if (e1 > e0) printf "%.1f MiB/s (%.0f MiB in %.1f s)", (d1 - d0) / 1048576 / (e1 - e0), (d1 - d0) / 1048576, e1 - e0 }'
}
export VMCRYPT_STATE_DIR=/var/lib/vmcrypt
GUEST

cat >"$WORK/run1.sh" <<'GUEST'
. /job/lib.sh
mount /dev/vdb /var/lib/vmcrypt || echo "===CHECK fail mount state==="
mount /dev/vdc /data && mount /dev/vdd /srv
ck "boot 1: /data and /srv mounted" mounted_from /dev/vdc /data
start_writer /data

vmcrypt encrypt --online --name vmcrypt-srv --key-file /job/key --recovery-file /job/recovery \
	--header /var/lib/vmcrypt/headers/srv.luks --json /dev/vdd >/tmp/srv.json 2>/tmp/srv.err
ck "xfs encrypt --online exits 0" [ $? = 0 ]
grep -v '"progress"' /tmp/srv.json | head -n 5
tail -n 5 /tmp/srv.err
ck "xfs: /srv is mounted from /dev/mapper/vmcrypt-srv" mounted_from /dev/mapper/vmcrypt-srv /srv
ck "xfs: dmsetup table vmcrypt-srv: crypt" mapped_crypt vmcrypt-srv
ck "xfs: cryptsetup status: LUKS2, not in reencryption" sh -c 'cryptsetup status vmcrypt-srv --header /var/lib/vmcrypt/headers/srv.luks | grep -q "type: *LUKS2"'
ck "xfs: every file's SHA-256 matches" sums_ok /srv /job/srv.sums
ck "xfs: the recovery passphrase opens the header" cryptsetup open --test-passphrase \
	--header /var/lib/vmcrypt/headers/srv.luks --key-file /job/recovery /dev/vdd
sed -n 's/.*"event":"downtime".*"seconds":\([0-9.]*\).*/MEASURE srv downtime \1/p' /tmp/srv.json
echo "MEASURE srv encrypt rate $(avg_rate /tmp/srv.json)"

# ext4 with its writer: power cut at 30% of the data conversion.
sync
vmcrypt encrypt --online --name vmcrypt-data --key-file /job/key --recovery-file /job/recovery \
	--json /dev/vdc 2>/tmp/data.err | tee /tmp/data.json | awk '
	/"event":"downtime"/ { sub(/.*"seconds":/, ""); sub(/[,}].*/, ""); print "MEASURE data downtime " $0; fflush() }
	/"phase":"convert"/ {
		p = $0; sub(/.*"percent":/, "", p); sub(/[,}].*/, "", p)
		if (p + 0 >= 30 && !cut) {
			cut = 1
			system("grep -q \"^/dev/mapper/vmcrypt-data /data \" /proc/mounts && echo \"===CHECK ok ext4: /data mounted from the mapping while converting===\" || echo \"===CHECK fail ext4: /data mounted from the mapping while converting===\"")
			system("dmsetup table | sed \"s/^/dmsetup: /\"")
			system("dmsetup table | grep \"^vmcrypt-data\" | grep -q \" crypt \" && echo \"===CHECK ok ext4: dmsetup table vmcrypt-data: crypt===\" || echo \"===CHECK fail ext4: dmsetup table vmcrypt-data: crypt===\"")
			print "POWERCUT at " p "%"; fflush()
			system("echo b >/proc/sysrq-trigger")
		}
	}'
echo "===CHECK fail ext4: the power cut did not happen==="
grep -v '"progress"' /tmp/data.json | tail -n 5
tail -n 5 /tmp/data.err
GUEST

cat >"$WORK/run2.sh" <<'GUEST'
. /job/lib.sh
mount /dev/vdb /var/lib/vmcrypt || echo "===CHECK fail mount state==="
# /data: resume with the recovery passphrase alone, mounted as soon as the mapping is there.
vmcrypt resume --online --name vmcrypt-data --recovery-file /job/recovery --json /dev/vdc >/tmp/res.json 2>&1 &
pid=$!
i=0
while [ ! -b /dev/mapper/vmcrypt-data ] && [ $i -lt 300 ]; do usleep 100000; i=$((i + 1)); done
mount /dev/mapper/vmcrypt-data /data
ck "ext4 after the power cut: the mapping mounted while resume runs" mounted_from /dev/mapper/vmcrypt-data /data
start_writer /data
wait $pid
ck "ext4: resume --online --recovery-file exits 0" [ $? = 0 ]
grep -v '"progress"' /tmp/res.json | tail -n 5
echo "MEASURE data resume rate $(avg_rate /tmp/res.json)"
ck "ext4: dmsetup table vmcrypt-data: crypt" mapped_crypt vmcrypt-data
ck "ext4: cryptsetup status: LUKS2" sh -c 'cryptsetup status vmcrypt-data | grep -q "type: *LUKS2"'
ck "ext4: no reencryption left in the header" sh -c '! cryptsetup luksDump /dev/vdc | grep -q online-reencrypt'
ck "ext4: keyslots 0 and 1" sh -c '[ "$(cryptsetup luksDump /dev/vdc | grep -c -E "^  [0-9]+: luks2")" = 2 ]'
ck "ext4: every file's SHA-256 matches" sums_ok /data /job/data.sums
ck "ext4: the writer's lines are all there, in order" lines_ok /data/w/log 10
echo "MEASURE writer lines $(wc -l </data/w/log)"

# /srv: open it as systemd would, then both back to plain, online.
cryptsetup open --header /var/lib/vmcrypt/headers/srv.luks --key-file /job/key /dev/vdd vmcrypt-srv &&
	mount /dev/mapper/vmcrypt-srv /srv
ck "xfs after reboot: opened and mounted" mounted_from /dev/mapper/vmcrypt-srv /srv
ck "xfs after reboot: every file's SHA-256 matches" sums_ok /srv /job/srv.sums

vmcrypt decrypt --online --name vmcrypt-data --key-file /job/key --json /dev/vdc >/tmp/dd.json 2>/tmp/dd.err
ck "ext4 decrypt --online exits 0" [ $? = 0 ]
grep -v '"progress"' /tmp/dd.json | head -n 5
tail -n 5 /tmp/dd.err
sed -n 's/.*"event":"downtime".*"seconds":\([0-9.]*\).*/MEASURE data decrypt downtime \1/p' /tmp/dd.json
echo "MEASURE data decrypt rate $(avg_rate /tmp/dd.json)"
echo "mapper nodes: $(ls /dev/mapper | tr '\n' ' ')"
ck "ext4 decrypted: /data mounted from /dev/vdc" mounted_from /dev/vdc /data
ck "ext4 decrypted: the mapping is gone" sh -c '! dmsetup info vmcrypt-data >/dev/null 2>&1'
ck "ext4 decrypted: every file's SHA-256 matches" sums_ok /data /job/data.sums

# /srv: SIGTERM as soon as the data moves stops at the next safe point (the end of the hotzone:
# with a detached header libcryptsetup's checksum hotzones are up to 256 MiB), still mounted;
# resume finishes the job.
vmcrypt decrypt --online --name vmcrypt-srv --key-file /job/key --header /var/lib/vmcrypt/headers/srv.luks \
	--json /dev/vdd >/tmp/sd.json 2>&1 &
pid=$!
while kill -0 $pid 2>/dev/null; do
	if grep -q '"phase":"convert"' /tmp/sd.json; then kill -TERM $pid; break; fi
	usleep 100000
done
wait $pid
rc=$?
p=$(grep '"phase":"convert"' /tmp/sd.json | tail -n 1 | sed -n 's/.*"percent":\([0-9.]*\).*/\1/p')
ck "xfs decrypt --online: SIGTERM stops it at ${p}%, exit 8 (interrupted)" [ $rc = 8 ]
grep -v '"progress"' /tmp/sd.json | tail -n 3
echo "MEASURE srv decrypt rate $(avg_rate /tmp/sd.json)"
ck "xfs after SIGTERM: still mounted from the mapping" mounted_from /dev/mapper/vmcrypt-srv /srv
ck "xfs after SIGTERM: every file's SHA-256 matches" sums_ok /srv /job/srv.sums
vmcrypt resume --online --name vmcrypt-srv --key-file /job/key --header /var/lib/vmcrypt/headers/srv.luks \
	/dev/vdd >/tmp/sd.out 2>&1
ck "xfs: resume --online finishes the decryption, exit 0" [ $? = 0 ]
tail -n 5 /tmp/sd.out
ck "xfs decrypted: /srv mounted from /dev/vdd" mounted_from /dev/vdd /srv
ck "xfs decrypted: every file's SHA-256 matches" sums_ok /srv /job/srv.sums

stop_writer
ck "ext4 decrypted: the writer's lines are all there, in order" lines_ok /data/w/log 10
echo "MEASURE writer lines $(wc -l </data/w/log)"
ck "no state left in /var/lib/vmcrypt/volumes" sh -c '[ -z "$(ls -A /var/lib/vmcrypt/volumes 2>/dev/null)" ]'
umount /data /srv
ck "ext4 decrypted: e2fsck -f -n clean" e2fsck -f -n /dev/vdc
umount /var/lib/vmcrypt
GUEST

# boot NAME SCRIPT: one guest boot with the job archive (SCRIPT as run.sh); console in WORK/NAME.console.
boot() {
	local name=$1 script=$2 t0 t1
	mkdir -p "$WORK/job-$name"
	cp "$script" "$WORK/job-$name/run.sh"
	cp "$WORK/lib.sh" "$WORK/key" "$WORK/recovery" "$WORK/data.sums" "$WORK/srv.sums" "$WORK/job-$name/"
	tar -cf "$WORK/job-$name.tar" --format=ustar --owner=0 --group=0 -C "$WORK/job-$name" .
	t0=$(date +%s)
	timeout "${VMCRYPT_VM_TIMEOUT:-400}" qemu-system-x86_64 \
		-nographic -nodefaults -no-reboot -monitor none -serial "file:$WORK/$name.raw" \
		-machine pc -cpu max -m 768 -smp 2 \
		-kernel "$KERNEL" -initrd "$INITRD" -append "console=ttyS0 panic=-1 quiet loglevel=3" \
		-drive "file=$WORK/job-$name.tar,format=raw,if=virtio,readonly=on" \
		-drive "file=$WORK/state.img,format=raw,if=virtio" \
		-drive "file=$WORK/data.img,format=raw,if=virtio" \
		-drive "file=$WORK/srv.img,format=raw,if=virtio" \
		</dev/null >"$WORK/$name.qemu" 2>&1
	t1=$(date +%s)
	tr -d '\r' <"$WORK/$name.raw" | sed 's/^.*\(===CHECK\)/\1/; s/^.*\(===VMCRYPT-\)/\1/' >"$WORK/$name.console"
	echo "# boot $name: $((t1 - t0)) s"
	# The guest's checks become ours.
	while read -r verdict what; do
		if [ "$verdict" = ok ]; then ok "$what"; else not_ok "$what"; fi
	done < <(sed -n 's/^===CHECK \(ok\|fail\) \(.*\)===$/\1 \2/p' "$WORK/$name.console")
	grep -E '^(MEASURE|POWERCUT)' "$WORK/$name.console" | sed 's/^/# /'
}
show_console() { echo "# --- console of boot $1 (tail) ---"; tail -n 40 "$WORK/$1.console" | sed 's/^/#   /'; }

boot 1 "$WORK/run1.sh"
check "boot 1: the power cut happened at 30% or later" grep -q '^POWERCUT at' "$WORK/1.console"
grep -q '^===CHECK fail' "$WORK/1.console" && show_console 1
boot 2 "$WORK/run2.sh"
check "boot 2: the guest ran its script to the end" grep -q '^===VMCRYPT-RESULT ok===' "$WORK/2.console"
grep -q '^===CHECK fail' "$WORK/2.console" && show_console 2

# The images on the host: plain filesystems again, every file there.
check "host: data.img is plain ext4 again" not_cmd cryptsetup isLuks "$WORK/data.img"
check "host: data.img e2fsck clean" e2fsck -f -n "$WORK/data.img"
check_eq "host: data.img's ext4 fills the image again (grown back)" $((200 * 256)) \
	"$(dumpe2fs -h "$WORK/data.img" 2>/dev/null | sed -n 's/^Block count: *//p')"
mount -o ro,loop "$WORK/data.img" "$MNT" && { tree_sums "$MNT" | grep -v ' ./w/' >"$WORK/data.got"; umount "$MNT"; }
check "host: data.img's files match" cmp -s "$WORK/data.got" "$WORK/data.sums"
mount -o ro,loop "$WORK/srv.img" "$MNT" && { tree_sums "$MNT" >"$WORK/srv.got"; umount "$MNT"; }
check "host: srv.img's files match" cmp -s "$WORK/srv.got" "$WORK/srv.sums"
finish
