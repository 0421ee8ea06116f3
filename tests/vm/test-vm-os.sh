#!/bin/bash
# The OS volume end to end (issue 10, docs/os-volume.md) in a real Debian 12 guest booted through
# SeaBIOS and GRUB from its own disk (tests/vm/os-disk, layout "cloud": / holds /boot as in
# Debian's cloud images, the disk grown by 600 MiB), the package installed, vmcryptd on the
# host's loopback reached only through QEMU's restricted user network (guestfwd 10.0.2.100:8443):
#   boot 1  enroll; `vm encryption enable --volume-type OS`; the agent escrows the keys, makes
#           /boot a partition of its own in the grown space (copy, fstab, GRUB), writes the
#           detached header to /boot/vmcrypt and vmcrypt.boot= to grub.cfg, reports
#           VMRestartPending with ADE's "please reboot" message; / untouched; the guest reboots
#   boot 2  the initramfs opens / from the vault (the system console says so), / is on
#           /dev/mapper/vmcrypt-os; the agent converts online with "Encrypting OS volume: N%";
#           the host cuts the power (kills QEMU) at >= 20%
#   boot 3  through OVMF (UEFI) this time, the GRUB the agent installed for x86_64-efi: the
#           initramfs opens it again with no prompt, the agent finishes: Encrypted, one crypt
#           segment, every file of a fixed tree on / intact; the agent backs the header up in
#           the vault, which then holds /boot/vmcrypt/os.luks byte for byte, and the recovery
#           passphrase opens the volume through that copy
#   copy    the disk copied to a VM with another TPM: the credential on /boot is sealed to the
#           first VM's TPM (swtpm in every boot), so it does not open, and the console asks for
#           the recovery passphrase
#   boot 4  vmcryptd down: the initramfs says why and asks for the recovery passphrase on the
#           console; the host types it (from `vmcrypt-admin secret show --reveal`); boot completes;
#           then vmcryptd back and `vm encryption disable --volume-type OS`: decrypted online
#           ("Decrypting OS volume: N%"), NotEncrypted, os.conf and vmcrypt.boot= gone
#   boot 5  plain: / from /dev/vda1, no mapping, every file intact
# VMCRYPT_OS_LAYOUT=split runs the same on a disk whose /boot is a partition already;
# split-dracut (tests/vm/test-vm-os-dracut.sh) on that disk with dracut in place of
# initramfs-tools, without boot 2's power cut and the copy (the same code after the initramfs).
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/host-lib.sh"
export LC_ALL=C

require_root
require_cmd qemu-system-x86_64 socat openssl sgdisk python3 cryptsetup
VM=$TESTS_DIR/vm
D=$VM/os-disk
# cloud (default): / holds /boot, as in Debian's cloud images, and the disk was grown by 600 MiB:
# the agent makes /boot a partition of its own first. split: /boot is one already.
LAYOUT=${VMCRYPT_OS_LAYOUT:-cloud}
DRACUT=0
case $LAYOUT in *-dracut) DRACUT=1 ;; esac
# The consoles' names in the logs: vm-os-console-boot1.log, vm-os-split-dracut-console-boot1.log.
LOG_PREFIX=vm-os-$([ "$LAYOUT" = cloud ] || echo "$LAYOUT-")
say() { echo "# $*"; }
T0=$(date +%s)

t=$(date +%s)
rc=0
"$D" build --layout "$LAYOUT" >"$WORK/build.log" 2>&1 || rc=$?
[ $rc = 77 ] && skip_all "the GRUB-booted guest disk cannot be built: $(tail -n 1 "$WORK/build.log")"
[ $rc = 0 ] || { tail -n 40 "$WORK/build.log"; not_ok "os-disk build (exit $rc)"; finish; }
ok "os-disk build: GRUB-bootable template ready ($(($(date +%s) - t)) s)"

GUEST_BUILD=${VMCRYPT_GUEST_BUILD:-$TOP/build}
make -C "$TOP" --no-print-directory -j2 BUILD="$GUEST_BUILD" deb >"$WORK/make.log" 2>&1 ||
	{ tail -n 30 "$WORK/make.log"; not_ok "make deb"; finish; }
