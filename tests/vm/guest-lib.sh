# Helpers for the guest halves of the Debian guest jobs (tests/vm/agent-guest.sh,
# tests/vm/online-bench-guest.sh): POSIX sh, sourced from /run/job/guest-lib.sh, which the host
# copies onto each job disk next to run.sh.
# The markers go to the job's serial port (ttyS1, the unit's stdout), which the host parses:
#   ===VMCRYPT-OK text===  ===VMCRYPT-FAIL text===                  one check each
#   ===VMCRYPT-RESULT key value===                                  a measurement
#   ===VMCRYPT-SUMS-BEGIN name=== ... ===VMCRYPT-SUMS-END name===    sha256sum lines
#   ===VMCRYPT-WAIT word===   then it reads lines from /dev/ttyS2 until one is `word`
# Anything else on the console is for people reading the log.

mark() { echo "===VMCRYPT-$*==="; }
ok() { mark "OK $*"; }
fail() { mark "FAIL $*"; }
result() { mark "RESULT $1 $2"; }
# check DESCRIPTION CMD...: one check; the command's output is shown indented when it fails.
check() {
	check_desc=$1
	shift
	if "$@" >/tmp/check.out 2>&1; then ok "$check_desc"; else fail "$check_desc"; sed 's/^/  | /' /tmp/check.out; fi
}
# wait_host WORD: the host answers on the control line (ttyS2) when it has done its part; the
# word `abort` gives up.
stty -F /dev/ttyS2 raw -echo 2>/dev/null
exec 3</dev/ttyS2
wait_host() {
	mark "WAIT $1"
	while read -r line <&3; do
		[ "$line" = "$1" ] && return 0
		[ "$line" = abort ] && return 1
	done
	return 1
}
# until_true SECONDS CMD...: retries CMD every second.
until_true() {
	n=$1
	shift
	while ! "$@" >/dev/null 2>&1; do
		n=$((n - 1))
		[ $n -gt 0 ] || return 1
		sleep 1
	done
}
# sums NAME DIR [SKIP]: every file's SHA-256 under DIR, sorted, without the file named SKIP (a
# file the job itself writes, not one of the host's) and lost+found.
sums() {
	mark "SUMS-BEGIN $1"
	(cd "$2" && find . -type f ! -name "${3:-.none}" ! -path './lost+found/*' -print0 | sort -z |
		xargs -0 -r sha256sum)
	mark "SUMS-END $1"
}
now() { date +%s%N; }
ms() { echo $((($2 - $1) / 1000000)); } # FROM_NS TO_NS
mounted_from() { [ "$(findmnt -n -o SOURCE "$1")" = "$2" ]; }
unit_active() { [ "$(systemctl is-active "$1")" = active ]; }
# one_crypt_segment NAME: the online reencryption is over when the mapping is one crypt target.
one_crypt_segment() {
	t=$(dmsetup table "$1") || return 1
	echo "$t"
	[ "$(echo "$t" | wc -l)" = 1 ] && echo "$t" | grep -q ' crypt '
}
# enroll_agent POLL PROGRESS: enrolls with the job's token and CA against the host's vmcryptd,
# sets the agent's PollInterval= and ProgressInterval= (unless set) and restarts it; two checks.
enroll_agent() {
	check "vmcrypt enroll" vmcrypt enroll --server https://10.0.2.100:8443 --token-file /run/job/enroll.token \
		--ca-file /run/job/ca.pem
	grep -q '^PollInterval=' /etc/vmcrypt/agent.conf || echo "PollInterval=$1" >>/etc/vmcrypt/agent.conf
	grep -q '^ProgressInterval=' /etc/vmcrypt/agent.conf || echo "ProgressInterval=$2" >>/etc/vmcrypt/agent.conf
	systemctl restart vmcrypt-agent.service
	check "vmcrypt-agent.service runs after enrollment" until_true 20 unit_active vmcrypt-agent.service
}
