#!/bin/bash
# Regenerates the fixture trees used by tests/unit/test-preflight.c and test-vmstatus.c: each
# directory is a fake root holding the /proc, /sys, /etc, /run, /usr and /var files vmcrypt's
# checks read (through VMCRYPT_TEST_ROOT). Run it after changing a fixture; commit the result.
# The open-files tree (proc only) is maintained by hand.
set -eu
cd "$(dirname "$0")"

# disk ROOT NAME MAJ MIN SIZE_MIB [ro]: a whole disk in /sys
disk() {
	local r=$1 n=$2 d=$1/sys/devices/block/$2
	mkdir -p "$d" "$d/holders" "$r/sys/dev/block" "$r/sys/class/block"
	echo "$3:$4" >"$d/dev"; echo $(($5 * 2048)) >"$d/size"; echo "${6:-0}" >"$d/ro"
	printf 'MAJOR=%s\nMINOR=%s\nDEVNAME=%s\nDEVTYPE=disk\n' "$3" "$4" "$n" >"$d/uevent"
	ln -sfn "../../devices/block/$n" "$r/sys/dev/block/$3:$4"
	ln -sfn "../../devices/block/$n" "$r/sys/class/block/$n"
}
# part ROOT DISK NAME MAJ MIN SIZE_MIB [ro]
part() {
	local r=$1 d=$1/sys/devices/block/$2/$3
	mkdir -p "$d" "$d/holders"
	echo "$4:$5" >"$d/dev"; echo $(($6 * 2048)) >"$d/size"; echo "${7:-0}" >"$d/ro"; echo 1 >"$d/partition"
	printf 'MAJOR=%s\nMINOR=%s\nDEVNAME=%s\nDEVTYPE=partition\n' "$4" "$5" "$3" >"$d/uevent"
	ln -sfn "../../devices/block/$2/$3" "$r/sys/dev/block/$4:$5"
	ln -sfn "../../devices/block/$2/$3" "$r/sys/class/block/$3"
}
# dm ROOT NAME MIN SIZE_MIB UUID DMNAME SLAVE: a device-mapper device on top of SLAVE
dm() {
	local r=$1 d=$1/sys/devices/virtual/block/$2
	mkdir -p "$d/dm" "$d/holders" "$d/slaves"
	echo "253:$3" >"$d/dev"; echo $(($4 * 2048)) >"$d/size"; echo 0 >"$d/ro"
	echo "$5" >"$d/dm/uuid"; echo "$6" >"$d/dm/name"
	printf 'MAJOR=253\nMINOR=%s\nDEVNAME=%s\nDEVTYPE=disk\n' "$3" "$2" >"$d/uevent"
	ln -sfn "../../devices/virtual/block/$2" "$r/sys/dev/block/253:$3"
	ln -sfn "../../devices/virtual/block/$2" "$r/sys/class/block/$2"
	local s; s=$(readlink -f "$r/sys/class/block/$7")
	ln -sfn "../../../../block/$7" "$d/slaves/$7" 2>/dev/null || true
	mkdir -p "$s/holders"; ln -sfn "../../$2" "$s/holders/$2" 2>/dev/null || true
}
# udev ROOT MAJ MIN KEY=VALUE...: a udev database entry (E:ID_FS_TYPE=...)
udev() {
	local r=$1 f=$1/run/udev/data/b$2:$3; shift 3
	mkdir -p "$(dirname "$f")"; : >"$f"
	for kv in "$@"; do echo "E:ID_FS_$kv" >>"$f"; done
}
mountinfo() { mkdir -p "$1/proc/self"; cat >"$1/proc/self/mountinfo"; }
meminfo() { printf 'MemTotal:       %s kB\nMemFree:        %s kB\nMemAvailable:   %s kB\n' "$2" "$3" "$3" >"$1/proc/meminfo"; }
osrelease() { mkdir -p "$1/proc/sys/kernel"; echo "$2" >"$1/proc/sys/kernel/osrelease"; }
os_release() { # ROOT ID VERSION_ID PRETTY
	mkdir -p "$1/etc"; printf 'PRETTY_NAME="%s"\nID=%s\nVERSION_ID="%s"\n' "$4" "$2" "$3" >"$1/etc/os-release"
}
# proc ROOT PID COMM [cmdline args...]
proc() {
	local d=$1/proc/$2; mkdir -p "$d/fd"; echo "$3" >"$d/comm"; shift 3
	if [ $# -gt 0 ]; then printf '%s\0' "$@" >"$d/cmdline"; else : >"$d/cmdline"; fi
	: >"$d/maps"
}
boot_tools() { # ROOT: Debian with initramfs-tools, its cryptsetup hook and BIOS GRUB
	mkdir -p "$1/usr/sbin" "$1/usr/share/initramfs-tools/hooks" "$1/usr/lib/grub/i386-pc" "$1/var/lib/dpkg"
	: >"$1/usr/sbin/cryptsetup"; : >"$1/usr/sbin/update-initramfs"
	: >"$1/usr/share/initramfs-tools/hooks/cryptroot"; : >"$1/usr/lib/grub/i386-pc/modinfo.sh"
	printf 'Package: initramfs-tools\nStatus: install ok installed\n\nPackage: cryptsetup-initramfs\nStatus: install ok installed\n\n' >"$1/var/lib/dpkg/status"
}

# The healthy Debian 12 VM every other fixture starts from: sda1 / (ext4), sda15 /boot/efi,
# sdb1 /data (ext4), sdc unmounted and empty; 8 GiB of RAM, dm-crypt loaded, no processes.
base() {
	local r=$1
	rm -rf "$r"; mkdir -p "$r/proc" "$r/sys/module/dm_crypt"
	disk "$r" sda 8 0 30720; part "$r" sda sda1 8 1 30000; part "$r" sda sda15 8 15 124
	disk "$r" sdb 8 16 65536; part "$r" sdb sdb1 8 17 65535
	disk "$r" sdc 8 32 10240
	udev "$r" 8 1 TYPE=ext4 UUID=11111111-1111-4111-8111-111111111111
	udev "$r" 8 17 TYPE=ext4 UUID=22222222-2222-4222-8222-222222222222 LABEL=data
	mountinfo "$r" <<-'MI'
	22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,discard,errors=remount-ro
	23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
	24 22 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
	25 22 0:5 / /dev rw,nosuid,relatime shared:2 - devtmpfs udev rw,size=4010000k,nr_inodes=1002500,mode=755
	26 22 0:25 / /run rw,nosuid,nodev,noexec,relatime shared:5 - tmpfs tmpfs rw,size=802000k,mode=755
	40 22 8:15 / /boot/efi rw,relatime shared:30 - vfat /dev/sda15 rw,fmask=0022,dmask=0022
	41 22 8:17 / /data rw,relatime shared:31 - ext4 /dev/sdb1 rw
	MI
	printf 'Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n' >"$r/proc/swaps"
	meminfo "$r" 8148000 7000000
	osrelease "$r" 6.1.0-13-amd64
	os_release "$r" debian 12 "Debian GNU/Linux 12 (bookworm)"
	boot_tools "$r"
}

base healthy

base selinux-enforcing
mkdir -p selinux-enforcing/sys/fs/selinux selinux-enforcing/etc/selinux selinux-enforcing/proc/self/attr
echo 1 >selinux-enforcing/sys/fs/selinux/enforce
echo SELINUX=enforcing >selinux-enforcing/etc/selinux/config
printf 'system_u:system_r:vmcrypt_t:s0\0' >selinux-enforcing/proc/self/attr/current

base selinux-unconfined
mkdir -p selinux-unconfined/sys/fs/selinux selinux-unconfined/etc/selinux selinux-unconfined/proc/self/attr
echo 1 >selinux-unconfined/sys/fs/selinux/enforce
echo SELINUX=enforcing >selinux-unconfined/etc/selinux/config
echo 'unconfined_u:unconfined_r:unconfined_t:s0-s0:c0.c1023' >selinux-unconfined/proc/self/attr/current

# / on an LVM logical volume (rootvg on sda2), a data LV, and sdc: a physical volume whose
# volume group is not active.
base lvm
rm -rf lvm/sys/devices/block/sda/sda1 lvm/sys/dev/block/8:1 lvm/sys/class/block/sda1 lvm/run/udev/data/b8:1
part lvm sda sda2 8 2 30000
dm lvm dm-0 0 20000 LVM-Y1Gq3Iu9pF0abcdefRootLvUuid00000000000000000000000000 rootvg-rootlv sda2
dm lvm dm-1 1 8000 LVM-Y1Gq3Iu9pF0abcdefDataLvUuid00000000000000000000000000 rootvg-datalv sda2
udev lvm 8 2 TYPE=LVM2_member
udev lvm 8 32 TYPE=LVM2_member
udev lvm 253 0 TYPE=ext4
udev lvm 253 1 TYPE=ext4
mountinfo lvm <<'MI'
22 1 253:0 / / rw,relatime shared:1 - ext4 /dev/mapper/rootvg-rootlv rw
40 22 8:15 / /boot/efi rw,relatime shared:30 - vfat /dev/sda15 rw
41 22 8:17 / /data rw,relatime shared:31 - ext4 /dev/sdb1 rw
42 22 253:1 / /srv rw,relatime shared:32 - ext4 /dev/mapper/rootvg-datalv rw
MI

base low-memory
meminfo low-memory 524288 180000

base ubuntu1404
osrelease ubuntu1404 4.4.0-142-generic
os_release ubuntu1404 ubuntu 14.04 "Ubuntu 14.04.6 LTS"
rm -rf ubuntu1404/sys/module/dm_crypt
mkdir -p ubuntu1404/lib/modules/4.4.0-142-generic/kernel/drivers/md
: >ubuntu1404/lib/modules/4.4.0-142-generic/kernel/drivers/md/dm-crypt.ko

# Debian without initramfs-tools' cryptsetup hook (cryptsetup-initramfs) and without grub-pc-bin.
base no-initramfs
rm -rf no-initramfs/usr/share/initramfs-tools/hooks no-initramfs/usr/lib/grub
printf 'Package: initramfs-tools\nStatus: install ok installed\n\n' >no-initramfs/var/lib/dpkg/status

# Debian with dracut in place of initramfs-tools (the two conflict), with its crypt module, and
# the same without dracut's network module (the package dracut-network).
base dracut
rm -rf dracut/usr/sbin/update-initramfs dracut/usr/share/initramfs-tools
mkdir -p dracut/usr/bin dracut/usr/lib/dracut/modules.d/90crypt dracut/usr/lib/dracut/modules.d/40network
: >dracut/usr/bin/dracut
: >dracut/usr/lib/dracut/modules.d/90crypt/module-setup.sh
: >dracut/usr/lib/dracut/modules.d/40network/module-setup.sh
printf 'Package: dracut\nStatus: install ok installed\n\n' >dracut/var/lib/dpkg/status
rm -rf dracut-no-net
cp -a dracut dracut-no-net
rm -rf dracut-no-net/usr/lib/dracut/modules.d/40network

# Ready for the OS volume: /boot on a partition of its own (sda2, ext4) and a TPM 2.0.
base os-ready
part os-ready sda sda2 8 2 512
udev os-ready 8 2 TYPE=ext4 UUID=33333333-3333-4333-8333-333333333333
sed -i 's|^40 22 8:15 / /boot/efi |39 22 8:2 / /boot rw,relatime shared:29 - ext4 /dev/sda2 rw\n40 39 8:15 / /boot/efi |' os-ready/proc/self/mountinfo
mkdir -p os-ready/sys/class/tpm/tpm0 os-ready/sys/class/tpmrm/tpmrm0
echo 2 >os-ready/sys/class/tpm/tpm0/tpm_version_major

# UEFI firmware, but the EFI system partition is not mounted; a TPM 1.2 (no resource manager,
# a kernel before 5.6 without tpm_version_major).
base uefi-no-esp
mkdir -p uefi-no-esp/sys/firmware/efi uefi-no-esp/usr/lib/grub/x86_64-efi uefi-no-esp/sys/class/tpm/tpm0
sed -i '/ \/boot\/efi /d' uefi-no-esp/proc/self/mountinfo

# /data3 + /data3/data4 and /mnt (the resource disk) + /mnt/data1.
base nested
disk nested sdd 8 48 10240; part nested sdd sdd1 8 49 10239
disk nested sde 8 64 10240; part nested sde sde1 8 65 10239
disk nested sdf 8 80 10240; part nested sdf sdf1 8 81 10239
rm -rf nested/sys/devices/block/sdc nested/sys/dev/block/8:32 nested/sys/class/block/sdc
mountinfo nested <<'MI'
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 8:15 / /boot/efi rw,relatime shared:30 - vfat /dev/sda15 rw
41 22 8:17 / /mnt rw,relatime shared:31 - ext4 /dev/sdb1 rw
43 41 8:49 / /mnt/data1 rw,relatime shared:33 - ext4 /dev/sdd1 rw
44 22 8:65 / /data3 rw,relatime shared:34 - ext4 /dev/sde1 rw
45 44 8:81 / /data3/data4 rw,relatime shared:35 - ext4 /dev/sdf1 rw
MI

# Processes in the way: mongod holding files on /data, resize2fs, dd writing onto sdc, apt-get.
base busy
proc busy 1234 mongod /usr/bin/mongod --dbpath /data/db
ln -sfn /data/db busy/proc/1234/cwd; ln -sfn / busy/proc/1234/root; ln -sfn /usr/bin/mongod busy/proc/1234/exe
ln -sfn /data/db/mongod.lock busy/proc/1234/fd/3; ln -sfn 'socket:[4711]' busy/proc/1234/fd/4
echo '7f1c2c000000-7f1c2c021000 rw-s 00000000 08:11 12    /data/db/collection-0.wt' >busy/proc/1234/maps
proc busy 2222 resize2fs resize2fs /dev/sdb1
proc busy 3333 dd dd if=/dev/zero of=/dev/sdc bs=1M
proc busy 3334 dd dd if=/dev/sdc of=/tmp/backup.img
proc busy 4444 apt-get apt-get -y upgrade

# /data on xfs, and sdc read-only.
base xfs-readonly
sed -i 's| /data rw,relatime shared:31 - ext4 | /data rw,relatime shared:31 - xfs |' xfs-readonly/proc/self/mountinfo
udev xfs-readonly 8 17 TYPE=xfs
echo 1 >xfs-readonly/sys/devices/block/sdc/ro

# The agent's holders of /data (tests/unit/test-units.c): each process holds a file on /data and
# runs in a different kind of cgroup (v2 unless noted).
# cgroup ROOT PID TEXT: /proc/PID/cgroup
cgroup() { printf '%b' "$3" >"$1/proc/$2/cgroup"; }
base holders
for p in 812:postgres 813:postgres 90:bash 1500:mysqld 1400:dockerd 700:nginx 2000:qemu-system-x86 \
	2100:app 2200:systemd-journal 2300:kubelet-pod 2400:vmcrypt 3000:orphan; do
	proc holders "${p%%:*}" "${p#*:}"; ln -sfn / "holders/proc/${p%%:*}/root"
done
ln -sfn /data/pg holders/proc/812/cwd; ln -sfn /data/pg/base/1/1259 holders/proc/812/fd/5
ln -sfn /data/pg/pg_wal/0001 holders/proc/813/fd/9
ln -sfn /data/home/alice holders/proc/90/cwd
ln -sfn /data/docker/volumes/db/_data/ibdata1 holders/proc/1500/fd/12
ln -sfn /data/docker/containerd.log holders/proc/1400/fd/3
ln -sfn /data/www holders/proc/700/cwd
ln -sfn /data/vm/disk.qcow2 holders/proc/2000/fd/20
ln -sfn /data/app/state holders/proc/2100/fd/4
ln -sfn /data/log/journal/system.journal holders/proc/2200/fd/30
ln -sfn /data/k8s/etcd holders/proc/2300/cwd
ln -sfn /data/vmcrypt-test holders/proc/2400/fd/6
ln -sfn /data/lost holders/proc/3000/fd/3
ln -sfn /var/log/syslog holders/proc/90/fd/1
cgroup holders 812 '0::/system.slice/system-postgresql.slice/postgresql@15-main.service\n'
cgroup holders 813 '0::/system.slice/system-postgresql.slice/postgresql@15-main.service\n'
cgroup holders 90 '0::/user.slice/user-1000.slice/session-3.scope\n'
cgroup holders 1500 '0::/system.slice/docker-3f2a1b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7081.scope\n'
cgroup holders 1400 '0::/system.slice/docker.service\n'
# cgroup v1 (Debian 10, CentOS 7): the unit comes from the name=systemd hierarchy.
cgroup holders 700 '12:pids:/system.slice/nginx.service\n11:memory:/system.slice/nginx.service\n2:cpu,cpuacct:/system.slice/nginx.service\n1:name=systemd:/system.slice/nginx.service\n'
cgroup holders 2000 '0::/machine.slice/machine-qemu\\x2d1\\x2dvm1.scope/libvirt/emulator\n'
cgroup holders 2100 '0::/app.slice/app.service/worker\n'
cgroup holders 2200 '0::/system.slice/systemd-journald.service\n'
cgroup holders 2300 '0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-ab12.scope\n'
cgroup holders 2400 '0::/system.slice/vmcrypt-agent.service\n'
# 3000 has no cgroup file: a process of another cgroup namespace, or one that is exiting.
rm -f holders/proc/3000/cgroup

# The agent's data-volume selection (tests/unit/test-select.c): mounted data volumes (two whose
# names collide, one whose name ends in -recovery, one already open as vmcrypt-db), a snap's
# squashfs loop, swap, an fstab entry for an unmounted disk found by its label, and the
# /dev/disk/by-* links udev would make.
# link ROOT DIR NAME DEV: ROOT/dev/disk/DIR/NAME -> ../../DEV
link() { mkdir -p "$1/dev/disk/$2"; ln -sfn "../../$4" "$1/dev/disk/$2/$3"; }
base agent
disk agent sdd 8 48 10240; part agent sdd sdd1 8 49 10239
disk agent sde 8 64 20480
disk agent sdg 8 96 2048
disk agent sdh 8 112 10240; part agent sdh sdh1 8 113 10239
disk agent sdi 8 128 1024; part agent sdi sdi1 8 129 1023
disk agent sdj 8 144 1024; part agent sdj sdj1 8 145 1023
disk agent loop0 7 0 64
dm agent dm-0 0 10223 CRYPT-LUKS2-8888888888884888888888888888888-vmcrypt-db vmcrypt-db sdh1
udev agent 8 49 TYPE=xfs UUID=44444444-4444-4444-8444-444444444444
udev agent 8 64 TYPE=ext4 UUID=55555555-5555-4555-8555-555555555555 LABEL=backup
udev agent 8 96 TYPE=swap
udev agent 8 113 TYPE=crypto_LUKS UUID=88888888-8888-4888-8888-888888888888
udev agent 253 0 TYPE=ext4 UUID=99999999-9999-4999-8999-999999999999
udev agent 8 129 TYPE=ext4
udev agent 8 145 TYPE=ext4
udev agent 7 0 TYPE=squashfs
echo 1 >agent/sys/devices/block/loop0/ro
link agent by-uuid 11111111-1111-4111-8111-111111111111 sda1
link agent by-uuid 22222222-2222-4222-8222-222222222222 sdb1
link agent by-uuid 7A3F-1C2D sda15
link agent by-uuid 44444444-4444-4444-8444-444444444444 sdd1
link agent by-uuid 55555555-5555-4555-8555-555555555555 sde
link agent by-label backup sde
link agent by-uuid 88888888-8888-4888-8888-888888888888 sdh1
link agent by-id virtio-swap sdg
printf '/dev/sdg                                partition\t2097148\t\t0\t\t-2\n' >>agent/proc/swaps
cat >>agent/proc/self/mountinfo <<'MI'
42 22 8:49 / /srv/www rw,relatime shared:32 - xfs /dev/sdd1 rw,attr2,inode64
43 22 8:129 / /srv-www rw,relatime shared:33 - ext4 /dev/sdi1 rw
44 22 8:145 / /data-recovery rw,relatime shared:34 - ext4 /dev/sdj1 rw
45 22 253:0 / /var/lib/db rw,noatime shared:35 - ext4 /dev/mapper/vmcrypt-db rw
46 22 7:0 / /snap/core/123 ro,nodev,relatime shared:36 - squashfs /dev/loop0 ro
47 22 8:17 /www /mnt/www-bind rw,relatime shared:31 - ext4 /dev/sdb1 rw
MI
mkdir -p agent/etc
cat >agent/etc/fstab <<'FSTAB'
# /etc/fstab of the agent's selection fixture
UUID=11111111-1111-4111-8111-111111111111 / ext4 errors=remount-ro 0 1
UUID=7A3F-1C2D /boot/efi vfat umask=0077 0 1
UUID=22222222-2222-4222-8222-222222222222 /data ext4 defaults 0 2
/dev/sdd1 /srv/www xfs defaults,noatime 0 0
LABEL=backup /backup ext4 defaults,nofail 0 2
UUID=00000000-0000-4000-8000-000000000000 /gone ext4 defaults,nofail 0 2
#vmcrypt-orig: UUID=99999999-9999-4999-8999-999999999999 /var/lib/db ext4 defaults 0 2
/dev/mapper/vmcrypt-db /var/lib/db ext4 defaults,nofail,_netdev 0 2
/dev/mapper/vmcrypt-old /old ext4 defaults,nofail,_netdev 0 2
/dev/disk/by-id/virtio-swap none swap sw 0 0
tmpfs /tmp tmpfs defaults 0 0
/data/www /mnt/www-bind none bind 0 0
nas:/export /mnt/nas nfs4 _netdev 0 0
FSTAB

# A virtio NIC (ens3) and a bridge with no device (docker0), for the initramfs-network check
# (the static-net tree is maintained by hand).
for r in healthy os-ready dracut dracut-no-net; do
	mkdir -p "$r/sys/class/net/ens3/device" "$r/sys/class/net/docker0"
	printf 'DRIVER=virtio_net\nMODALIAS=virtio:d00000001v00001AF4\n' >"$r/sys/class/net/ens3/device/uevent"
	printf 'INTERFACE=docker0\nIFINDEX=3\n' >"$r/sys/class/net/docker0/uevent"
done

# git keeps no empty directory: record them for tests/run to recreate.
find . -type d -empty | sort >empty-dirs.txt
