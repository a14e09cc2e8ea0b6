/*
 * textfile_test.c - textfile.c: the size bound at exactly max and max + 1
 * bytes, an empty file, a directory, a FIFO (must not hang), a missing
 * file, the TEXTFILE_PRIVATE mode refusal, a pipe read through
 * TEXTFILE_ANYTYPE (the path that grows the buffer), the line walk over
 * CRLF, blank and unterminated lines, and textfile_nth() over empty
 * entries.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "textfile.h"
#include "t.h"

#define SMALL_MAX	100
#define DIR_MAX		(1024 * 1024)	/* over a directory's st_size */
#define PIPE_BYTES	10000	/* past the first growth step, within a
				   pipe's buffer so one write does it */

static char tmpdir[] = "/tmp/textfile_test.XXXXXX";

static int
write_file(const char *path, const char *data, size_t len, mode_t mode)
{
	int fd;

	unlink(path);
	if ((fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600)) == -1)
		return -1;
	if (write(fd, data, len) != (ssize_t)len || fchmod(fd, mode) == -1) {
		close(fd);
		return -1;
	}
	return close(fd);
}

static int
test_bound(void)
{
	char path[256], err[512], want[512], data[SMALL_MAX + 1], *buf;
	size_t len;

	snprintf(path, sizeof(path), "%s/f", tmpdir);
	memset(data, 'x', sizeof(data));
	CHECK(write_file(path, data, SMALL_MAX, 0644) == 0);
	CHECK(textfile_read(path, SMALL_MAX, 0, &buf, &len, err,
	    sizeof(err)) == TEXTFILE_OK);
	CHECK(len == SMALL_MAX && memcmp(buf, data, len) == 0);
	CHECK(buf[len] == '\0');
	free(buf);
	CHECK(write_file(path, data, SMALL_MAX + 1, 0644) == 0);
	CHECK(textfile_read(path, SMALL_MAX, 0, &buf, &len, err,
	    sizeof(err)) == TEXTFILE_BIG);
	CHECK(buf == NULL && len == 0);
	snprintf(want, sizeof(want), "%s: larger than %d bytes", path,
	    SMALL_MAX);
	CHECK_STR(err, want);
	/* Empty: a buffer all the same, so callers need no special case. */
	CHECK(write_file(path, "", 0, 0644) == 0);
	CHECK(textfile_read(path, SMALL_MAX, 0, &buf, &len, err,
	    sizeof(err)) == TEXTFILE_OK);
	CHECK(buf != NULL && len == 0 && buf[0] == '\0');
	free(buf);
	CHECK(unlink(path) == 0);
	return 0;
}

static int
test_types(void)
{
	char path[256], err[512], want[512], *buf;
	size_t len;

	/* A directory: refused by type, or failing at read() when any
	 * type is allowed (relay.conf's "cannot read: Is a directory"). */
	snprintf(path, sizeof(path), "%s/dir", tmpdir);
	CHECK(mkdir(path, 0700) == 0);
	CHECK(textfile_read(path, SMALL_MAX, 0, &buf, &len, err,
	    sizeof(err)) == TEXTFILE_NOTREG);
	snprintf(want, sizeof(want), "%s: not a regular file", path);
	CHECK_STR(err, want);
	CHECK(buf == NULL);
	CHECK(textfile_read(path, DIR_MAX, TEXTFILE_ANYTYPE, &buf, &len,
	    err, sizeof(err)) == TEXTFILE_READ);
	CHECK(errno == EISDIR);
	snprintf(want, sizeof(want), "%s: %s", path, strerror(EISDIR));
	CHECK_STR(err, want);
	CHECK(rmdir(path) == 0);
	/* A FIFO without a writer: refused at once, not waited on. */
	snprintf(path, sizeof(path), "%s/fifo", tmpdir);
	CHECK(mkfifo(path, 0600) == 0);
	CHECK(textfile_read(path, SMALL_MAX, 0, &buf, &len, err,
	    sizeof(err)) == TEXTFILE_NOTREG);
	CHECK(unlink(path) == 0);
	/* Missing: errno kept for callers with their own wording. */
	snprintf(path, sizeof(path), "%s/nosuch", tmpdir);
	CHECK(textfile_read(path, SMALL_MAX, 0, &buf, &len, err,
	    sizeof(err)) == TEXTFILE_OPEN);
	CHECK(errno == ENOENT);
	snprintf(want, sizeof(want), "%s: %s", path, strerror(ENOENT));
	CHECK_STR(err, want);
	/* No room for a message is fine. */
	CHECK(textfile_read(path, SMALL_MAX, 0, &buf, &len, NULL, 0) ==
	    TEXTFILE_OPEN);
	return 0;
}

static int
test_private(void)
{
	static const mode_t refused[] = { 0604, 0602, 0601, 0644 };
	char path[256], err[512], want[512], *buf;
	size_t i, len;

	snprintf(path, sizeof(path), "%s/secret", tmpdir);
	CHECK(write_file(path, "u p\n", 4, 0640) == 0);
	CHECK(textfile_read(path, SMALL_MAX, TEXTFILE_PRIVATE, &buf, &len,
	    err, sizeof(err)) == TEXTFILE_OK);
	CHECK(len == 4 && memcmp(buf, "u p\n", 4) == 0);
	free(buf);
	snprintf(want, sizeof(want), "%s: others may access it (chmod o= "
	    "it): refused", path);
	for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		CHECK(chmod(path, refused[i]) == 0);
		CHECK(textfile_read(path, SMALL_MAX, TEXTFILE_PRIVATE, &buf,
		    &len, err, sizeof(err)) == TEXTFILE_MODE);
		CHECK_STR(err, want);
		CHECK(buf == NULL);
	}
	/* Without the flag the mode is not looked at. */
	CHECK(textfile_read(path, SMALL_MAX, 0, &buf, &len, err,
	    sizeof(err)) == TEXTFILE_OK);
	free(buf);
	CHECK(unlink(path) == 0);
	return 0;
}

