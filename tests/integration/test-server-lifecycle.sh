#!/bin/bash
# Lifecycle rules the server enforces (volume type may only stay or grow through enable; no
# extension removal while encryption is enabled or reported; no disable after removal) and drift
# between settings and the VM's last report, including stale and never-reported VMs.
. "$(dirname "$0")/server-lib.sh"

check "start (stale after 5 s)" start_server --stale-after 5
check "VM app1" new_vm app1
show() { admin vm encryption show --vm app1; }
drift() { show | sed -n 's/^Drift *: //p'; }

check_contains "never reported" "never reported" "$(drift)"
check_contains "never reported: LastReport never" "LastReport                 : never" "$(show)"

admin vm encryption enable --vm app1 --volume-type OS >/dev/null
check_contains "enable OS" "VolumeType                 : OS" "$(show)"
admin vm encryption enable --vm app1 --volume-type Data >/dev/null 2>"$WORK/err"
check_eq "OS -> Data is a shrink: exit 4" 4 "$?"
err=$(cat "$WORK/err")
check_contains "shrink: HTTP 409" "HTTP 409" "$err"
check_contains "shrink: names the VM" "VM 'app1'" "$err"
check_contains "shrink: explains the rule" "may only stay OS or grow to All" "$err"
check_contains "shrink: next command" "vmcrypt-admin vm encryption enable --vm app1 --volume-type All" "$err"
check "OS -> OS (stay)" admin vm encryption enable --vm app1 --volume-type OS
check "OS -> All (grow)" admin vm encryption enable --vm app1 --volume-type All
admin vm encryption enable --vm app1 --volume-type OS >/dev/null 2>"$WORK/err"
check_eq "All -> OS refused" 4 "$?"
check_contains "All -> OS: disable names the part to drop" "--volume-type Data" "$(cat "$WORK/err")"
check_contains "sequence grows with every change" "SequenceVersion            : 3" "$(show)"

# Drift.
report app1 Encrypted Encrypted 3 "Encryption succeeded for all volumes"
check_eq "no drift when the report matches" none "$(drift)"
report app1 Encrypted NotEncrypted 3 "decrypted by hand"
d=$(drift)
check_contains "drift: data decrypted by hand" "VM reported" "$d"
check_contains "drift: the settings value" "enabled for All" "$d"
check_contains "drift: the reported value" "DataVolumesEncrypted=NotEncrypted" "$d"
check "drift: the report time" grep -Eq 'at [0-9]{4}-[0-9]{2}-[0-9]{2}T' <<<"$d"
check_contains "drift in --json" '"state": "drift"' "$(admin vm encryption show --vm app1 --json)"
report app1 Encrypted NotEncrypted 2 "old sequence"
check_contains "older sequence: pending, not drift" "pending" "$(drift)"
report app1 EncryptionInProgress NotMounted 3 "OS disk encryption started"
check_eq "in progress and no data mounted: no drift" none "$(drift)"
sleep 6
check_contains "stale after --stale-after" "stale: no report since" "$(drift)"
report app1 Encrypted Encrypted 3
check_eq "fresh report: not stale" none "$(drift)"

# Extension removal and disable.
admin vm extension remove --vm app1 >/dev/null 2>"$WORK/err"
check_eq "remove while enabled: exit 4" 4 "$?"
err=$(cat "$WORK/err")
check_contains "remove while enabled: 409" "HTTP 409" "$err"
check_contains "remove while enabled: disable first" "disable it first: vmcrypt-admin vm encryption disable --vm app1 --volume-type All" "$err"
admin vm encryption disable --vm app1 --volume-type Data >/dev/null
check_contains "disable Data leaves OS" "VolumeType                 : OS" "$(show)"
admin vm encryption disable --vm app1 --volume-type Data >/dev/null 2>"$WORK/err"
check_contains "disable Data twice: not enabled" "not enabled for Data volumes of VM 'app1'" "$(cat "$WORK/err")"
admin vm encryption disable --vm app1 --volume-type All >/dev/null
check_contains "disable All" "EncryptionOperation        : DisableEncryption" "$(show)"
report app1 Encrypted Encrypted 5
check_contains "still encrypted after disable: drift" "VM reported" "$(drift)"
admin vm extension remove --vm app1 >/dev/null 2>"$WORK/err"
check_eq "remove while the VM reports encrypted volumes: exit 4" 4 "$?"
err=$(cat "$WORK/err")
check_contains "remove while reported encrypted: names values" "OsVolumeEncrypted=Encrypted" "$err"
check_contains "remove while reported encrypted: next command" "then run: vmcrypt-admin vm extension remove --vm app1" "$err"
admin vm delete app1 >/dev/null 2>"$WORK/err"
check_eq "delete while reported encrypted: refused" 4 "$?"
report app1 DecryptionInProgress NotEncrypted 5
admin vm extension remove --vm app1 >/dev/null 2>&1
check_eq "remove while decrypting: refused" 4 "$?"
report app1 NotEncrypted NotEncrypted 5 "Decryption succeeded"
check_eq "decrypted: no drift" none "$(drift)"
check "remove after decryption" admin vm extension remove --vm app1
check_contains "extension shown removed" "Extension                  : removed" "$(show)"
api GET /v1/vm/goal "$WORK/app1.hdr"
check_contains "goal tells the VM the extension is gone" '"extension":"removed"' "$BODY"
admin vm encryption disable --vm app1 --volume-type All >/dev/null 2>"$WORK/err"
check_eq "disable after remove: exit 4" 4 "$?"
check_contains "disable after remove: the extension is gone" "extension of VM 'app1' was removed" "$(cat "$WORK/err")"
admin vm extension remove --vm app1 >/dev/null 2>"$WORK/err"
check_contains "remove twice" "already removed" "$(cat "$WORK/err")"
check "enable again reinstalls" admin vm encryption enable --vm app1 --volume-type Data
check_contains "extension installed again" "Extension                  : installed" "$(show)"
check_contains "lifecycle changes are audited" "extension.remove" "$(admin audit --vm app1)"
stop_server TERM
check_eq "clean stop" 0 "$SERVER_RC"
finish
