/*
 * queue_test.c - the flat-directory queue, in a scratch directory: the
 * exact file format, byte-for-byte bodies, buffering, every truncation of
 * a file and of a state sidecar, bad images, state round trips, delete,
 * walk order and quarantine, the start-up sweep, and the group commit run
 * by the real event loop.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "log.h"
#include "loop.h"
#include "queue.h"
#include "t.h"

#define T_BIG_BODY	100000	/* several writer buffers */
#define T_MAX_COMMITS	4

struct commit_seen {
	int calls;
	int ok;
	char id[QUEUE_ID_SIZE];
};

static int rm_one(const char *, const struct stat *, int, struct FTW *);
static int setup(void);
static void teardown(void);
static char *slurp(const char *, size_t *);
static int spew(const char *, const void *, size_t);
static char *qpath(const char *, const char *);
static int exists(const char *, const char *);
static int commit_one(const char *, const char *, const char *const *,
    unsigned, const void *, size_t, char *);
static void on_commit(void *, const char *, int);
static void on_stop(struct loop_timer *);
static int walk_collect(const struct queue_info *, void *);
static int walk_first(const struct queue_info *, void *);
static int t_format(void);
static int t_roundtrip(void);
static int t_null_sender(void);
static int t_buffering(void);
static int t_big(void);
static int t_torn(void);
static int t_bad_images(void);
static int t_id_mismatch(void);
static int t_writer_limits(void);
static int t_abort(void);
static int t_state(void);
static int t_state_torn(void);
static int t_state_corrupt(void);
static int t_state_warned(void);
static int t_state_notified(void);
static int t_state_reason(void);
static int t_state_append(void);
static int t_state_tail(void);
static int t_state_tail_size(void);
static int t_state_tail_stale(void);
static int t_rcpt_strings(void);
static void rc_free(struct queue_rcpt *, size_t);
static int t_delete(void);
static int t_walk(void);
static int corrupt_holds(const char *, size_t);
static int t_corrupt_no_replace(void);
static int t_sweep(void);
static int t_group_commit(void);
static int t_forget(void);
static int t_maildrop(void);
static int t_init_dirs(void);
static int t_ids(void);

static char tdir[64];
static char pathbuf[4][512];
static unsigned pathn;

static int
rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(p);
}

/* Into dst: "I <id> <seal>\n" of n bytes at p, the line queue_update()
 * ends an append with (its own hash here, as a check of the format). */
static int
seal_line(char *dst, const char *id, const void *p, size_t n)
{
	unsigned char h[crypto_generichash_BYTES_MIN];
	char hex[17];

	crypto_generichash(h, sizeof(h), p, n, NULL, 0);
	sodium_bin2hex(hex, sizeof(hex), h, 8);
	return sprintf(dst, "I %s %s\n", id, hex);
}

static int
setup(void)
{
	snprintf(tdir, sizeof(tdir), "/tmp/queue_test.XXXXXX");
	if (mkdtemp(tdir) == NULL)
		return -1;
	return queue_open(tdir) == 0 && queue_sweep() == 0 ? 0 : -1;
}

