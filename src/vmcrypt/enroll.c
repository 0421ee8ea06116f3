/* vmcrypt enroll: redeems a one-time enrollment token with vmcryptd and stores what the VM needs
 * to talk to it from then on: the credential (0600, never printed), the CA bundle and agent.conf. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "basic/fileio.h"
#include "basic/log.h"
#include "basic/string-util.h"
#include "shared/client/agent-conf.h"
#include "shared/client/vault-client.h"
#include "shared/exit-status.h"
#include "shared/paths.h"
#include "shared/secret.h"
#include "vmcrypt.h"

#define ENROLL_TOKEN_PREFIX "vmc-enroll-"
#define CA_FILE_MAX (1024 * 1024)

static void help(FILE *f)
{
	fprintf(f, "Usage: vmcrypt enroll --server URL --token-file FILE [--ca-file FILE] [--proxy URL] [--force]\n\n"
		   "Redeems the one-time enrollment token (from vmcrypt-admin vm register) and stores the\n"
		   "VM credential in %s/credential (0600, never printed), the CA bundle in\n"
		   "%s/ca.pem and the settings in %s/agent.conf.\n\n"
		   "  -s, --server URL      vmcryptd, https://host:port\n"
		   "  -t, --token-file FILE the enrollment token (a file, or /dev/fd/N)\n"
		   "  -c, --ca-file FILE    CA bundle that signed vmcryptd's certificate (default: system store)\n"
		   "  -p, --proxy URL       HTTPS proxy, http://host:port, or 'none' (default: $https_proxy)\n"
		   "  -f, --force           replace an existing credential (enroll again)\n"
		   "  -h, --help\n\n"
		   "Exit status: 0 enrolled; %d already enrolled (no --force); %d token file unusable;\n"
		   "%d vmcryptd refused or could not be reached (docs/exit-codes.md).\n",
		path_conf_dir(), path_conf_dir(), path_conf_dir(), EXIT_EXISTS, EXIT_KEY, EXIT_REMOTE);
}

/* The token file's first line without surrounding blanks, in secret memory. */
static int read_token(const char *path, char **ret)
{
	_cleanup_secret_ char *raw = NULL;
	_cleanup_secret_ char *tok = NULL;
	bool open_to_others = false;
	size_t n = 0, start = 0, end;
	int r;

	r = secret_read_file(path, (void **)&raw, &n, &open_to_others);
	if (r < 0) {
		log_error("%s: cannot use the enrollment token file: %s. Remedy: give the file "
			  "vmcrypt-admin vm register wrote the token to.", path, secret_read_strerror(r));
		return r;
	}
	if (open_to_others)
		log_warning("%s: the enrollment token file can be read by group or others (it works once; "
			    "remove the file after enrollment)", path);
	while (start < n && (raw[start] == ' ' || raw[start] == '\t' || raw[start] == '\n' || raw[start] == '\r'))
		start++;
	end = start;
	while (end < n && raw[end] > ' ' && raw[end] <= '~')
		end++;
	if (end == start || !startswith(raw + start, ENROLL_TOKEN_PREFIX) ||
	    end - start <= strlen(ENROLL_TOKEN_PREFIX)) {
		log_error("%s: not an enrollment token (expected a line vmc-enroll-...). Remedy: give the token "
			  "vmcrypt-admin vm register printed.", path);
		return -ENOKEY;
	}
	tok = secret_alloc(end - start + 1);
	if (!tok)
		return -ENOMEM;
	memcpy(tok, raw + start, end - start);
	*ret = TAKE_PTR(tok);
	return 0;
}

/* What would be written after enrollment is checked before the token is spent: a token works
 * once, so a failure to store the credential afterwards would leave the VM without either. */
static int prepare_conf_dir(void)
{
	const char *dir = path_conf_dir();
	int r;

	r = mkdir_p(dir, 0755);
	if (r >= 0 && access(dir, W_OK) < 0)
		r = negative_errno();
	if (r < 0)
		log_error_errno(r, "%s: cannot create or write the configuration directory: %m. Remedy: run "
			       "vmcrypt enroll as root.", dir);
	return r;
}

