/*
 * t.h - the unit tests' only "framework": a table of { label, fn },
 * RUN/PASS/FAIL lines, a count, and a non-zero exit on any failure.
 * A test function returns 0 when every check held; CHECK() prints the
 * failing expression with its line and makes the test fail.
 */
#ifndef FERRY_T_H
#define FERRY_T_H

#include <stdio.h>
#include <string.h>

struct t_case {
	const char *label;
	int (*fn)(void);
};

#define CHECK(e) do {							\
	if (!(e)) {							\
		fprintf(stderr, "  %s:%d: CHECK(%s) failed\n",		\
		    __FILE__, __LINE__, #e);				\
		return 1;						\
	}								\
} while (0)

#define CHECK_STR(a, b) do {						\
	const char *t_a_ = (a), *t_b_ = (b);				\
	if (t_a_ == NULL || strcmp(t_a_, t_b_) != 0) {			\
		fprintf(stderr, "  %s:%d: \"%s\" != \"%s\"\n",		\
		    __FILE__, __LINE__, t_a_ ? t_a_ : "(null)", t_b_);	\
		return 1;						\
	}								\
} while (0)

static inline int
t_run(const char *suite, const struct t_case *c, size_t n)
{
	size_t i, failed = 0;

	for (i = 0; i < n; i++) {
		printf("RUN  %s: %s\n", suite, c[i].label);
		fflush(stdout);
		if (c[i].fn() != 0) {
			printf("FAIL %s: %s\n", suite, c[i].label);
			failed++;
		} else
			printf("PASS %s: %s\n", suite, c[i].label);
	}
	printf("%s: %zu passed, %zu failed\n", suite, n - failed, failed);
	return failed ? 1 : 0;
}

#define T_MAIN(suite, cases) \
int main(void) { return t_run(suite, cases, sizeof(cases) / sizeof(cases[0])); }

#endif