deb=$(ls -t "$GUEST_BUILD"/vmcrypt_*_amd64.deb 2>/dev/null | head -n 1)
[ -n "$deb" ] || { not_ok "make deb made no package"; finish; }
t=$(date +%s)
grow=()
[ "$LAYOUT" != cloud ] || grow=(--grow 600M)
if "$D" prepare "$WORK/root.img" --layout "$LAYOUT" --deb "$deb" "${grow[@]}" >"$WORK/prepare.log" 2>&1; then
	ok "os-disk prepare: $(basename "$deb") installed, initramfs rebuilt by its trigger ($(($(date +%s) - t)) s)"
else
	tail -n 40 "$WORK/prepare.log"; not_ok "os-disk prepare"; finish
fi

source "$VM/guest-vault.sh"
VAULT_DIR=$WORK/vault
vault_pki || { cat "$VAULT_DIR/pki.log"; not_ok "test CA and server certificate"; finish; }
at_exit '[ -z "$VAULT_PID" ] || kill -9 $VAULT_PID'
LOGS=${VMCRYPT_VM_LOGS:-$BUILD/test-logs}
at_exit 'mkdir -p "$LOGS" && for f in "$WORK"/console-*.log*; do cp "$f" "$LOGS/$LOG_PREFIX${f##*/}"; done'
check "vmcryptd serves with a certificate for 10.0.2.100" vault_start
admin() { vault_admin "$@"; }
(umask 077 && admin vm register vm1 >"$WORK/enroll.token") && ok "vm register vm1: enrollment token" ||
	not_ok "vm register vm1"

BOOT_PID=
# Every boot has the VM's TPM (swtpm, its state kept in $WORK/tpm); BOOT_DISK and BOOT_TPM
# change that for the copy of the disk.
BOOT_DISK=$WORK/root.img BOOT_TPM=$WORK/tpm
boot_start() { # PHASE [uefi]
	local phase=$1 j=$WORK/job-$1 fw=(--tpm "$BOOT_TPM")
	[ "${2:-}" != uefi ] || fw+=(--uefi)
	rm -f "$WORK/qemu.pid"
	mkdir -p "$j"
	cp "$VM/os-guest.sh" "$j/run.sh"
	cp "$VM/guest-lib.sh" "$j/guest-lib.sh"
	cp "$VAULT_DIR/pki/ca.pem" "$j/ca.pem"
	(umask 077 && cp "$WORK/enroll.token" "$j/enroll.token")
	echo "$phase" >"$j/phase"
	echo "$LAYOUT" >"$j/layout"
	"$D" job "$WORK/job-$phase.tar" "$j"
	CONSOLE=$WORK/console-$phase.log
	SYSCON=$CONSOLE.sys
	BOOT_T0=$(date +%s)
	"$D" boot "$BOOT_DISK" "${fw[@]}" --job "$WORK/job-$phase.tar" --port "$VAULT_PORT" --console "$CONSOLE" \
		--system-console "$SYSCON" --console-in "$WORK/con.sock" --ctl "$WORK/ctl.sock" \
		--pid-file "$WORK/qemu.pid" --timeout 900 >"$WORK/boot-$phase.log" 2>&1 &
	BOOT_PID=$!
	at_exit "$D kill $WORK/qemu.pid"
}
wait_marker() { "$D" wait-marker "$CONSOLE" "$1" "$2" --pid-file "$WORK/qemu.pid" 2>>"$WORK/wait.log" || true; }
wait_syscon() { "$D" wait-marker "$SYSCON" "$1" "$2" --pid-file "$WORK/qemu.pid" 2>>"$WORK/wait.log" || true; }
boot_end() {
	local rc=0
	wait "$BOOT_PID" || rc=$?
	say "boot $1 ended after $(($(date +%s) - BOOT_T0)) s (QEMU exit $rc)"
}
# guest_sums PHASE NAME: the guest's checksums of the tree (block NAME) equal boot 1's.
guest_sums() {
	console | sed -n "/^===VMCRYPT-SUMS-BEGIN $2===\$/,/^===VMCRYPT-SUMS-END $2===\$/p" |
		grep -v '^===VMCRYPT-' >"$WORK/$1-$2.got"
	if [ ! -s "$WORK/$1-$2.got" ]; then
		not_ok "[$1] the guest printed the checksums of the tree on /"
	elif cmp -s "$WORK/boot1-tree.got" "$WORK/$1-$2.got"; then
		ok "[$1] every file of the tree on / intact ($(wc -l <"$WORK/$1-$2.got") files)"
	else
		not_ok "[$1] files of the tree on / differ from boot 1's"
		diff "$WORK/boot1-tree.got" "$WORK/$1-$2.got" | head -n 10 | sed 's/^/    /'
	fi
}
# os_state: "OsVolumeEncrypted PERCENT | ProgressMessage" from vmcryptd.
os_state() {
	admin --json vm encryption show --vm vm1 2>/dev/null | python3 -c '
import json, re, sys
try:
    j = json.load(sys.stdin)
except Exception:
    print("unknown -1 |"); sys.exit(0)
p = [v.get("progress", 0) for v in j.get("volumes", []) if v.get("volumeType") == "OS"]
m = re.search(r"(\d+)%", j.get("ProgressMessage", ""))
pct = max(p) if p else (int(m.group(1)) if m else -1)
print(j.get("OsVolumeEncrypted", "unknown"), pct, "|", j.get("ProgressMessage", ""))'
}
wait_os() { # STATE TIMEOUT
	local end=$(($(date +%s) + $2)) s
	while [ "$(date +%s)" -lt "$end" ]; do
		s=$(os_state)
		[ "${s%% *}" = "$1" ] && return 0
		kill -0 "$BOOT_PID" 2>/dev/null || return 1
		sleep 2
	done
	return 1
}

