/* vmcryptd's StrictModes: at start, refuses a data directory that others can write to and key
 * files that others can read or write or that belong to another user, as sshd does for ~/.ssh. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "basic/log.h"
#include "basic/macro.h"
#include "vmcryptd.h"

/* A missing file passes: vmcryptd makes it with mode 0600 on first start. follow: the operator
 * chose the path (--tls-key), and a certbot-style symbolic link to the key is fine; inside the
 * data directory vmcryptd writes its files in place and a link there is someone else's doing. */
static int check_secret_file(const char *path, bool follow)
{
	struct stat st;
	uid_t me = geteuid();

	if ((follow ? stat(path, &st) : lstat(path, &st)) < 0)
		return errno == ENOENT ? 0 : log_error_errno(-errno, "Could not check %s: %m", path);
	if (S_ISLNK(st.st_mode))
		return log_error_errno(-EPERM, "Refusing to start: %s is a symbolic link; put the file itself there", path);
	if (!S_ISREG(st.st_mode))
		return log_error_errno(-EPERM, "Refusing to start: %s is not a regular file", path);
	if (st.st_uid != me)
		return log_error_errno(-EPERM,
				       "Refusing to start: %s is owned by uid %u, not by uid %u that runs vmcryptd; run: chown %u '%s'",
				       path, (unsigned)st.st_uid, (unsigned)me, (unsigned)me, path);
	if (st.st_mode & 077)
		return log_error_errno(-EPERM,
				       "Refusing to start: %s is open to group or others (mode %04o); run: chmod 600 '%s'", path,
				       (unsigned)(st.st_mode & 07777), path);
	return 0;
}

int strict_modes_check(const char *data_dir, const char *tls_key)
{
	static const char *const inside[] = { "master.key", "admin.token", "tls.key" };
	struct stat st;
	uid_t me = geteuid();
	int r;

	if (stat(data_dir, &st) < 0)
		return log_error_errno(-errno, "Could not check %s: %m", data_dir);
	if (!S_ISDIR(st.st_mode))
		return log_error_errno(-EPERM, "Refusing to start: %s is not a directory", data_dir);
	if (st.st_uid != me)
		return log_error_errno(-EPERM,
				       "Refusing to start: %s is owned by uid %u, not by uid %u that runs vmcryptd; run: chown %u '%s'",
				       data_dir, (unsigned)st.st_uid, (unsigned)me, (unsigned)me, data_dir);
	/* Whoever can write the directory can swap the key files, whatever their own modes. */
	if (st.st_mode & 022)
		return log_error_errno(-EPERM,
				       "Refusing to start: %s is writable by group or others (mode %04o); run: chmod go-w '%s'",
				       data_dir, (unsigned)(st.st_mode & 07777), data_dir);

	for (size_t i = 0; i < ELEMENTSOF(inside); i++) {
		_cleanup_free_ char *path = NULL;

		if (tls_key && i == ELEMENTSOF(inside) - 1)
			break; /* --tls-key names the key elsewhere */
		if (asprintf(&path, "%s/%s", data_dir, inside[i]) < 0)
			return log_error_errno(-ENOMEM, "Out of memory");
		r = check_secret_file(path, false);
		if (r < 0)
			return r;
	}
	return tls_key ? check_secret_file(tls_key, true) : 0;
}
