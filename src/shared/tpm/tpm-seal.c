/* Sealing to the TPM 2.0 through tpm2-tss's ESYS (tpm-seal.h): the SRK, the salted session, the
 * sealed key, and the one translation of TSS2_RC values into -errno. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tss2/tss2_esys.h>
#include <tss2/tss2_rc.h>
#include <tss2/tss2_tctildr.h>
#include <unistd.h>

#include "basic/fileio.h"
#include "basic/log.h"
#include "basic/macro.h"
#include "shared/aead.h"
#include "shared/secret.h"
#include "shared/tpm/tpm-blob.h"
#include "shared/tpm/tpm-seal.h"

/* One conversation with the TPM: what tpm_close() flushes and frees. */
struct tpm {
	TSS2_TCTI_CONTEXT *tcti;
	ESYS_CONTEXT *esys;
	ESYS_TR primary, session, object;
};
#define TPM_INIT { .primary = ESYS_TR_NONE, .session = ESYS_TR_NONE, .object = ESYS_TR_NONE }

/* Every buffer ESYS returns is its own calloc() and goes back through Esys_Free(). */
static void tpm_seal_freep(void *p)
{
	Esys_Free(*(void **)p);
}

void tpm_seal_setup_logging(void)
{
	/* tpm2-tss 3.2's log.c: the level of each module comes from TSS2_LOG ("all+none" sets every
	 * module) at that module's first message, WARNING by default; the sink is stderr unless
	 * TSS2_LOGFILE names another. */
	(void)setenv("TSS2_LOG", "all+none", 0);
}

/* The one translation of tpm2-tss's return codes. object_from_file: the command carried the
 * sealed object of a text, under an SRK whose name matched the text's, so a TPM that refuses a
 * parameter (integrity, binding, size, value) proves the text was altered. */
static int errno_from_tss2(TSS2_RC rc, bool object_from_file)
{
	TSS2_RC layer = rc & TSS2_RC_LAYER_MASK, code = rc & ~TSS2_RC_LAYER_MASK;

	if (rc == TSS2_RC_SUCCESS)
		return 0;
	if (layer == TSS2_TPM_RC_LAYER || layer == TSS2_RESMGR_TPM_RC_LAYER) {
		/* Format-one codes carry the number of the handle, session or parameter they are
		 * about above the low six bits (TPM 2.0 Part 2, 6.6.3). */
		TSS2_RC base = code & TPM2_RC_FMT1 ? code & (TPM2_RC_FMT1 | 0x3f) : code;

		if (object_from_file && (((code & TPM2_RC_FMT1) && (code & TPM2_RC_P)) || base == TPM2_RC_SENSITIVE))
			return -EBADMSG;
		if (base == TPM2_RC_BAD_AUTH || base == TPM2_RC_AUTH_FAIL || base == TPM2_RC_LOCKOUT)
			return -EACCES;
		return -EIO;
	}
	/* The TSS's own layers share the base codes. */
	switch (code) {
	case TSS2_BASE_RC_MEMORY:
		return -ENOMEM;
	case TSS2_BASE_RC_IO_ERROR:
	case TSS2_BASE_RC_NO_CONNECTION:
		return layer == TSS2_TCTI_RC_LAYER ? -ENODEV : -EIO;
	case TSS2_BASE_RC_NOT_SUPPORTED:
		/* The loader's answer when no libtss2-tcti-<name>.so.0 can be dlopen()ed. */
		return layer == TSS2_TCTI_RC_LAYER ? -ELIBACC : -EIO;
	case TSS2_BASE_RC_BAD_VALUE:
		return layer == TSS2_TCTI_RC_LAYER ? -EINVAL : -EIO;
	default:
		return -EIO;
	}
}

static int tss_error(TSS2_RC rc, const char *what, bool object_from_file)
{
	int r = errno_from_tss2(rc, object_from_file);

	log_debug("tpm2-tss: %s failed: %s (0x%x): %s", what, Tss2_RC_Decode(rc), (unsigned)rc, strerror(-r));
	return r;
}

static void tpm_close(struct tpm *t)
{
	/* Transient objects and sessions stay in the TPM until flushed, unless the kernel's resource
	 * manager (/dev/tpmrm0) does it at close: /dev/tpm0 and swtpm have three object slots. */
	ESYS_TR *handles[] = { &t->object, &t->session, &t->primary };

	for (size_t i = 0; t->esys && i < ELEMENTSOF(handles); i++)
		if (*handles[i] != ESYS_TR_NONE)
			(void)Esys_FlushContext(t->esys, *handles[i]);
	if (t->esys)
		Esys_Finalize(&t->esys);
	if (t->tcti)
		Tss2_TctiLdr_Finalize(&t->tcti);
}