static void
teardown(void)
{
	(void)nftw(tdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static char *
slurp(const char *path, size_t *len)
{
	struct stat st;
	char *buf;
	int fd;

	if ((fd = open(path, O_RDONLY)) == -1)
		return NULL;
	if (fstat(fd, &st) == -1 || (buf = malloc((size_t)st.st_size + 1)) ==
	    NULL) {
		close(fd);
		return NULL;
	}
	if (read(fd, buf, (size_t)st.st_size) != st.st_size) {
		free(buf);
		close(fd);
		return NULL;
	}
	close(fd);
	*len = (size_t)st.st_size;
	return buf;
}

static int
spew(const char *path, const void *p, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	if (fd == -1)
		return -1;
	if (write(fd, p, n) != (ssize_t)n) {
		close(fd);
		return -1;
	}
	return close(fd);
}

/* tdir/sub/name (sub may be ""), in a small ring of buffers. */
static char *
qpath(const char *sub, const char *name)
{
	char *p = pathbuf[pathn++ % 4];

	snprintf(p, sizeof(pathbuf[0]), "%s%s%s/%s", tdir, sub[0] ? "/" : "",
	    sub, name);
	return p;
}

static int
exists(const char *sub, const char *name)
{
	struct stat st;

	return lstat(qpath(sub, name), &st) == 0;
}

static int
commit_one(const char *sub, const char *sender, const char *const *rcpt,
    unsigned n, const void *body, size_t blen, char *id)
{
	struct queue_writer *w;
	unsigned i;

	w = queue_writer_new(sub, sender, 0, (uid_t)-1, "localhost[127.0.0.1]");
	if (w == NULL)
		return -1;
	for (i = 0; i < n; i++)
		if (queue_writer_rcpt(w, rcpt[i]) == -1)
			goto fail;
	if (queue_writer_body(w, body, blen) == -1 ||
	    queue_writer_finish(w) == -1)
		goto fail;
	memcpy(id, queue_writer_id(w), QUEUE_ID_SIZE);
	return queue_commit_now(w);
fail:
	queue_writer_abort(w);
	return -1;
}

/* The file format, byte for byte, as README documents it. */
static int
t_format(void)
{
	static const char body[] = "Subject: x\r\n\r\nhi\r\n";
	struct queue_writer *w;
	char want[1024], id[QUEUE_ID_SIZE];
	struct queue_info info;
	const char *why;
	char *img;
	size_t len;
	long t0 = (long)time(NULL);

	CHECK(setup() == 0);
	w = queue_writer_new(NULL, "a@example.org", QF_8BITMIME | QF_BOUNCE,
	    1000, "mx.example.net[192.0.2.1]");
	CHECK(w != NULL);
	CHECK(queue_writer_rcpt(w, "b@example.com") == 0);
	CHECK(queue_writer_rcpt(w, "c@example.com") == 0);
	CHECK(queue_writer_body(w, body, sizeof(body) - 1) == 0);
	CHECK(queue_writer_finish(w) == 0);
	memcpy(id, queue_writer_id(w), sizeof(id));
	CHECK(queue_commit_now(w) == 0);
	CHECK((img = slurp(qpath("", id), &len)) != NULL);
	CHECK(queue_parse(img, len, &info, &why) == 0);
	/* arrival is whatever second the writer saw; take it from the file */
	CHECK((long)info.arrival >= t0 && (long)info.arrival <= t0 + 5);
	snprintf(want, sizeof(want), "FERRY1\nI %s\nT %lu\nF 5\nU 1000\n"
	    "C mx.example.net[192.0.2.1]\nS a@example.org\nR b@example.com\n"
	    "R c@example.com\nB\n%s\nE %zu\n", id,
	    (unsigned long)info.arrival, body, sizeof(body) - 1);
	CHECK(len == strlen(want));
	CHECK(memcmp(img, want, len) == 0);
	queue_info_free(&info);
	free(img);
	teardown();
	return 0;
}

static int
t_roundtrip(void)
{
	static const char body[] = "From: a\r\n\r\nNUL\0here\r\nbare\nLF\rCR"
	    "\x80\xff\x00\r\n.\r\n";
	const size_t blen = sizeof(body) - 1;
	struct queue_writer *w;
	struct queue_info info;
	char id[QUEUE_ID_SIZE];
	const char *why = NULL;
	char *img;
	size_t len;

	CHECK(setup() == 0);
	w = queue_writer_new(NULL, "s@example.org", QF_SMTPUTF8, 42,
	    "client");
	CHECK(w != NULL);
	CHECK(queue_id_valid(queue_writer_id(w)));
	CHECK(queue_writer_rcpt(w, "r1@example.com") == 0);
	CHECK(queue_writer_rcpt(w, "r\xc3\xa9@example.com") == 0);
	CHECK(queue_writer_body(w, body, 7) == 0);
	CHECK(queue_writer_body(w, body + 7, blen - 7) == 0);
	CHECK(queue_writer_size(w) == blen);
	CHECK(queue_writer_finish(w) == 0);
	memcpy(id, queue_writer_id(w), sizeof(id));
	CHECK(exists("tmp", id));
	CHECK(!exists("", id));
	CHECK(queue_commit_now(w) == 0);
	CHECK(!exists("tmp", id));
	CHECK(exists("", id));

	CHECK(queue_load(0, id, &info, &why) == 0);
	CHECK_STR(info.id, id);
	CHECK_STR(info.sender, "s@example.org");
	CHECK(info.flags == QF_SMTPUTF8);
	CHECK(info.uid == 42);
	CHECK(info.size == blen);
	CHECK(info.nrcpt == 2);
	CHECK_STR(info.rcpt[0].address, "r1@example.com");
	CHECK_STR(info.rcpt[1].address, "r\xc3\xa9@example.com");
	CHECK(info.rcpt[0].status == RS_QUEUED);
	CHECK(info.rcpt[1].reason == NULL);
	CHECK(info.next_attempt == 0 && info.attempts == 0);
	CHECK((img = slurp(qpath("", id), &len)) != NULL);
	CHECK(info.body_off + blen < len);
	CHECK(memcmp(img + info.body_off, body, blen) == 0);
	free(img);
	queue_info_free(&info);
	CHECK(info.rcpt == NULL);
	teardown();
	return 0;
}

static int
t_null_sender(void)
{
	static const char *const r[] = { "x@example.com" };
	struct queue_writer *w;
	struct queue_info info;
	char id[QUEUE_ID_SIZE];
	const char *why;

	CHECK(setup() == 0);
	/* a forged record in the client text must stay text */
	w = queue_writer_new(NULL, "", 0, (uid_t)-1, "evil\nR y@example.com");
	CHECK(w != NULL);
	CHECK(queue_writer_rcpt(w, r[0]) == 0);
	CHECK(queue_writer_finish(w) == 0);	/* empty body */
	memcpy(id, queue_writer_id(w), sizeof(id));
	CHECK(queue_commit_now(w) == 0);
	CHECK(queue_load(0, id, &info, &why) == 0);
	CHECK_STR(info.sender, "");
	CHECK(info.uid == (uid_t)-1);
	CHECK(info.size == 0);
	CHECK(info.nrcpt == 1);
	queue_info_free(&info);
	teardown();
	return 0;
}

/* Nothing reaches the disk before finish while it fits in one buffer. */
static int
t_buffering(void)
{
	struct queue_writer *w;
	char body[1000], id[QUEUE_ID_SIZE];
	struct stat st;

	CHECK(setup() == 0);
	memset(body, 'x', sizeof(body));
	w = queue_writer_new(NULL, "a@b.c", 0, (uid_t)-1, "");
	CHECK(w != NULL);
	memcpy(id, queue_writer_id(w), sizeof(id));
	CHECK(queue_writer_rcpt(w, "d@e.f") == 0);
	CHECK(queue_writer_body(w, body, sizeof(body)) == 0);
	CHECK(stat(qpath("tmp", id), &st) == 0);
	CHECK(st.st_size == 0);
	CHECK((st.st_mode & 07777) == 0600);
	CHECK(queue_writer_finish(w) == 0);
	CHECK(stat(qpath("tmp", id), &st) == 0);
	CHECK(st.st_size > (off_t)sizeof(body));
	queue_writer_abort(w);
	teardown();
	return 0;
}

static int
t_big(void)
{
	static const size_t chunks[] = { 1, 4095, 33333, 16384, 7 };
	struct queue_writer *w;
	struct queue_info info;
	char id[QUEUE_ID_SIZE];
	const char *why;
	struct stat st;
	unsigned char *body;
	char *img;
	size_t i, off, n, len;

	CHECK(setup() == 0);
	CHECK((body = malloc(T_BIG_BODY)) != NULL);
	for (i = 0; i < T_BIG_BODY; i++)
		body[i] = (unsigned char)(i * 7 ^ i >> 8);
	w = queue_writer_new(NULL, "a@b.c", 0, (uid_t)-1, "");
	CHECK(w != NULL);
	memcpy(id, queue_writer_id(w), sizeof(id));
	CHECK(queue_writer_rcpt(w, "d@e.f") == 0);
	for (off = 0, i = 0; off < T_BIG_BODY; off += n, i++) {
		n = chunks[i % 5];
		if (n > T_BIG_BODY - off)
			n = T_BIG_BODY - off;
		CHECK(queue_writer_body(w, body + off, n) == 0);
	}
	/* only whole buffers were written so far */
	CHECK(stat(qpath("tmp", id), &st) == 0);
	CHECK(st.st_size > 0 && st.st_size % QUEUE_BUF_SIZE == 0);
	CHECK(queue_writer_finish(w) == 0);
	CHECK(queue_commit_now(w) == 0);
	CHECK(queue_load(0, id, &info, &why) == 0);
	CHECK(info.size == T_BIG_BODY);
	CHECK((img = slurp(qpath("", id), &len)) != NULL);
	CHECK(memcmp(img + info.body_off, body, T_BIG_BODY) == 0);
	/* the same file parses from memory as from disk */
	queue_info_free(&info);
	CHECK(queue_parse(img, len, &info, &why) == 0);
	CHECK(info.size == T_BIG_BODY);
	queue_info_free(&info);
	free(img);
	free(body);
	teardown();
	return 0;
}

/* Every proper prefix, and one byte too many, must be refused. */
static int
t_torn(void)
{
	static const char *const r[] = { "x@example.com", "y@example.com" };
	struct queue_info info;
	char id[QUEUE_ID_SIZE];
	const char *why;
	char *img, *cut;
	size_t len, i;

	CHECK(setup() == 0);
	CHECK(commit_one(NULL, "a@b.c", r, 2, "body\r\n", 6, id) == 0);
	CHECK((img = slurp(qpath("", id), &len)) != NULL);
	for (i = 0; i < len; i++) {
		/* an exact-size copy, so ASan sees any read past the end */
		CHECK((cut = malloc(i ? i : 1)) != NULL);
		memcpy(cut, img, i);
		why = NULL;
		if (queue_parse(cut, i, &info, &why) == 0) {
			fprintf(stderr, "  prefix %zu parsed\n", i);
			free(cut);
			return 1;
		}
		CHECK(why != NULL && info.rcpt == NULL);
		free(cut);
	}
	CHECK((cut = malloc(len + 1)) != NULL);
	memcpy(cut, img, len);
	cut[len] = '\n';
	CHECK(queue_parse(cut, len + 1, &info, &why) == -1);
	CHECK(queue_parse(cut, len, &info, &why) == 0);
	queue_info_free(&info);
	free(cut);
	free(img);
	teardown();
	return 0;
}

static int
t_bad_images(void)
{
#define HDR "FERRY1\nI 0123456789ABCDEF01\nT 1700000000\nF 0\nU -\nC c\n"
	static const struct {
		const char *img;
		const char *why;	/* NULL: must parse */
	} cases[] = {
		{ HDR "S a@b\nR c@d\nB\nhi\nE 2\n", NULL },
		{ HDR "S \nR c@d\nB\n\nE 0\n", NULL },
		{ "FERRY2\nI 0123456789ABCDEF01\n", "bad magic" },
		{ "", "empty file" },
		{ HDR "S a@b\nR c@d\nB\nhi\nE 3\n", "torn: length" },
		{ HDR "S a@b\nR c@d\nB\nhi\nE 1\n", "torn: length" },
		{ HDR "S a@b\nR c@d\nB\nhi\nE 02\n", "torn: no end" },
		{ HDR "S a@b\nR c@d\nB\nhi\nE 2", "torn: no end" },
		{ HDR "S a@b\nR c@d\nB\nhi\nE 2\n\n", "torn: no end" },
		{ HDR "S a@b\nB\nhi\nE 2\n", "no recipients" },
		{ HDR "S a@b\nR \nB\nhi\nE 2\n", "bad recipient" },
		{ HDR "S a@b\nR c\x01@d\nB\nhi\nE 2\n", "bad recipient" },
		{ HDR "S a\x7f@b\nR c@d\nB\nhi\nE 2\n", "bad sender" },
		{ HDR "R c@d\nS a@b\nB\nhi\nE 2\n", "bad record order" },
		{ HDR "S a@b\nR c@d\nX y\nB\nhi\nE 2\n", "bad record order" },
		{ "FERRY1\nI 0123456789abcdef01\nT 1\nF 0\nU -\nC c\nS a\n"
		    "R c\nB\n\nE 0\n", "bad id" },
		{ "FERRY1\nI 0123456789ABCDEF01\nT 01\nF 0\nU -\nC c\nS a\n"
		    "R c\nB\n\nE 0\n", "bad arrival" },
		{ "FERRY1\nI 0123456789ABCDEF01\nT 1\nF 0\nU 4294967295\n"
		    "C c\nS a\nR c\nB\n\nE 0\n", "bad uid" },
		{ "FERRY1\nI 0123456789ABCDEF01\nT 1\nF X\nU -\nC c\nS a\n"
		    "R c\nB\n\nE 0\n", "bad flags" },
		{ "FERRY1\nI 0123456789ABCDEF01\nT 99999999999999999999\nF 0\n"
		    "U -\nC c\nS a\nR c\nB\n\nE 0\n", "bad arrival" },
	};
#undef HDR
	struct queue_info info;
	const char *why;
	char *img, *p;
	size_t i, n, len;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		len = strlen(cases[i].img);
		CHECK((img = malloc(len + 1)) != NULL);
		memcpy(img, cases[i].img, len);	/* no NUL to lean on */
		why = "";
		n = (size_t)queue_parse(img, len, &info, &why);
		if (cases[i].why == NULL ? n != 0 :
		    (n == 0 || strncmp(why, cases[i].why,
		    strlen(cases[i].why)) != 0)) {
			fprintf(stderr, "  case %zu: why=\"%s\"\n", i, why);
			free(img);
			return 1;
		}
		queue_info_free(&info);
		free(img);
	}

	/* QUEUE_MAX_RCPT recipients parse; one more does not */
	CHECK((img = malloc(64 + (QUEUE_MAX_RCPT + 1) * 6 + 32)) != NULL);
	for (n = QUEUE_MAX_RCPT; n <= QUEUE_MAX_RCPT + 1; n++) {
		p = img + sprintf(img, "FERRY1\nI 0123456789ABCDEF01\nT 1\nF 0\n"
		    "U -\nC \nS \n");
		for (i = 0; i < n; i++)
			p += sprintf(p, "R %03zu\n", i % 1000);
		p += sprintf(p, "B\n\nE 0\n");
		len = (size_t)(p - img);
		if (n == QUEUE_MAX_RCPT) {
			CHECK(queue_parse(img, len, &info, &why) == 0);
			CHECK(info.nrcpt == QUEUE_MAX_RCPT);
			CHECK_STR(info.rcpt[999].address, "999");
			queue_info_free(&info);
		} else {
			CHECK(queue_parse(img, len, &info, &why) == -1);
			CHECK_STR(why, "too many recipients");
		}
	}
	free(img);

	/* an envelope over QUEUE_HDR_MAX */
	CHECK((img = malloc(QUEUE_HDR_MAX + 1024)) != NULL);
	p = img + sprintf(img, "FERRY1\nI 0123456789ABCDEF01\nT 1\nF 0\n"
	    "U -\nC \nS \n");
	while ((size_t)(p - img) < QUEUE_HDR_MAX)
		p += sprintf(p, "R %0400d\n", 1);
	p += sprintf(p, "B\n\nE 0\n");
	CHECK(queue_parse(img, (size_t)(p - img), &info, &why) == -1);
	CHECK_STR(why, "envelope too long");
	free(img);
	return 0;
}

/*
 * The envelope records one at a time, each out of place, bad, and the
 * last one there: every "why" word for word (mailq and the corrupt/ log
 * line show them), and what a good envelope puts into queue_info.
 */
static int
t_envelope(void)
{
	static const char letters[] = "ITFUCS";
	static const char *const good[] = {
		"I 0123456789ABCDEF01\n", "T 1700000000\n", "F 5\n",
		"U 1000\n", "C c\n", "S a@b\n",
	};
	static const char *const bad[] = {
		"I 0123456789abcdef01\n", "T 01\n", "F A\n", "U 4294967295\n",
		"C c\x01\n", "S a\x7f@b\n",
	};
	static const char *const bad_why[] = {
		"bad id", "bad arrival time", "bad flags", "bad uid",
		"bad client", "bad sender",
	};
	static const char tail[] = "R c@d\nB\nhi\nE 2\n";
	struct queue_info info;
	char img[QUEUE_HDR_MAX + 512], want[64], *p;
	const char *why;
	size_t k, j, variant;

	for (k = 0; k < 6; k++) {
		for (variant = 0; variant < 4; variant++) {
			p = img + sprintf(img, "FERRY1\n");
			for (j = 0; j < 6; j++) {
				if (j == k && variant == 1)
					p += sprintf(p, "%s", bad[j]);
				else if (j == k && variant == 2)
					p += sprintf(p, "X y\n");
				else if (j == k && variant == 3)
					break;	/* the file ends here */
				else
					p += sprintf(p, "%s", good[j]);
			}
			if (variant != 3)
				p += sprintf(p, "%s", tail);
			why = "";
			if (variant == 0) {
				CHECK(queue_parse(img, (size_t)(p - img),
				    &info, &why) == 0);
				CHECK_STR(info.id, "0123456789ABCDEF01");
				CHECK(info.arrival == 1700000000);
				CHECK(info.flags == 5 && info.uid == 1000);
				CHECK_STR(info.sender, "a@b");
				CHECK(info.nrcpt == 1 && info.size == 2);
				queue_info_free(&info);
				continue;
			}
			CHECK(queue_parse(img, (size_t)(p - img), &info,
			    &why) == -1);
			if (variant == 1)
				CHECK_STR(why, bad_why[k]);
			else if (variant == 2) {
				snprintf(want, sizeof(want),
				    "bad record order, expected %c",
				    letters[k]);
				CHECK_STR(why, want);
			} else
				CHECK_STR(why, "torn: envelope cut short");
		}
	}

	/* a record longer than the head: too long, not torn */
	p = img + sprintf(img, "FERRY1\n%s%s%s%sC ", good[0], good[1],
	    good[2], good[3]);
	memset(p, 'x', QUEUE_HDR_MAX);
	p += QUEUE_HDR_MAX;
	p += sprintf(p, "\nS a\n%s", tail);
	CHECK(queue_parse(img, (size_t)(p - img), &info, &why) == -1);
	CHECK_STR(why, "envelope too long");
	return 0;
}

static int
t_id_mismatch(void)
{
	static const char *const r[] = { "x@example.com" };
	static const char other[] = "00000000000000ABCD";
	struct queue_info info;
	char id[QUEUE_ID_SIZE];
	const char *why = NULL;
	char *img;
	size_t len;

	CHECK(setup() == 0);
	CHECK(commit_one(NULL, "a@b.c", r, 1, "x", 1, id) == 0);
	CHECK((img = slurp(qpath("", id), &len)) != NULL);
	CHECK(spew(qpath("", other), img, len) == 0);
	free(img);
	CHECK(queue_load(0, other, &info, &why) == -1);
	CHECK(errno == EBADMSG);
	CHECK_STR(why, "id does not match file name");
	CHECK(queue_load(0, "nope", &info, &why) == -1 && errno == EINVAL);
	CHECK(queue_load(0, "00000000000000FFFF", &info, &why) == -1);
	CHECK(errno == ENOENT);
	teardown();
	return 0;
}

static int
t_writer_limits(void)
{
	struct queue_writer *w;
	struct queue_info info;
	char addr[QUEUE_ADDR_MAX + 1], id[QUEUE_ID_SIZE];
	const char *why;
	unsigned i;
	size_t n;

	CHECK(setup() == 0);
	CHECK(queue_writer_new(NULL, "a\n@b", 0, (uid_t)-1, "") == NULL);
	CHECK(errno == EINVAL);
	CHECK(queue_writer_new("../x", "a@b", 0, (uid_t)-1, "") == NULL);
	CHECK(queue_writer_new(".", "a@b", 0, (uid_t)-1, "") == NULL);
	memset(addr, 'a', sizeof(addr) - 1);
	addr[sizeof(addr) - 1] = '\0';
	CHECK(queue_writer_new(NULL, addr, 0, (uid_t)-1, "") == NULL);

	w = queue_writer_new(NULL, "a@b", 0, (uid_t)-1, "");
	CHECK(w != NULL);
	CHECK(queue_writer_body(w, "x", 1) == -1);	/* no rcpt yet */
	CHECK(queue_writer_rcpt(w, "") == -1);
	CHECK(queue_writer_rcpt(w, "c\r@d") == -1);
	CHECK(queue_writer_rcpt(w, addr) == -1);
	addr[QUEUE_ADDR_MAX - 1] = '\0';		/* longest allowed */
	CHECK(queue_writer_rcpt(w, addr) == 0);
	/* the envelope stops at QUEUE_HDR_MAX, with E2BIG */
	for (i = 1; i < QUEUE_MAX_RCPT; i++)
		if (queue_writer_rcpt(w, addr) == -1)
			break;
	CHECK(i < QUEUE_MAX_RCPT && errno == E2BIG);
	CHECK(i >= (QUEUE_HDR_MAX - 200) / (QUEUE_ADDR_MAX + 2));
	/* Filled to the brim with shorter ones, the file must still parse:
	 * the writer once left its 7-byte magic line out of the count, and
	 * the parser quarantined what had been accepted. */
	for (n = QUEUE_ADDR_MAX - 2; n > 0; n--) {
		addr[n] = '\0';
		while (queue_writer_rcpt(w, addr) == 0)
			i++;
	}
	CHECK(queue_writer_body(w, "x", 1) == 0);
	CHECK(queue_writer_rcpt(w, "late@b") == -1);	/* after body */
	CHECK(queue_writer_finish(w) == 0);
	CHECK(queue_writer_body(w, "x", 1) == -1);	/* after finish */
	memcpy(id, queue_writer_id(w), sizeof(id));
	CHECK(queue_commit_now(w) == 0);
	CHECK(queue_load(0, id, &info, &why) == 0);
	CHECK(info.nrcpt == i);
	queue_info_free(&info);

	/* QUEUE_MAX_RCPT short recipients fit; one more is E2BIG */
	w = queue_writer_new(NULL, "a@b", 0, (uid_t)-1, "");
	CHECK(w != NULL);
	for (i = 0; i < QUEUE_MAX_RCPT; i++)
		CHECK(queue_writer_rcpt(w, "r@x") == 0);
	CHECK(queue_writer_rcpt(w, "r@x") == -1 && errno == E2BIG);
	queue_writer_abort(w);

	w = queue_writer_new(NULL, "a@b", 0, (uid_t)-1, "");
	CHECK(w != NULL);
	CHECK(queue_writer_finish(w) == -1);		/* no rcpt */
	queue_writer_abort(w);
	teardown();
	return 0;
}

static int
t_abort(void)
{
	struct queue_writer *w;
	char id[QUEUE_ID_SIZE];

	CHECK(setup() == 0);
	w = queue_writer_new(NULL, "a@b", 0, (uid_t)-1, "");
	CHECK(w != NULL);
	memcpy(id, queue_writer_id(w), sizeof(id));
	CHECK(exists("tmp", id));
	CHECK(queue_writer_rcpt(w, "c@d") == 0);
	CHECK(queue_writer_body(w, "data", 4) == 0);
	queue_writer_abort(w);
	CHECK(!exists("tmp", id));
	CHECK(!exists("", id));
	queue_writer_abort(NULL);
	teardown();
	return 0;
}

static int
t_state(void)
{
	static const char *const r[] = { "a@x", "b@x", "c@x" };
	struct queue_info info, again;
	char id[QUEUE_ID_SIZE], stname[QUEUE_ID_SIZE + 3];
	const char *why;

	CHECK(setup() == 0);
	CHECK(commit_one(NULL, "s@x", r, 3, "body", 4, id) == 0);
	CHECK(queue_load(0, id, &info, &why) == 0);
	info.rcpt[0].status = RS_SENT;
	CHECK(queue_rcpt_reason(&info.rcpt[0], "250 2.0.0 ok", 99) == 0);
	info.rcpt[1].status = RS_DEFERRED;
	CHECK(queue_rcpt_reason(&info.rcpt[1], "451 try\r\nlater", 99) == 0);
	info.rcpt[2].status = RS_BOUNCED;
	info.next_attempt = 1700000123;
	info.attempts = 3;
	CHECK(queue_update(&info, 1, NULL, 0) == 0);
	snprintf(stname, sizeof(stname), "%s.st", id);
	CHECK(exists("", stname));
	CHECK(!exists("tmp", stname));
	CHECK(queue_load(0, id, &again, &why) == 0);
	CHECK(again.next_attempt == 1700000123 && again.attempts == 3);
	CHECK(again.rcpt[0].status == RS_SENT);
	CHECK_STR(again.rcpt[0].reason, "250 2.0.0 ok");
	CHECK(again.rcpt[1].status == RS_DEFERRED);
	CHECK_STR(again.rcpt[1].reason, "451 try??later");
	CHECK(again.rcpt[2].status == RS_BOUNCED);
	CHECK(again.rcpt[2].reason == NULL);
	queue_info_free(&again);

	/* a second update replaces the first */
	info.rcpt[1].status = RS_SENT;
	CHECK(queue_rcpt_reason(&info.rcpt[1], "", 99) == 0);
	CHECK(info.rcpt[1].reason == NULL);
	info.attempts = 4;
	CHECK(queue_update(&info, 1, NULL, 0) == 0);
	CHECK(queue_load(0, id, &again, &why) == 0);
	CHECK(again.rcpt[1].status == RS_SENT && again.attempts == 4);
	CHECK(again.rcpt[1].reason == NULL);
	queue_info_free(&again);

	/* no state for a message that is not there */
	CHECK(queue_delete(id) == 0);
	CHECK(queue_update(&info, 1, NULL, 0) == -1 && errno == ENOENT);
	CHECK(!exists("", stname));
	info.rcpt[0].status = (enum rcpt_status)9;
	CHECK(queue_update(&info, 1, NULL, 0) == -1 && errno == EINVAL);
	queue_info_free(&info);
	teardown();
	return 0;
}

static int
t_state_torn(void)
{
	static const char st[] = "FERRYST1\nI 0123456789ABCDEF01\nN 5\nA 2\n"
	    "R 0 sent 250 ok\nR 2 deferred\nE 2\n";
	static const char *const bad[] = {
		"FERRYST1\nI 0123456789ABCDEF02\nN 5\nA 2\nE 0\n",
		"FERRYST1\nI 0123456789ABCDEF01\nN 5\nA 2\nR 3 sent\nE 1\n",
		"FERRYST1\nI 0123456789ABCDEF01\nN 5\nA 2\nR 1 sent\n"
		    "R 0 sent\nE 2\n",
		"FERRYST1\nI 0123456789ABCDEF01\nN 5\nA 2\nR 1 sent\n"
		    "R 1 sent\nE 2\n",
		"FERRYST1\nI 0123456789ABCDEF01\nN 5\nA 2\nR 1 gone\nE 1\n",
		"FERRYST1\nI 0123456789ABCDEF01\nN 5\nA 2\nR 1 sent\nE 2\n",
		"FERRYST1\nI 0123456789ABCDEF01\nN 5\nA 4294967296\nE 0\n",
		"FERRYST1\nI 0123456789ABCDEF01\nN 5\nA 2\nR 1 sent a\x1b\n"
		    "E 1\n",
		"FERRYST1\nI 0123456789ABCDEF01\nN 5\nA 2\nR x sent\nE 1\n",
	};
	struct queue_rcpt rc[3];
	struct queue_info info;
	const char *why;
	char *buf;
	size_t i, len = sizeof(st) - 1;

	memset(&info, 0, sizeof(info));
	memset(rc, 0, sizeof(rc));
	snprintf(info.id, sizeof(info.id), "0123456789ABCDEF01");
	info.nrcpt = 3;
	info.rcpt = rc;
	rc[1].status = RS_BOUNCED;	/* must be reset: the file is whole */
	for (i = 0; i < len; i++) {
		CHECK((buf = malloc(i ? i : 1)) != NULL);
		memcpy(buf, st, i);
		CHECK(queue_parse_state(buf, i, &info, &why) == -1);
		free(buf);
		/* a failed parse leaves info alone */
		CHECK(rc[1].status == RS_BOUNCED && info.attempts == 0);
	}
	CHECK((buf = malloc(len)) != NULL);
	memcpy(buf, st, len);
	CHECK(queue_parse_state(buf, len, &info, &why) == 0);
	free(buf);
	CHECK(info.next_attempt == 5 && info.attempts == 2);
	CHECK(rc[0].status == RS_SENT);
	CHECK_STR(rc[0].reason, "250 ok");
	CHECK(rc[1].status == RS_QUEUED);
	CHECK(rc[2].status == RS_DEFERRED);
	CHECK(rc[2].reason == NULL);

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (queue_parse_state(bad[i], strlen(bad[i]), &info, &why) == 0) {
			fprintf(stderr, "  bad state %zu parsed\n", i);
			return 1;
		}
	}
	CHECK(rc[0].status == RS_SENT);
	CHECK_STR(rc[0].reason, "250 ok");
	rc_free(rc, 3);
	return 0;
}

