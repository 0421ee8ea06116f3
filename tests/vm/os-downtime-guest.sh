# The guest half of bench/os-downtime: runs in the GRUB-booted Debian guest as /run/job/run.sh
# (POSIX sh, root, from vmcrypt-test.service, which starts after network-online.target). The job
# disk also holds `phase`, `last` (1: the run's last boot, which powers off), `grow` (1: the root
# partition takes the disk's free space in boot1), ca.pem, enroll.token and guest-lib.sh.
#   boot1    plain: the peers' numbers (dd, cryptsetup benchmark), enroll, the agent up
#   plainN   plain reboots; after the last, the host enables OS encryption (VMRestartPending)
#   enc0     the encrypting boot: / opened from the vault by the initramfs, the agent converts
#   encN     reboots of the encrypted VM, unlocked from the vault
# Every boot marks NET-UP as soon as vmcryptd answers an HTTPS request through QEMU's guestfwd
# (the guest answers on the network from then on), then reboots when the host says so. The host
# times its REBOOT mark to the next boot's NET-UP.
. /run/job/guest-lib.sh
phase=$(cat /run/job/phase)
server=https://10.0.2.100:8443
uptime_s() { cut -d' ' -f1 /proc/uptime; }

mark "UPTIME $(uptime_s)"
n=0
while :; do
	code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 --cacert /run/job/ca.pem "$server/v1/") || code=000
	[ "$code" = 000 ] || break
	n=$((n + 1))
	[ $n -lt 300 ] || { fail "no answer from $server within 60 s"; break; }
	sleep 0.2
done
mark "NET-UP $(uptime_s)"
# When systemd (in the real root) started: the kernel's and the initramfs's share of the boot.
result userspace_start_us "$(systemctl show -P UserspaceTimestampMonotonic)"
result root_source "$(findmnt -n -o SOURCE /)"

case $phase in
boot1)
	check "the root is mounted from /dev/vda1" mounted_from / /dev/vda1
	if [ "$(cat /run/job/grow)" = 1 ]; then
		# What growpart does: the backup GPT to the disk's end, partition 1 to the end, the
		# kernel told (the partition is in use), ext4 grown online.
		sfdisk --relocate gpt-bak-std /dev/vda
		check "root partition grown into the disk's free space" sh -c \
			"echo ', +' | sfdisk --force --no-reread -N 1 /dev/vda && partx -u -n 1 /dev/vda && resize2fs /dev/vda1"
	fi
	result root_bytes "$(blockdev --getsize64 /dev/vda1)"
	# The peer for the conversion's speed: what the disk itself does under the same emulation,
	# 256 MiB read from the root partition and written to a file on it, past the page cache.
	t=$(now)
	dd if=/dev/vda1 of=/dev/null bs=4M count=64 iflag=direct status=none
	result dd_read_ms "$(ms "$t" "$(now)")"
	t=$(now)
	dd if=/dev/zero of=/var/tmp/dd-peer bs=4M count=64 oflag=direct conv=fsync status=none
	result dd_write_ms "$(ms "$t" "$(now)")"
	rm -f /var/tmp/dd-peer
	# And the cipher alone, in memory: the conversion is bound by the slower of the two.
	result cipher_mibs "$(cryptsetup benchmark -c aes-xts-plain64 -s 512 2>/dev/null |
		awk '$1 == "aes-xts" { print $3; exit }')"
	enroll_agent 2 2
	;;
plain*)
	check "the root is mounted from /dev/vda1 (a plain boot)" mounted_from / /dev/vda1
	;;
enc*)
	check "the root is mounted from /dev/mapper/vmcrypt-os" mounted_from / /dev/mapper/vmcrypt-os
	;;
esac
# The host says when to reboot (after its enable, for the encrypting one); the last boot ends.
if [ "$(cat /run/job/last)" = 1 ]; then
	journalctl -b --no-pager -o short-monotonic -u vmcrypt-agent.service 2>&1 | tail -n 15
elif wait_host reboot; then
	mark "REBOOT"
	systemctl reboot
	sleep infinity
fi