static int tpm_open(const char *tcti, struct tpm *t)
{
	char conf[64];
	TSS2_RC rc;

	if (!tcti) {
		/* Checked here, not left to the device TCTI: "no device" is -ENODEV, "not ours to
		 * open" is -EACCES, and tpm2-tss would say IO_ERROR for both. */
		const char *dev = access("/dev/tpmrm0", F_OK) == 0 ? "/dev/tpmrm0"
				  : access("/dev/tpm0", F_OK) == 0  ? "/dev/tpm0"
								    : NULL;

		if (!dev)
			return -ENODEV;
		if (faccessat(AT_FDCWD, dev, R_OK | W_OK, AT_EACCESS) < 0)
			return negative_errno();
		snprintf(conf, sizeof(conf), "device:%s", dev);
		tcti = conf;
	}
	rc = Tss2_TctiLdr_Initialize(tcti, &t->tcti);
	if (rc != TSS2_RC_SUCCESS)
		return tss_error(rc, "TCTI initialization", false);
	rc = Esys_Initialize(&t->esys, t->tcti, NULL);
	if (rc != TSS2_RC_SUCCESS)
		return tss_error(rc, "Esys_Initialize", false);
	return 0;
}

/* Creates the SRK in the owner hierarchy (empty owner authorization) and returns its name. The
 * template is the TCG's ECC one: "TCG TPM v2.0 Provisioning Guidance" 7.5.1 takes the EK
 * Credential Profile's template L-2 (NIST P-256, SHA-256, AES-128-CFB, restricted decrypt) with
 * userWithAuth and noDA set, adminWithPolicy clear and an empty policy. unique is left empty, as
 * systemd's and tpm2-tools' SRKs do (L-2 itself says 32 zero bytes for x and y, which derives
 * another key): the same key as systemd's shared SRK at 0x81000001 where one exists. Only this
 * module ever derives it, so what matters is that it never changes: the text names it
 * (TPM_BLOB_PRIMARY) and records its name. ECC: a P-256 primary takes milliseconds where an RSA
 * one takes seconds on a hardware TPM, and every TPM 2.0 PC Client TPM has P-256. */
static int tpm_create_primary(struct tpm *t, TPM2B_NAME *ret_name)
{
	static const TPM2B_SENSITIVE_CREATE empty = { 0 };
	static const TPM2B_DATA no_outside_info = { 0 };
	static const TPML_PCR_SELECTION no_pcrs = { 0 };
	static const TPM2B_PUBLIC srk = {
		.publicArea = {
			.type = TPM2_ALG_ECC,
			.nameAlg = TPM2_ALG_SHA256,
			.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
					    TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
					    TPMA_OBJECT_NODA | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT,
			.parameters.eccDetail = {
				.symmetric = { .algorithm = TPM2_ALG_AES, .keyBits.aes = 128, .mode.aes = TPM2_ALG_CFB },
				.scheme.scheme = TPM2_ALG_NULL,
				.curveID = TPM2_ECC_NIST_P256,
				.kdf.scheme = TPM2_ALG_NULL,
			},
		},
	};
	_cleanup_(tpm_seal_freep) TPM2B_NAME *name = NULL;
	TSS2_RC rc;

	rc = Esys_CreatePrimary(t->esys, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &empty, &srk,
				&no_outside_info, &no_pcrs, &t->primary, NULL, NULL, NULL, NULL);
	if (rc != TSS2_RC_SUCCESS)
		return tss_error(rc, "CreatePrimary (SRK)", false);
	/* ESYS computed the name from the public area the TPM returned: the key the session's
	 * salt is encrypted to. */
	rc = Esys_TR_GetName(t->esys, t->primary, &name);
	if (rc != TSS2_RC_SUCCESS)
		return tss_error(rc, "Esys_TR_GetName", false);
	*ret_name = *name;
	return 0;
}

/* An HMAC session salted with the SRK (the salt travels encrypted to it, so only the TPM and we
 * know the session key), unbound, with parameter encryption both ways: the first sized parameter
 * of each command (the sealed key in Create's inSensitive) and of each response (the key Unseal
 * returns) travel under AES-128-CFB with a key derived from the session key. ESYS drops either
 * direction for a command that has no such parameter. */