/*
 * The delay warning's "W" record: written only once set, read back,
 * optional (state files from before it parse, as "not warned"), and held
 * to the same torn-file rules as the rest.
 */
static int
t_state_warned(void)
{
	static const char *const r[] = { "a@x", "b@x" };
	static const char old_st[] = "FERRYST1\nI 0123456789ABCDEF01\nN 5\n"
	    "A 2\nR 1 deferred 451 later\nE 1\n";
	static const char new_st[] = "FERRYST1\nI 0123456789ABCDEF01\nN 5\n"
	    "A 2\nW 1700000200\nR 1 deferred 451 later\nE 1\n";
	static const char *const bad[] = {
		"FERRYST1\nI 0123456789ABCDEF01\nN 5\nA 2\nW 0\nE 0\n",
		"FERRYST1\nI 0123456789ABCDEF01\nN 5\nA 2\nW \nE 0\n",
		"FERRYST1\nI 0123456789ABCDEF01\nN 5\nA 2\nW x\nE 0\n",
		"FERRYST1\nI 0123456789ABCDEF01\nN 5\nA 2\nW 01\nE 0\n",
		"FERRYST1\nI 0123456789ABCDEF01\nN 5\nA 2\n"
		    "W 18446744073709551616\nE 0\n",
		"FERRYST1\nI 0123456789ABCDEF01\nN 5\nA 2\nW 7\nW 7\nE 0\n",
		"FERRYST1\nI 0123456789ABCDEF01\nN 5\nW 7\nA 2\nE 0\n",
		"FERRYST1\nI 0123456789ABCDEF01\nN 5\nA 2\nR 1 sent\n"
		    "W 7\nE 1\n",
		"FERRYST1\nI 0123456789ABCDEF01\nN 5\nA 2\nW 7",
	};
	struct queue_info info, again;
	struct queue_rcpt rc[2];
	char id[QUEUE_ID_SIZE], stname[QUEUE_ID_SIZE + 3], want[128];
	const char *why;
	char *buf;
	size_t i, len;

	/* Written only once set, read back by queue_load(). */
	CHECK(setup() == 0);
	CHECK(commit_one(NULL, "s@x", r, 2, "body", 4, id) == 0);
	CHECK(queue_load(0, id, &info, &why) == 0);
	CHECK(info.warned == 0);
	info.rcpt[0].status = RS_DEFERRED;
	info.next_attempt = 9;
	info.attempts = 1;
	CHECK(queue_update(&info, 0, NULL, 0) == 0);
	snprintf(stname, sizeof(stname), "%s.st", id);
	CHECK((buf = slurp(qpath("", stname), &len)) != NULL);
	CHECK(memmem(buf, len, "\nW ", 3) == NULL);
	free(buf);
	info.warned = 1700000200;
	CHECK(queue_update(&info, 1, NULL, 0) == 0);
	CHECK((buf = slurp(qpath("", stname), &len)) != NULL);
	snprintf(want, sizeof(want), "FERRYST1\nI %s\nN 9\nA 1\n"
	    "W 1700000200\nR 0 deferred\nR 1 queued\nE 2\n", id);
	CHECK(len == strlen(want) && memcmp(buf, want, len) == 0);
	free(buf);
	CHECK(queue_load(0, id, &again, &why) == 0);
	CHECK(again.warned == 1700000200 && again.attempts == 1);
	CHECK(again.rcpt[0].status == RS_DEFERRED);
	queue_info_free(&again);
	queue_info_free(&info);
	teardown();

	/* An old state file has no W: not warned, and a stale value in
	 * info is reset since the file is whole. */
	memset(&info, 0, sizeof(info));
	memset(rc, 0, sizeof(rc));
	snprintf(info.id, sizeof(info.id), "0123456789ABCDEF01");
	info.nrcpt = 2;
	info.rcpt = rc;
	info.warned = 42;
	CHECK(queue_parse_state(old_st, sizeof(old_st) - 1, &info, &why) == 0);
	CHECK(info.warned == 0 && info.attempts == 2);
	CHECK(rc[1].status == RS_DEFERRED);
	CHECK_STR(rc[1].reason, "451 later");
	CHECK(queue_parse_state(new_st, sizeof(new_st) - 1, &info, &why) == 0);
	CHECK(info.warned == 1700000200);

	/* Every truncation of the new shape fails and changes nothing. */
	for (i = 0; i < sizeof(new_st) - 1; i++) {
		CHECK((buf = malloc(i ? i : 1)) != NULL);
		memcpy(buf, new_st, i);
		CHECK(queue_parse_state(buf, i, &info, &why) == -1);
		free(buf);
		CHECK(info.warned == 1700000200);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (queue_parse_state(bad[i], strlen(bad[i]), &info,
		    &why) == 0) {
			fprintf(stderr, "  bad W state %zu parsed\n", i);
			return 1;
		}
	}
	CHECK(info.warned == 1700000200);
	rc_free(rc, 2);
	return 0;
}

