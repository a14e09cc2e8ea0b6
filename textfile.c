/*
 * textfile.c - reading a bounded file into memory, walking a buffer line
 * by line, and the i-th of a NUL-separated list (textfile.h).  It owns
 * the open/fstat/read/close steps and their refusals, not the syntax of
 * any file.  The bytes read are wiped on every path that drops them, so
 * the credential files need no copy of their own: cheap for the rest,
 * and this file cannot tell which is which.
 * textfile_read() returns TEXTFILE_OK or a TEXTFILE_* kind.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "textfile.h"

/* The first step when the file is larger than fstat() said (a pipe
 * says 0): small enough for a pipe of a few lines, few reallocations
 * for relay.conf. */
#define TEXTFILE_GROW_MIN	4096

static int textfile_slurp(int, size_t, size_t, char **, size_t *);
static int textfile_grow(char **, size_t, size_t *, size_t);
static void textfile_err(char *, size_t, const char *, size_t, int, int);

int
textfile_read(const char *path, size_t max, unsigned flags, char **buf,
    size_t *len, char *err, size_t errsz)
{
	struct stat st;
	char *b = NULL;
	size_t got = 0;
	int fd, fail, saved;
	/* O_NONBLOCK: a FIFO in the file's place must not hang start-up
	 * before fstat() refuses it. */
	int oflags = O_RDONLY | O_CLOEXEC | O_NOCTTY |
	    ((flags & TEXTFILE_ANYTYPE) != 0 ? 0 : O_NONBLOCK);

	*buf = NULL;
	*len = 0;
	/* fstatat(AT_EMPTY_PATH) is fstat(), one libc import less. */
	if ((fd = textfile_open(path, oflags)) == -1 ||
	    fstatat(fd, "", &st, AT_EMPTY_PATH) == -1)
		fail = TEXTFILE_OPEN;
	else if ((flags & TEXTFILE_ANYTYPE) == 0 && !S_ISREG(st.st_mode))
		fail = TEXTFILE_NOTREG;
	else if ((flags & TEXTFILE_PRIVATE) != 0 &&
	    (st.st_mode & (S_IROTH | S_IWOTH | S_IXOTH)) != 0)
		fail = TEXTFILE_MODE;
	else if (st.st_size < 0 || (uintmax_t)st.st_size > max)
		fail = TEXTFILE_BIG;
	else
		fail = textfile_slurp(fd, (size_t)st.st_size, max, &b, &got);
	saved = errno;
	if (fd != -1 && close(fd) == -1 && fail == TEXTFILE_OK) {
		fail = TEXTFILE_CLOSE;
		saved = errno;
	}
	if (fail != TEXTFILE_OK) {
		if (b != NULL) {
			sodium_memzero(b, got);
			free(b);
		}
		textfile_err(err, errsz, path, max, fail, saved);
		errno = saved;
		return fail;
	}
	b[got] = '\0';
	*buf = b;
	*len = got;
	return TEXTFILE_OK;
}

/*
 * Read to EOF into *bp (got bytes, room for a NUL after them).  size is
 * fstat()'s word, one byte of room more lets the read that sees EOF land
 * without growing; a file that has more is grown into, up to max + 1
 * bytes, the first that is too many.
 */
static int
textfile_slurp(int fd, size_t size, size_t max, char **bp, size_t *gotp)
{
	size_t cap = size + 2, got = 0;
	ssize_t r;
	int fail = TEXTFILE_OK;

	if ((*bp = malloc(cap)) == NULL)
		return TEXTFILE_NOMEM;
	for (;;) {
		if (got + 1 == cap) {
			if (got > max) {
				fail = TEXTFILE_BIG;
				break;
			}
			if (textfile_grow(bp, got, &cap, max) != 0) {
				fail = TEXTFILE_NOMEM;
				break;
			}
		}
		r = read(fd, *bp + got, cap - 1 - got);
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1) {
			fail = TEXTFILE_READ;
			break;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	*gotp = got;
	return fail;
}

/* Not realloc(): it could leave a copy of a secret in the freed block. */
static int
textfile_grow(char **bp, size_t got, size_t *cap, size_t max)
{
	size_t ncap = *cap < TEXTFILE_GROW_MIN ? TEXTFILE_GROW_MIN : *cap * 2;
	char *n;

	if (ncap > max + 2)
		ncap = max + 2;
	if ((n = malloc(ncap)) == NULL)
		return -1;
	memcpy(n, *bp, got);
	sodium_memzero(*bp, got);
	free(*bp);
	*bp = n;
	*cap = ncap;
	return 0;
}

static void
textfile_err(char *err, size_t errsz, const char *path, size_t max,
    int fail, int e)
{
	const char *what;

	if (err == NULL || errsz == 0)
		return;
	switch (fail) {
	case TEXTFILE_NOTREG:
		what = "not a regular file";
		break;
	case TEXTFILE_MODE:
		what = "others may access it (chmod o= it): refused";
		break;
	case TEXTFILE_BIG:
		snprintf(err, errsz, "%s: larger than %zu bytes", path, max);
		return;
	case TEXTFILE_NOMEM:
		what = "out of memory";
		break;
	default:
		what = strerror(e);
		break;
	}
	snprintf(err, errsz, "%s: %s", path, what);
}

int
textfile_line(const char *text, size_t len, size_t *pos, const char **line,
    size_t *n)
{
	const char *nl;

	/* Set at the end too: the callers' loops then read no unset
	 * pointer, which gcc's maybe-uninitialized cannot always see. */
	*line = text + *pos;
	*n = 0;
	if (*pos >= len)
		return 0;
	nl = memchr(*line, '\n', len - *pos);
	*n = nl != NULL ? (size_t)(nl - *line) : len - *pos;
	*pos += *n + (nl != NULL);
	return 1;
}

const char *
textfile_nth(const char *list, size_t i)
{
	for (; i > 0; i--)
		list += strlen(list) + 1;
	return list;
}

size_t
textfile_strnlen(const char *s, size_t max)
{
	size_t n = 0;

	while (n < max && s[n] != '\0')
		n++;
	return n;
}

void
textfile_fmt(char *dst, size_t size, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(dst, size, fmt, ap);
	va_end(ap);
}

void
textfile_copy(char *dst, size_t size, const char *src)
{
	size_t n = textfile_strnlen(src, size - 1);

	memcpy(dst, src, n);
	dst[n] = '\0';
}

int
textfile_open(const char *path, int flags)
{
	return openat(AT_FDCWD, path, flags);
}