static int tpm_start_session(struct tpm *t)
{
	static const TPMT_SYM_DEF aes128cfb = {
		.algorithm = TPM2_ALG_AES,
		.keyBits.aes = 128,
		.mode.aes = TPM2_ALG_CFB,
	};
	TSS2_RC rc;

	rc = Esys_StartAuthSession(t->esys, t->primary, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, NULL,
				   TPM2_SE_HMAC, &aes128cfb, TPM2_ALG_SHA256, &t->session);
	if (rc != TSS2_RC_SUCCESS)
		return tss_error(rc, "StartAuthSession", false);
	rc = Esys_TRSess_SetAttributes(t->esys, t->session,
				       TPMA_SESSION_DECRYPT | TPMA_SESSION_ENCRYPT | TPMA_SESSION_CONTINUESESSION, 0xff);
	if (rc != TSS2_RC_SUCCESS)
		return tss_error(rc, "Esys_TRSess_SetAttributes", false);
	return 0;
}

/* Connects, recreates the SRK and starts the session over it. With expect (an unseal), the SRK
 * must have that name before the session starts: the salt goes to the SRK, which must be the one
 * that sealed. */
static int tpm_begin(const char *tcti, const TPM2B_NAME *expect, struct tpm *t, TPM2B_NAME *ret_srk_name)
{
	int r;

	r = tpm_open(tcti, t);
	if (r >= 0)
		r = tpm_create_primary(t, ret_srk_name);
	if (r < 0)
		return r;
	if (expect && (expect->size != ret_srk_name->size ||
		       memcmp(expect->name, ret_srk_name->name, expect->size) != 0)) {
		log_debug("TPM: the storage root key is not the one the text was sealed under (another TPM, "
			  "or its owner hierarchy was cleared since)");
		return -EKEYREJECTED;
	}
	return tpm_start_session(t);
}

int tpm_seal_present(const char *tcti)
{
	_cleanup_(tpm_close) struct tpm t = TPM_INIT;
	_cleanup_(tpm_seal_freep) TPMS_CAPABILITY_DATA *cap = NULL;
	const TPML_TAGGED_TPM_PROPERTY *p;
	TPMI_YES_NO more;
	TSS2_RC rc;
	int r;

	r = tpm_open(tcti, &t);
	if (r == -ENODEV)
		return 0;
	if (r < 0)
		return r;
	rc = Esys_GetCapability(t.esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_TPM_PROPERTIES,
				TPM2_PT_FAMILY_INDICATOR, 1, &more, &cap);
	if (rc != TSS2_RC_SUCCESS) {
		/* A TPM 1.2 behind /dev/tpm0 answers a TPM 2.0 command with a 1.2 error. */
		r = tss_error(rc, "GetCapability", false);
		return r == -ENOMEM ? r : 0;
	}
	p = &cap->data.tpmProperties;
	return cap->capability == TPM2_CAP_TPM_PROPERTIES && p->count >= 1 &&
	       p->tpmProperty[0].property == TPM2_PT_FAMILY_INDICATOR && p->tpmProperty[0].value == TPM2_SPEC_FAMILY;
}

int tpm_seal(const char *tcti, const void *secret, size_t size, char **ret_text)
{
	static const TPM2B_DATA no_outside_info = { 0 };
	static const TPML_PCR_SELECTION no_pcrs = { 0 };
	_cleanup_(tpm_close) struct tpm t = TPM_INIT;
	_cleanup_(tpm_blob_done) struct tpm_blob b = { 0 };
	_cleanup_secret_ TPM2B_SENSITIVE_CREATE *sensitive = NULL;
	_cleanup_(tpm_seal_freep) TPM2B_PRIVATE *private = NULL;
	_cleanup_(tpm_seal_freep) TPM2B_PUBLIC *public = NULL;
	TPM2B_PUBLIC template;
	uint8_t *key;
	TSS2_RC rc;
	int r;

	if (!secret || size == 0)
		return -EINVAL;
	if (size > TPM_SEAL_SECRET_MAX)
		return -E2BIG;

	/* The key exists only in the sensitive area Create takes, in secret memory. A fresh key for
	 * every seal, so the random nonce never meets the same key twice. */
	sensitive = secret_alloc(sizeof(*sensitive));
	b.ciphertext = secret_alloc(size);
	if (!sensitive || !b.ciphertext)
		return -ENOMEM;
	b.ciphertext_size = size;
	sensitive->sensitive.data.size = TPM_BLOB_KEY_SIZE;
	key = sensitive->sensitive.data.buffer;
	r = secret_random(key, TPM_BLOB_KEY_SIZE);
	if (r >= 0)
		r = secret_random(b.nonce, sizeof(b.nonce));
	if (r >= 0)
		r = aead_seal(key, b.nonce, TPM_BLOB_CONTEXT, secret, size, b.ciphertext, b.tag);
	if (r < 0)
		return r;

	r = tpm_begin(tcti, NULL, &t, &b.srk_name);
	if (r < 0)
		return r;
	tpm_blob_sealed_template(&template);
	rc = Esys_Create(t.esys, t.primary, t.session, ESYS_TR_NONE, ESYS_TR_NONE, sensitive, &template,
			 &no_outside_info, &no_pcrs, &private, &public, NULL, NULL, NULL);
	if (rc != TSS2_RC_SUCCESS)
		return tss_error(rc, "Create (sealed key)", false);
	b.public = *public;
	b.private = *private;
	return tpm_blob_format(&b, ret_text);
}