/*
 * A bounced recipient whose DSN went out early ("bounced-notified"):
 * written and read back, still RS_BOUNCED to everyone else, the mark
 * dropped for any other status, old files without it read as not
 * notified, and a malformed word refused.
 */
static int
t_state_notified(void)
{
	static const char *const r[] = { "a@x", "b@x", "c@x" };
	static const char new_st[] = "FERRYST1\nI 0123456789ABCDEF01\nN 5\n"
	    "A 1\nR 0 bounced 550 5.1.1 no\nR 1 bounced-notified 550 5.1.1 "
	    "gone\nR 2 deferred 450 later\nE 3\n";
	static const char *const bad[] = {
		"FERRYST1\nI 0123456789ABCDEF01\nN 5\nA 1\n"
		    "R 1 bounced-notifie\nE 1\n",
		"FERRYST1\nI 0123456789ABCDEF01\nN 5\nA 1\n"
		    "R 1 bounced-notifiedx\nE 1\n",
		"FERRYST1\nI 0123456789ABCDEF01\nN 5\nA 1\n"
		    "R 1 sent-notified\nE 1\n",
		"FERRYST1\nI 0123456789ABCDEF01\nN 5\nA 1\n"
		    "R 1 bounced-notified\nE 2\n",
	};
	struct queue_info info, again;
	struct queue_rcpt rc[3];
	char id[QUEUE_ID_SIZE], stname[QUEUE_ID_SIZE + 3], want[256];
	const char *why;
	char *buf;
	size_t i, len;

	CHECK(setup() == 0);
	CHECK(commit_one(NULL, "s@x", r, 3, "body", 4, id) == 0);
	CHECK(queue_load(0, id, &info, &why) == 0);
	CHECK(!info.rcpt[0].notified && !info.rcpt[1].notified);
	info.rcpt[0].status = RS_BOUNCED;
	info.rcpt[0].notified = 1;
	CHECK(queue_rcpt_reason(&info.rcpt[0], "550 5.1.1 no", 99) == 0);
	info.rcpt[1].status = RS_BOUNCED;	/* bounced, DSN not yet out */
	info.rcpt[2].status = RS_SENT;
	info.rcpt[2].notified = 1;		/* meaningless: not written */
	info.next_attempt = 7;
	info.attempts = 1;
	CHECK(queue_update(&info, 1, NULL, 0) == 0);
	snprintf(stname, sizeof(stname), "%s.st", id);
	CHECK((buf = slurp(qpath("", stname), &len)) != NULL);
	snprintf(want, sizeof(want), "FERRYST1\nI %s\nN 7\nA 1\n"
	    "R 0 bounced-notified 550 5.1.1 no\nR 1 bounced\nR 2 sent\n"
	    "E 3\n", id);
	CHECK(len == strlen(want) && memcmp(buf, want, len) == 0);
	free(buf);
	CHECK(queue_load(0, id, &again, &why) == 0);
	CHECK(again.rcpt[0].status == RS_BOUNCED && again.rcpt[0].notified);
	CHECK_STR(again.rcpt[0].reason, "550 5.1.1 no");
	CHECK(again.rcpt[1].status == RS_BOUNCED && !again.rcpt[1].notified);
	CHECK(again.rcpt[2].status == RS_SENT && !again.rcpt[2].notified);
	CHECK_STR(queue_status_name(again.rcpt[0].status), "bounced");
	queue_info_free(&again);
	queue_info_free(&info);
	teardown();

	/* Parsed; a stale mark in info is reset since the file is whole. */
	memset(&info, 0, sizeof(info));
	memset(rc, 0, sizeof(rc));
	snprintf(info.id, sizeof(info.id), "0123456789ABCDEF01");
	info.nrcpt = 3;
	info.rcpt = rc;
	rc[0].notified = rc[2].notified = 1;
	CHECK(queue_parse_state(new_st, sizeof(new_st) - 1, &info, &why) == 0);
	CHECK(rc[0].status == RS_BOUNCED && !rc[0].notified);
	CHECK(rc[1].status == RS_BOUNCED && rc[1].notified);
	CHECK_STR(rc[1].reason, "550 5.1.1 gone");
	CHECK(rc[2].status == RS_DEFERRED && !rc[2].notified);

	/* Every truncation fails and changes nothing. */
	for (i = 0; i < sizeof(new_st) - 1; i++) {
		CHECK((buf = malloc(i ? i : 1)) != NULL);
		memcpy(buf, new_st, i);
		CHECK(queue_parse_state(buf, i, &info, &why) == -1);
		free(buf);
		CHECK(rc[1].notified && !rc[0].notified);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (queue_parse_state(bad[i], strlen(bad[i]), &info,
		    &why) == 0) {
			fprintf(stderr, "  bad notified state %zu parsed\n", i);
			return 1;
		}
	}
	CHECK(rc[1].notified && rc[1].status == RS_BOUNCED);
	rc_free(rc, 3);
	return 0;
}

/* A bad sidecar costs a possible duplicate, never the message. */
static int
t_state_corrupt(void)
{
	static const char *const r[] = { "a@x", "b@x" };
	struct queue_info info;
	char id[QUEUE_ID_SIZE], stname[QUEUE_ID_SIZE + 3];
	const char *why;

	CHECK(setup() == 0);
	CHECK(commit_one(NULL, "s@x", r, 2, "body", 4, id) == 0);
	snprintf(stname, sizeof(stname), "%s.st", id);
	CHECK(spew(qpath("", stname), "FERRYST1\nI garbage", 18) == 0);
	CHECK(queue_load(0, id, &info, &why) == 0);
	CHECK(info.nrcpt == 2 && info.rcpt[0].status == RS_QUEUED);
	CHECK(info.rcpt[1].status == RS_QUEUED);
	CHECK(!exists("", stname));
	CHECK(exists("corrupt", stname));
	CHECK(exists("", id));
	queue_info_free(&info);
	teardown();
	return 0;
}

/*
 * A reason as the scheduler keeps it now ("host NAME[ADDR] said: REPLY
 * (in reply to CMD command)") goes round the state file whole: with a
 * usual name, a reply of the 255 bytes deliver.c keeps of one, and any
 * text up to QUEUE_REASON_MAX - 1 bytes.  The bare replies and our own
 * words of older state files still read as they were; one byte more
 * than the limit is refused.
 */
static int
t_state_reason(void)
{
	static const char *const r[] = { "a@x", "b@x", "c@x" };
	static const char old_st[] = "FERRYST1\nI 0123456789ABCDEF01\nN 5\n"
	    "A 2\nR 0 bounced-notified 550 5.1.1 <a@x>: no such user\n"
	    "R 1 deferred 4.4.1 connect to mx.x[192.0.2.1]:25: Connection "
	    "refused\nR 2 deferred 451 4.3.0 later\nE 3\n";
	struct queue_rcpt rc[3];
	struct queue_info info, again;
	char id[QUEUE_ID_SIZE], text[1024], *buf, *p;
	const char *why;
	size_t n, len;

	CHECK(setup() == 0);
	CHECK(commit_one(NULL, "s@x", r, 3, "body", 4, id) == 0);
	CHECK(queue_load(0, id, &info, &why) == 0);
	info.rcpt[0].status = RS_BOUNCED;
	n = (size_t)snprintf(text, sizeof(text),
	    "host mx.x[192.0.2.1] said: 550 5.1.1 <a@x>: ");
	memset(text + n, 'u', QUEUE_REASON_MAX - 1 - n);
	memcpy(text + QUEUE_REASON_MAX - 31,
	    " (in reply to RCPT TO command)", 31);
	CHECK(strlen(text) == QUEUE_REASON_MAX - 1);
	CHECK(queue_rcpt_reason(&info.rcpt[0], text, sizeof(text)) == 0);
	CHECK_STR(info.rcpt[0].reason, text);
	info.rcpt[1].status = RS_DEFERRED;
	p = text + snprintf(text, sizeof(text), "host mx1.mail-hosting."
	    "example[2001:db8:4006:80a::200e] said: 451 4.3.0 ");
	memset(p, 'l', 255 - 10);
	memcpy(p + 255 - 10, " (in reply to end of DATA command)", 35);
	CHECK(strlen(text) < QUEUE_REASON_MAX);
	CHECK(queue_rcpt_reason(&info.rcpt[1], text, sizeof(text)) == 0);
	CHECK(queue_update(&info, 1, NULL, 0) == 0);
	CHECK(queue_load(0, id, &again, &why) == 0);
	CHECK_STR(again.rcpt[0].reason, info.rcpt[0].reason);
	CHECK_STR(again.rcpt[1].reason, info.rcpt[1].reason);
	queue_info_free(&again);
	queue_info_free(&info);
	teardown();

	memset(&info, 0, sizeof(info));
	memset(rc, 0, sizeof(rc));
	snprintf(info.id, sizeof(info.id), "0123456789ABCDEF01");
	info.nrcpt = 3;
	info.rcpt = rc;
	CHECK(queue_parse_state(old_st, sizeof(old_st) - 1, &info, &why) ==
	    0);
	CHECK(rc[0].status == RS_BOUNCED && rc[0].notified);
	CHECK_STR(rc[0].reason, "550 5.1.1 <a@x>: no such user");
	CHECK_STR(rc[1].reason, "4.4.1 connect to mx.x[192.0.2.1]:25: "
	    "Connection refused");
	CHECK_STR(rc[2].reason, "451 4.3.0 later");

	/* QUEUE_REASON_MAX - 1 bytes of reason parse, one more does not. */
	len = 64 + QUEUE_REASON_MAX;
	CHECK((buf = malloc(len)) != NULL);
	for (n = QUEUE_REASON_MAX - 1; n <= QUEUE_REASON_MAX; n++) {
		p = buf + snprintf(buf, len, "FERRYST1\nI 0123456789ABCDEF01\n"
		    "N 5\nA 2\nR 0 deferred ");
		memset(p, 'x', n);
		p += n;
		p += snprintf(p, len - (size_t)(p - buf), "\nE 1\n");
		if ((queue_parse_state(buf, (size_t)(p - buf), &info, &why) ==
		    0) != (n < QUEUE_REASON_MAX)) {
			free(buf);
			fprintf(stderr, "  a reason of %zu bytes\n", n);
			return 1;
		}
	}
	free(buf);
	CHECK(strlen(rc[0].reason) == QUEUE_REASON_MAX - 1);
	rc_free(rc, 3);
	return 0;
}

