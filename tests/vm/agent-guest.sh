# The guest half of tests/vm/test-vm-agent.sh: runs in the Debian guest as /run/job/run.sh (POSIX
# sh, root, from vmcrypt-test.service). The job disk also holds `phase` (boot1 ... boot4),
# `mode` (harness, enroll, full, refused), ca.pem, enroll.token, the flag `plugin` (the token
# plugin is installed) and guest-lib.sh (the markers and helpers, described there).
. /run/job/guest-lib.sh
phase=$(cat /run/job/phase)
mode=$(cat /run/job/mode)
server=https://10.0.2.100:8443

no_vmcrypt_crypttab() { ! grep -v '^[[:space:]]*#' /etc/crypttab 2>/dev/null | grep -q vmcrypt; }
not_open() { [ ! -e "/dev/mapper/$1" ]; }
# not_in_journal UNIT REGEX: this boot's journal of UNIT has no line matching REGEX.
not_in_journal() { ! journalctl -b --no-pager -u "$1" | grep -E "$2"; }
# mounted_while_prompting MOUNTPOINT NAME: waits (90 s) until MOUNTPOINT is mounted from the
# mapping NAME, then proves that the agent did not wait for systemd's prompt to time out:
# systemd-cryptsetup@NAME was still waiting for its passphrase then (activating). A volume whose
# conversion had finished before the cut opens through the plugin instead (active, its journal
# without the reencryption refusal).
mounted_while_prompting() {
	until_true 90 mounted_from "$1" "/dev/mapper/$2" || { echo "$1 not mounted from /dev/mapper/$2"; return 1; }
	u="systemd-cryptsetup@$(echo "$2" | sed 's/-/\\x2d/g').service"
	s=$(systemctl is-active "$u")
	echo "mounted at uptime $(cut -d' ' -f1 /proc/uptime) s; $u: $s"
	journalctl -b --no-pager -u "$u" | tail -n 5
	[ "$s" = activating ] && return 0
	[ "$s" = active ] && not_in_journal "$u" 'marked for LUKS2 reencryption|already active'
}
show_state() {
	echo "--- lsblk"; lsblk -o NAME,SIZE,TYPE,FSTYPE,MOUNTPOINT
	echo "--- dmsetup table"; dmsetup table 2>&1
	echo "--- /etc/crypttab"; cat /etc/crypttab 2>&1
	echo "--- /etc/fstab"; cat /etc/fstab
	echo "--- systemd-cryptsetup units"
	systemctl status --no-pager --lines=5 'systemd-cryptsetup@vmcrypt\x2ddata.service' \
		'systemd-cryptsetup@vmcrypt\x2dsrv.service' 2>&1
	echo "--- vmcrypt-agent"; systemctl status --no-pager --lines=15 vmcrypt-agent.service 2>&1
	echo "--- journal of systemd-cryptsetup@"; journalctl -b --no-pager -o short-monotonic -u 'systemd-cryptsetup@*' 2>&1 | tail -n 30
}
# Independent of the agent: a LUKS2 volume made by hand on the small disk "plug", its key stored
# in the vault with this VM's credential, a vmcrypt token and a crypttab line with the agent's
# options, so the next boot proves systemd-cryptsetup + the token plugin. The mapping is
# "plugtest", without the agent's x-vmcrypt tag and vmcrypt- prefix: a foreign line to the agent.
plug_setup() {
	dev=/dev/disk/by-id/virtio-plug
	(umask 077 && head -c 64 /dev/urandom >/run/plug.key &&
		printf 'Authorization: Bearer %s\n' "$(head -n 1 /etc/vmcrypt/credential)" >/run/auth.hdr &&
		printf '{"value":"%s"}' "$(base64 -w 0 /run/plug.key)" >/run/plug.json)
	cryptsetup luksFormat -q --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
		--key-file /run/plug.key "$dev" || return 1
	code=$(curl -sS -o /dev/null -w '%{http_code}' --cacert /run/job/ca.pem -H @/run/auth.hdr \
		-H 'Content-Type: application/json' -X PUT --data-binary @/run/plug.json "$server/v1/vm/secrets/plug")
	rm -f /run/plug.key /run/plug.json /run/auth.hdr
	[ "$code" = 201 ] || { echo "PUT /v1/vm/secrets/plug: $code"; return 1; }
	printf '{"type":"vmcrypt","keyslots":["0"],"server":"%s","vm":"vm1","volume":"plug","version":1}' \
		"$server" >/run/token.json
	cryptsetup token import --json-file /run/token.json "$dev" || return 1
	cryptsetup luksDump "$dev" | sed -n '/^Tokens:/,/^Digests:/p'
	echo "plugtest $dev none luks,_netdev,nofail,token-timeout=15,timeout=60" >>/etc/crypttab
	# systemd 252 orders a _netdev crypttab unit after remote-fs-pre.target only, not after
	# network-online.target: it runs before DHCP and the plugin cannot reach the vault. The
	# agent gives each of its volumes a drop-in that orders it after the network
	# (docs/agent.md); this hand-made volume gets the same one.
	dropin='/etc/systemd/system/systemd-cryptsetup@plugtest.service.d'
	mkdir -p "$dropin"
	printf '[Unit]\nWants=network-online.target\nAfter=network-online.target\nBefore=vmcrypt-agent.service\n' >"$dropin/50-vmcrypt-network.conf"
	sync
}
mark "BOOT-ID $(cat /proc/sys/kernel/random/boot_id)"
mark "UPTIME $(cut -d' ' -f1 /proc/uptime)"