int verb_enroll(int argc, char **argv)
{
	static const struct option options[] = {
		{ "server", required_argument, NULL, 's' },
		{ "token-file", required_argument, NULL, 't' },
		{ "ca-file", required_argument, NULL, 'c' },
		{ "proxy", required_argument, NULL, 'p' },
		{ "force", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{}
	};
	const char *server = NULL, *token_file = NULL, *ca_file = NULL, *proxy = "";
	char cred_path[PATH_MAX], conf_path[PATH_MAX], ca_path[PATH_MAX], hostname[256], name[API_NAME_MAX + 1];
	char err[1024] = "";
	_cleanup_free_ struct agent_conf *conf = NULL;
	_cleanup_free_ char *ca_pem = NULL;
	_cleanup_secret_ char *token = NULL;
	_cleanup_secret_ char *cred = NULL;
	struct vault_client *vc = NULL;
	size_t ca_size = 0, cred_size = 0;
	bool force = false;
	int c, r;

	while ((c = getopt_long(argc, argv, "s:t:c:p:fh", options, NULL)) >= 0) {
		switch (c) {
		case 's':
			server = optarg;
			break;
		case 't':
			token_file = optarg;
			break;
		case 'c':
			ca_file = optarg;
			break;
		case 'p':
			proxy = optarg;
			break;
		case 'f':
			force = true;
			break;
		case 'h':
			help(stdout);
			return EXIT_OK;
		default:
			help(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind < argc || !server || !token_file) {
		log_error("vmcrypt enroll needs --server URL and --token-file FILE, and no other argument.");
		return EXIT_USAGE;
	}
	if (!startswith(server, "https://") || strlen(server) >= AGENT_CONF_URL_MAX || strpbrk(server, " \t\r\n")) {
		log_error("--server %s: give vmcryptd's https://host:port URL.", server);
		return EXIT_USAGE;
	}
	if (*proxy && !streq(proxy, AGENT_CONF_PROXY_NONE) &&
	    ((!startswith(proxy, "http://") && !startswith(proxy, "https://")) || strlen(proxy) >= AGENT_CONF_URL_MAX ||
	     strpbrk(proxy, " \t\r\n"))) {
		log_error("--proxy %s: give the proxy as http://host:port, or 'none'.", proxy);
		return EXIT_USAGE;
	}
	if (*proxy && strchr(proxy, '@'))
		log_warning("--proxy: agent.conf is readable by every user (0644), and so is a proxy password in "
			    "it; prefer a proxy that needs none from this VM");
	if (!agent_conf_path(AGENT_CREDENTIAL_NAME, cred_path, sizeof(cred_path)) ||
	    !agent_conf_path(AGENT_CONF_NAME, conf_path, sizeof(conf_path)) ||
	    !agent_conf_path(AGENT_CA_NAME, ca_path, sizeof(ca_path))) {
		log_error("%s: the configuration directory's path is too long.", path_conf_dir());
		return EXIT_USAGE;
	}

	conf = malloc(sizeof(*conf));
	if (!conf)
		return log_error_errno(-ENOMEM, "Out of memory.");
	/* An existing agent.conf keeps what a person set there (StopUnits=, intervals ...); enrollment
	 * replaces only the server settings. */
	agent_conf_init(conf);
	if (access(conf_path, F_OK) == 0 && agent_conf_load(conf_path, conf, err, sizeof(err)) < 0) {
		log_warning("%s; writing a new agent.conf with the defaults", err);
		agent_conf_init(conf);
	}
	if (access(cred_path, F_OK) == 0 && !force) {
		log_error("%s exists: this VM is already enrolled%s%s%s%s. Remedy: vmcrypt enroll --force with a new "
			  "token replaces it (then revoke the old VM with vmcrypt-admin vm revoke if it is another "
			  "registration).", cred_path, conf->vm[0] ? " as " : "", conf->vm, conf->server[0] ? " with " : "",
			  conf->server);
		return EXIT_EXISTS;
	}

	r = read_token(token_file, &token);
	if (r < 0)
		return r == -ENOMEM ? EXIT_ERROR : EXIT_KEY;
	if (ca_file) {
		r = read_full_file(ca_file, CA_FILE_MAX, &ca_pem, &ca_size);
		if (r < 0) {
			log_error_errno(r, "%s: cannot read the CA file: %m. Remedy: give the PEM bundle that signed "
				       "vmcryptd's certificate (its tls.crt for a self-signed one).", ca_file);
			return EXIT_USAGE;
		}
		if (!strstr(ca_pem, "-----BEGIN CERTIFICATE-----")) {
			log_error("%s: no PEM certificate in the CA file. Remedy: give the PEM bundle that signed "
				  "vmcryptd's certificate.", ca_file);
			return EXIT_USAGE;
		}
	}
	if (gethostname(hostname, sizeof(hostname)) < 0 || !hostname[0])
		snprintf(hostname, sizeof(hostname), "localhost");
	hostname[sizeof(hostname) - 1] = 0;
	r = prepare_conf_dir();
	if (r < 0)
		return EXIT_ERROR;

	snprintf(conf->server, sizeof(conf->server), "%s", server);
	snprintf(conf->ca_file, sizeof(conf->ca_file), "%s", ca_file ? ca_file : "");
	snprintf(conf->proxy, sizeof(conf->proxy), "%s", proxy);
	r = vault_client_new(conf, NULL, 0, VAULT_CLIENT_CONNECT_TIMEOUT, VAULT_CLIENT_TOTAL_TIMEOUT, &vc);
	if (r < 0)
		return log_error_errno(r, "Cannot set up the HTTPS client: %m");
	r = vault_client_enroll(vc, token, hostname, vmcrypt_version, name, sizeof(name), (void **)&cred, &cred_size,
				err, sizeof(err));
	vault_client_free(vc);
	if (r < 0) {
		const char *remedy =
			r == -EACCES ? "ask for a new token (vmcrypt-admin vm register, or vm revoke and register "
				       "again): a token works once" :
			r == -EPROTO ? "give --ca-file the CA bundle that signed vmcryptd's certificate" :
			r == -ECONNREFUSED || r == -EHOSTUNREACH || r == -ETIMEDOUT ?
				       "check that vmcryptd runs, the URL and the proxy (--proxy, $https_proxy)" :
				       "see vmcryptd's log";
		log_error("Enrollment failed: %s. Remedy: %s.", err, remedy);
		return EXIT_REMOTE;
	}

	/* The credential first: it exists nowhere else now. */
	r = agent_credential_write(cred_path, cred, cred_size);
	if (r < 0) {
		log_error_errno(r, "%s: cannot store the VM credential: %m. The token is spent: revoke VM '%s' "
			       "(vmcrypt-admin vm revoke), register it again and enroll with the new token.",
			       cred_path, name);
		return EXIT_ERROR;
	}
	if (ca_file) {
		r = write_file_atomic(ca_path, ca_pem, ca_size, 0644);
		if (r < 0) {
			log_error_errno(r, "%s: cannot copy the CA bundle: %m. Remedy: copy %s there by hand; the "
				       "credential is stored.", ca_path, ca_file);
			return EXIT_ERROR;
		}
		snprintf(conf->ca_file, sizeof(conf->ca_file), "%s", ca_path);
	}
	snprintf(conf->vm, sizeof(conf->vm), "%s", name);
	r = agent_conf_write(conf_path, conf);
	if (r < 0) {
		log_error_errno(r, "%s: cannot write agent.conf: %m. Remedy: write Server=%s and VM=%s there by "
			       "hand; the credential is stored.", conf_path, server, name);
		return EXIT_ERROR;
	}
	printf("Enrolled as VM '%s' with %s.\nSettings: %s\nCredential: %s (0600)\n", name, server, conf_path, cred_path);
	if (ca_file)
		printf("CA bundle: %s\n", ca_path);
	return EXIT_OK;
}