/*
 * Results appended to a whole state file (queue_update with idx): only
 * their records go on the file, fsynced, its time still the next
 * attempt; queue_load() sees them, a later one winning.  An append is
 * never made without the whole file under it, and a torn one (a crash
 * in its write) is ignored, not taken for a corrupt file.
 */
static int
t_state_append(void)
{
	static const char *const r[] = { "a@x", "b@x", "c@x" };
	static const unsigned two[] = { 2 }, zero_one[] = { 1, 0 };
	struct queue_info info, again;
	char id[QUEUE_ID_SIZE], stname[QUEUE_ID_SIZE + 3], want[512];
	const char *why;
	struct stat st;
	char *buf;
	size_t len;
	int fd, k, k0;

	CHECK(setup() == 0);
	CHECK(commit_one(NULL, "s@x", r, 3, "body", 4, id) == 0);
	snprintf(stname, sizeof(stname), "%s.st", id);
	CHECK(queue_load(0, id, &info, &why) == 0);
	/* No whole file yet: nothing is made up from an append alone. */
	info.rcpt[2].status = RS_SENT;
	CHECK(queue_update(&info, 1, two, 1) == -1 && errno == ENOENT);
	CHECK(!exists("", stname) && !exists("tmp", stname));

	info.rcpt[2].status = RS_QUEUED;
	info.next_attempt = 1700000123;
	info.attempts = 2;
	CHECK(queue_update(&info, 1, NULL, 0) == 0);
	info.rcpt[2].status = RS_SENT;
	CHECK(queue_rcpt_reason(&info.rcpt[2], "250 2.0.0 ok", 99) == 0);
	info.rcpt[0].status = RS_DEFERRED;	/* not named: not written */
	info.attempts = 3;			/* nor this */
	CHECK(queue_update(&info, 1, two, 1) == 0);
	CHECK((buf = slurp(qpath("", stname), &len)) != NULL);
	k = snprintf(want, sizeof(want), "FERRYST1\nI %s\nN 1700000123\nA 2"
	    "\nR 0 queued\nR 1 queued\nR 2 queued\nE 3\n"
	    "R 2 sent 250 2.0.0 ok\n", id);
	seal_line(want + k, id, "R 2 sent 250 2.0.0 ok\n", 22);
	CHECK(len == strlen(want) && memcmp(buf, want, len) == 0);
	free(buf);
	CHECK(stat(qpath("", stname), &st) == 0 &&
	    st.st_mtime == 1700000123);
	CHECK(!exists("tmp", stname));

	info.rcpt[1].status = RS_BOUNCED;
	info.rcpt[1].notified = 1;
	CHECK(queue_rcpt_reason(&info.rcpt[1], "550 5.1.1\tno", 99) == 0);
	info.rcpt[0].status = RS_SENT;
	CHECK(queue_update(&info, 1, zero_one, 2) == 0);
	CHECK((buf = slurp(qpath("", stname), &len)) != NULL);
	k = sprintf(want, "E 3\nR 2 sent 250 2.0.0 ok\n");
	k += seal_line(want + k, id, want + 4, (size_t)k - 4);
	k0 = k;
	k += sprintf(want + k, "R 1 bounced-notified 550 5.1.1?no\nR 0 sent\n");
	seal_line(want + k, id, want + k0, (size_t)(k - k0));
	CHECK(len > strlen(want) && memcmp(buf + len - strlen(want), want,
	    strlen(want)) == 0);
	free(buf);
	CHECK(queue_load(0, id, &again, &why) == 0);
	CHECK(again.attempts == 2 && again.next_attempt == 1700000123);
	CHECK(again.rcpt[0].status == RS_SENT);
	CHECK(again.rcpt[1].status == RS_BOUNCED && again.rcpt[1].notified);
	CHECK_STR(again.rcpt[1].reason, "550 5.1.1?no");
	CHECK(again.rcpt[2].status == RS_SENT);
	CHECK_STR(again.rcpt[2].reason, "250 2.0.0 ok");
	queue_info_free(&again);

	/* A crash in the next append's write: a part of a line, and zeros
	 * where a page was not written.  The rest still counts, the file
	 * stays where it is. */
	CHECK((fd = open(qpath("", stname), O_WRONLY | O_APPEND)) != -1);
	CHECK(dprintf(fd, "I %s\n", id) == QUEUE_ID_LEN + 3);
	CHECK(write(fd, "R 2 deferred 4\0\0\0\0R 0 queued\nR 1 q", 33) == 33);
	CHECK(close(fd) == 0);
	CHECK(queue_load(0, id, &again, &why) == 0);
	CHECK(again.rcpt[0].status == RS_SENT);
	CHECK(again.rcpt[2].status == RS_SENT);
	CHECK(again.rcpt[1].status == RS_BOUNCED && again.rcpt[1].notified);
	queue_info_free(&again);
	CHECK(exists("", stname) && !exists("corrupt", stname));
	/* The next write is whole (the scheduler's rule after a start): the
	 * torn part goes. */
	info.rcpt[1].notified = 0;
	CHECK(queue_update(&info, 1, NULL, 0) == 0);
	CHECK((buf = slurp(qpath("", stname), &len)) != NULL);
	CHECK(len > 4 && memcmp(buf + len - 4, "E 3\n", 4) == 0 &&
	    memchr(buf, '\0', len) == NULL);
	free(buf);

	/* The message gone: no append, no orphan. */
	CHECK(queue_delete(id) == 0);
	CHECK(queue_update(&info, 1, two, 1) == -1 && errno == ENOENT);
	CHECK(!exists("", stname));
	queue_info_free(&info);
	teardown();
	return 0;
}

/*
 * Past E: records in any order, a later one for a recipient winning;
 * cut anywhere, the whole lines before the cut are applied and the rest
 * ignored; the first record that does not parse (zeros, a bad index or
 * word) ends the file.  The whole part before E is held to the same
 * rules as ever: a tail never makes a torn or bad one parse.  (The
 * first appended record names the whole part's last recipient: the
 * order rule of the whole part ends at E.)
 */
static int
t_state_tail(void)
{
	static const char base[] = "FERRYST1\nI 0123456789ABCDEF01\nN 5\nA 2\n"
	    "R 0 deferred 451 x\nR 2 queued\nE 2\n";
	static const char *const lines[] = {
		"R 2 sent 250 ok\n", "R 0 sent 250 later\n",
		"R 2 bounced 550 no\n",
	};
#define T_STOP(s)	{ s, sizeof(s) - 1 }
	static const struct { const char *s; size_t n; } stops[] = {
		T_STOP("\0\0\0\0\0\0\0\0"), T_STOP("\0\0\0\0ok\n"),
		T_STOP("R 3 sent\n"), T_STOP("R 1 gone\n"), T_STOP("R x sent\n"),
		T_STOP("R 1\n"), T_STOP("X 1\n"), T_STOP("E 1\n"),
		T_STOP("R 1 sent a\x1b\n"), T_STOP("\n"), T_STOP("R -1 sent\n"),
		T_STOP("R 01 sent\n"), T_STOP("R 1 sent \0\n"),
		/* another message's append (a stale block, vfat) */
		T_STOP("I 0123456789ABCDEF02\n"),
		T_STOP("I 0123456789ABCDEF0\n"), T_STOP("I\n"),
	};
#undef T_STOP
	static const char *const bad[] = {
		/* E counts one record too many, or is missing */
		"FERRYST1\nI 0123456789ABCDEF01\nN 5\nA 2\nR 0 sent\nE 2\n"
		    "R 1 sent\n",
		"FERRYST1\nI 0123456789ABCDEF01\nN 5\nA 2\nR 0 sent\n"
		    "R 1 sent\n",
		"FERRYST1\nI 0123456789ABCDEF01\nN 5\nA 2\nR 1 sent\n"
		    "R 0 sent\nE 2\nR 2 sent\n",
		"FERRYST1\nI 0123456789ABCDEF01\nN 5\nA 2\nR 9 sent\nE 1\n"
		    "R 2 sent\n",
		"FERRYST1\nI 0123456789ABCDEF02\nN 5\nA 2\nE 0\nR 2 sent\n",
		"FERRYST1\nI 0123456789ABCDEF01\nN 5\nA 2\nE x\nR 2 sent\n",
	};
	struct queue_rcpt rc[3];
	struct queue_info info;
	char buf[512];
	const char *why;
	size_t i, j, blen = sizeof(base) - 1, len = blen, end[3];

	memset(&info, 0, sizeof(info));
	memset(rc, 0, sizeof(rc));
	snprintf(info.id, sizeof(info.id), "0123456789ABCDEF01");
	info.nrcpt = 3;
	info.rcpt = rc;
	memcpy(buf, base, blen);
	for (j = 0; j < 3; j++) {
		memcpy(buf + len, lines[j], strlen(lines[j]));
		len += strlen(lines[j]);
		len += (size_t)seal_line(buf + len, info.id, lines[j],
		    strlen(lines[j]));
		end[j] = len;
	}
	for (i = blen; i <= len; i++) {
		rc[1].status = RS_BOUNCED;	/* reset: the file is whole */
		CHECK(queue_parse_state(buf, i, &info, &why) == 0);
		CHECK(rc[1].status == RS_QUEUED);
		CHECK(rc[0].status == (i >= end[1] ? RS_SENT : RS_DEFERRED));
		CHECK_STR(rc[0].reason, i >= end[1] ? "250 later" : "451 x");
		CHECK(rc[2].status == (i >= end[2] ? RS_BOUNCED :
		    i >= end[0] ? RS_SENT : RS_QUEUED));
	}
	CHECK_STR(rc[2].reason, "550 no");

	/* Whatever stops the tail, what came before it counts and nothing
	 * after it does. */
	for (j = 0; j < sizeof(stops) / sizeof(stops[0]); j++) {
		len = end[0];
		memcpy(buf + len, stops[j].s, stops[j].n);
		len += stops[j].n;
		memcpy(buf + len, "R 1 sent\n", 9);
		len += 9;
		len += (size_t)seal_line(buf + len, info.id, buf + end[0],
		    len - end[0]);
		CHECK(queue_parse_state(buf, len, &info, &why) == 0);
		if (rc[2].status != RS_SENT || rc[1].status != RS_QUEUED ||
		    rc[0].status != RS_DEFERRED) {
			fprintf(stderr, "  tail stop %zu\n", j);
			return 1;
		}
	}

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (queue_parse_state(bad[i], strlen(bad[i]), &info, &why) ==
		    0) {
			fprintf(stderr, "  bad state %zu parsed\n", i);
			return 1;
		}
	}
	CHECK(rc[2].status == RS_SENT);

	/* An R record past E counts only once sealed, by its own seal. */
	memcpy(buf + blen, "R 2 sent\nR 1 sent\n", 18);
	CHECK(queue_parse_state(buf, blen + 18, &info, &why) == 0);
	CHECK(rc[2].status == RS_QUEUED && rc[1].status == RS_QUEUED);
	len = blen + 9 + (size_t)seal_line(buf + blen + 9, info.id, "R 2 sen"
	    "d\n", 9);
	memcpy(buf + blen, "R 2 sent\n", 9);
	CHECK(queue_parse_state(buf, len, &info, &why) == 0);
	CHECK(rc[2].status == RS_QUEUED);
	len = blen + 9 + (size_t)seal_line(buf + blen + 9,
	    "0123456789ABCDEF02", "R 2 sent\n", 9);
	CHECK(queue_parse_state(buf, len, &info, &why) == 0);
	CHECK(rc[2].status == RS_QUEUED);
	len = blen + 9 + (size_t)seal_line(buf + blen + 9, info.id,
	    "R 2 sent\n", 9);
	CHECK(queue_parse_state(buf, len, &info, &why) == 0);
	CHECK(rc[2].status == RS_SENT);
	rc_free(rc, 3);
	return 0;
}

