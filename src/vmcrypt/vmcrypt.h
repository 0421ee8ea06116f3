/* The in-VM CLI: the verb functions that vmcrypt.c dispatches to, one file each. */
#pragma once

#include <stdbool.h>

/* Each verb gets argv with argv[0] = the verb name and returns a process exit status
 * (src/shared/exit-status.h). */
int verb_encrypt(int argc, char **argv);
int verb_decrypt(int argc, char **argv);
int verb_resume(int argc, char **argv);
int verb_status(int argc, char **argv);
int verb_check(int argc, char **argv);

/* `vmcrypt status` without a target: the VM-wide OsVolumeEncrypted/DataVolumesEncrypted view
 * (status-vm.c). */
int status_vm(bool json);
