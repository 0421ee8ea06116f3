/* Runs a libFuzzer harness over every file of a corpus directory, so corpora replay in `make test`
 * without libFuzzer. Prints "RESULT passed=N failed=0 skipped=0" (a crash aborts the run). */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basic/fileio.h"
#include "basic/macro.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv)
{
	unsigned n = 0;

	for (int i = 1; i < argc; i++) {
		DIR *d = opendir(argv[i]);
		struct dirent *de;

		if (!d) {
			fprintf(stderr, "cannot open corpus %s\n", argv[i]);
			return 1;
		}
		while ((de = readdir(d))) {
			char path[4096];
			_cleanup_free_ char *buf = NULL;
			size_t size;

			if (de->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "%s/%s", argv[i], de->d_name);
			if (read_full_file(path, 1 << 20, &buf, &size) < 0) {
				fprintf(stderr, "cannot read %s\n", path);
				closedir(d);
				return 1;
			}
			LLVMFuzzerTestOneInput((const uint8_t *)buf, size);
			n++;
		}
		closedir(d);
	}
	printf("RESULT passed=%u failed=0 skipped=0\n", n);
	return 0;
}