# The data volumes as a VM has them: mounted at boot from fstab, the holder running.
local_checks() {
	check "/data is mounted" until_true 60 mountpoint -q /data
	check "/srv is mounted" until_true 60 mountpoint -q /srv
	check "holder.service (holds /data/held.log) is active" until_true 30 unit_active holder.service
}

case $phase in
boot1)
	local_checks
	code=$(curl -sS -m 30 -o /dev/null -w '%{http_code}' --cacert /run/job/ca.pem "$server/v1/vm/goal" 2>&1)
	if [ "$code" = 401 ]; then
		ok "vmcryptd reached through guestfwd, TLS verified (GET /v1/vm/goal without credential: 401)"
	else
		fail "vmcryptd reached through guestfwd (GET /v1/vm/goal: $code)"
	fi
	if curl -sS -m 5 -o /dev/null http://10.0.2.2/ 2>/dev/null; then
		fail "restrict=on: the host 10.0.2.2 answers"
	else
		ok "restrict=on: nothing but the guestfwd address answers (10.0.2.2 does not)"
	fi
	sums data /data held.log
	sums srv /srv held.log
	if [ "$mode" != harness ]; then
		check "vmcrypt enroll" vmcrypt enroll --server "$server" --token-file /run/job/enroll.token \
			--ca-file /run/job/ca.pem
		check "the credential is 0600" test "$(stat -c %a /etc/vmcrypt/credential 2>&1)" = 600
		check "agent.conf names the server" grep -qx "Server=$server" /etc/vmcrypt/agent.conf
		# The holder must be stopped for the cut-over; a short poll picks up the goal soon.
		grep -q '^StopUnits=' /etc/vmcrypt/agent.conf || echo 'StopUnits=auto' >>/etc/vmcrypt/agent.conf
		grep -q '^PollInterval=' /etc/vmcrypt/agent.conf || echo 'PollInterval=5' >>/etc/vmcrypt/agent.conf
		# A report every second while converting, so the host sees the conversion mid-way and
		# can cut the power there.
		grep -q '^ProgressInterval=' /etc/vmcrypt/agent.conf || echo 'ProgressInterval=1' >>/etc/vmcrypt/agent.conf
	fi
	if [ "$mode" != harness ] && [ -f /run/job/plugin ]; then
		check "a LUKS2 volume with a vmcrypt token, its key in the vault, in crypttab" plug_setup
	fi
	if [ "$mode" = full ]; then
		systemctl restart vmcrypt-agent.service
		check "vmcrypt-agent.service runs after enrollment" until_true 20 unit_active vmcrypt-agent.service
	fi
	# The host enables encryption and cuts the power mid-conversion (or at once in harness mode).
	mark "WAIT power-cut"
	sleep infinity
	;;