/* A pipe says size 0: everything arrives by growing the buffer. */
static int
test_pipe(void)
{
	char path[64], err[512], *data, *buf;
	size_t len;
	int p[2], rc;

	CHECK((data = malloc(PIPE_BYTES)) != NULL);
	memset(data, 'p', PIPE_BYTES);
	CHECK(pipe(p) == 0);
	CHECK(write(p[1], data, PIPE_BYTES) == PIPE_BYTES);
	CHECK(close(p[1]) == 0);
	snprintf(path, sizeof(path), "/dev/fd/%d", p[0]);
	rc = textfile_read(path, PIPE_BYTES, TEXTFILE_ANYTYPE, &buf, &len,
	    err, sizeof(err));
	CHECK(close(p[0]) == 0);
	CHECK(rc == TEXTFILE_OK);
	CHECK(len == PIPE_BYTES && memcmp(buf, data, len) == 0);
	CHECK(buf[len] == '\0');
	free(buf);
	/* One byte over the bound, found while growing. */
	CHECK(pipe(p) == 0);
	CHECK(write(p[1], data, PIPE_BYTES) == PIPE_BYTES);
	CHECK(close(p[1]) == 0);
	snprintf(path, sizeof(path), "/dev/fd/%d", p[0]);
	rc = textfile_read(path, PIPE_BYTES - 1, TEXTFILE_ANYTYPE, &buf, &len,
	    err, sizeof(err));
	CHECK(close(p[0]) == 0);
	CHECK(rc == TEXTFILE_BIG && buf == NULL);
	CHECK(strstr(err, ": larger than 9999 bytes") != NULL);
	/* And refused by type without the flag. */
	CHECK(pipe(p) == 0);
	snprintf(path, sizeof(path), "/dev/fd/%d", p[0]);
	rc = textfile_read(path, PIPE_BYTES, 0, &buf, &len, err, sizeof(err));
	CHECK(close(p[0]) == 0 && close(p[1]) == 0);
	CHECK(rc == TEXTFILE_NOTREG);
	free(data);
	return 0;
}

/* The lines of text joined with '|', each '\r' shown as 'R'. */
static int
walk(const char *text, size_t len, char *out, size_t outsz)
{
	size_t pos = 0, n, i, o = 0;
	const char *l;
	int lines = 0;

	while (textfile_line(text, len, &pos, &l, &n)) {
		if (lines++ > 0 && o + 1 < outsz)
			out[o++] = '|';
		for (i = 0; i < n && o + 1 < outsz; i++)
			out[o++] = l[i] == '\r' ? 'R' : l[i];
		if (pos > len)
			return -1;
	}
	out[o] = '\0';
	return lines;
}

static int
test_lines(void)
{
	static const char nul[] = "a\0b\nc";
	char out[128];

	CHECK(walk("a\r\nb\n\nc", 8, out, sizeof(out)) == 4);
	CHECK_STR(out, "aR|b||c");
	/* A final '\n' ends the last line; it does not start another. */
	CHECK(walk("x\n", 2, out, sizeof(out)) == 1);
	CHECK_STR(out, "x");
	CHECK(walk("\n", 1, out, sizeof(out)) == 1);
	CHECK_STR(out, "");
	CHECK(walk("", 0, out, sizeof(out)) == 0);
	/* Lengths, not NULs, bound a line. */
	CHECK(walk(nul, sizeof(nul) - 1, out, sizeof(out)) == 2);
	CHECK(out[0] == 'a' && out[1] == '\0');
	{
		size_t pos = 0, n;
		const char *l;

		CHECK(textfile_line(nul, sizeof(nul) - 1, &pos, &l, &n) == 1);
		CHECK(l == nul && n == 3 && pos == 4);
		CHECK(textfile_line(nul, sizeof(nul) - 1, &pos, &l, &n) == 1);
		CHECK(l == nul + 4 && n == 1 && pos == 5);
		CHECK(textfile_line(nul, sizeof(nul) - 1, &pos, &l, &n) == 0);
	}
	return 0;
}

static int
test_nth(void)
{
	static const char list[] = "ab\0\0c\0last";

	CHECK(textfile_nth(list, 0) == list);
	CHECK_STR(textfile_nth(list, 0), "ab");
	/* An empty entry counts (config.c's "no default"). */
	CHECK(textfile_nth(list, 1) == list + 3);
	CHECK_STR(textfile_nth(list, 1), "");
	CHECK_STR(textfile_nth(list, 2), "c");
	CHECK_STR(textfile_nth(list, 3), "last");
	CHECK(textfile_nth(list, 3) == list + sizeof(list) - 5);
	return 0;
}

static const struct t_case cases[] = {
	{ "exactly max, max + 1, empty", test_bound },
	{ "directory, FIFO, missing file", test_types },
	{ "TEXTFILE_PRIVATE mode refusal", test_private },
	{ "pipe through TEXTFILE_ANYTYPE", test_pipe },
	{ "line walk: CRLF, blank, no final LF", test_lines },
	{ "nth of a NUL-separated list", test_nth },
};

int
main(void)
{
	int rc;

	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	rc = t_run("textfile", cases, sizeof(cases) / sizeof(cases[0]));
	rmdir(tmpdir);
	return rc;
}
