# shellcheck shell=bash
# Sourced by the host halves of the Debian guest tests (tests/vm/test-vm-agent.sh,
# tests/vm/test-vm-os.sh), after tests/lib.sh: reading the guest's job console.
#   console            the job console $CONSOLE as the tests read it (\r and the firmware's or
#                      terminal's escapes before a marker cut off)
#   count_guest PHASE  the guest's ===VMCRYPT-OK/FAIL lines become this script's checks; on a
#                      FAIL the console's tail is shown
console() { tr -d '\r' <"$CONSOLE" | sed 's/^.*\(===VMCRYPT-\)/\1/'; }
count_guest() {
	local line
	while IFS= read -r line; do
		case $line in
		"===VMCRYPT-OK "*) ok "[$1] ${line#===VMCRYPT-OK }" ;;
		"===VMCRYPT-FAIL "*) not_ok "[$1] ${line#===VMCRYPT-FAIL }" ;;
		esac
	done < <(console | sed -n 's/===$//p' | grep -E '^===VMCRYPT-(OK|FAIL) ')
	if console | grep -q '^===VMCRYPT-FAIL '; then
		echo "# job console of $1 (tail):"; console | tail -n 80 | sed 's/^/    | /'
	fi
}