boot2)
	if [ "$mode" = full ]; then
		# Cut in the middle of the conversion: libcryptsetup 2.6.1 refuses systemd-cryptsetup's
		# token path for a volume marked for reencryption, and systemd asks for a passphrase
		# until timeout=60. The agent, not ordered after it while a conversion is in flight,
		# opens and mounts the volume with the vault's key in the meantime.
		check "after the power cut the agent opened and mounted /data while systemd-cryptsetup still waited for a passphrase" \
			mounted_while_prompting /data vmcrypt-data
		check "the same for /srv" mounted_while_prompting /srv vmcrypt-srv
	fi
	local_checks
	if [ "$mode" = full ]; then
		check "/data is mounted from /dev/mapper/vmcrypt-data" mounted_from /data /dev/mapper/vmcrypt-data
		check "/srv is mounted from /dev/mapper/vmcrypt-srv" mounted_from /srv /dev/mapper/vmcrypt-srv
		check "crypttab lines are nofail" sh -c 'grep "^vmcrypt-" /etc/crypttab | grep -q nofail'
		check "vmcrypt-agent.service runs" unit_active vmcrypt-agent.service
		show_state
		if wait_host encrypted; then
			check "vmcrypt-data: one crypt segment (reencryption done)" until_true 60 one_crypt_segment vmcrypt-data
			check "vmcrypt-srv: one crypt segment (reencryption done)" until_true 60 one_crypt_segment vmcrypt-srv
			check "holder.service active after the conversion" unit_active holder.service
			check "encrypted: the cryptsetup units are ordered before the agent again" \
				grep -q "^Before=vmcrypt-agent.service" '/etc/systemd/system/systemd-cryptsetup@vmcrypt\x2ddata.service.d/50-vmcrypt-network.conf'
		fi
	fi
	if [ "$mode" != harness ] && [ -f /run/job/plugin ]; then
		u='systemd-cryptsetup@plugtest.service'
		check "at boot, $u opened the volume through the token plugin" until_true 90 unit_active "$u"
		echo "--- $u"
		systemctl show -p After -p Wants "$u"
		systemctl status --no-pager --lines=10 "$u" 2>&1
		journalctl -b --no-pager -o short-monotonic -u "$u" 2>&1 | tail -n 30
		# Now that the network is up: the same unit, started again, must open it with the plugin.
		unit_active "$u" || systemctl restart "$u"
		check "$u (started once the network is up) opens it through the token plugin" unit_active "$u"
		check "/dev/mapper/plugtest is a dm-crypt mapping" sh -c 'dmsetup table plugtest | grep -q " crypt "'
		dmsetup table 2>&1
		lsblk -o NAME,SIZE,TYPE,FSTYPE,MOUNTPOINT
	fi
	sums data /data held.log
	sums srv /srv held.log
	mark "HELD-BEGIN"
	cat /data/held.log
	mark "HELD-END"
	;;
boot3)
	local_checks
	for v in data srv; do
		u="systemd-cryptsetup@vmcrypt\\x2d$v.service"
		check "at boot, $u opened vmcrypt-$v through the token plugin" until_true 60 unit_active "$u"
		check "$u did not ask for a passphrase" not_in_journal "$u" 'Timer expired|Failed to query password'
		check "the agent did not open vmcrypt-$v (systemd did)" not_in_journal vmcrypt-agent.service "opened /dev/mapper/vmcrypt-$v"
		check "/$v is mounted from /dev/mapper/vmcrypt-$v" mounted_from "/$v" "/dev/mapper/vmcrypt-$v"
	done
	check "holder.service is active" until_true 30 unit_active holder.service
	show_state
	sums data /data held.log
	sums srv /srv held.log
	;;
boot4)
	check "the guest boots with vmcryptd down" true
	# Our unit is not ordered after the nofail volumes: by now the plugin may still be waiting.
	check "vmcrypt-data is not open while the vault is down" not_open vmcrypt-data
	check "/data is not mounted while the vault is down" sh -c '! mountpoint -q /data'
	show_state
	if wait_host vault-up; then
		check "/data opens and mounts once the vault is back" \
			until_true 240 mounted_from /data /dev/mapper/vmcrypt-data
		check "/srv opens and mounts once the vault is back" \
			until_true 120 mounted_from /srv /dev/mapper/vmcrypt-srv
		sums data /data held.log
		sums srv /srv held.log
		show_state
	fi
	if wait_host decrypted; then
		check "/data is mounted from the plain device again" until_true 60 mounted_from /data /dev/vdb
		check "/srv is mounted from the plain device again" until_true 60 mounted_from /srv /dev/vdc
		check "crypttab has no vmcrypt line" no_vmcrypt_crypttab
		check "fstab names no vmcrypt mapping" sh -c '! grep -v "^#" /etc/fstab | grep -q /dev/mapper/vmcrypt'
		check "fstab has the original /data line" grep -q "^UUID=[^ ]* /data ext4" /etc/fstab
		check "no vmcrypt mapping is left" sh -c '! dmsetup ls | grep -q vmcrypt'
		check "holder.service active after decryption" unit_active holder.service
		# Names of their own: the host reads each block by name, once.
		sums data-plain /data held.log
		sums srv-plain /srv held.log
		show_state
	fi
	;;
esac
