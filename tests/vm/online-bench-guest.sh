# The guest half of bench/online: runs in the Debian guest as /run/job/run.sh (POSIX sh, root,
# from vmcrypt-test.service). The job disk also holds ca.pem, enroll.token and `writer` (the
# script writer@.service runs). Two identical 1 GiB ext4 volumes (different UUIDs): /data in
# fstab, converted by the agent; virtio-manual, mounted here at /manual and converted by hand with
# cryptsetup afterwards, one after the other, each with its writer running. The markers and
# helpers are tests/vm/guest-lib.sh's, copied onto the job disk.
. /run/job/guest-lib.sh
server=https://10.0.2.100:8443
manual_dev=/dev/disk/by-id/virtio-manual
# The writer's own file is not one of the host's.
wsums() { sums "$1" "$2" writer.log; }
# writer_report NAME: its lines are consecutive (none lost); the longest pause between two lines.
writer_report() {
	[ -s "/$1/writer.log" ] || { fail "/$1/writer.log exists"; return 0; }
	r=$(awk 'NR == 1 { p = $1; t = $2; next }
		$1 != p + 1 { bad++ }
		{ g = $2 - t; if (g > max) max = g; p = $1; t = $2 }
		END { printf "%d %d %d", NR, bad, max / 1e6 }' "/$1/writer.log")
	set -- "$1" $r
	if [ "$2" -gt 20 ] && [ "$3" = 0 ]; then
		ok "/$1/writer.log: $2 lines, numbered consecutively across the cut-over (no line lost)"
	else
		fail "/$1/writer.log: $2 lines, $3 out of sequence"
		tail -n 20 "/$1/writer.log"
	fi
	result "${1}_writer_lines" "$2"
	result "${1}_writer_gap_ms" "$4"
}

mark "BOOT-ID $(cat /proc/sys/kernel/random/boot_id)"
cp /run/job/writer /run/writer
check "/data is mounted" until_true 120 mountpoint -q /data
systemctl start writer@data.service
check "writer@data.service is active" until_true 30 unit_active writer@data.service
check "vmcrypt enroll" vmcrypt enroll --server "$server" --token-file /run/job/enroll.token --ca-file /run/job/ca.pem
# Only /data is the agent's; the writer is stopped and started again for the cut-over.
printf 'StopUnits=auto\nPollInterval=2\nInclude=/data\nExclude=/manual\n' >>/etc/vmcrypt/agent.conf
systemctl restart vmcrypt-agent.service
check "vmcrypt-agent.service runs after enrollment" until_true 20 unit_active vmcrypt-agent.service
sleep 5
# The end of the agent's background reencryption, seen from here (polled every 0.2 s).
(until one_crypt_segment vmcrypt-data; do sleep 0.2; done; now >/run/agent.done) &
result agent_enable_ns "$(now)"
if wait_host encrypted; then
	check "the agent's reencryption ended (one crypt segment)" until_true 300 test -s /run/agent.done
	check "/data is mounted from /dev/mapper/vmcrypt-data" mounted_from /data /dev/mapper/vmcrypt-data
	check "writer@data.service is active after the conversion" unit_active writer@data.service
	stop_ns=$(head -n 1 /run/writer-data.stopped 2>/dev/null)
	start_ns=$(sed -n 2p /run/writer-data.started 2>/dev/null)
	done_ns=$(cat /run/agent.done 2>/dev/null)
	if [ -n "$stop_ns" ] && [ -n "$start_ns" ] && [ -n "$done_ns" ]; then
		ok "the agent stopped and started writer@data.service for the cut-over"
		result agent_writer_stopped_ms "$(ms "$stop_ns" "$start_ns")"
		result agent_total_ms "$(ms "$stop_ns" "$done_ns")"
	else
		fail "the agent stopped and started writer@data.service (stopped: ${stop_ns:-never}, started again: ${start_ns:-never})"
	fi
	sleep 2
	systemctl stop writer@data.service
	writer_report data
	wsums data /data
fi

# The same by hand on the copy, with its own writer, after the agent is done.
mkdir -p /manual
check "mount $manual_dev /manual" mount "$manual_dev" /manual
systemctl start writer@manual.service
check "writer@manual.service is active" until_true 30 unit_active writer@manual.service
(umask 077 && head -c 64 /dev/urandom >/run/manual.key)
sleep 5
cd /run # cryptsetup reencrypt --encrypt writes its temporary header into the current directory
# The results go to a file: check captures the command's output.
manual() {
	t_stop=$(now)
	systemctl stop writer@manual.service || return 1
	t0=$(now)
	umount /manual || return 1
	t1=$(now)
	e2fsck -f -y "$manual_dev" || [ $? -le 1 ] || return 1
	bytes=$(blockdev --getsize64 "$manual_dev") || return 1
	# -f: resize2fs's minimum-size estimate refuses this 80%-full volume (it asks for all of
	# it); vmcrypt forces too, with its own room check (src/shared/volume/extfs.c).
	resize2fs -f "$manual_dev" "$(((bytes - 33554432) / 1024))K" || return 1
	t2=$(now)
	cryptsetup reencrypt --encrypt --type luks2 --init-only --reduce-device-size 32M --sector-size 4096 \
		--pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file /run/manual.key --batch-mode \
		"$manual_dev" manual || return 1
	t3=$(now)
	mount /dev/mapper/manual /manual || return 1
	t4=$(now)
	systemctl start writer@manual.service || return 1
	t5=$(now)
	cryptsetup reencrypt --resume-only --active-name manual --key-file /run/manual.key --batch-mode || return 1
	t6=$(now)
	{
		result cs_downtime_ms "$(ms "$t0" "$t4")"
		result cs_umount_ms "$(ms "$t0" "$t1")"
		result cs_shrink_ms "$(ms "$t1" "$t2")"
		result cs_init_ms "$(ms "$t2" "$t3")"
		result cs_mount_ms "$(ms "$t3" "$t4")"
		result cs_writer_stopped_ms "$(ms "$t_stop" "$t5")"
		result cs_resume_ms "$(ms "$t5" "$t6")"
		result cs_total_ms "$(ms "$t_stop" "$t6")"
	} >/run/manual.results
}
check "by hand: e2fsck, resize2fs, cryptsetup reencrypt --init-only, mount, --resume-only" manual
cat /run/manual.results 2>/dev/null
check "/manual is mounted from /dev/mapper/manual" mounted_from /manual /dev/mapper/manual
check "manual: one crypt segment (reencryption done)" one_crypt_segment manual
sleep 2
systemctl stop writer@manual.service
writer_report manual
wsums manual /manual