/*
 * A crash in an append's fsync on a file system that does not order data
 * before metadata (vfat, ext4 data=writeback): the size is on disk, the
 * append's second page is not, and the file holds there a block of a
 * file deleted earlier, here another message's state file.  The page
 * boundary falls inside the append's last record, so that block's first
 * bytes end the record, and no line of the other message may count.
 */
static int
t_state_tail_stale(void)
{
	static const char *const r[40] = {
		"r0@a", "r1@b", "r2@c", "r3@d", "r4@e", "r5@f", "r6@g",
		"r7@h", "r8@i", "r9@j", "r10@k", "r11@l", "r12@m", "r13@n",
		"r14@o", "r15@p", "r16@q", "r17@r", "r18@s", "r19@t", "r20@u",
		"r21@v", "r22@w", "r23@x", "r24@y", "r25@z", "r26@a", "r27@b",
		"r28@c", "r29@d", "r30@e", "r31@f", "r32@g", "r33@h", "r34@i",
		"r35@j", "r36@k", "r37@l", "r38@m", "r39@n",
	};
	static const unsigned ten[] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 };
	struct queue_info a, b, again;
	char ida[QUEUE_ID_SIZE], idb[QUEUE_ID_SIZE], text[QUEUE_REASON_MAX];
	char sta[QUEUE_ID_SIZE + 3], stb[QUEUE_ID_SIZE + 3];
	const char *why;
	char *fa, *fb;
	size_t la, lb, whole;
	unsigned i, lost = 0;
	FILE *f;

	CHECK(setup() == 0);
	CHECK(commit_one(NULL, "s@x", r, 40, "body", 4, ida) == 0);
	CHECK(commit_one(NULL, "s@x", r, 40, "body", 4, idb) == 0);
	snprintf(sta, sizeof(sta), "%s.st", ida);
	snprintf(stb, sizeof(stb), "%s.st", idb);
	/* B: everything sent, the file deleted since (a whole write). */
	CHECK(queue_load(0, idb, &b, &why) == 0);
	for (i = 0; i < 40; i++) {
		b.rcpt[i].status = RS_SENT;
		snprintf(text, sizeof(text), "250 2.0.0 Ok: "
		    "queued as 4Xk%03u; host mx.example.net[192.0.2.%u] said "
		    "it took the message for delivery later on, after its content "
		    "filter had a look at it and found nothing wrong with what "
		    "it was given", i, i);
		CHECK(queue_rcpt_reason(&b.rcpt[i], text, sizeof(text)) == 0);
	}
	b.next_attempt = 1700000000;
	CHECK(queue_update(&b, 1, NULL, 0) == 0);
	CHECK((fb = slurp(qpath("", stb), &lb)) != NULL);
	/* A: every recipient deferred, then one destination answers. */
	CHECK(queue_load(0, ida, &a, &why) == 0);
	for (i = 0; i < 40; i++) {
		a.rcpt[i].status = RS_DEFERRED;
		snprintf(text, sizeof(text), "4.4.1 connect "
		    "to mx%u.example.org[203.0.113.%u]: Connection timed "
		    "out (tried 12 times)", i, i);
		CHECK(queue_rcpt_reason(&a.rcpt[i], text, sizeof(text)) == 0);
	}
	a.next_attempt = 1700000000;
	CHECK(queue_update(&a, 1, NULL, 0) == 0);
	CHECK((fa = slurp(qpath("", sta), &whole)) != NULL);
	free(fa);
	for (i = 0; i < 10; i++) {
		a.rcpt[i].status = RS_BOUNCED;
		snprintf(text, sizeof(text), "host mx.example"
		    ".org[198.51.100.7] said: 550 5.1.1 <%s>: Recipient "
		    "address rejected: User unknown in virtual mailbox table "
		    "(in reply to RCPT TO command)", r[i]);
		CHECK(queue_rcpt_reason(&a.rcpt[i], text, sizeof(text)) == 0);
	}
	CHECK(queue_update(&a, 1, ten, 10) == 0);
	CHECK((fa = slurp(qpath("", sta), &la)) != NULL);
	/* The append crosses the page boundary at 4096. */
	CHECK(whole < 4096 && la > 4096 && lb >= la);
	memcpy(fa + 4096, fb + 4096, la - 4096);
	CHECK((f = fopen(qpath("", sta), "w")) != NULL);
	CHECK(fwrite(fa, 1, la, f) == la && fclose(f) == 0);
	CHECK(queue_load(0, ida, &again, &why) == 0);
	for (i = 10; i < 40; i++)
		lost += again.rcpt[i].status == RS_SENT;
	if (lost)
		fprintf(stderr, "  %u recipients never sent read as sent\n",
		    lost);
	CHECK(lost == 0);
	queue_info_free(&again);
	queue_info_free(&a);
	queue_info_free(&b);
	free(fa);
	free(fb);
	teardown();
	return 0;
}

/*
 * The size limit holds the longest whole file and one appended record a
 * recipient, both with reasons of the longest kind: QUEUE_MAX_RCPT of
 * them, each written once between two whole writes.
 */
static int
t_state_tail_size(void)
{
	struct queue_info info;
	const char *why;
	char *buf, *p, *q;
	size_t cap = 3 * QUEUE_MAX_RCPT * (QUEUE_REASON_MAX + 40), i, pass;
	int ok;

	memset(&info, 0, sizeof(info));
	snprintf(info.id, sizeof(info.id), "0123456789ABCDEF01");
	info.nrcpt = QUEUE_MAX_RCPT;
	CHECK((info.rcpt = calloc(QUEUE_MAX_RCPT, sizeof(*info.rcpt))) != NULL);
	CHECK((buf = malloc(cap)) != NULL);
	p = buf + sprintf(buf, "FERRYST1\nI 0123456789ABCDEF01\nN 5\nA 2\n"
	    "W 1700000200\n");
	for (pass = 0; pass < 2; pass++) {
		for (i = 0; i < QUEUE_MAX_RCPT; i++) {
			q = p;
			p += sprintf(p, "R %zu %s ", QUEUE_MAX_RCPT - 1 - i,
			    pass ? "bounced-notified" : "deferred");
			memset(p, 'x', QUEUE_REASON_MAX - 1);
			p += QUEUE_REASON_MAX - 1;
			*p++ = '\n';
			if (pass)
				p += seal_line(p, info.id, q, (size_t)(p - q));
		}
		if (pass == 0) {
			/* the whole file's records go up: its order */
			p = buf + sprintf(buf, "FERRYST1\nI 0123456789ABCDEF01"
			    "\nN 5\nA 2\nW 1700000200\n");
			for (i = 0; i < QUEUE_MAX_RCPT; i++) {
				p += sprintf(p, "R %zu deferred ", i);
				memset(p, 'x', QUEUE_REASON_MAX - 1);
				p += QUEUE_REASON_MAX - 1;
				*p++ = '\n';
			}
			p += sprintf(p, "E %d\n", QUEUE_MAX_RCPT);
		}
	}
	ok = queue_parse_state(buf, (size_t)(p - buf), &info, &why) == 0 &&
	    info.rcpt[0].status == RS_BOUNCED && info.rcpt[0].notified &&
	    strlen(info.rcpt[QUEUE_MAX_RCPT - 1].reason) ==
	    QUEUE_REASON_MAX - 1;
	free(buf);
	queue_info_free(&info);
	if (!ok)
		fprintf(stderr, "  %s\n", why);
	CHECK(ok);
	return 0;
}

/*
 * A recipient's strings are allocated to fit: the longest address
 * (QUEUE_ADDR_MAX - 1 bytes) between short ones is held whole, and a
 * reason is cut where a QUEUE_REASON_MAX buffer cut it, at a NUL or at
 * n, none when that leaves nothing, the old one freed when set again.
 */
static int
t_rcpt_strings(void)
{
	struct queue_rcpt rc;
	struct queue_info info;
	char text[QUEUE_REASON_MAX + 100], *img, *p;
	const char *why;

	CHECK((img = malloc(4 * QUEUE_ADDR_MAX)) != NULL);
	p = img + sprintf(img, "FERRY1\nI 0123456789ABCDEF01\nT 1\nF 0\n"
	    "U -\nC \nS \nR a\nR ");
	memset(p, 'b', QUEUE_ADDR_MAX - 1);
	p += QUEUE_ADDR_MAX - 1;
	p += sprintf(p, "\nR c@d\nB\n\nE 0\n");
	CHECK(queue_parse(img, (size_t)(p - img), &info, &why) == 0);
	free(img);
	CHECK(info.nrcpt == 3);
	CHECK_STR(info.rcpt[0].address, "a");
	CHECK(strlen(info.rcpt[1].address) == QUEUE_ADDR_MAX - 1 &&
	    strspn(info.rcpt[1].address, "b") == QUEUE_ADDR_MAX - 1);
	CHECK_STR(info.rcpt[2].address, "c@d");
	CHECK(info.rcpt[2].status == RS_QUEUED && info.rcpt[2].reason == NULL);
	queue_info_free(&info);

	memset(&rc, 0, sizeof(rc));
	memset(text, 'x', sizeof(text) - 1);
	text[sizeof(text) - 1] = '\0';
	CHECK(queue_rcpt_reason(&rc, text, sizeof(text)) == 0);
	CHECK(strlen(rc.reason) == QUEUE_REASON_MAX - 1);
	CHECK(queue_rcpt_reason(&rc, "451 later\nR 1 sent", 9) == 0);
	CHECK_STR(rc.reason, "451 later");
	CHECK(queue_rcpt_reason(&rc, "250 ok", 99) == 0);
	CHECK_STR(rc.reason, "250 ok");
	CHECK(queue_rcpt_reason(&rc, "250 ok", 0) == 0 && rc.reason == NULL);
	CHECK(queue_rcpt_reason(&rc, "x", 1) == 0);
	CHECK(queue_rcpt_reason(&rc, "", 99) == 0 && rc.reason == NULL);
	return 0;
}

/* The reasons queue_parse_state() gave a test's own array. */
static void
rc_free(struct queue_rcpt *rc, size_t n)
{
	while (n-- > 0)
		free(rc[n].reason);
}

static int
t_delete(void)
{
	static const char *const r[] = { "a@x" };
	struct queue_info info;
	char id[QUEUE_ID_SIZE], stname[QUEUE_ID_SIZE + 3];
	const char *why;

	CHECK(setup() == 0);
	CHECK(commit_one(NULL, "s@x", r, 1, "body", 4, id) == 0);
	CHECK(queue_load(0, id, &info, &why) == 0);
	CHECK(queue_update(&info, 1, NULL, 0) == 0);
	queue_info_free(&info);
	snprintf(stname, sizeof(stname), "%s.st", id);
	CHECK(exists("", stname));
	CHECK(queue_delete(id) == 0);
	CHECK(!exists("", id) && !exists("", stname));
	CHECK(queue_load(0, id, &info, &why) == -1 && errno == ENOENT);
	CHECK(queue_delete(id) == -1 && errno == ENOENT);
	CHECK(queue_delete("../etc/passwd") == -1 && errno == EINVAL);
	teardown();
	return 0;
}

