/* agent.conf (docs/agent.md) and the VM credential: what `vmcrypt enroll` writes and the agent,
 * `vmcrypt check` and the token plugin read. Parsing and writing only; no network. */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#include "shared/api/api.h"

#define AGENT_CONF_LIST_MAX 32    /* entries of StopUnits=, Include=, Exclude= */
#define AGENT_CONF_UNIT_MAX 256   /* bytes of one unit name, with the NUL */
#define AGENT_CONF_URL_MAX 512    /* Server=, Proxy= */
#define AGENT_CONF_FILE_MAX (64 * 1024)
#define AGENT_CONF_INTERVAL_MAX 86400 /* seconds: a day */
#define AGENT_CONF_NAME "agent.conf"
#define AGENT_CREDENTIAL_NAME "credential"
#define AGENT_CA_NAME "ca.pem"

/* Proxy= value that turns every proxy off, $https_proxy included. */
#define AGENT_CONF_PROXY_NONE "none"

/* SealCredential=: the copy of the VM credential the initramfs uses, on /boot (docs/os-volume.md). */
enum agent_seal {
	AGENT_SEAL_AUTO, /* sealed to the VM's TPM 2.0 when it has one, else a plain 0600 copy */
	AGENT_SEAL_YES,  /* sealed; the OS volume is refused on a VM without a TPM 2.0 */
	AGENT_SEAL_NO,   /* a plain 0600 copy even with a TPM */
	_AGENT_SEAL_MAX,
};

/* "auto", "yes", "no"; NULL out of range. */
const char *agent_seal_to_string(enum agent_seal s);

struct agent_conf {
	char server[AGENT_CONF_URL_MAX];       /* Server=: "https://host:port" (required) */
	char ca_file[PATH_MAX];                /* CAFile=: "" uses the system store */
	char proxy[AGENT_CONF_URL_MAX];        /* Proxy=: "" uses $https_proxy, "none" disables */
	char vm[API_NAME_MAX + 1];             /* VM=: the name from enrollment, "" when not said */
	unsigned poll_interval;                /* PollInterval= seconds (30) */
	unsigned report_interval;              /* ReportInterval= seconds (60) */
	unsigned progress_interval;            /* ProgressInterval= seconds (5) */
	bool stop_units_auto;                  /* StopUnits=auto */
	char stop_units[AGENT_CONF_LIST_MAX][AGENT_CONF_UNIT_MAX];
	size_t n_stop_units;
	char include[AGENT_CONF_LIST_MAX][PATH_MAX]; /* Include=: mount points or devices */
	size_t n_include;
	char exclude[AGENT_CONF_LIST_MAX][PATH_MAX]; /* Exclude= */
	size_t n_exclude;
	char crypttab[PATH_MAX];               /* Crypttab= (/etc/crypttab) */
	char fstab[PATH_MAX];                  /* Fstab= (/etc/fstab) */
	char unit_dir[PATH_MAX];               /* UnitDir= (/etc/systemd/system): the agent's
						* drop-ins for the volumes' cryptsetup units */
	bool online;                           /* Online=auto: true (default); Online=no: false */
	bool reboot_after_os_prepare;          /* RebootAfterOsPrepare=yes: the agent reboots the
						* VM once the OS volume is prepared (default no:
						* VMRestartPending until someone does) */
	enum agent_seal seal_credential;       /* SealCredential= (auto) */
};

/* Fills c with the defaults of docs/agent.md (Server= empty). */
void agent_conf_init(struct agent_conf *c);

/* The default path of agent.conf, the credential and the CA copy: path_conf_dir()/NAME into buf.
 * Returns buf, or NULL when it does not fit. */
char *agent_conf_path(const char *name, char *buf, size_t len);

/* Parses text (NUL-terminated) as agent.conf on top of what *c holds (call agent_conf_init()
 * first). origin names the file in messages. On failure writes "ORIGIN:LINE: reason" to err.
 * Returns 0 or -EINVAL (unknown key, bad value, line without '=', value too long, too many list
 * entries, Server= missing or not https://). */
int agent_conf_parse(const char *text, const char *origin, struct agent_conf *c, char *err, size_t errlen);

/* Reads and parses path (NULL: path_conf_dir()/agent.conf) into *ret, defaults first. *ret is set
 * only on success. Returns 0, -ENOENT (no file: the VM is not enrolled), -EFBIG (over
 * AGENT_CONF_FILE_MAX), -EINVAL (see agent_conf_parse), or another -errno; err says which file
 * and why. */
int agent_conf_load(const char *path, struct agent_conf *ret, char *err, size_t errlen);

/* The text agent_conf_write() writes: a comment header, then Server=, CAFile=, Proxy=, VM= always
 * and every other key that differs from its default. Returns a malloc'd string, or NULL (ENOMEM). */
char *agent_conf_format(const struct agent_conf *c);

/* Writes c to path (NULL: path_conf_dir()/agent.conf, creating the directory 0755) atomically
 * (temporary file, fsync, rename, fsync of the directory), mode 0644. Returns 0, -EINVAL (c would
 * not load back: Server= missing, a value with a newline or a list entry with a space) or -errno. */
int agent_conf_write(const char *path, const struct agent_conf *c);

/* Reads the VM credential from path (NULL: path_conf_dir()/credential) into secret memory,
 * NUL-terminated (*ret_size without the NUL), surrounding white space removed. Refuses a file
 * group or others may read or write (-EPERM: "chmod 0600 PATH"). err names the file, the reason
 * and the remedy. Returns 0, -ENOENT (not enrolled: run vmcrypt enroll), -EPERM, -EINVAL (not a
 * credential: empty, control characters, no "vmc-vm-" prefix), or what secret_read_file()
 * returns. */
int agent_credential_read(const char *path, void **ret, size_t *ret_size, char *err, size_t errlen);

/* Writes the credential to path (NULL: path_conf_dir()/credential, creating the directory 0755)
 * with mode 0600 from its first byte (an O_EXCL temporary file, fsync, rename, fsync of the
 * directory): no moment exists where another user could open it. Returns 0, -EINVAL (empty or
 * not a credential) or -errno. */
int agent_credential_write(const char *path, const void *cred, size_t n);
