# The guest half of tests/vm/test-vm-os.sh: runs in the GRUB-booted Debian guest as
# /run/job/run.sh (POSIX sh, root, from vmcrypt-test.service). The job disk also holds `phase`
# (boot1 ... boot5), layout (cloud, split, split-dracut), ca.pem, enroll.token and guest-lib.sh (the markers and helpers).
. /run/job/guest-lib.sh
phase=$(cat /run/job/phase)
layout=$(cat /run/job/layout)
server=https://10.0.2.100:8443
tree=/var/lib/vmcrypt-test/tree

mark "BOOT-ID $(cat /proc/sys/kernel/random/boot_id)"
mark "UPTIME $(cut -d' ' -f1 /proc/uptime)"
show_state() {
	echo "--- /proc/cmdline"; cat /proc/cmdline
	echo "--- lsblk"; lsblk -o NAME,SIZE,TYPE,FSTYPE,MOUNTPOINT
	echo "--- dmsetup table"; dmsetup table 2>&1
	echo "--- /boot/vmcrypt"; ls -la /boot/vmcrypt 2>&1
	echo "--- vmcrypt status"; vmcrypt status 2>&1
	echo "--- vmcrypt-agent"; journalctl -b --no-pager -o short-monotonic -u vmcrypt-agent.service 2>&1 | tail -n 25
	if [ "$layout" = split-dracut ]; then
		echo "--- systemctl --failed"; systemctl --failed --no-pager 2>&1
		echo "--- systemd-network-generator"; journalctl -b --no-pager -o cat -u systemd-network-generator.service 2>&1 | tail -n 10
	fi
}
root_from() { mounted_from / "$1"; }
# The header says a reencryption is in flight (LUKS2 requirement online-reencrypt) or not.
header_reencrypting() { cryptsetup luksDump --header /boot/vmcrypt/os.luks /dev/vda1 | grep -q 'online-reencrypt'; }
header_done() { ! header_reencrypting && cryptsetup isLuks --header /boot/vmcrypt/os.luks /dev/vda1; }

case $phase in
boot1)
	check "the root is mounted from /dev/vda1" root_from /dev/vda1
	if [ "$layout" = cloud ]; then
		check "/boot is a directory in / (a cloud image's layout)" sh -c '! mountpoint -q /boot'
	else
		check "/boot is a filesystem of its own" mountpoint -q /boot
	fi
	if [ "$layout" = split-dracut ]; then
		check "dracut made the initramfs, with vmcrypt's module (its unit and script)" sh -c \
			"lsinitrd /boot/initrd.img-\$(uname -r) | grep -q ' usr/lib/vmcrypt/dracut-unlock\$' &&
			 lsinitrd /boot/initrd.img-\$(uname -r) | grep -q 'initrd-root-device.target.wants/vmcrypt-unlock.service'"
		check "no initramfs-tools" sh -c '! command -v update-initramfs'
	else
		check "the initramfs holds vmcrypt's boot script" sh -c "lsinitramfs /boot/initrd.img-\$(uname -r) | grep -qx scripts/local-top/vmcrypt"
	fi
	# A fixed tree on the root filesystem: its checksums before and after prove the conversion.
	mkdir -p "$tree"
	i=0
	while [ $i -lt 24 ]; do
		head -c $((1 + i * 150000)) /dev/urandom >"$tree/f$i"
		i=$((i + 1))
	done
	cp -a /usr/bin "$tree/bin"
	sync
	sums tree "$tree"
	enroll_agent 5 1
	if wait_host prepared; then
		check "the root is still mounted from /dev/vda1 (nothing moves before the reboot)" root_from /dev/vda1
		if [ "$layout" = cloud ]; then
			check "the agent made /boot a partition of its own (vmcrypt-boot) in the grown space" \
				sh -c '[ "$(lsblk -n -o PARTLABEL "$(findmnt -n -o SOURCE /boot)")" = vmcrypt-boot ]'
			check "fstab mounts /boot before /boot/efi" sh -c 'grep -n " /boot " /etc/fstab && grep -q " /boot/efi " /etc/fstab &&
				[ "$(grep -n " /boot " /etc/fstab | cut -d: -f1)" -lt "$(grep -n " /boot/efi " /etc/fstab | cut -d: -f1)" ]'
			check "the ESP is mounted on the new /boot's efi" mountpoint -q /boot/efi
			cat /etc/fstab
			sgdisk -p /dev/vda
		fi
		check "/boot/vmcrypt is 0700" test "$(stat -c %a /boot/vmcrypt)" = 700
		check "/boot/vmcrypt/os.conf names the device and the mapping" grep -qx 'Name=vmcrypt-os' /boot/vmcrypt/os.conf
		check "the credential's copy on /boot is sealed to the TPM (credential.tpm 0600, no plain copy)" \
			sh -c 'test "$(stat -c %a /boot/vmcrypt/credential.tpm)" = 600 && test ! -e /boot/vmcrypt/credential'
		check "vmcrypt check --volume-type OS: tpm2 passes (the TPM the credential is sealed to)" sh -c \
			'vmcrypt check --volume-type OS 2>&1 | grep -E "^PASS +tpm2 "'
		check "the detached header is initialised for an online encryption" header_reencrypting
		check "grub.cfg's kernel lines carry vmcrypt.boot=" grep -q 'vmcrypt.boot=UUID=' /boot/grub/grub.cfg
		if [ "$layout" = split-dracut ]; then
			check "with dracut they also name the root by its mapping and ask for the network" \
				grep -q 'vmcrypt.boot=UUID=[^ ]* root=/dev/mapper/vmcrypt-os rd.neednet=1' /boot/grub/grub.cfg
		fi
		check "the kernel running now does not (one reboot to go)" sh -c '! grep -q vmcrypt.boot= /proc/cmdline'
		cat /boot/vmcrypt/os.conf
		show_state
		sums tree-prepared "$tree"
		mark "REBOOT"
		systemctl reboot
		sleep infinity
	fi
	show_state
	;;