struct walk_seen {
	unsigned n;
	char ids[8][QUEUE_ID_SIZE];
};

static int
walk_collect(const struct queue_info *info, void *arg)
{
	struct walk_seen *s = arg;

	if (s->n < 8)
		memcpy(s->ids[s->n], info->id, QUEUE_ID_SIZE);
	s->n++;
	return 0;
}

static int
walk_first(const struct queue_info *info, void *arg)
{
	(void)info;
	(*(unsigned *)arg)++;
	return 1;
}

static int
t_walk(void)
{
	static const char *const r[] = { "a@x" };
	static const char garbage[] = "00000000000000BAD1";
	struct walk_seen seen;
	char ids[3][QUEUE_ID_SIZE];
	char longname[NAME_MAX + 1], stname[NAME_MAX + 8];
	unsigned i, first = 0;

	CHECK(setup() == 0);
	for (i = 0; i < 3; i++)
		CHECK(commit_one(NULL, "s@x", r, 1, "b", 1, ids[i]) == 0);
	/* sort the expected ids: same-µs ids order by their random part */
	for (i = 0; i < 2; i++)
		if (strcmp(ids[i], ids[i + 1]) > 0) {
			char t[QUEUE_ID_SIZE];

			memcpy(t, ids[i], sizeof(t));
			memcpy(ids[i], ids[i + 1], sizeof(t));
			memcpy(ids[i + 1], t, sizeof(t));
			i = (unsigned)-1;
		}
	CHECK(spew(qpath("", garbage), "FERRY1\nnot a queue file\n", 24) == 0);
	CHECK(spew(qpath("", "00000000000000BAD1.st"), "x", 1) == 0);
	CHECK(spew(qpath("", "junk"), "whatever", 8) == 0);
	CHECK(spew(qpath("", "0000000000000000000"), "x", 1) == 0);

	memset(&seen, 0, sizeof(seen));
	CHECK(queue_walk(walk_collect, &seen) == 0);
	CHECK(seen.n == 3);
	for (i = 0; i < 3; i++)
		CHECK_STR(seen.ids[i], ids[i]);
	CHECK(!exists("", garbage));
	CHECK(exists("corrupt", garbage));
	/* its state file goes along */
	CHECK(!exists("", "00000000000000BAD1.st"));
	CHECK(exists("corrupt", "00000000000000BAD1.st"));
	CHECK(exists("", "junk"));
	CHECK(exists("", "0000000000000000000"));

	CHECK(queue_walk(walk_first, &first) == 0);
	CHECK(first == 1);

	CHECK(queue_quarantine("../x", "test") == -1 && errno == EINVAL);
	CHECK(queue_quarantine("", "test") == -1 && errno == EINVAL);
	CHECK(queue_quarantine("a/b/c", "test") == -1 && errno == EINVAL);
	CHECK(queue_quarantine("tmp/", "test") == -1 && errno == EINVAL);
	CHECK(queue_quarantine("/etc", "test") == -1 && errno == EINVAL);
	CHECK(queue_quarantine("tmp/..", "test") == -1 && errno == EINVAL);
	/* one level down, as pickup does for maildrop/ */
	CHECK(spew(qpath("maildrop", "00000000000000BAD2"), "x", 1) == 0);
	CHECK(queue_quarantine("maildrop/00000000000000BAD2", "test") == 0);
	CHECK(!exists("maildrop", "00000000000000BAD2"));
	CHECK(exists("corrupt", "00000000000000BAD2"));

	/* NAME.st must fit in NAME_MAX, and no control bytes */
	memset(longname, 'A', NAME_MAX - 3);
	longname[NAME_MAX - 3] = '\0';
	CHECK(queue_quarantine(longname, "test") == -1 && errno == EINVAL);
	CHECK(queue_quarantine("BAD\x01", "test") == -1 && errno == EINVAL);
	longname[NAME_MAX - 4] = '\0';
	CHECK(queue_quarantine(longname, "test") == -1 && errno == ENOENT);
	CHECK(spew(qpath("", longname), "x", 1) == 0);
	snprintf(stname, sizeof(stname), "%s.st", longname);
	CHECK(spew(qpath("", stname), "x", 1) == 0);
	CHECK(queue_quarantine(longname, "test") == 0);
	CHECK(exists("corrupt", longname) && !exists("", longname));
	CHECK(exists("corrupt", stname) && !exists("", stname));
	teardown();
	return 0;
}

/* How many files in corrupt/ hold exactly text (a NUL-terminated string),
 * and with want != 0, also that corrupt/ has want files in all; -1 if not. */
static int
corrupt_holds(const char *text, size_t want)
{
	struct dirent *de;
	size_t n = 0, len;
	DIR *d;
	char *b;
	int hits = 0;

	if ((d = opendir(qpath("", "corrupt"))) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		n++;
		if ((b = slurp(qpath("corrupt", de->d_name), &len)) == NULL)
			continue;
		hits += len == strlen(text) && memcmp(b, text, len) == 0;
		free(b);
	}
	closedir(d);
	return want != 0 && n != want ? -1 : hits;
}

/*
 * A move to corrupt/ never replaces a file there: a local user's junk in
 * maildrop/ reuses a name, a state file goes bad twice, a message's state
 * file follows it there after an earlier bad one.  Only the last of a
 * name was kept.  A name at the longest is cut for its suffix.
 */
