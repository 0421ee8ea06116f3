/* libFuzzer harness for the sealed text's parser (tpm_blob_parse()), which reads a file on the
 * unencrypted /boot before the TPM or the cipher sees it: whatever it accepts, the writer's text
 * for it parses back and writes out again the same, byte for byte. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz-util.h"
#include "shared/tpm/tpm-blob.h"
#include "shared/tpm/tpm-seal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool quiet;
	struct tpm_blob a = { 0 }, b = { 0 };
	char *text, *once = NULL, *twice = NULL;

	if (!quiet) {
		/* tpm2-tss's unmarshalers log every refusal to stderr. */
		tpm_seal_setup_logging();
		quiet = true;
	}
	text = fuzz_text(data, size, TPM_BLOB_TEXT_MAX);
	if (!text)
		return 0;
	if (tpm_blob_parse(text, &a) == 0) {
		if (a.ciphertext_size == 0 || a.ciphertext_size > TPM_BLOB_SECRET_MAX || !a.ciphertext ||
		    a.srk_name.size > sizeof(a.srk_name.name))
			abort();
		if (tpm_blob_format(&a, &once) != 0 || tpm_blob_parse(once, &b) != 0 ||
		    tpm_blob_format(&b, &twice) != 0 || strcmp(once, twice) != 0)
			abort();
		free(once);
		free(twice);
		tpm_blob_done(&a);
		tpm_blob_done(&b);
	}
	free(text);
	return 0;
}