boot2 | boot3)
	if [ "$phase" = boot3 ]; then
		check "booted through UEFI (OVMF) and the agent's x86_64-efi GRUB" test -d /sys/firmware/efi
	else
		check "booted through the BIOS (SeaBIOS) and the agent's i386-pc GRUB" test ! -d /sys/firmware/efi
	fi
	check "the kernel command line carries vmcrypt.boot=" grep -q 'vmcrypt.boot=UUID=' /proc/cmdline
	check "/boot is mounted from its own partition" mountpoint -q /boot
	check "the root is mounted from /dev/mapper/vmcrypt-os" root_from /dev/mapper/vmcrypt-os
	# Before its first hotzone a mapping in reencryption is one linear segment on the device.
	check "vmcrypt-os is a device-mapper device on /dev/vda1" sh -c 'lsblk -n -o NAME -s /dev/mapper/vmcrypt-os | grep -q vda1'
	check "vmcrypt-agent.service runs" until_true 30 unit_active vmcrypt-agent.service
	if [ "$layout" = split-dracut ]; then
		check "dracut's initramfs ran vmcrypt-unlock.service, which opened / from the vault" sh -c \
			"journalctl -b -o cat -u vmcrypt-unlock.service | grep 'opened as /dev/mapper/vmcrypt-os with the key from the vault'"
		# The initramfs's DHCP default stays in the initramfs: the booted system's network
		# generator finds no ip= to act on (with one it failed on its own file from the initramfs).
		check "the booted system's systemd-network-generator did not fail" sh -c '! systemctl -q is-failed systemd-network-generator.service'
		check "no ip= on the kernel command line" sh -c '! grep -q " ip=" /proc/cmdline'
	fi
	show_state
	if [ "$phase" = boot2 ]; then
		# The host cuts the power during the online conversion.
		mark "WAIT power-cut"
		sleep infinity
	fi
	if wait_host encrypted; then
		check "vmcrypt-os: one crypt segment (the conversion is over)" until_true 60 one_crypt_segment vmcrypt-os
		check "the header has no reencryption left" header_done
		# Its second home: the agent backs it up in the vault once the conversion is over.
		check "the agent backed the header up in the vault (agent.json)" until_true 60 \
			grep -Eq '"headerBackupUuid": *"[0-9a-f-]{36}"' /var/lib/vmcrypt/agent.json
		result os_header_sha256 "$(sha256sum /boot/vmcrypt/os.luks | cut -d' ' -f1)"
		show_state
	fi
	sums tree "$tree"
	;;
boot4)
	# The vault was down at boot: the recovery passphrase was typed on the console.
	check "the root is mounted from /dev/mapper/vmcrypt-os" root_from /dev/mapper/vmcrypt-os
	if [ "$layout" = split-dracut ]; then
		check "dracut's initramfs opened / with the recovery passphrase" sh -c \
			"journalctl -b -o cat -u vmcrypt-unlock.service | grep 'opened as /dev/mapper/vmcrypt-os with the recovery passphrase'"
	fi
	show_state
	sums tree "$tree"
	# The vault back, the host disables encryption for the OS volume: decrypted online.
	if wait_host decrypted; then
		check "/boot/vmcrypt/os.conf is gone (the next boot is plain)" test ! -e /boot/vmcrypt/os.conf
		check "/boot/vmcrypt is gone with the header and the credential's copies" test ! -e /boot/vmcrypt
		check "grub.cfg no longer carries vmcrypt.boot=" sh -c '! grep -q vmcrypt.boot= /boot/grub/grub.cfg'
		check "vmcrypt-os maps the plain device one to one until the reboot" \
			sh -c 'dmsetup table vmcrypt-os | grep -q "^0 [0-9]* linear " && [ "$(dmsetup table vmcrypt-os | wc -l)" = 1 ]'
		check "the root is still mounted (through the plain mapping)" root_from /dev/mapper/vmcrypt-os
		show_state
		sums tree-decrypted "$tree"
		mark "REBOOT"
		systemctl reboot
		sleep infinity
	fi
	;;
boot5)
	check "the root is mounted from the plain /dev/vda1 again" root_from /dev/vda1
	check "no vmcrypt mapping" sh -c '! dmsetup ls | grep -q vmcrypt'
	check "the kernel command line has no vmcrypt.boot=" sh -c '! grep -q vmcrypt.boot= /proc/cmdline'
	check "nor a root on the mapping" sh -c '! grep -q root=/dev/mapper/ /proc/cmdline'
	show_state
	sums tree "$tree"
	;;
esac
