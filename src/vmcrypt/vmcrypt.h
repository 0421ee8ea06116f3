/* The in-VM CLI: the verb functions that vmcrypt.c dispatches to, one file each. */
#pragma once

#include <stdbool.h>

/* Each verb gets argv with argv[0] = the verb name and returns a process exit status
 * (src/shared/exit-status.h, >= 0), or a negative errno, which main() turns into the
 * documented exit status once, through exit_status_from_errno(). */
int verb_status(int argc, char **argv);
int verb_check(int argc, char **argv);
int verb_agent(int argc, char **argv);
int verb_enroll(int argc, char **argv);
int verb_boot_unlock(int argc, char **argv);

/* VMCRYPT_VERSION, compiled into vmcrypt.c only (the Makefile rebuilds it when the version
 * changes). */
extern const char vmcrypt_version[];

/* `vmcrypt status` without a target: the VM-wide OsVolumeEncrypted/DataVolumesEncrypted view
 * (status-vm.c). */
int status_vm(bool json);

/* encrypt, decrypt and resume (convert-cli.c): argv[0] names which. */
int verb_convert(int argc, char **argv);
