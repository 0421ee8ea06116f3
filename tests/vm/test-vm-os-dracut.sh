#!/bin/bash
# The OS volume end to end with dracut in place of initramfs-tools (issue 10, docs/os-volume.md):
# tests/vm/test-vm-os.sh on os-disk's split-dracut disk (Debian 12 with dracut, dracut-network and
# vmcrypt's dracut module): enable → VMRestartPending → the encrypting reboot, through OVMF, opens
# / from the vault in dracut's initramfs (root=/dev/mapper/vmcrypt-os and rd.neednet=1 from
# the agent) → Encrypted, every file intact → the vault down: systemd's password agent asks on
# the console, the passphrase typed → decrypted online → a plain boot.
export VMCRYPT_OS_LAYOUT=split-dracut
exec "$(dirname "$0")/test-vm-os.sh" "$@"