static void tpm_seal_sensitive_freep(TPM2B_SENSITIVE_DATA **p)
{
	if (*p)
		explicit_bzero(*p, sizeof(**p));
	Esys_Free(*p);
}

int tpm_unseal(const char *tcti, const char *text, void **ret_secret, size_t *ret_size)
{
	_cleanup_(tpm_close) struct tpm t = TPM_INIT;
	_cleanup_(tpm_blob_done) struct tpm_blob b = { 0 };
	_cleanup_(tpm_seal_sensitive_freep) TPM2B_SENSITIVE_DATA *unsealed = NULL;
	_cleanup_secret_ uint8_t *key = NULL;
	_cleanup_secret_ uint8_t *plain = NULL;
	TPM2B_NAME srk_name;
	TSS2_RC rc;
	int r;

	r = tpm_blob_parse(text, &b);
	if (r < 0)
		return r;
	key = secret_alloc(TPM_BLOB_KEY_SIZE);
	plain = secret_alloc(b.ciphertext_size);
	if (!key || !plain)
		return -ENOMEM;

	r = tpm_begin(tcti, &b.srk_name, &t, &srk_name);
	if (r < 0)
		return r;
	rc = Esys_Load(t.esys, t.primary, t.session, ESYS_TR_NONE, ESYS_TR_NONE, &b.private, &b.public, &t.object);
	if (rc != TSS2_RC_SUCCESS)
		return tss_error(rc, "Load (sealed key)", true);
	rc = Esys_Unseal(t.esys, t.object, t.session, ESYS_TR_NONE, ESYS_TR_NONE, &unsealed);
	if (rc != TSS2_RC_SUCCESS)
		return tss_error(rc, "Unseal", true);
	if (unsealed->size != TPM_BLOB_KEY_SIZE)
		return -EBADMSG;
	/* tpm2-tss 3.2 decrypts the response parameter on its own stack and writes it back into
	 * its response buffer (esys_iutil.c, iesys_decrypt_param()), and wipes neither: out of our
	 * reach short of poking into its context. What lingers there is this text's key, which
	 * opens what this process is about to hold in clear anyway, and nothing else. */
	memcpy(key, unsealed->buffer, TPM_BLOB_KEY_SIZE);
	explicit_bzero(unsealed, sizeof(*unsealed));

	r = aead_open(key, b.nonce, TPM_BLOB_CONTEXT, b.ciphertext, b.ciphertext_size, b.tag, plain);
	if (r < 0)
		return r;
	*ret_size = b.ciphertext_size;
	*ret_secret = TAKE_PTR(plain);
	return 0;
}

int tpm_seal_file(const char *tcti, const void *secret, size_t size, const char *path)
{
	_cleanup_free_ char *text = NULL;
	int r;

	r = tpm_seal(tcti, secret, size, &text);
	if (r < 0)
		return r;
	return write_file_atomic(path, text, strlen(text), 0600);
}

int tpm_unseal_file(const char *tcti, const char *path, void **ret_secret, size_t *ret_size)
{
	_cleanup_free_ char *text = NULL;
	size_t size;
	int r;

	r = read_full_file(path, TPM_BLOB_TEXT_MAX, &text, &size);
	if (r == -EFBIG)
		return -EBADMSG;
	if (r < 0)
		return r;
	if (strlen(text) != size) /* a NUL inside: not the text tpm_seal() writes */
		return -EBADMSG;
	return tpm_unseal(tcti, text, ret_secret, ret_size);
}
