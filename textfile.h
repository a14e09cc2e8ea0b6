/*
 * textfile.h - reading a bounded file into memory, and walking a buffer
 * line by line: what the loaders of relay.conf, the aliases file, the
 * users and smarthost credential files and the fingerprint list share;
 * and the i-th of NUL-separated strings, which the tables of names and
 * replies are.  The parsing, and the meaning of each line, stay with
 * those files.
 */
#ifndef FERRY_TEXTFILE_H
#define FERRY_TEXTFILE_H

#include <stddef.h>

/* textfile_read() flags */
#define TEXTFILE_PRIVATE	0x1u	/* refuse a file others may access */
#define TEXTFILE_ANYTYPE	0x2u	/* pipes and devices too, opened
					   blocking (relay.conf did so) */

/* What textfile_read() failed at; errno says why where a call failed. */
enum textfile_fail {
	TEXTFILE_OK,
	TEXTFILE_OPEN,		/* open() or fstat(): errno */
	TEXTFILE_NOTREG,	/* not a regular file */
	TEXTFILE_MODE,		/* TEXTFILE_PRIVATE: others may access it */
	TEXTFILE_BIG,		/* more than max bytes */
	TEXTFILE_NOMEM,		/* malloc(): errno */
	TEXTFILE_READ,		/* read(): errno */
	TEXTFILE_CLOSE		/* close(): errno */
};

/*
 * The file whole into *buf (malloc'd, NUL-terminated for convenience,
 * *len bytes before the NUL; the caller frees it, wiping it first if it
 * may hold secrets): a regular file unless TEXTFILE_ANYTYPE, of at most
 * max bytes (max below SIZE_MAX / 2), read until EOF so a file that grew
 * since fstat() is still held to max.  Returns TEXTFILE_OK, or a
 * TEXTFILE_* kind with errno kept and "PATH: what" in err (strerror, "not
 * a regular file", "others may access it (chmod o= it): refused",
 * "larger than MAX bytes", "out of memory"), which a caller with its own
 * wording may overwrite.  Whatever was read is wiped before a failure
 * returns.
 */
int textfile_read(const char *path, size_t max, unsigned flags, char **buf,
    size_t *len, char *err, size_t errsz);

/*
 * The next line of text[0..len) from *pos on, without its '\n' (a '\r'
 * before it stays: callers treat it differently); a last line without
 * '\n' counts.  Returns 1 with *line and *n set and *pos moved past it,
 * or 0 at the end (*line at the end, *n 0).
 */
int textfile_line(const char *text, size_t len, size_t *pos,
    const char **line, size_t *n);

/*
 * The i-th (from 0) of strings stored one after another, each ended by a
 * NUL: the tables of names and replies use this instead of an array of
 * pointers (8 bytes and a relocation each).  i must be below their count.
 */
const char *textfile_nth(const char *list, size_t i);

/* strnlen() by hand: one libc import less. */
size_t textfile_strnlen(const char *, size_t max);

/* snprintf(dst, size, "%s", src) without the format: src cut to fit in
 * size (> 0) bytes, always NUL-terminated; the two must not overlap. */
void textfile_copy(char *dst, size_t size, const char *src);
/* snprintf() whose cut is meant: a reason or a name kept to its buffer,
 * as Postfix keeps them (gcc's -Wformat-truncation, which the sanitizer
 * build's -O1 runs, would ask for each call's result to be checked). */
void textfile_fmt(char *dst, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* open(path, flags) without O_CREAT: openat() is imported anyway, and
 * open() would be one libc import more. */
int textfile_open(const char *path, int flags);

#endif
