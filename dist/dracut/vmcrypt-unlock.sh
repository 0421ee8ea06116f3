#!/bin/sh
# vmcrypt: opens the OS volume in a dracut initramfs (vmcrypt-unlock.service, docs/os-volume.md);
# the counterpart of dist/initramfs-tools/local-top.
#   vmcrypt.boot=DEV           the /boot filesystem (UUID=..., LABEL=..., /dev/...), which holds vmcrypt/os.conf
#   vmcrypt.timeout=SECONDS    how long to try the vault before asking on the console (60)
# The network is dracut's (ip= and rd.neednet=1 on the command line, which the agent adds).
boot="" timeout=60
for x in $(cat /proc/cmdline); do
	case "$x" in
	vmcrypt.boot=*) boot=${x#vmcrypt.boot=} ;;
	vmcrypt.timeout=*) timeout=${x#vmcrypt.timeout=} ;;
	esac
done
[ -n "$boot" ] || exit 0

say() { echo "vmcrypt: $*" >&2; }
mnt=/run/vmcrypt-boot
dir=$mnt/vmcrypt

case "$boot" in
UUID=*) dev=/dev/disk/by-uuid/${boot#UUID=} ;;
LABEL=*) dev=/dev/disk/by-label/${boot#LABEL=} ;;
PARTUUID=*) dev=/dev/disk/by-partuuid/${boot#PARTUUID=} ;;
*) dev=$boot ;;
esac
i=0
while [ ! -b "$dev" ] && [ $i -lt 30 ]; do
	sleep 1
	i=$((i + 1))
done
if [ ! -b "$dev" ]; then
	say "the /boot filesystem $boot did not appear in 30 s: the OS volume cannot be opened"
	exit 1
fi
mkdir -p "$mnt"
# Read-write: opening a volume in reencryption may repair its header after a power cut.
if ! mount -o rw "$dev" "$mnt"; then
	say "cannot mount /boot ($dev): the OS volume cannot be opened"
	exit 1
fi
if [ ! -f "$dir/os.conf" ]; then
	umount "$mnt"
	say "$boot has no vmcrypt/os.conf: the root named on the command line cannot be opened;" \
		"boot an entry without vmcrypt.boot= (edit it in GRUB) and run 'update-grub'"
	exit 1
fi

# DNS for a Server= by name: dhclient writes resolv.conf itself, systemd-networkd keeps its
# leases (no resolved in the initramfs).
if [ ! -s /etc/resolv.conf ]; then
	for f in /run/systemd/netif/leases/*; do
		[ -f "$f" ] || continue
		while IFS='=' read -r k v; do
			[ "$k" = DNS ] || continue
			for s in $v; do echo "nameserver $s"; done
		done <"$f"
	done >>/etc/resolv.conf 2>/dev/null
fi

rc=0
vmcrypt boot-unlock --boot-dir "$dir" --timeout "$timeout" || rc=$?
if [ $rc != 0 ]; then
	if [ $rc = 13 ]; then
		say "the vault did not give the OS volume's key (above); type its recovery passphrase"
		say "(on the control plane: vmcrypt-admin secret show VM/os-recovery --reveal)"
	fi
	n=0
	while :; do
		# systemd's password agent asks on the console; the answer goes to vmcrypt through a
		# pipe by printf (a shell builtin: never on a command line).
		pass=$(systemd-ask-password --timeout=0 --id=vmcrypt:os "Recovery passphrase for the OS volume (vmcrypt):")
		if [ -n "$pass" ] && printf '%s' "$pass" | vmcrypt boot-unlock --boot-dir "$dir" --recovery-file /dev/stdin; then
			pass=""
			break
		fi
		pass=""
		n=$((n + 1))
		if [ $n -ge 5 ]; then
			umount "$mnt"
			say "the OS volume could not be opened"
			exit 1
		fi
	done
fi
umount "$mnt"
exit 0
