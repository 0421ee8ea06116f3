/* OpenSSL glue shared by the vault, vmcryptd's TLS code and the VM's TPM sealing: the one reader
 * of OpenSSL's error queue, and cleanup helpers for the OpenSSL objects vmcrypt holds. */
#pragma once

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stddef.h>

#include "basic/macro.h"

/* Takes the oldest queued OpenSSL error as text into buf ("" when the queue is empty) and empties
 * the queue, so a stale error is never reported for a later call. Returns buf. */
const char *openssl_util_drain(char *buf, size_t size);

/* Drains the error queue into one debug message "OpenSSL: WHAT failed: DETAIL" and returns error
 * (a -errno chosen by the caller): for library code, which does not print. */
int openssl_util_error(int error, const char *what);

DEFINE_CLEANUP_FUNC(openssl_util_cipher_ctx_freep, EVP_CIPHER_CTX *, EVP_CIPHER_CTX_free)
DEFINE_CLEANUP_FUNC(openssl_util_pkey_freep, EVP_PKEY *, EVP_PKEY_free)
DEFINE_CLEANUP_FUNC(openssl_util_pkey_ctx_freep, EVP_PKEY_CTX *, EVP_PKEY_CTX_free)
DEFINE_CLEANUP_FUNC(openssl_util_bio_freep, BIO *, BIO_free)
DEFINE_CLEANUP_FUNC(openssl_util_x509_freep, X509 *, X509_free)