# Boot 1: enroll, enable, prepared, reboot.
boot_start boot1
m=$(wait_marker '^===VMCRYPT-UPTIME' 400)
[ -n "$m" ] && ok "[boot1] booted through SeaBIOS and GRUB to the test unit: $m, $(($(date +%s) - BOOT_T0)) s" ||
	not_ok "[boot1] the guest reached its test unit"
m=$(wait_marker '^===VMCRYPT-WAIT prepared===' 300)
if [ -n "$m" ]; then
	if admin vm encryption enable --vm vm1 --volume-type OS >"$WORK/enable.out" 2>&1; then
		ok "vm encryption enable --vm vm1 --volume-type OS"
	else
		not_ok "vm encryption enable: $(cat "$WORK/enable.out")"
	fi
	if wait_os VMRestartPending 300; then
		s=$(os_state)
		ok "OsVolumeEncrypted=VMRestartPending after the preparation ($s)"
		[[ "$s" == *"OS disk successfully encrypted, please reboot the VM"* ]] &&
			ok "ProgressMessage says to reboot, in ADE's words" || not_ok "ProgressMessage: $s"
		"$D" send "$WORK/ctl.sock" prepared
	else
		not_ok "VMRestartPending (last: $(os_state))"
		"$D" send "$WORK/ctl.sock" abort
	fi
fi
wait_marker '^===VMCRYPT-REBOOT===' 120 >/dev/null
t_reboot=$(date +%s)
boot_end boot1
count_guest boot1
console | sed -n '/^===VMCRYPT-SUMS-BEGIN tree===$/,/^===VMCRYPT-SUMS-END tree===$/p' |
	grep -v '^===VMCRYPT-' >"$WORK/boot1-tree.got"
guest_sums boot1 tree-prepared

# Boot 2: opened by the initramfs; the power cut during the online conversion.
if [ $DRACUT = 0 ]; then
boot_start boot2
m=$(wait_syscon 'vmcrypt: OS volume .* opened as /dev/mapper/vmcrypt-os with the key from the vault' 400)
[ -n "$m" ] && ok "[boot2] the initramfs opened / with the key from the vault: ${m#*vmcrypt: }" ||
	not_ok "[boot2] the initramfs opened / from the vault (system console)"
m=$(wait_marker '^===VMCRYPT-UPTIME' 300)
[ -n "$m" ] && ok "[boot2] the guest is up again $(($(date +%s) - t_reboot)) s after the reboot began" ||
	not_ok "[boot2] the guest came back"
