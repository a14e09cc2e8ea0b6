/*
 * replay.c - a main() for the fuzz targets where libFuzzer is not
 * available: the cross builds, run under qemu-user by test/cross.sh.  It
 * runs LLVMFuzzerTestOneInput() once on each file named, so a target's
 * corpus (every crash found so far is a corpus file) and the contract
 * checks inside the target also run on a big-endian CPU.  A target
 * reports a broken contract with abort(); replay prints
 * "PASS replay NAME: N inputs" when none did.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REPLAY_INPUT_MAX	(1024 * 1024)	/* libFuzzer's default cap */

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
main(int argc, char **argv)
{
	static uint8_t buf[REPLAY_INPUT_MAX];
	uint8_t *in;
	const char *name = strrchr(argv[0], '/');
	FILE *f;
	size_t n;
	int i;

	name = name != NULL ? name + 1 : argv[0];
	if (argc < 2) {
		fprintf(stderr, "usage: %s FILE...\n", name);
		return 64;
	}
	for (i = 1; i < argc; i++) {
		if ((f = fopen(argv[i], "rb")) == NULL) {
			printf("FAIL replay %s: %s: %s\n", name, argv[i],
			    strerror(errno));
			return 1;
		}
		n = fread(buf, 1, sizeof(buf), f);
		if (ferror(f) || fclose(f) != 0) {
			printf("FAIL replay %s: %s: read error\n", name,
			    argv[i]);
			return 1;
		}
		/* A block of exactly n bytes, as libFuzzer hands over:
		 * valgrind (test/run.sh) then sees a read past the input,
		 * which the static buffer would hide. */
		if ((in = malloc(n > 0 ? n : 1)) == NULL) {
			printf("FAIL replay %s: out of memory\n", name);
			return 1;
		}
		memcpy(in, buf, n);
		(void)LLVMFuzzerTestOneInput(in, n);
		free(in);
	}
	printf("PASS replay %s: %d inputs\n", name, argc - 1);
	return 0;
}