static int
t_corrupt_no_replace(void)
{
	static const char *const r[] = { "a@x" };
	static const char bad[] = "00000000000000BAD3";
	struct queue_info info;
	char id[QUEUE_ID_SIZE], stname[QUEUE_ID_SIZE + 3], name[40];
	char longname[NAME_MAX - 3];
	const char *why;
	int i;

	CHECK(setup() == 0);
	CHECK(spew(qpath("maildrop", bad), "one", 3) == 0);
	snprintf(name, sizeof(name), "maildrop/%s", bad);
	CHECK(queue_quarantine(name, "test") == 0);
	CHECK(spew(qpath("maildrop", bad), "two", 3) == 0);
	CHECK(queue_quarantine(name, "test") == 0);
	CHECK(!exists("maildrop", bad));
	/* the first keeps its name; the later one has another */
	CHECK(exists("corrupt", bad));
	CHECK(corrupt_holds("one", 2) == 1 && corrupt_holds("two", 2) == 1);
	/* a queue file of that name and its state file */
	snprintf(stname, sizeof(stname), "%s.st", bad);
	CHECK(spew(qpath("", bad), "three", 5) == 0);
	CHECK(spew(qpath("", stname), "st3", 3) == 0);
	CHECK(queue_quarantine(bad, "test") == 0);
	CHECK(!exists("", bad) && !exists("", stname));
	CHECK(corrupt_holds("three", 4) == 1 && corrupt_holds("st3", 4) == 1);
	CHECK(corrupt_holds("one", 4) == 1 && corrupt_holds("two", 4) == 1);
	memset(longname, 'A', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	for (i = 0; i < 2; i++) {
		CHECK(spew(qpath("", longname), i ? "long2" : "long1", 5) == 0);
		CHECK(queue_quarantine(longname, "test") == 0);
	}
	CHECK(corrupt_holds("long1", 6) == 1 && corrupt_holds("long2", 6) == 1);

	/* a state file that goes bad twice */
	CHECK(commit_one(NULL, "s@x", r, 1, "body", 4, id) == 0);
	snprintf(stname, sizeof(stname), "%s.st", id);
	CHECK(spew(qpath("", stname), "FERRYST1\nI bad1", 15) == 0);
	CHECK(queue_load(0, id, &info, &why) == 0);
	queue_info_free(&info);
	CHECK(spew(qpath("", stname), "FERRYST1\nI bad2", 15) == 0);
	CHECK(queue_load(0, id, &info, &why) == 0);
	queue_info_free(&info);
	CHECK(!exists("", stname) && exists("corrupt", stname));
	CHECK(corrupt_holds("FERRYST1\nI bad1", 8) == 1);
	CHECK(corrupt_holds("FERRYST1\nI bad2", 8) == 1);
	/* the message itself, then: its state file's name is taken */
	CHECK(spew(qpath("", stname), "FERRYST1\nI bad3", 15) == 0);
	CHECK(queue_quarantine(id, "test") == 0);
	CHECK(!exists("", id) && !exists("", stname));
	CHECK(corrupt_holds("FERRYST1\nI bad1", 10) == 1);
	CHECK(corrupt_holds("FERRYST1\nI bad2", 10) == 1);
	CHECK(corrupt_holds("FERRYST1\nI bad3", 10) == 1);
	teardown();
	return 0;
}

/* The start-up index reads names and state mtimes, never the files, and
 * sweeps orphan state files. */
static int
t_index(void)
{
	static const char *const r[] = { "a@x" };
	static const char garbage[] = "00000000000000BAD1";
	char (*ids)[QUEUE_ID_SIZE] = NULL, mine[2][QUEUE_ID_SIZE];
	struct queue_info info;
	const char *why;
	size_t n = 0;

	CHECK(setup() == 0);
	CHECK(commit_one(NULL, "s@x", r, 1, "b", 1, mine[0]) == 0);
	CHECK(commit_one(NULL, "s@x", r, 1, "b", 1, mine[1]) == 0);
	CHECK(strcmp(mine[0], mine[1]) < 0);
	CHECK(queue_load(0, mine[1], &info, &why) == 0);
	info.next_attempt = 2000000000u;	/* 2033, within a 32-bit time_t */
	info.attempts = 1;
	info.rcpt[0].status = RS_DEFERRED;
	CHECK(queue_update(&info, 0, NULL, 0) == 0);
	queue_info_free(&info);
	/* Not parsed here: activation quarantines it. */
	CHECK(spew(qpath("", garbage), "FERRY1\nnot a queue file\n", 24) == 0);
	CHECK(spew(qpath("", "junk"), "whatever", 8) == 0);
	/* The index also sweeps a state file whose message is gone (a
	 * crash between queue_delete's two unlinks). */
	CHECK(spew(qpath("", "00000000000000ABCD.st"), "x", 1) == 0);

	CHECK(queue_ids(&ids, &n) == 0);
	CHECK(n == 3);
	CHECK_STR(ids[0], garbage);
	CHECK_STR(ids[1], mine[0]);
	CHECK_STR(ids[2], mine[1]);
	free(ids);
	CHECK(queue_next_attempt(garbage) == 0);
	CHECK(queue_next_attempt(mine[0]) == 0);	/* never tried: now */
	CHECK(queue_next_attempt(mine[1]) == 2000000000u);
	CHECK(exists("", garbage));
	CHECK(!exists("", "00000000000000ABCD.st"));
	CHECK(exists("", "junk"));
	teardown();
	return 0;
}

static int
t_sweep(void)
{
	static const char *const r[] = { "a@x" };
	struct timeval old[2];
	char id[QUEUE_ID_SIZE];

	CHECK(setup() == 0);
	CHECK(commit_one("maildrop", "s@x", r, 1, "b", 1, id) == 0);
	CHECK(spew(qpath("tmp", "00000000000000AAAA"), "x", 1) == 0);
	CHECK(spew(qpath("tmp", "whatever"), "x", 1) == 0);
	CHECK(spew(qpath("maildrop", ".00000000000000AAAA.tmp"), "x", 1) == 0);
	CHECK(spew(qpath("maildrop", ".00000000000000BBBB.tmp"), "x", 1) == 0);
	gettimeofday(&old[0], NULL);
	old[0].tv_sec -= 2 * 60 * 60;
	old[1] = old[0];
	CHECK(utimes(qpath("maildrop", ".00000000000000AAAA.tmp"), old) == 0);

	CHECK(queue_open(tdir) == 0);
	/* opening alone (mailq beside a live daemon) removes nothing */
	CHECK(exists("tmp", "00000000000000AAAA"));
	CHECK(queue_sweep() == 0);
	CHECK(!exists("tmp", "00000000000000AAAA"));
	CHECK(!exists("tmp", "whatever"));
	CHECK(!exists("maildrop", ".00000000000000AAAA.tmp"));
	CHECK(exists("maildrop", ".00000000000000BBBB.tmp"));
	CHECK(exists("maildrop", id));
	CHECK(exists("", "tmp") && exists("", "corrupt"));
	teardown();
	return 0;
}

static void
on_commit(void *arg, const char *id, int ok)
{
	struct commit_seen *s = arg;

	s->calls++;
	s->ok = ok;
	memcpy(s->id, id, QUEUE_ID_SIZE);
}

static void
on_stop(struct loop_timer *t)
{
	(void)t;
	loop_stop();
}

static int
t_group_commit(void)
{
	struct commit_seen seen[T_MAX_COMMITS];
	struct queue_writer *w[T_MAX_COMMITS];
	char ids[T_MAX_COMMITS][QUEUE_ID_SIZE];
	struct loop_timer stop = { .cb = on_stop };
	struct queue_info info;
	const char *why;
	unsigned i;

	CHECK(setup() == 0);
	CHECK(loop_init() == 0);
	memset(seen, 0, sizeof(seen));
	for (i = 0; i < T_MAX_COMMITS; i++) {
		w[i] = queue_writer_new(NULL, "s@x", 0, (uid_t)-1, "");
		CHECK(w[i] != NULL);
		memcpy(ids[i], queue_writer_id(w[i]), QUEUE_ID_SIZE);
		CHECK(queue_writer_rcpt(w[i], "r@x") == 0);
		CHECK(queue_writer_body(w[i], "body\r\n", 6) == 0);
		/* the last one is never finished: it must fail alone */
		if (i + 1 < T_MAX_COMMITS)
			CHECK(queue_writer_finish(w[i]) == 0);
	}
	for (i = 0; i < T_MAX_COMMITS; i++)
		queue_commit(w[i], on_commit, &seen[i]);
	/* nothing is reported, or renamed, before the loop runs the hook */
	for (i = 0; i < T_MAX_COMMITS; i++) {
		CHECK(seen[i].calls == 0);
		CHECK(!exists("", ids[i]));
		CHECK(exists("tmp", ids[i]));
	}
	loop_timer_set(&stop, 20);
	CHECK(loop_run() == 0);
	for (i = 0; i < T_MAX_COMMITS; i++) {
		CHECK(seen[i].calls == 1);
		CHECK_STR(seen[i].id, ids[i]);
		CHECK(!exists("tmp", ids[i]));
		if (i + 1 < T_MAX_COMMITS) {
			CHECK(seen[i].ok == 1);
			CHECK(queue_load(0, ids[i], &info, &why) == 0);
			CHECK(info.size == 6);
			queue_info_free(&info);
		} else {
			CHECK(seen[i].ok == 0);
			CHECK(!exists("", ids[i]));
		}
	}
	loop_free();
	teardown();
	return 0;
}

static int
t_forget(void)
{
	struct commit_seen a, b;
	struct queue_writer *wa, *wb;
	char ida[QUEUE_ID_SIZE], idb[QUEUE_ID_SIZE];
	struct loop_timer stop = { .cb = on_stop };

	CHECK(setup() == 0);
	CHECK(loop_init() == 0);
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	wa = queue_writer_new(NULL, "s@x", 0, (uid_t)-1, "");
	wb = queue_writer_new(NULL, "s@x", 0, (uid_t)-1, "");
	CHECK(wa != NULL && wb != NULL);
	memcpy(ida, queue_writer_id(wa), sizeof(ida));
	memcpy(idb, queue_writer_id(wb), sizeof(idb));
	CHECK(queue_writer_rcpt(wa, "r@x") == 0 && queue_writer_finish(wa) == 0);
	CHECK(queue_writer_rcpt(wb, "r@x") == 0 && queue_writer_finish(wb) == 0);
	queue_commit(wa, on_commit, &a);
	queue_commit(wb, on_commit, &b);
	queue_commit_forget(&a);
	loop_timer_set(&stop, 20);
	CHECK(loop_run() == 0);
	CHECK(a.calls == 0);
	CHECK(b.calls == 1 && b.ok == 1);
	CHECK(exists("", ida));		/* the commit still happened */
	CHECK(exists("", idb));
	loop_free();
	teardown();
	return 0;
}

static int
t_maildrop(void)
{
	struct queue_writer *w;
	struct queue_info info;
	char id[QUEUE_ID_SIZE], tmpname[QUEUE_ID_SIZE + 8];
	const char *why;
	struct stat st;
	mode_t old;
	char *img;
	size_t len;

	CHECK(setup() == 0);
	old = umask(077);
	w = queue_writer_new("maildrop", "user@host", 0, 1234, "sendmail");
	umask(old);
	CHECK(w != NULL);
	memcpy(id, queue_writer_id(w), sizeof(id));
	snprintf(tmpname, sizeof(tmpname), ".%s.tmp", id);
	/* maildrop/ is in our own group here: 0644 (see the writer) */
	CHECK(stat(qpath("maildrop", tmpname), &st) == 0);
	CHECK((st.st_mode & 07777) == 0644);
	CHECK(!exists("tmp", id));
	CHECK(queue_writer_rcpt(w, "root@host") == 0);
	CHECK(queue_writer_body(w, "hi\r\n", 4) == 0);
	CHECK(queue_writer_finish(w) == 0);
	CHECK(queue_commit_now(w) == 0);
	CHECK(!exists("maildrop", tmpname));
	CHECK(stat(qpath("maildrop", id), &st) == 0);
	CHECK((st.st_mode & 07777) == 0644);
	CHECK(!exists("", id));
	CHECK((img = slurp(qpath("maildrop", id), &len)) != NULL);
	CHECK(queue_parse(img, len, &info, &why) == 0);
	CHECK(info.uid == 1234 && info.size == 4);
	CHECK_STR(info.id, id);
	queue_info_free(&info);
	free(img);
	/* maildrop/ (setgid) in a group not ours, as a local user meets it:
	 * the file takes that group, and only it may read. */
	if (geteuid() == 0) {
		CHECK(chown(qpath("", "maildrop"), (uid_t)-1, getegid() + 1)
		    == 0 && chmod(qpath("", "maildrop"), 03733) == 0);
		w = queue_writer_new("maildrop", "user@host", 0, 1234, "x");
		CHECK(w != NULL);
		memcpy(id, queue_writer_id(w), sizeof(id));
		snprintf(tmpname, sizeof(tmpname), ".%s.tmp", id);
		CHECK(stat(qpath("maildrop", tmpname), &st) == 0);
		CHECK((st.st_mode & 07777) == 0640);
		CHECK(st.st_gid == getegid() + 1);
		queue_writer_abort(w);
	}
	teardown();
	return 0;
}

static int
t_init_dirs(void)
{
	struct stat st;
	char *q;

	CHECK(setup() == 0);
	q = qpath("", "q");
	CHECK(queue_init_dirs(q, getuid(), getgid()) == 0);
	CHECK(stat(q, &st) == 0 && (st.st_mode & 07777) == 0711);
	CHECK(st.st_uid == getuid());
	CHECK(stat(qpath("q", "tmp"), &st) == 0);
	CHECK((st.st_mode & 07777) == 0700);
	CHECK(stat(qpath("q", "corrupt"), &st) == 0);
	CHECK((st.st_mode & 07777) == 0700);
	/* setgid comes from queue_sweep(), as the owner (see there) */
	CHECK(stat(qpath("q", "maildrop"), &st) == 0);
	CHECK((st.st_mode & 07777) == 01733);
	/* again: existing directories are fine */
	CHECK(queue_init_dirs(qpath("", "q"), getuid(), getgid()) == 0);
	/* a symlink where the queue should be is refused */
	CHECK(symlink(tdir, qpath("", "link")) == 0);
	CHECK(queue_init_dirs(qpath("", "link"), getuid(), getgid()) == -1);
	CHECK(queue_open(qpath("", "q")) == 0);
	CHECK_STR(queue_dir(), qpath("", "q"));
	/* an older ferry's 1733 too */
	CHECK(queue_sweep() == 0);
	CHECK(stat(qpath("q", "maildrop"), &st) == 0);
	CHECK((st.st_mode & 07777) == 03733);
	/* the next start's set-up keeps it (a start may fail before its
	 * sweep), and still puts the other bits right */
	CHECK(chmod(qpath("q", "tmp"), 0755) == 0);
	CHECK(queue_init_dirs(q, getuid(), getgid()) == 0);
	CHECK(stat(qpath("q", "maildrop"), &st) == 0);
	CHECK((st.st_mode & 07777) == 03733);
	CHECK(stat(qpath("q", "tmp"), &st) == 0);
	CHECK((st.st_mode & 07777) == 0700);
	teardown();
	return 0;
}

static int
t_ids(void)
{
	struct queue_writer *a, *b;

	CHECK(queue_id_valid("0123456789ABCDEF01"));
	CHECK(!queue_id_valid("0123456789ABCDEF0"));
	CHECK(!queue_id_valid("0123456789ABCDEF012"));
	CHECK(!queue_id_valid("0123456789abcdef01"));
	CHECK(!queue_id_valid("0123456789ABCDEFG1"));
	CHECK(!queue_id_valid(""));
	CHECK(!queue_id_valid(NULL));
	CHECK_STR(queue_status_name(RS_QUEUED), "queued");
	CHECK_STR(queue_status_name(RS_DEFERRED), "deferred");
	CHECK_STR(queue_status_name(RS_SENT), "sent");
	CHECK_STR(queue_status_name(RS_BOUNCED), "bounced");

	CHECK(setup() == 0);
	a = queue_writer_new(NULL, "a@b", 0, (uid_t)-1, "");
	usleep(2000);
	b = queue_writer_new(NULL, "a@b", 0, (uid_t)-1, "");
	CHECK(a != NULL && b != NULL);
	CHECK(queue_id_valid(queue_writer_id(a)));
	CHECK(strcmp(queue_writer_id(a), queue_writer_id(b)) < 0);
	queue_writer_abort(a);
	queue_writer_abort(b);
	teardown();
	return 0;
}

static const struct t_case cases[] = {
	{ "file format byte for byte", t_format },
	{ "round trip, binary body", t_roundtrip },
	{ "null sender, no uid, forged client text", t_null_sender },
	{ "small message stays in the buffer until finish", t_buffering },
	{ "big body over many buffers", t_big },
	{ "every truncation is refused", t_torn },
	{ "bad images", t_bad_images },
	{ "envelope records: every why, and the fields", t_envelope },
	{ "id must match the file name", t_id_mismatch },
	{ "writer limits and order", t_writer_limits },
	{ "abort removes the tmp file", t_abort },
	{ "state sidecar update and reload", t_state },
	{ "state parse: truncations and bad records", t_state_torn },
	{ "corrupt state sidecar", t_state_corrupt },
	{ "state: delay warning record W", t_state_warned },
	{ "state: bounced-notified recipients", t_state_notified },
	{ "state: a reason as kept, and older ones", t_state_reason },
	{ "state: results appended, a torn append", t_state_append },
	{ "state parse: appended records, every cut", t_state_tail },
	{ "state parse: a whole file and an append each", t_state_tail_size },
	{ "state: an append's page lost to a stale block", t_state_tail_stale },
	{ "a recipient's address and reason, allocated to fit",
	    t_rcpt_strings },
	{ "delete", t_delete },
	{ "walk order and quarantine", t_walk },
	{ "corrupt/: a move never replaces a file", t_corrupt_no_replace },
	{ "start-up index from state mtimes", t_index },
	{ "start-up sweep", t_sweep },
	{ "group commit on the loop", t_group_commit },
	{ "commit_forget", t_forget },
	{ "maildrop writer", t_maildrop },
	{ "init_dirs modes", t_init_dirs },
	{ "ids and status names", t_ids },
};

int
main(void)
{
	log_open(1);
	return t_run("queue", cases, sizeof(cases) / sizeof(cases[0]));
}