m=$(wait_marker '^===VMCRYPT-WAIT power-cut===' 300)
cut_at="" seen_msg=""
if [ -n "$m" ]; then
	end=$(($(date +%s) + 600))
	while [ "$(date +%s)" -lt "$end" ] && kill -0 "$BOOT_PID" 2>/dev/null; do
		s=$(os_state)
		read -r st pct _ <<<"$s"
		[[ "$s" == *"Encrypting OS volume: "* ]] && seen_msg=${s#*| }
		if [ "$st" = EncryptionInProgress ] && [ "$pct" -ge 20 ]; then cut_at=$s; break; fi
		[ "$st" = Encrypted ] && break
		sleep 1
	done
	[ -n "$seen_msg" ] && ok "[boot2] progress while the VM serves: \"$seen_msg\"" ||
		not_ok "[boot2] ProgressMessage \"Encrypting OS volume: N%\" (last: $(os_state))"
	if [ -n "$cut_at" ]; then
		"$D" kill "$WORK/qemu.pid" && ok "power cut (QEMU killed) during the online conversion of /: $cut_at"
	else
		skip "power cut mid-conversion: not seen in progress at >= 20% ($(os_state))"
		"$D" kill "$WORK/qemu.pid"
	fi
else
	"$D" kill "$WORK/qemu.pid"
fi
boot_end boot2
count_guest boot2
fi

# The initramfs's words on the system console: with dracut a service's, after its identifier.
initramfs_words=initramfs
[ $DRACUT = 0 ] || initramfs_words="dracut initramfs"

# Boot 3: through UEFI, opened again (no prompt), the conversion finishes.
boot_start boot3 uefi
after="after the power cut"
[ $DRACUT = 0 ] || after="at the encrypting reboot"
m=$(wait_syscon 'vmcrypt: OS volume .* opened as /dev/mapper/vmcrypt-os with the key from the vault' 400)
[ -n "$m" ] && ok "[boot3] $after the $initramfs_words opened / from the vault: ${m#*vmcrypt: }" ||
	not_ok "[boot3] the $initramfs_words opened / $after"
if [ $DRACUT = 1 ]; then
	m=$(wait_marker '^===VMCRYPT-UPTIME' 300)
	[ -n "$m" ] && ok "[boot3] the guest is up again $(($(date +%s) - t_reboot)) s after the reboot began" ||
		not_ok "[boot3] the guest came back"
fi
if wait_os Encrypted 900; then
	ok "OsVolumeEncrypted=Encrypted $after ($(os_state))"
	"$D" send "$WORK/ctl.sock" encrypted
else
	not_ok "Encrypted $after (last: $(os_state))"
	"$D" send "$WORK/ctl.sock" abort
fi
wait_marker '^===VMCRYPT-JOB-END' 300 >/dev/null
boot_end boot3
count_guest boot3
guest_sums boot3 tree
tr -d '\r' <"$SYSCON" | grep -qi 'passphrase' && not_ok "[boot3] the console asked for a passphrase" ||
	ok "[boot3] no passphrase prompt on the console"

# The header's second home: the backup the agent stored in the vault is the header on /boot, byte
# for byte, and the recovery passphrase opens the volume through it (as after losing /boot).
rec=$(admin secret show vm1/os-recovery --reveal 2>/dev/null | sed -n 's/^Passphrase *: //p')
[ -n "$rec" ] && ok "vmcrypt-admin secret show vm1/os-recovery --reveal: the recovery passphrase" ||
	not_ok "the recovery passphrase from the vault"
want=$(console | sed -n 's/^===VMCRYPT-RESULT os_header_sha256 \([0-9a-f]*\)===$/\1/p' | tail -n 1)
if admin header get --vm vm1 --volume os --output "$WORK/os-header.bak" >"$WORK/header-get.out" 2>&1; then
	[ -n "$want" ] && [ "$(sha256sum <"$WORK/os-header.bak" | cut -d' ' -f1)" = "$want" ] &&
		ok "vmcrypt-admin header get: the vault's copy is /boot/vmcrypt/os.luks byte for byte" ||
		not_ok "the vault's header backup equals /boot/vmcrypt/os.luks (guest: ${want:-none})"
	truncate -s 1M "$WORK/no-data.img"
	printf '%s' "$rec" | cryptsetup open --test-passphrase --header "$WORK/os-header.bak" --key-file - \
		"$WORK/no-data.img" && ok "the recovery passphrase opens the vault's header backup" ||
		not_ok "the recovery passphrase opens the vault's header backup"
else
	not_ok "vmcrypt-admin header get --vm vm1 --volume os: $(cat "$WORK/header-get.out")"
fi

# The disk copied to another VM, whose TPM is not this one's, with the vault up: the sealed
# credential does not open there, so the vault is never asked; the console says why and asks for
# the recovery passphrase.
if [ $DRACUT = 1 ]; then
	: # the sealed credential is read by the same program in both initramfs kinds
elif cp --sparse=always "$WORK/root.img" "$WORK/copy.img"; then
	BOOT_DISK=$WORK/copy.img BOOT_TPM=$WORK/tpm-other
	boot_start copy
	m=$(wait_syscon 'Recovery passphrase for the OS volume' 400)
	tr -d '\r' <"$SYSCON" | grep -q 'vmcrypt: OS volume: the VM credential .* is sealed to another TPM' &&
		ok "[copy] the disk in another VM (another TPM): the sealed credential does not open, the console says why" ||
		not_ok "[copy] the console says the credential is sealed to another TPM"
	[ -n "$m" ] && ok "[copy] it asks for the recovery passphrase instead" ||
		not_ok "[copy] the recovery passphrase prompt"
	tr -d '\r' <"$SYSCON" | grep -q 'opened as /dev/mapper/vmcrypt-os' &&
		not_ok "[copy] the copy of the disk opened" || ok "[copy] the copy of the disk stays locked"
	"$D" kill "$WORK/qemu.pid"
	boot_end copy
	rm -f "$WORK/copy.img"
	BOOT_DISK=$WORK/root.img BOOT_TPM=$WORK/tpm
else
	not_ok "a copy of the disk for another VM"
fi

# Boot 4: the vault is down; the recovery passphrase typed on the console.
vault_stop
boot_start boot4
m=$(wait_syscon 'Recovery passphrase for the OS volume' 500)
if [ -n "$m" ]; then
	tr -d '\r' <"$SYSCON" | grep -q 'vmcrypt: the vault did not give the OS volume' &&
		ok "[boot4] vault down: the console says why before it asks" ||
		not_ok "[boot4] the console says why it asks"
	"$D" type "$WORK/con.sock" "$rec"
	# Not the whole word: with dracut, systemd's password agent echoes what is typed as
	# asterisks on the same console, which can cut into the service's line.
	m=$(wait_syscon 'opened as /dev/mapper/vmcrypt-os with the recovery' 120)
	[ -n "$m" ] && ok "[boot4] the recovery passphrase typed on the console opened /" ||
		not_ok "[boot4] the typed recovery passphrase opened /"
else
	not_ok "[boot4] vault down: the console asks for the recovery passphrase"
fi
m=$(wait_marker '^===VMCRYPT-WAIT decrypted===' 300)
if [ -n "$m" ]; then
	check "vmcryptd starts again" vault_start
	if admin vm encryption disable --vm vm1 --volume-type OS >"$WORK/disable.out" 2>&1; then
		ok "vm encryption disable --vm vm1 --volume-type OS"
	else
		not_ok "vm encryption disable: $(cat "$WORK/disable.out")"
	fi
	seen_msg=""
	end=$(($(date +%s) + 900))
	while [ "$(date +%s)" -lt "$end" ] && kill -0 "$BOOT_PID" 2>/dev/null; do
		s=$(os_state)
		[[ "$s" == *"Decrypting OS volume: "* ]] && seen_msg=${s#*| }
		[ "${s%% *}" = NotEncrypted ] && break
		sleep 2
	done
	[ -n "$seen_msg" ] && ok "[boot4] progress of the online decryption: \"$seen_msg\"" ||
		not_ok "[boot4] ProgressMessage \"Decrypting OS volume: N%\" (last: $(os_state))"
	if [ "${s%% *}" = NotEncrypted ]; then
		ok "OsVolumeEncrypted=NotEncrypted after the decryption ($s)"
		"$D" send "$WORK/ctl.sock" decrypted
	else
		not_ok "NotEncrypted after disable (last: $(os_state))"
		"$D" send "$WORK/ctl.sock" abort
	fi
fi
wait_marker '^===VMCRYPT-REBOOT===' 120 >/dev/null
boot_end boot4
count_guest boot4
guest_sums boot4 tree
guest_sums boot4 tree-decrypted

# Boot 5: plain again.
boot_start boot5
wait_marker '^===VMCRYPT-JOB-END' 400 >/dev/null
boot_end boot5
count_guest boot5
guest_sums boot5 tree
tr -d '\r' <"$SYSCON" | grep -q 'vmcrypt: OS volume' && not_ok "[boot5] the initramfs still tried to open /" ||
	ok "[boot5] the initramfs left / alone: a plain boot"
say "whole run: $(($(date +%s) - T0)) s; consoles: $LOGS/${LOG_PREFIX}console-*.log (.sys: the system console)"
finish
