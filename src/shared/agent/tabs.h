/* crypttab and fstab edits that keep every line the agent did not write byte for byte
 * (docs/agent.md "crypttab and fstab"), and the resolution of fstab sources to devices. */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

/* The largest crypttab or fstab the agent reads; anything bigger is not a real one. */
#define TAB_FILE_MAX (1024 * 1024)

/* The comment that keeps an fstab line the agent redirected, followed by the original bytes. */
#define TAB_ORIG_PREFIX "#vmcrypt-orig: "

/* A crypttab or fstab as lines of bytes. Only lines an edit names change; every other line,
 * whitespace, comment and the presence or absence of the final newline stay as loaded. */
struct tab_file;

/* Reads path (at most TAB_FILE_MAX bytes). A missing file is an empty table that remembers it was
 * missing. Returns 0, -EFBIG, -ENOMEM or another -errno from reading. */
int tab_file_load(const char *path, struct tab_file **ret);

/* A table from text (tests, a file read by other means). Returns 0 or -ENOMEM. */
int tab_file_from_text(const char *text, size_t size, struct tab_file **ret);

/* The current text (NUL-terminated; *ret_size, when not NULL, gets its length, which differs from
 * strlen() only for a file with NUL bytes). Valid until the next edit or tab_file_free(); NULL
 * only on -ENOMEM. */
const char *tab_file_text(struct tab_file *t, size_t *ret_size);

/* Whether an edit changed the text since load or the last save. */
bool tab_file_changed(const struct tab_file *t);

/* Writes the table to path atomically: PATH.vmcrypt-new (the mode and owner of the file it
 * replaces, or 0644 and ours when there is none), fsync, the previous contents copied to
 * PATH.vmcrypt-bak (same mode and owner, written through a temporary file and fsynced), rename
 * onto path, fsync of the directory. A symlink at path is followed: its target is replaced.
 * When t was loaded from path and the file changed on disk since (someone edited it), nothing is
 * written and -ESTALE is returned: reload and redo the edits. After success the table counts as
 * loaded from path with this text. Returns 0, -ESTALE, or another -errno. */
int tab_file_save(struct tab_file *t, const char *path);

void tab_file_free(struct tab_file *t);
static inline void tab_file_freep(struct tab_file **p)
{
	if (*p)
		tab_file_free(*p);
}
#define _cleanup_tab_file_ __attribute__((cleanup(tab_file_freep)))

/* crypttab: "NAME SOURCE KEYFILE OPTIONS" lines. Every field must be non-empty and free of
 * whitespace, control characters and a leading '#' (crypttab has no escapes): else -EINVAL.
 * keyfile NULL is "none"; options NULL or "" leaves the field out.
 *
 * crypttab_set() replaces the first line for name with "NAME SOURCE KEYFILE OPTIONS" (single
 * spaces) and drops any later line for the same name (systemd would see two definitions), or
 * appends the line when there is none. Returns 1 when the text changed, 0 when the line was
 * already exactly so, -EINVAL, -ENOMEM. */
int crypttab_set(struct tab_file *t, const char *name, const char *source, const char *keyfile,
		 const char *options);
/* Removes every line for name. Returns 1 when something was removed, 0 when there was none. */
int crypttab_remove(struct tab_file *t, const char *name);
bool crypttab_has(const struct tab_file *t, const char *name);

/* One fstab entry, as libmount parses it: source and target unescaped (\040 is a space). */
struct fstab_entry {
	char source[PATH_MAX];  /* "UUID=...", "LABEL=...", "/dev/vdb1", "tmpfs" */
	char target[PATH_MAX];  /* the mount point */
	char fstype[32];
	char options[1024];     /* "defaults" when the field is missing */
	int freq, passno;
};

/* The first active (not commented) entry whose mount point is mountpoint (compared unescaped,
 * redundant slashes ignored). Returns 0, -ENOENT, or -ENAMETOOLONG when a field does not fit. */
int fstab_find(const struct tab_file *t, const char *mountpoint, struct fstab_entry *ret);

/* Every active entry, in file order (our redirected lines included, the "#vmcrypt-orig:" comments
 * not). Entries whose fields do not fit are skipped. *ret is malloc'd (free()), possibly NULL when
 * *ret_n is 0. Returns 0 or -ENOMEM. */
int fstab_entries(const struct tab_file *t, struct fstab_entry **ret, size_t *ret_n);

/* Points the entry for mountpoint at new_source: the original line becomes
 * "#vmcrypt-orig: <original line>" in its place and the new line follows it, with the original's
 * target and type fields as written, the original's options with each of add_options
 * (comma-separated, may be NULL) added unless already there, and the original's freq and passno.
 * The new line is always derived from the kept original, so a second call (or one with another
 * source) gives a well-defined result. new_source must be free of whitespace and control
 * characters. Returns 1 when the text changed, 0 when it already was so, -ENOENT when there is
 * no entry for mountpoint, -EINVAL, -ENOMEM. */
int fstab_redirect(struct tab_file *t, const char *mountpoint, const char *new_source,
		   const char *add_options);

/* Adds "SOURCE TARGET FSTYPE OPTIONS 0 PASSNO" before the first active entry for before (a mount
 * point below target, which must come after it: /boot/efi for /boot), or at the end (before NULL,
 * or no such entry). Nothing when an entry for target exists already. Fields must be free of
 * whitespace and control characters. Returns 1 when added, 0 when there was one, -EINVAL, -ENOMEM. */
int fstab_add(struct tab_file *t, const char *source, const char *target, const char *fstype,
	      const char *options, int passno, const char *before);

/* Undoes fstab_redirect(): the kept original line comes back byte for byte in place of its
 * comment and the agent's line (the first active entry for mountpoint with a /dev/mapper/vmcrypt-
 * source) goes, so redirect then restore gives back the identical file. Returns 1 when the text
 * changed, 0 when there was nothing to restore (no kept original), -EEXIST when another entry
 * for mountpoint that is not the agent's is active (restoring would mount twice; nothing changed),
 * -ENOMEM. */
int fstab_restore(struct tab_file *t, const char *mountpoint);

/* Resolves an fstab source to a device path: UUID=, LABEL=, PARTUUID=, PARTLABEL= (and the
 * same tags quoted), /dev/disk/by-* links and plain /dev paths. On the real root through
 * libblkid (blkid_evaluate_spec(): the udev links, else a probe of the devices), canonical
 * ("/dev/sdb1", "/dev/mapper/x" for dm devices). Under path_test_root() through the fixture's
 * ROOT/dev/disk/by-{uuid,label,partuuid,partlabel} links (udev's \x20 escapes applied), named
 * "/dev/" + the link's last component; plain /dev paths are returned as they are.
 * Returns 0, -ENOENT (no such device, or a source that names none: "tmpfs", "host:/export"),
 * -ENAMETOOLONG. */
int fstab_source_resolve(const char *source, char *dev, size_t len);
