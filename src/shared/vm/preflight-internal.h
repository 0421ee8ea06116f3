/* What the prerequisite checks share: the context they read and the builder they report into. */
#pragma once

#include <stdio.h>

#include "basic/macro.h"
#include "shared/luks/convert.h"
#include "shared/vm/preflight.h"
#include "shared/volume/volumes.h"

struct preflight_context {
	enum preflight_scope scope;
	const char *root;           /* path_test_root() */
	bool fixture;               /* reading a fixture tree: no stat(), statvfs() or probing */
	struct volume *volumes;
	size_t n_volumes;
	int volumes_error;          /* < 0 when discovery failed */
	const struct preflight_probes *probes; /* NULL: the vault and agent-version checks SKIP */
};

/* One check's result under construction. */
struct preflight_builder {
	enum preflight_status status;
	FILE *message, *remedy;
	char *message_buf, *remedy_buf;
	size_t message_len, remedy_len;
	json_t *volumes;
	json_t *details;
};

/* Raises the status (PASS < WARN < FAIL); SKIP is set directly. */
void pf_status(struct preflight_builder *b, enum preflight_status s);
/* Appends a sentence to the message or the remedy (separated by a space). */
void pf_say(struct preflight_builder *b, const char *fmt, ...) _printf_(2, 3);
void pf_remedy(struct preflight_builder *b, const char *fmt, ...) _printf_(2, 3);
/* Adds the volume to the result's volume list once. */
void pf_volume(struct preflight_builder *b, const struct volume *v);

/* True when the scope covers v (OS volume for OS, data volumes and candidates for Data). */
bool pf_in_scope(const struct preflight_context *c, const struct volume *v);

/* Reads root-relative path (e.g. "/proc/meminfo"), at most max bytes, from the tree under
 * path_test_root(). Keep max small for /proc/sys: the kernel allocates the read size there.
 * Returns 0 or -errno like read_full_file(). */
int pf_read_file(const struct preflight_context *c, const char *path, size_t max, char **ret);
#define PF_SMALL_FILE_MAX 65536
#define PF_DPKG_STATUS_MAX (32 * 1024 * 1024)
/* True when root-relative path exists. */
bool pf_exists(const struct preflight_context *c, const char *path);

/* The checks, one function each (preflight-checks.c). */
void pf_check_open_files(struct preflight_context *c, struct preflight_builder *b);
void pf_check_concurrent_operation(struct preflight_context *c, struct preflight_builder *b);
void pf_check_selinux(struct preflight_context *c, struct preflight_builder *b);
void pf_check_lvm(struct preflight_context *c, struct preflight_builder *b);
void pf_check_memory(struct preflight_context *c, struct preflight_builder *b);
void pf_check_nested_mounts(struct preflight_context *c, struct preflight_builder *b);
void pf_check_filesystem(struct preflight_context *c, struct preflight_builder *b);
void pf_check_free_space(struct preflight_context *c, struct preflight_builder *b);
void pf_check_kernel(struct preflight_context *c, struct preflight_builder *b);
void pf_check_distro(struct preflight_context *c, struct preflight_builder *b);
void pf_check_boot_packages(struct preflight_context *c, struct preflight_builder *b);
void pf_check_boot_layout(struct preflight_context *c, struct preflight_builder *b);
void pf_check_tpm2(struct preflight_context *c, struct preflight_builder *b);
void pf_check_initramfs_network(struct preflight_context *c, struct preflight_builder *b);
void pf_check_device(struct preflight_context *c, struct preflight_builder *b);
void pf_check_vault(struct preflight_context *c, struct preflight_builder *b);
void pf_check_agent_version(struct preflight_context *c, struct preflight_builder *b);

/* Tunables the checks and docs/check.md share. */
#define PF_HEADER_SIZE CONVERT_REDUCE     /* LUKS2 header + reencryption shift vmcrypt reserves */
#define PF_MIN_DEVICE_SIZE MIB(64)
#define PF_STATE_FREE_MIN MIB(64)         /* detached headers in flight + journal */
#define PF_MEM_AVAILABLE_MIN MIB(256)
#define PF_MEM_TOTAL_RECOMMENDED GIB(2)
#define PF_KERNEL_MIN_MAJOR 4
#define PF_KERNEL_MIN_MINOR 15
