/* vmcryptd's TLS material: load the operator's certificate and key, or make a self-signed
 * ECDSA P-256 certificate for localhost, 127.0.0.1, ::1, the host name and the listen address. */
#include <errno.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "basic/fileio.h"
#include "basic/log.h"
#include "basic/string-util.h"
#include "shared/secret.h"
#include "shared/openssl-util.h"
#include "vmcryptd.h"

#define TLS_PEM_MAX (64 * 1024)

static int tls_error(const char *what)
{
	char buf[256];

	return log_error_errno(-EIO, "Could not make the TLS certificate: %s: %s", what,
			       openssl_util_drain(buf, sizeof(buf)));
}

static int add_ext(X509 *x, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;
	int ok;

	X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
	ext = X509V3_EXT_nconf_nid(NULL, &ctx, nid, value);
	if (!ext)
		return -EIO;
	ok = X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return ok ? 0 : -EIO;
}

static int bio_text(BIO *bio, bool secret, char **ret)
{
	char *data, *out;
	long len = BIO_get_mem_data(bio, &data);

	if (len <= 0)
		return -EIO;
	out = secret ? secret_alloc((size_t)len + 1) : calloc(1, (size_t)len + 1);
	if (!out)
		return -ENOMEM;
	memcpy(out, data, (size_t)len);
	*ret = out;
	return 0;
}

static int generate(const char *cert_path, const char *key_path, const char *listen_host, char **ret_cert,
		    char **ret_key)
{
	_cleanup_(openssl_util_pkey_freep) EVP_PKEY *pkey = NULL;
	_cleanup_(openssl_util_x509_freep) X509 *x = NULL;
	_cleanup_(openssl_util_bio_freep) BIO *kb = NULL;
	_cleanup_(openssl_util_bio_freep) BIO *cb = NULL;
	_cleanup_free_ char *cert = NULL;
	_cleanup_secret_ char *key = NULL;
	char san[512], host[256] = "";
	unsigned char serial[16];
	BIGNUM *bn;
	int r;

	pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	x = X509_new();
	if (!pkey || !x)
		return tls_error("key generation");
	if (RAND_bytes(serial, sizeof(serial)) != 1)
		return tls_error("serial");
	serial[0] &= 0x7f;
	bn = BN_bin2bn(serial, sizeof(serial), NULL);
	if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x))) {
		BN_free(bn);
		return tls_error("serial");
	}
	BN_free(bn);
	if (!X509_set_version(x, 2) || !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
	    !X509_gmtime_adj(X509_getm_notAfter(x), 10L * 365 * 86400) || !X509_set_pubkey(x, pkey) ||
	    !X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC, (const unsigned char *)"vmcryptd",
					-1, -1, 0) ||
	    !X509_set_issuer_name(x, X509_get_subject_name(x)))
		return tls_error("fields");

	(void)gethostname(host, sizeof(host) - 1);
	snprintf(san, sizeof(san), "DNS:localhost,IP:127.0.0.1,IP:::1");
	if (host[0] && api_name_valid(host))
		snprintf(san + strlen(san), sizeof(san) - strlen(san), ",DNS:%s", host);
	if (listen_host && listen_host[0] && !streq(listen_host, "127.0.0.1") && !streq(listen_host, "0.0.0.0") &&
	    !streq(listen_host, "::") && !streq(listen_host, "::1") && strlen(listen_host) < 64)
		snprintf(san + strlen(san), sizeof(san) - strlen(san), ",IP:%s", listen_host);
	if (add_ext(x, NID_subject_alt_name, san) < 0 || add_ext(x, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
	    add_ext(x, NID_key_usage, "critical,digitalSignature") < 0 ||
	    add_ext(x, NID_ext_key_usage, "serverAuth") < 0 || add_ext(x, NID_subject_key_identifier, "hash") < 0)
		return tls_error("extensions");
	if (!X509_sign(x, pkey, EVP_sha256()))
		return tls_error("signature");

	kb = BIO_new(BIO_s_secmem());
	cb = BIO_new(BIO_s_mem());
	if (!kb || !cb || !PEM_write_bio_PrivateKey(kb, pkey, NULL, NULL, 0, NULL, NULL) || !PEM_write_bio_X509(cb, x))
		return tls_error("PEM");
	r = bio_text(kb, true, &key);
	if (r >= 0)
		r = bio_text(cb, false, &cert);
	if (r < 0)
		return r;

	/* Key first: a certificate on disk always has its key beside it. */
	r = write_file_atomic(key_path, key, strlen(key), 0600);
	if (r < 0)
		return log_error_errno(r, "Could not write %s: %m", key_path);
	r = write_file_atomic(cert_path, cert, strlen(cert), 0644);
	if (r < 0)
		return log_error_errno(r, "Could not write %s: %m", cert_path);
	log_info("Made a self-signed TLS certificate %s (clients: --ca-file %s).", cert_path, cert_path);
	*ret_cert = TAKE_PTR(cert);
	*ret_key = TAKE_PTR(key);
	return 0;
}

int tls_load_or_create(const char *cert_path, const char *key_path, bool create, const char *listen_host,
		       char **ret_cert, char **ret_key)
{
	_cleanup_free_ char *cert = NULL;
	_cleanup_secret_ void *key = NULL;
	_cleanup_secret_ char *key_text = NULL;
	bool world = false;
	size_t size;
	int r;

	if (create && access(cert_path, F_OK) < 0 && access(key_path, F_OK) < 0 && errno == ENOENT)
		return generate(cert_path, key_path, listen_host, ret_cert, ret_key);

	r = read_full_file(cert_path, TLS_PEM_MAX, &cert, NULL);
	if (r < 0)
		return log_error_errno(r, "Could not read the TLS certificate %s: %m", cert_path);
	r = secret_read_file(key_path, &key, &size, &world);
	if (r < 0)
		return log_error_errno(r, "Could not read the TLS key %s: %s", key_path, secret_read_strerror(r));
	if (world)
		log_warning("TLS key %s is readable by group or others; chmod 600 it.", key_path);
	key_text = secret_alloc(size + 1);
	if (!key_text)
		return -ENOMEM;
	memcpy(key_text, key, size);
	*ret_cert = TAKE_PTR(cert);
	*ret_key = TAKE_PTR(key_text);
	return 0;
}
