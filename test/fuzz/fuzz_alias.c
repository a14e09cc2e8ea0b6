/* fuzz_alias.c - alias_parse() and alias_expand() on arbitrary bytes:
 * no crash, and every expansion result is a bounded, terminated string. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "alias.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	static char out[ALIAS_EXPAND_MAX][512];
	struct alias_table *t;
	const char *why;
	char err[256];
	int n, i;

	t = alias_parse("fuzz", (const char *)data, len, err, sizeof(err));
	if (t == NULL)
		return 0;
	n = alias_expand(t, "root", "box.test", out, ALIAS_EXPAND_MAX, &why);
	for (i = 0; i < n; i++)
		if (memchr(out[i], '\0', sizeof(out[i])) == NULL)
			__builtin_trap();
	alias_free(t);
	return 0;
}
