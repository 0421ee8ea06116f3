/* Where vmcrypt keeps its state. Tests point these elsewhere through the environment; a process
 * in secure-execution mode (setuid, file capabilities: AT_SECURE) ignores the overrides. */
#pragma once

/* Persistent state: detached headers in flight, the operation journal. Default /var/lib/vmcrypt,
 * overridden by $VMCRYPT_STATE_DIR. */
const char *path_state_dir(void);

/* Configuration: agent.conf, the VM credential, the CA bundle. Default /etc/vmcrypt, overridden by
 * $VMCRYPT_CONF_DIR. */
const char *path_conf_dir(void);

/* Runtime state that must not survive a reboot: the VM operation lock. Default /run/vmcrypt,
 * overridden by $VMCRYPT_RUN_DIR. */
const char *path_run_dir(void);

/* Root under which /proc, /sys, /etc and /run are read by the prerequisite checks; "" (the real
 * root) unless the test-only $VMCRYPT_TEST_ROOT is set. */
const char *path_test_root(void);
