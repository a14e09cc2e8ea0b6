/*
 * queue.c - the flat-directory queue.  Owns everything under queue_dir:
 * the file format and its parser, durable writes with a group commit, the
 * per-recipient state sidecars, the start-up sweep, walk and quarantine.
 * It does not decide when to deliver, retry or bounce (the scheduler
 * does), and it does not log accepted mail ("queued as" is the caller's).
 * Functions return 0, or -1 with errno set; parsers add a short why.
 *
 * Message file "ID" (text records, so byte order never matters):
 *
 *	FERRY1\n
 *	I <id>\n		18 upper-case hex: 13 of µs time, 5 random
 *	T <arrival>\n		unix seconds, decimal
 *	F <flags>\n		QF_* in hex
 *	U <uid>\n		decimal, or "-" when not submitted locally
 *	C <client>\n		informational, sanitized, may be empty
 *	S <sender>\n		empty for the null sender <>
 *	R <recipient>\n		1..QUEUE_MAX_RCPT of them
 *	B\n
 *	<body bytes, exactly as given>
 *	\nE <body length>\n	the end record: the last bytes of the file
 *
 * The records are in exactly this order; everything up to "B\n" is at most
 * QUEUE_HDR_MAX bytes; header + body length + end record == file length.
 * A file that is short by even one byte therefore never parses.
 *
 * State sidecar "ID.st" (written whole by queue_update, or appended to):
 *
 *	FERRYST1\n
 *	I <id>\n
 *	N <next attempt, unix s>\n
 *	A <attempts>\n
 *	W <unix s>\n		optional: the delay warning went out then;
 *				files written before it existed lack it
 *	R <index> <queued|deferred|sent|bounced>[ <reason>]\n	per recipient
 *	E <number of R records>\n
 *
 * An R status may also be "bounced-notified": bounced, and the DSN naming
 * it is committed (one sent at the end of an attempt that left other
 * recipients pending), so no later DSN names it again.  Files written
 * before it existed never have it and still parse.  A reason is free
 * text under QUEUE_REASON_MAX (sched.c says what it holds); older files
 * kept less of it, and parse the same.
 *
 * After E, appends: each R records (any order; a later one for the
 * same recipient wins), then "I <id> <seal>", the seal 16 hex digits of
 * a BLAKE2b hash of the append's records, so a result costs its own line
 * on flash rather than the whole file again.  An append goes only onto
 * the file as the last write that succeeded left it, and is fsynced
 * before the next, so after a crash all of them but the last are whole;
 * the last may be cut anywhere or, its pages written back in any order,
 * hold zeros, or (ext4 data=writeback, vfat) blocks of a file deleted
 * earlier.  A page boundary falls inside a record, so such a block's
 * first bytes end a record of ours and its next lines (another state
 * file's "R 7 sent") parse: only the appends up to the first whose seal
 * does not match are applied.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "log.h"
#include "loop.h"
#include "queue.h"
#include "textfile.h"

#define QUEUE_MAGIC		"FERRY1"
#define QUEUE_STATE_MAGIC	"FERRYST1"
#define QUEUE_NOTIFIED_WORD	"bounced-notified"	/* R status: bounced,
							   DSN committed */
#define QUEUE_CLIENT_MAX	256	/* client text kept, with NUL */
#define QUEUE_NUM_DIGITS	20	/* longest decimal a uint64 needs */
#define QUEUE_FLAGS_DIGITS	8	/* hex digits of F */
#define QUEUE_TRAILER_MAX	(3 + QUEUE_NUM_DIGITS + 1)	/* \nE n\n */
#define QUEUE_SEAL_LEN	(QUEUE_ID_LEN + 17)	/* "<id> <seal>" */
/* A whole file, and at most one appended record a recipient (sched.c
 * appends a recipient's result once between two whole writes), each in
 * an append of its own (its "I <id> <seal>" line). */
#define QUEUE_STATE_MAX	\
	(2 * QUEUE_MAX_RCPT * (QUEUE_REASON_MAX + 32 + QUEUE_SEAL_LEN + 3) + 256)
#define QUEUE_SUBDIR_MAX	32	/* "maildrop" and the like */
#define QUEUE_ID_TRIES		64	/* O_EXCL collisions before giving up */
#define QUEUE_ID_TIME_BITS	52	/* 13 hex digits: good until 2112 */
#define QUEUE_ID_RAND		(1u << 20)	/* 5 hex digits */
#define QUEUE_STALE_SECS	(60 * 60)	/* maildrop/.ID.tmp left behind */
#define QUEUE_WALK_INIT		64	/* first size of the walk's id list */
#define QUEUE_CORRUPT_TRIES	4	/* clashes in corrupt/ before giving up */
#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE	1	/* linux/fs.h's; musl's stdio.h lacks it */
#endif
#define QUEUE_ST_SUFFIX		".st"
/* The envelope before the R records: magic, I, T, F, U, C, S. */
#define QUEUE_ENV_MAX		(QUEUE_CLIENT_MAX + QUEUE_ADDR_MAX + 128)
_Static_assert(QUEUE_ENV_MAX + 2 <= QUEUE_HDR_MAX - QUEUE_RCPT_ROOM,
    "QUEUE_RCPT_ROOM");

enum writer_state {
	WS_ENVELOPE,		/* records may be added */
	WS_BODY,		/* "B" written, body bytes may follow */
	WS_FINISHED,		/* end record written and flushed */
	WS_FAILED		/* a write failed: only abort or commit (ok=0) */
};

struct queue_writer {
	struct queue_writer *next;	/* commit list */
	void (*cb)(void *, const char *, int);
	void *arg;
	char *buf;			/* QUEUE_BUF_SIZE; NULL once committed */
	size_t used;			/* bytes waiting in buf */
	size_t hdr_len;			/* envelope bytes so far, "B\n" too */
	uint64_t body_len;
	unsigned nrcpt;
	int fd;
	int err;			/* errno of the first failure */
	int ok;				/* commit result */
	enum writer_state state;
	char id[QUEUE_ID_SIZE];
	char sub[QUEUE_SUBDIR_MAX];	/* "" = tmp/, else e.g. maildrop/ */
	int dfd;			/* sub/ (names relative), or AT_FDCWD */
};

/* A bounded view of a buffer, read one "\n"-terminated line at a time. */
struct cursor {
	const char *buf;
	size_t len;
	size_t off;
};

static int errno_fail(int) __attribute__((noinline));
static int read_done(int, void *, int);
static int path_fmt(char *, size_t, const char *, ...)
    __attribute__((format(printf, 3, 4)));
static int writer_path(const struct queue_writer *, int, char *);
static int name_exists(int, const char *);
static int corrupt_move(const char *, const char *);
static int mkdir_owned(int, const char *, mode_t, uid_t, gid_t);
static void sweep_dir(const char *, int (*)(int, const char *),
    const char *);
static int sweep_tmp(int, const char *);
static void (*queue_listener)(const char *, unsigned);
static int sweep_maildrop(int, const char *);
static int sweep_orphan(int, const char *);
static int writer_put(struct queue_writer *, const void *, size_t);
static int writer_flush(struct queue_writer *);
static int writer_rec(struct queue_writer *, char, const char *, size_t);
static int writer_fail(struct queue_writer *);
static void writer_free(struct queue_writer *);
static void clean_copy(char *, size_t, const char *);
static int commit_file(struct queue_writer *);
static int sync_dir(const struct queue_writer *, const char *);
static void commit_undo(struct queue_writer *);
static void queue_commit_run(struct loop_hook *);
static int cur_line(struct cursor *, const char **, size_t *);
static int cur_rec(struct cursor *, char, const char **, size_t *);
static int num_dec(const char *, size_t, uint64_t, uint64_t *);
static int cur_num(struct cursor *, char, uint64_t, uint64_t *);
static int num_hex(const char *, size_t, uint64_t *);
static int text_ok(const char *, size_t, size_t);
static int parse_image(const char *, size_t, const char *, size_t, uint64_t,
    struct queue_info *, const char **);
static int parse_trailer(const char *, size_t, uint64_t *, size_t *);
static int parse_state(const char *, size_t, struct queue_info *, int,
    const char **, size_t *);
static int status_parse(const char *, size_t, enum rcpt_status *, int *);
/* noinline: measured smaller than LTO's inlined copy. */
static int load_state(struct queue_info *) __attribute__((noinline));

static const char *const queue_status_names[] = {
	[RS_QUEUED] = "queued",
	[RS_DEFERRED] = "deferred",
	[RS_SENT] = "sent",
	[RS_BOUNCED] = "bounced",
};
#define QUEUE_NSTATUS	(sizeof(queue_status_names) / sizeof(queue_status_names[0]))

/* The subdirectories, made by queue_init_dirs() and queue_sweep(). */
static const struct {
	const char *name;
	mode_t mode;
} queue_subs[] = {
	{ "tmp", 0700 }, { "corrupt", 0700 }, { "maildrop", 03733 },
};
#define QUEUE_NSUBS	(sizeof(queue_subs) / sizeof(queue_subs[0]))

/* parse_image(): the envelope records before the R's, in their order, and
 * for each the complaint when it is out of place and when it is bad
 * (NUL-separated, in the same order). */
static const char env_letters[] = "ITFUCS";
/* One text whose last letter parse_image() sets, not six: every caller
 * logs the why before the next parse (single-threaded). */
static char env_order[] = "bad record order, expected ?";
/* aligned(1): the ABI's 16 for an array this long is only padding here. */
static const char env_bad[] __attribute__((aligned(1))) =
    "bad id\0bad arrival time\0bad flags\0"
    "bad uid\0bad client\0bad sender";

static char queue_path[PATH_MAX];
static int queue_dirfd = -1;
/* queue_ids() hands its sorted IDs to sweep_orphan() (sweep_dir's
 * predicate takes no argument of its own). */
static const char (*orphan_ids)[QUEUE_ID_SIZE];
static size_t orphan_n;

/*
 * Group commit.  queue_commit() appends to queue_pending and queues the
 * hook; the hook takes the whole list (queue_running), makes it durable and
 * then calls back.  queue_commit_forget() looks in both lists, so an owner
 * freed by another owner's callback is never called.
 */
static struct queue_writer *queue_pending;
static struct queue_writer **queue_pending_tail = &queue_pending;
static struct queue_writer *queue_running;
static struct loop_hook queue_hook = { .cb = queue_commit_run };

/* --- paths and small I/O helpers --- */

/* The end of a read: buf freed, fd closed (read-only: a close error
 * cannot have lost anything), errno kept; rc back. */
static int
read_done(int fd, void *buf, int rc)
{
	int e = errno;

	free(buf);
	(void)close(fd);
	errno = e;
	return rc;
}

/* -1 with errno e: one call instead of a store through
 * __errno_location() at each of some thirty failure returns. */
static int
errno_fail(int e)
{
	errno = e;
	return -1;
}

static int
path_fmt(char *out, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(out, size, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= size)
		return errno_fail(ENAMETOOLONG);
	return 0;
}

/* The writer's temporary name (tmp != 0) or its final one, into out of
 * PATH_MAX bytes, for the *at() calls on w->dfd: in sub/ relative to it
 * ("%.0s" skips what a form does not use, so one call does all four). */
static int
writer_path(const struct queue_writer *w, int tmp, char *out)
{
	return path_fmt(out, PATH_MAX, w->sub[0] != '\0' ? tmp ?
	    "%.0s.%s.tmp" : "%.0s%s" : tmp ? "%s/tmp/%s" : "%s/%s",
	    queue_path, w->id);
}

/* 1 if path names something, 0 if not, -1 when we cannot tell. */
static int
name_exists(int dfd, const char *path)
{
	struct stat st;

	if (fstatat(dfd, path, &st, AT_SYMLINK_NOFOLLOW) == 0)
		return 1;
	return errno == ENOENT ? 0 : -1;
}

/*
 * All n bytes: written at the file offset (off < 0), or read at off (a
 * short file is EIO: it shrank).  One loop for both directions.
 */
int
queue_rw_all(int fd, void *p, size_t n, off_t off)
{
	char *c = p;
	ssize_t r;

	while (n > 0) {
		r = off < 0 ? write(fd, c, n) : pread(fd, c, n, off);
		if (r == -1 && errno == EINTR)
			continue;
		if (r == 0)
			errno = EIO;
		if (r <= 0)
			return -1;
		c += r;
		n -= (size_t)r;
		if (off >= 0)
			off += r;
	}
	return 0;
}

/* --- directories --- */

/*
 * mkdir + chown + chmod through an fd opened with O_NOFOLLOW, so a symlink
 * planted where a queue directory should be is refused, not followed.
 * parent is a directory fd, or AT_FDCWD for an absolute name.
 */
static int
mkdir_owned(int parent, const char *name, mode_t mode, uid_t uid, gid_t gid)
{
	struct stat st;
	int fd, rc = -1;

	if (mkdirat(parent, name, mode & 0777) == -1 && errno != EEXIST) {
		log_warn(LP_MASTER, "mkdir %s", name);
		return -1;
	}
	fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC);
	if (fd == -1) {
		log_warn(LP_MASTER, "open %s", name);
		return -1;
	}
	/* fchownat(), not fchown(): one libc import less. */
	if (fchownat(fd, "", uid, gid, AT_EMPTY_PATH) == -1) {
		log_warn(LP_MASTER, "chown %s", name);
		goto done;
	}
	/* Explicitly: the umask must not take maildrop's sticky/w bits.
	 * Not where only a setgid bit differs: maildrop's is
	 * queue_sweep()'s, and a start that failed before it (a bad key,
	 * a port in use) left maildrop/ without it while the daemon was
	 * down, when sendmail uses it (its files 0644 again). */
	if ((fstatat(fd, "", &st, AT_EMPTY_PATH) == -1 ||
	    (st.st_mode & 07777 & ~S_ISGID) != mode) &&
	    fchmod(fd, mode) == -1) {
		log_warn(LP_MASTER, "chmod %s", name);
		goto done;
	}
	rc = 0;
done:
	if (close(fd) == -1 && rc == 0) {
		log_warn(LP_MASTER, "close %s", name);
		rc = -1;
	}
	return rc;
}

/*
 * queue_dir is 0711, not 0700: an unprivileged sendmail must be able to
 * reach maildrop/ (3733) through it.  Nobody but the owner can list it.
 * maildrop's setgid bit is queue_sweep()'s to set, as the queue's owner:
 * root without CAP_FSETID (the systemd unit) is no member of the queue's
 * group, and the kernel would drop the bit here without a word; where a
 * seccomp filter refuses it (RestrictSUIDSGID=), the queue still works.
 */
int
queue_init_dirs(const char *dir, uid_t owner, gid_t group)
{
	size_t i;
	int dfd, rc = 0;

	if (mkdir_owned(AT_FDCWD, dir, 0711, owner, group) == -1)
		return -1;
	dfd = textfile_open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC);
	if (dfd == -1) {
		log_warn(LP_MASTER, "open %s", dir);
		return -1;
	}
	for (i = 0; i < QUEUE_NSUBS; i++)
		if (mkdir_owned(dfd, queue_subs[i].name,
		    queue_subs[i].mode & ~S_ISGID, owner, group) == -1)
			rc = -1;
	if (close(dfd) == -1) {
		log_warn(LP_MASTER, "close %s", dir);
		rc = -1;
	}
	return rc;
}

/*
 * Remember dir.  No side effects: mailq, cat and delete open the queue of
 * a running daemon.  A caller that cannot read queue_dir (sendmail as a
 * local user, writing only into maildrop/) gets "submit-only" mode: 0, no
 * directory fd.
 */
int
queue_open(const char *dir)
{
	int fd;

	if (sodium_init() < 0)
		return errno_fail(EIO);
	if (path_fmt(queue_path, sizeof(queue_path) - 64, "%s", dir) == -1) {
		queue_path[0] = '\0';
		return -1;
	}
	if (queue_dirfd != -1) {
		(void)close(queue_dirfd);	/* read-only: nothing to lose */
		queue_dirfd = -1;
	}
	fd = textfile_open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd == -1) {
		if (errno == EACCES)
			return 0;
		log_warn(LP_QMGR, "open %s", dir);
		return -1;
	}
	queue_dirfd = fd;
	return 0;
}

/*
 * The daemon's start-up, before it takes mail: create what is missing and
 * sweep what a crash left behind.  Only the daemon may call this: tmp/
 * holds the messages its sessions are receiving.
 */
int
queue_sweep(void)
{
	const char *name;
	size_t i;

	if (queue_dirfd == -1)
		return errno_fail(EBADF);
	/* Existing ones too, for maildrop's setgid bit (queue_init_dirs());
	 * following a link only the owner could have put there since
	 * mkdir_owned() refused one. */
	for (i = 0; i < QUEUE_NSUBS; i++) {
		name = queue_subs[i].name;
		if (mkdirat(queue_dirfd, name, queue_subs[i].mode & 0777) ==
		    -1 && errno != EEXIST)
			log_warn(LP_QMGR, "mkdir %s/%s", queue_path, name);
		else if (fchmodat(queue_dirfd, name, queue_subs[i].mode,
		    0) == -1)
			log_warn(LP_QMGR, "chmod %s/%s", queue_path, name);
	}
	sweep_dir("tmp", sweep_tmp, "unfinished file");
	sweep_dir("maildrop", sweep_maildrop, "stale file");
	return 0;
}

int
queue_space_ok(uint64_t need)
{
	struct statvfs sv;
	int fd = queue_dirfd, rc;

	/* A local user's sendmail cannot read the queue (0711) but may
	 * still ask its file system, through an O_PATH descriptor. */
	if (fd == -1 && queue_path[0] != '\0')
		fd = textfile_open(queue_path, O_PATH | O_DIRECTORY |
		    O_CLOEXEC);
	/* Cannot tell: let the write itself fail and answer 451 then. */
	rc = fd == -1 || fstatvfs(fd, &sv) == -1 ||
	    ((uint64_t)sv.f_bavail * sv.f_frsize >= need + QUEUE_MINFREE &&
	    (sv.f_files == 0 || sv.f_favail >= QUEUE_MININODES));
	if (fd != queue_dirfd)
		(void)close(fd);	/* O_PATH: nothing to lose */
	return rc;
}

void
queue_set_listener(void (*fn)(const char *id, unsigned nrcpt))
{
	queue_listener = fn;
}

/* noinline: measured smaller than LTO's inlined copies. */
__attribute__((noinline)) const char *
queue_dir(void)
{
	return queue_path[0] != '\0' ? queue_path : NULL;
}

DIR *
queue_opendir(const char *sub, int *fdp)
{
	DIR *d;
	int fd;

	if (queue_dirfd == -1) {
		errno = EBADF;
		return NULL;
	}
	fd = openat(queue_dirfd, sub, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC);
	if (fdp != NULL)
		*fdp = fd;
	if (fd == -1 || (d = fdopendir(fd)) != NULL)
		return fd == -1 ? NULL : d;
	(void)read_done(fd, NULL, 0);
	return NULL;
}

/*
 * The start-up sweeps share one walk: open sub (relative to queue_dir),
 * and remove each entry the predicate calls left over, saying so.
 */
static void
sweep_dir(const char *sub, int (*leftover)(int, const char *),
    const char *what)
{
	struct dirent *de;
	DIR *d;
	int fd;

	if ((d = queue_opendir(sub, &fd)) == NULL) {
		log_warn(LP_QMGR, "%s/%s", queue_path, sub);
		return;
	}
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0 ||
		    !leftover(fd, de->d_name))
			continue;
		if (unlinkat(fd, de->d_name, 0) == -1)
			log_warn(LP_QMGR, "unlink %s/%s", sub, de->d_name);
		else
			log_info(LP_QMGR, "%s/%s: removed %s", sub,
			    de->d_name, what);
	}
	if (closedir(d) == -1)
		log_warn(LP_QMGR, "%s/%s", queue_path, sub);
}

/* Everything in tmp/ is unacknowledged: no client ever saw a 250 for it. */
static int
sweep_tmp(int dirfd, const char *name)
{
	(void)dirfd;
	(void)name;
	return 1;
}

/*
 * maildrop/.ID.tmp is a sendmail that died mid-write, or one writing right
 * now while we start: only old ones go.
 */
static int
sweep_maildrop(int dirfd, const char *name)
{
	struct stat st;
	size_t n = strlen(name);

	return name[0] == '.' && n >= 5 && strcmp(name + n - 4, ".tmp") == 0 &&
	    fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    st.st_mtime <= loop_now_real() - QUEUE_STALE_SECS;
}

/* --- the writer --- */

/* Control bytes would let a client forge records; they become '?'. */
static void
clean_copy(char *dst, size_t size, const char *src)
{
	size_t i;

	for (i = 0; i + 1 < size && src[i] != '\0'; i++)
		dst[i] = ((unsigned char)src[i] < 0x20 || src[i] == 0x7f) ?
		    '?' : src[i];
	dst[i] = '\0';
}

struct queue_writer *
queue_writer_new(const char *subdir, const char *sender, unsigned flags,
    uid_t uid, const char *client)
{
	struct queue_writer *w;
	char path[PATH_MAX], fin[PATH_MAX], stp[PATH_MAX];
	char cl[QUEUE_CLIENT_MAX], num[QUEUE_NUM_DIGITS + 1];
	char env[QUEUE_ENV_MAX];
	struct stat st;
	uint64_t us;
	int tries, e, n;

	if (queue_path[0] == '\0' || sender == NULL ||
	    !text_ok(sender, strlen(sender), QUEUE_ADDR_MAX) ||
	    (subdir != NULL && (subdir[0] == '\0' || subdir[0] == '.' ||
	    strchr(subdir, '/') != NULL ||
	    strlen(subdir) >= QUEUE_SUBDIR_MAX))) {
		errno = EINVAL;
		return NULL;
	}
	if ((w = calloc(1, sizeof(*w))) == NULL)
		return NULL;
	w->fd = -1;
	w->dfd = AT_FDCWD;
	if ((w->buf = malloc(QUEUE_BUF_SIZE)) == NULL)
		goto fail;
	if (subdir != NULL) {
		memcpy(w->sub, subdir, strlen(subdir) + 1);
		/* By a descriptor that did not follow a symlink there: the
		 * queue's owner can make maildrop one, and root's sendmail
		 * would write wherever it pointed.  O_PATH: a local user may
		 * not read maildrop/ (3733), only create in it. */
		if (path_fmt(path, sizeof(path), "%s/%s", queue_path,
		    subdir) == -1 || (w->dfd = openat(AT_FDCWD, path, O_PATH |
		    O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) == -1)
			goto fail;
	}

	/*
	 * The ID is unique because tmp/ID is created O_EXCL and the final
	 * name (and a stray ID.st) is checked free before we settle on it.
	 */
	for (tries = 0; ; tries++) {
		if (tries == QUEUE_ID_TRIES) {
			errno = EEXIST;
			goto fail;
		}
		us = loop_now_real_us();
		snprintf(w->id, sizeof(w->id), "%013" PRIX64 "%05" PRIX32,
		    us & ((UINT64_C(1) << QUEUE_ID_TIME_BITS) - 1),
		    randombytes_uniform(QUEUE_ID_RAND));
		if (writer_path(w, 1, path) == -1 ||
		    writer_path(w, 0, fin) == -1 ||
		    path_fmt(stp, sizeof(stp), "%s" QUEUE_ST_SUFFIX, fin) == -1)
			goto fail;
		if ((e = name_exists(w->dfd, fin)) == -1 ||
		    (e == 0 && (e = name_exists(w->dfd, stp)) == -1))
			goto fail;
		if (e == 1)
			continue;
		/* openat(): open() would be one libc import more, and
		 * textfile_open() takes no mode. */
		w->fd = openat(w->dfd, path, O_WRONLY | O_CREAT | O_EXCL |
		    O_CLOEXEC | O_NOFOLLOW, 0600);
		if (w->fd != -1)
			break;
		if (errno != EEXIST)
			goto fail;
	}
	/*
	 * maildrop: the daemon's user must read what a local user wrote,
	 * whatever that user's umask, and no other user may.  maildrop/ is
	 * setgid, so the file came in the queue's group: 0640.  In a group
	 * of our own, maildrop/ is not setgid (an older ferry's queue, until
	 * the daemon starts) or we are of the queue's group: 0644, as it
	 * was.  Created 0600: what another user opened before this fchmod
	 * could read all that follows.
	 */
	if (w->sub[0] != '\0' && (fstatat(w->fd, "", &st, AT_EMPTY_PATH) ==
	    -1 || fchmod(w->fd, st.st_gid != getegid() ? 0640 : 0644) == -1))
		goto fail;

	/* The whole envelope up to S in one piece: every field is bounded
	 * (sender by text_ok(), client by cl), far below QUEUE_HDR_MAX. */
	clean_copy(cl, sizeof(cl), client != NULL ? client : "");
	if (uid == (uid_t)-1)
		memcpy(num, "-", 2);
	else
		snprintf(num, sizeof(num), "%lu", (unsigned long)uid);
	n = snprintf(env, sizeof(env), QUEUE_MAGIC "\nI %s\nT %" PRIu64
	    "\nF %x\nU %s\nC %s\nS %s\n", w->id, us / 1000000, flags, num,
	    cl, sender);
	/* The parser reads QUEUE_HDR_MAX bytes from the file's start, the
	 * magic line too: counting it here keeps a file the writer took
	 * from being quarantined as "envelope too long" (7 bytes were left
	 * out before). */
	w->hdr_len = (size_t)n;
	if (writer_put(w, env, (size_t)n) == -1)
		goto fail;
	return w;

fail:
	e = errno;
	/* Only a file we created ourselves (fd open) may be unlinked. */
	if (w->fd != -1)
		queue_writer_abort(w);
	else
		writer_free(w);
	errno = e;
	return NULL;
}

/* Buffer; write() only whole buffers, so a small message is one write. */
static int
writer_put(struct queue_writer *w, const void *p, size_t n)
{
	const char *c = p;
	size_t k;

	while (n > 0) {
		k = QUEUE_BUF_SIZE - w->used;
		if (k > n)
			k = n;
		memcpy(w->buf + w->used, c, k);
		w->used += k;
		c += k;
		n -= k;
		if (w->used == QUEUE_BUF_SIZE && writer_flush(w) == -1)
			return -1;
	}
	return 0;
}

static int
writer_flush(struct queue_writer *w)
{
	if (w->used > 0 && queue_rw_all(w->fd, w->buf, w->used, -1) == -1)
		return writer_fail(w);
	w->used = 0;
	return 0;
}

static int
writer_fail(struct queue_writer *w)
{
	w->err = errno;
	w->state = WS_FAILED;
	log_warn(LP_QMGR, "%s: write", w->id);
	return -1;
}

/* One "X value\n" envelope record; room for "B\n" is always kept. */
static int
writer_rec(struct queue_writer *w, char letter, const char *v, size_t n)
{
	char head[2] = { letter, ' ' };

	if (w->hdr_len + n + 3 + 2 > QUEUE_HDR_MAX)
		return errno_fail(E2BIG);
	w->hdr_len += n + 3;
	if (writer_put(w, head, 2) == -1 || writer_put(w, v, n) == -1 ||
	    writer_put(w, "\n", 1) == -1)
		return -1;
	return 0;
}

int
queue_writer_rcpt(struct queue_writer *w, const char *address)
{
	if (w->state == WS_FAILED)
		return errno_fail(w->err);
	if (w->state != WS_ENVELOPE || address == NULL ||
	    address[0] == '\0' ||
	    !text_ok(address, strlen(address), QUEUE_ADDR_MAX))
		return errno_fail(EINVAL);
	if (w->nrcpt >= QUEUE_MAX_RCPT)
		return errno_fail(E2BIG);
	if (writer_rec(w, 'R', address, strlen(address)) == -1)
		return -1;
	w->nrcpt++;
	return 0;
}

int
queue_writer_body(struct queue_writer *w, const void *p, size_t n)
{
	if (w->state == WS_FAILED)
		return errno_fail(w->err);
	if (w->state == WS_ENVELOPE) {
		if (w->nrcpt == 0)
			return errno_fail(EINVAL);
		w->hdr_len += 2;
		if (writer_put(w, "B\n", 2) == -1)
			return -1;
		w->state = WS_BODY;
	}
	if (w->state != WS_BODY)
		return errno_fail(EINVAL);
	if (writer_put(w, p, n) == -1)
		return -1;
	w->body_len += n;
	return 0;
}

int
queue_writer_finish(struct queue_writer *w)
{
	char end[QUEUE_TRAILER_MAX + 1];

	if (w->state == WS_ENVELOPE && queue_writer_body(w, "", 0) == -1)
		return -1;
	if (w->state == WS_FAILED)
		return errno_fail(w->err);
	if (w->state != WS_BODY)
		return errno_fail(EINVAL);
	snprintf(end, sizeof(end), "\nE %" PRIu64 "\n", w->body_len);
	if (writer_put(w, end, strlen(end)) == -1 || writer_flush(w) == -1)
		return -1;
	w->state = WS_FINISHED;
	return 0;
}

const char *
queue_writer_id(const struct queue_writer *w)
{
	return w->id;
}

uint64_t
queue_writer_size(const struct queue_writer *w)
{
	return w->body_len;
}

void
queue_writer_abort(struct queue_writer *w)
{
	char path[PATH_MAX];

	if (w == NULL)
		return;
	/* The file is thrown away: a failed close loses nothing. */
	if (w->fd != -1)
		(void)close(w->fd);
	w->fd = -1;
	if (writer_path(w, 1, path) == 0 &&
	    unlinkat(w->dfd, path, 0) == -1 &&
	    errno != ENOENT)
		log_warn(LP_QMGR, "unlink %s", path);
	writer_free(w);
}

static void
writer_free(struct queue_writer *w)
{
	if (w->fd != -1)
		(void)close(w->fd);
	if (w->dfd >= 0)
		(void)close(w->dfd);
	free(w->buf);
	free(w);
}

/* --- commit --- */

void
queue_commit(struct queue_writer *w, void (*cb)(void *, const char *, int),
    void *arg)
{
	w->cb = cb;
	w->arg = arg;
	w->next = NULL;
	free(w->buf);		/* flushed by finish; keep sessions small */
	w->buf = NULL;
	*queue_pending_tail = w;
	queue_pending_tail = &w->next;
	loop_hook_queue(&queue_hook);
}

void
queue_commit_forget(void *arg)
{
	struct queue_writer *w;

	for (w = queue_pending; w != NULL; w = w->next)
		if (w->arg == arg)
			w->cb = NULL;
	for (w = queue_running; w != NULL; w = w->next)
		if (w->arg == arg)
			w->cb = NULL;
}

/*
 * fsync, close (checked: a close error can be the only report of a lost
 * write), make sure we never replace a committed file, rename.  On failure
 * the tmp file is removed; nothing is half-done.
 */
static int
commit_file(struct queue_writer *w)
{
	char tmp[PATH_MAX], fin[PATH_MAX];
	const char *what;
	int e;

	if (writer_path(w, 1, tmp) == -1 ||
	    writer_path(w, 0, fin) == -1) {
		what = "path";
		goto fail;
	}
	if (w->state != WS_FINISHED) {
		errno = w->state == WS_FAILED ? w->err : EINVAL;
		what = "unfinished";
		goto fail;
	}
	what = "fsync";
	if (fsync(w->fd) == -1)
		goto fail;
	e = close(w->fd);
	w->fd = -1;
	what = "close";
	if (e == -1)
		goto fail;
	what = "exists";
	if ((e = name_exists(w->dfd, fin)) != 0) {
		if (e == 1)
			errno = EEXIST;
		goto fail;
	}
	what = "rename";
	if (renameat(w->dfd, tmp, w->dfd, fin) == -1)
		goto fail;
	return 0;

fail:
	e = errno;
	log_warn(LP_QMGR, "%s: commit: %s", w->id, what);
	if (w->fd != -1)
		(void)close(w->fd);
	w->fd = -1;
	if (unlinkat(w->dfd, tmp, 0) == -1 && errno != ENOENT)
		log_warn(LP_QMGR, "unlink %s", tmp);
	return errno_fail(e);
}

/*
 * Make the new name file in w's directory (w NULL or its sub "":
 * queue_dir) durable.  A local user cannot open maildrop/ (3733: no
 * read), so there we sync the file system through the file we just
 * renamed instead.
 */
static int
sync_dir(const struct queue_writer *w, const char *file)
{
	int fd, rc = 0;

	if ((w == NULL || w->sub[0] == '\0') && queue_dirfd != -1)
		return fsync(queue_dirfd);
	fd = w == NULL || w->sub[0] == '\0' ? textfile_open(queue_path,
	    O_RDONLY | O_DIRECTORY | O_CLOEXEC) : openat(w->dfd, ".",
	    O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd == -1) {
		if (errno != EACCES || file == NULL)
			return -1;
		if ((fd = openat(w->dfd, file, O_RDONLY | O_CLOEXEC |
		    O_NOFOLLOW)) == -1)
			return -1;
		rc = syncfs(fd);
	} else
		rc = fsync(fd);
	if (close(fd) == -1)
		rc = -1;
	return rc;
}

/* The directory sync failed: the client gets no 250, so take it back. */
static void
commit_undo(struct queue_writer *w)
{
	char fin[PATH_MAX];

	w->ok = 0;
	if (writer_path(w, 0, fin) == 0 &&
	    unlinkat(w->dfd, fin, 0) == -1 &&
	    errno != ENOENT)
		log_warn(LP_QMGR, "unlink %s", fin);
}

/*
 * The before-sleep hook: every commit asked for in this loop iteration
 * shares one fsync of queue_dir.  No callback runs before that fsync.
 * With two or more, all their data is sent to the disk first and the
 * fsyncs follow: the loop has one thread, so otherwise each fsync would
 * start its file's writes and wait for them (and, on a journalled file
 * system, for a commit of its own) before the next could begin.  Not
 * syncfs(): it also writes out the short-lived state files of messages
 * being delivered, which unlink would have dropped unwritten (measured:
 * 2.2 times the bytes written per relayed message; flash wears).
 */
static void
queue_commit_run(struct loop_hook *h)
{
	struct queue_writer *w;
	char fin[PATH_MAX];
	int main_dir = 0;

	(void)h;
	queue_running = queue_pending;
	queue_pending = NULL;
	queue_pending_tail = &queue_pending;

	/* A failure to start can be the only report of a loss: ext4 drops
	 * pages it cannot allocate blocks for and tells only the caller
	 * that started the write-back, so a later fsync would succeed. */
	if (queue_running != NULL && queue_running->next != NULL)
		for (w = queue_running; w != NULL; w = w->next)
			if (w->state == WS_FINISHED &&
			    sync_file_range(w->fd, 0, 0,
			    SYNC_FILE_RANGE_WRITE) == -1 && errno != ENOSYS &&
			    errno != EINVAL && errno != ESPIPE) {
				w->err = errno;
				w->state = WS_FAILED;
			}
	for (w = queue_running; w != NULL; w = w->next) {
		w->ok = commit_file(w) == 0;
		if (w->ok && w->sub[0] == '\0')
			main_dir = 1;
	}
	if (main_dir && sync_dir(NULL, NULL) == -1) {
		log_warn(LP_QMGR, "fsync %s", queue_path);
		for (w = queue_running; w != NULL; w = w->next)
			if (w->ok && w->sub[0] == '\0')
				commit_undo(w);
	}
	for (w = queue_running; w != NULL; w = w->next)
		if (w->ok && w->sub[0] != '\0' &&
		    (writer_path(w, 0, fin) == -1 ||
		    sync_dir(w, fin) == -1)) {
			log_warn(LP_QMGR, "fsync %s/%s", queue_path, w->sub);
			commit_undo(w);
		}

	/* Unlink each before its callback: the callback may forget others. */
	while ((w = queue_running) != NULL) {
		queue_running = w->next;
		if (w->cb != NULL)
			w->cb(w->arg, w->id, w->ok);
		/* After the owner's callback: a 250 goes out first. */
		if (w->ok && w->sub[0] == '\0' && queue_listener != NULL)
			queue_listener(w->id, w->nrcpt);
		writer_free(w);
	}
}

int
queue_commit_now(struct queue_writer *w)
{
	char fin[PATH_MAX];
	int rc = -1, e;

	free(w->buf);
	w->buf = NULL;
	if (commit_file(w) == -1)
		goto done;
	if (writer_path(w, 0, fin) == -1 ||
	    sync_dir(w, fin) == -1) {
		e = errno;
		log_warn(LP_QMGR, "%s: commit: fsync directory", w->id);
		commit_undo(w);
		errno = e;
		goto done;
	}
	rc = 0;
done:
	e = errno;
	writer_free(w);
	errno = e;
	return rc;
}

/* --- parsing --- */

/* The next line without its "\n"; -1 when no whole line is left. */
static int
cur_line(struct cursor *c, const char **line, size_t *n)
{
	const char *nl;

	if (c->off >= c->len)
		return -1;
	nl = memchr(c->buf + c->off, '\n', c->len - c->off);
	if (nl == NULL)
		return -1;
	*line = c->buf + c->off;
	*n = (size_t)(nl - *line);
	c->off += *n + 1;
	return 0;
}

/*
 * The next line if it is "<letter> value": 0 and the value; -1 at the end
 * of the buffer; -2 (cursor unmoved) when it is some other record.
 */
static int
cur_rec(struct cursor *c, char letter, const char **v, size_t *n)
{
	size_t save = c->off;
	const char *l;
	size_t ln;

	if (cur_line(c, &l, &ln) == -1)
		return -1;
	if (ln < 2 || l[0] != letter || l[1] != ' ') {
		c->off = save;
		return -2;
	}
	*v = l + 2;
	*n = ln - 2;
	return 0;
}

/* Into out (QUEUE_SEAL_LEN + 1): "<id> <seal>" of n bytes at p, the line
 * that closes an append. */
static void
state_seal(char *out, const char *id, const void *p, size_t n)
{
	unsigned char h[crypto_generichash_BYTES_MIN];

	crypto_generichash(h, sizeof(h), p, n, NULL, 0);
	memcpy(out, id, QUEUE_ID_LEN);
	out[QUEUE_ID_LEN] = ' ';
	sodium_bin2hex(out + QUEUE_ID_LEN + 1, 17, h, 8);
}

/* The next line is "I <id> <seal>" of the bytes from..here: 0, else -1. */
static int
cur_seal(struct cursor *c, const char *id, size_t from)
{
	char want[QUEUE_SEAL_LEN + 1];
	const char *v;
	size_t n, at = c->off;

	if (cur_rec(c, 'I', &v, &n) != 0 || n != QUEUE_SEAL_LEN)
		return -1;
	state_seal(want, id, c->buf + from, at - from);
	return memcmp(v, want, n) != 0 ? -1 : 0;
}

/* Canonical decimal: 1..20 digits, no leading zero, at most max. */
static int
num_dec(const char *s, size_t n, uint64_t max, uint64_t *out)
{
	uint64_t v = 0, d;
	size_t i;

	if (n == 0 || n > QUEUE_NUM_DIGITS || (n > 1 && s[0] == '0'))
		return -1;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		d = (uint64_t)(s[i] - '0');
		if (v > (max - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

/* The next line is "<letter> <num_dec() up to max>": 0, else -1. */
static int
cur_num(struct cursor *c, char letter, uint64_t max, uint64_t *out)
{
	const char *v;
	size_t n;

	return cur_rec(c, letter, &v, &n) == 0 ? num_dec(v, n, max, out) : -1;
}

static int
num_hex(const char *s, size_t n, uint64_t *out)
{
	uint64_t v = 0;
	size_t i;
	int d;

	if (n == 0 || n > QUEUE_FLAGS_DIGITS)
		return -1;
	for (i = 0; i < n; i++) {
		if (s[i] >= '0' && s[i] <= '9')
			d = s[i] - '0';
		else if (s[i] >= 'a' && s[i] <= 'f')
			d = s[i] - 'a' + 10;
		else
			return -1;
		v = v * 16 + (uint64_t)d;
	}
	*out = v;
	return 0;
}

/* Shorter than max (room for the NUL) and no control bytes. */
static int
text_ok(const char *s, size_t n, size_t max)
{
	size_t i;

	if (n >= max)
		return 0;
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return 0;
	return 1;
}

int
queue_id_valid(const char *s)
{
	size_t i;

	if (s == NULL)
		return 0;
	for (i = 0; i < QUEUE_ID_LEN; i++)
		if (!((s[i] >= '0' && s[i] <= '9') ||
		    (s[i] >= 'A' && s[i] <= 'F')))
			return 0;
	return s[QUEUE_ID_LEN] == '\0';
}

/*
 * "\nE <n>\n" read backwards from the end of the file.  Digits are taken
 * greedily; the byte before them must be the " " of "E ", so body bytes can
 * never be mistaken for the length.
 */
static int
parse_trailer(const char *tail, size_t n, uint64_t *bodylen, size_t *tlen)
{
	size_t end, start;

	if (n < 5 || tail[n - 1] != '\n')
		return -1;
	end = n - 1;
	start = end;
	while (start > 0 && end - start < QUEUE_NUM_DIGITS &&
	    tail[start - 1] >= '0' && tail[start - 1] <= '9')
		start--;
	if (start < 3 || tail[start - 1] != ' ' || tail[start - 2] != 'E' ||
	    tail[start - 3] != '\n')
		return -1;
	if (num_dec(tail + start, end - start, UINT64_MAX, bodylen) == -1)
		return -1;
	*tlen = n - (start - 3);
	return 0;
}

/*
 * head: the file's first min(len, QUEUE_HDR_MAX) bytes; tail: its last
 * min(len, QUEUE_TRAILER_MAX); flen: its length.  queue_parse hands in one
 * buffer twice, queue_load two small reads, so big bodies stay on disk.
 */
static int
parse_image(const char *head, size_t hlen, const char *tail, size_t tlen,
    uint64_t flen, struct queue_info *info, const char **why)
{
	struct cursor c = { head, hlen, 0 };
	const char *v;
	char *p;
	size_t n, rstart, trl, k;
	uint64_t x, bodylen;
	unsigned i;
	int r, ok, cut = hlen < flen;

	memset(info, 0, sizeof(*info));
	if (flen == 0) {
		*why = "empty file";
		goto bad;
	}
	if (cur_line(&c, &v, &n) == -1 || n != sizeof(QUEUE_MAGIC) - 1 ||
	    memcmp(v, QUEUE_MAGIC, n) != 0) {
		*why = "bad magic";
		goto bad;
	}
	/* One pass over the table instead of six copies of "read the next
	 * record, check it, say why"; memset() above already put the NULs
	 * after id and sender. */
	for (k = 0; k < sizeof(env_letters) - 1; k++) {
		if ((r = cur_rec(&c, env_letters[k], &v, &n)) != 0) {
			env_order[sizeof(env_order) - 2] = env_letters[k];
			*why = r == -2 ? env_order : cut ?
			    "envelope too long" : "torn: envelope cut short";
			goto bad;
		}
		switch (env_letters[k]) {
		case 'I':
			ok = n == QUEUE_ID_LEN;
			if (ok) {
				memcpy(info->id, v, n);
				ok = queue_id_valid(info->id);
			}
			break;
		case 'T':
			ok = num_dec(v, n, UINT64_MAX, &info->arrival) == 0;
			break;
		case 'F':
			if ((ok = num_hex(v, n, &x) == 0))
				info->flags = (unsigned)x;
			break;
		case 'U':
			ok = 1;
			if (n == 1 && v[0] == '-')
				info->uid = (uid_t)-1;
			else if ((ok = num_dec(v, n, (uid_t)-2, &x) == 0))
				info->uid = (uid_t)x;
			break;
		case 'C':
			ok = text_ok(v, n, QUEUE_CLIENT_MAX);
			break;
		default:	/* 'S' */
			if ((ok = text_ok(v, n, QUEUE_ADDR_MAX)))
				memcpy(info->sender, v, n);
			break;
		}
		if (!ok) {
			for (*why = env_bad; k > 0; k--)
				*why += strlen(*why) + 1;
			goto bad;
		}
	}

	/* Count and check the recipients, then allocate and copy them. */
	rstart = c.off;
	while ((r = cur_rec(&c, 'R', &v, &n)) == 0) {
		if (n == 0 || !text_ok(v, n, QUEUE_ADDR_MAX)) {
			*why = "bad recipient";
			goto bad;
		}
		if (++info->nrcpt > QUEUE_MAX_RCPT) {
			*why = "too many recipients";
			goto bad;
		}
	}
	if (r == -1) {
		*why = cut ? "envelope too long" :
		    "torn: envelope cut short";
		goto bad;
	}
	if (info->nrcpt == 0) {
		*why = "no recipients";
		goto bad;
	}
	if (cur_line(&c, &v, &n) == -1 || n != 1 || v[0] != 'B') {
		*why = "bad record order, expected R or B";
		goto bad;
	}
	info->body_off = c.off;

	if (parse_trailer(tail, tlen, &bodylen, &trl) == -1) {
		*why = "torn: no end record";
		goto bad;
	}
	if (flen < info->body_off + trl ||
	    flen - info->body_off - trl != bodylen) {
		*why = "torn: length does not match end record";
		goto bad;
	}
	info->size = bodylen;

	/* One block: the array, then each address (its NUL calloc's), so
	 * they cost what they hold and go with the array.  The R records'
	 * bytes, "R <address>\n" each, have room for every address; all
	 * within QUEUE_HDR_MAX.  calloc: every one RS_QUEUED, no reason. */
	info->rcpt = calloc(1, info->nrcpt * sizeof(*info->rcpt) +
	    (size_t)(info->body_off - rstart));
	if (info->rcpt == NULL) {
		*why = "out of memory";
		info->nrcpt = 0;
		return -1;
	}
	p = (char *)(info->rcpt + info->nrcpt);
	c.off = rstart;
	for (i = 0; i < info->nrcpt; i++) {
		if (cur_rec(&c, 'R', &v, &n) != 0) {	/* checked above */
			*why = "internal error";
			goto bad;
		}
		info->rcpt[i].address = memcpy(p, v, n);
		p += n + 1;
	}
	return 0;

bad:
	queue_info_free(info);
	return errno_fail(EBADMSG);
}

int
queue_parse(const char *buf, size_t len, struct queue_info *info,
    const char **why)
{
	size_t hlen = len < QUEUE_HDR_MAX ? len : QUEUE_HDR_MAX;
	size_t tlen = len < QUEUE_TRAILER_MAX ? len : QUEUE_TRAILER_MAX;
	const char *dummy;

	if (why == NULL)
		why = &dummy;
	/* No arithmetic on a possibly NULL buf when len is 0. */
	return parse_image(buf, hlen, len != 0 ? buf + len - tlen : buf, tlen,
	    len, info, why);
}

int
queue_rcpt_reason(struct queue_rcpt *r, const char *s, size_t n)
{
	free(r->reason);
	r->reason = NULL;
	if (n > QUEUE_REASON_MAX - 1)
		n = QUEUE_REASON_MAX - 1;
	if (n == 0 || s[0] == '\0')
		return 0;
	/* strndup(), not a copy by hand (one import less): the tests'
	 * out-of-memory shim fails it, and it reads as what it does. */
	return (r->reason = strndup(s, n)) != NULL ? 0 : -1;
}

void
queue_info_free(struct queue_info *info)
{
	unsigned i;

	if (info == NULL)
		return;
	/* A parse that failed has counted recipients, allocated none. */
	for (i = 0; info->rcpt != NULL && i < info->nrcpt; i++)
		free(info->rcpt[i].reason);
	free(info->rcpt);
	info->rcpt = NULL;
	info->nrcpt = 0;
}

static int
status_parse(const char *s, size_t n, enum rcpt_status *st, int *notified)
{
	size_t i;

	*notified = 0;
	if (n == sizeof(QUEUE_NOTIFIED_WORD) - 1 &&
	    memcmp(s, QUEUE_NOTIFIED_WORD, n) == 0) {
		*st = RS_BOUNCED;
		*notified = 1;
		return 0;
	}
	for (i = 0; i < QUEUE_NSTATUS; i++)
		if (strlen(queue_status_names[i]) == n &&
		    memcmp(queue_status_names[i], s, n) == 0) {
			*st = (enum rcpt_status)i;
			return 0;
		}
	return -1;
}

/*
 * Two passes over the same bytes: the first (apply = 0) only checks, the
 * second writes into info, so a bad file leaves info untouched.  Past E
 * (tail), the first append that is not sealed ends the file (the top of
 * this file says why): *good, the bytes up to it.
 */
static int
parse_state(const char *buf, size_t len, struct queue_info *info, int apply,
    const char **why, size_t *good)
{
	struct cursor c = { buf, len, 0 };
	const char *v, *sp, *reason;
	size_t n, k, rlen;
	uint64_t next, att, warned = 0, idx, count, nr = 0;
	int have_prev = 0, r, notified, tail = 0;
	uint64_t prev = 0;
	enum rcpt_status st;

	if (len > QUEUE_STATE_MAX) {
		*why = "state file too long";
		return -1;
	}
	if (cur_line(&c, &v, &n) == -1 ||
	    n != sizeof(QUEUE_STATE_MAGIC) - 1 ||
	    memcmp(v, QUEUE_STATE_MAGIC, n) != 0) {
		*why = "bad magic";
		return -1;
	}
	if (cur_rec(&c, 'I', &v, &n) != 0 || n != QUEUE_ID_LEN ||
	    memcmp(v, info->id, n) != 0 || !queue_id_valid(info->id)) {
		*why = "state is for another message";
		return -1;
	}
	if (cur_num(&c, 'N', UINT64_MAX, &next) == -1) {
		*why = "bad next attempt";
		return -1;
	}
	if (cur_num(&c, 'A', UINT_MAX, &att) == -1) {
		*why = "bad attempts";
		return -1;
	}
	/* Optional, so state files from before it still parse. */
	if ((r = cur_rec(&c, 'W', &v, &n)) == 0) {
		if (num_dec(v, n, UINT64_MAX, &warned) == -1 || warned == 0) {
			*why = "bad warning time";
			return -1;
		}
	} else if (r == -1) {
		*why = "torn: no end record";
		return -1;
	}
	if (apply) {
		info->next_attempt = next;
		info->attempts = (unsigned)att;
		info->warned = warned;
		for (k = 0; k < info->nrcpt; k++) {
			info->rcpt[k].status = RS_QUEUED;
			free(info->rcpt[k].reason);
			info->rcpt[k].reason = NULL;
			info->rcpt[k].notified = 0;
		}
	}
	for (;;) {
		if ((r = cur_rec(&c, 'R', &v, &n)) != 0) {
			if (tail) {
				if (cur_seal(&c, info->id, *good) == -1)
					return 0;
				*good = c.off;
				continue;
			}
			if (r == -1) {
				*why = "torn: no end record";
				return -1;
			}
			if (cur_num(&c, 'E', UINT64_MAX, &count) == -1) {
				*why = "bad record";
				return -1;
			}
			if (count != nr) {
				*why = "torn: end record does not match";
				return -1;
			}
			tail = 1;
			*good = c.off;
			continue;
		}
		sp = memchr(v, ' ', n);
		if (sp == NULL ||
		    num_dec(v, (size_t)(sp - v), UINT64_MAX, &idx) == -1 ||
		    idx >= info->nrcpt || (!tail && have_prev && idx <= prev)) {
			*why = "bad recipient index";
			goto bad;
		}
		have_prev = 1;
		prev = idx;
		k = (size_t)(sp - v) + 1;	/* the status word */
		sp = memchr(v + k, ' ', n - k);
		rlen = 0;
		reason = NULL;
		if (sp != NULL) {
			reason = sp + 1;
			rlen = n - (size_t)(reason - v);
		}
		if (status_parse(v + k, sp != NULL ? (size_t)(sp - (v + k)) :
		    n - k, &st, &notified) == -1) {
			*why = "bad recipient status";
			goto bad;
		}
		if (!text_ok(reason, rlen, QUEUE_REASON_MAX)) {
			*why = "bad reason";
			goto bad;
		}
		if (apply) {
			info->rcpt[idx].status = st;
			info->rcpt[idx].notified = notified;
			/* The file is good: only memory can fail. */
			if (queue_rcpt_reason(&info->rcpt[idx], reason,
			    rlen) == -1) {
				*why = "out of memory";
				return -1;
			}
		}
		nr++;
	}
bad:
	return tail ? 0 : -1;
}

int
queue_parse_state(const char *buf, size_t len, struct queue_info *info,
    const char **why)
{
	const char *dummy;
	size_t good;

	if (why == NULL)
		why = &dummy;
	if (info->nrcpt > 0 && info->rcpt == NULL) {
		*why = "no recipients loaded";
		return errno_fail(EINVAL);
	}
	if (parse_state(buf, len, info, 0, why, &good) == -1)
		return errno_fail(EBADMSG);
	/* Only the sealed appends: what follows them is not applied. */
	return parse_state(buf, good, info, 1, why, &good);
}

/* --- loading, updating, deleting --- */

/*
 * dropped: the file is in maildrop/, a local user's (queue_open_dropped()),
 * and has no state file.
 */
int
queue_load(int dropped, const char *id, struct queue_info *info,
    const char **why)
{
	char tail[QUEUE_TRAILER_MAX], *head = NULL;
	const char *dummy;
	struct stat st;
	size_t hlen, tlen;
	int fd = -1, rc = -1;

	if (why == NULL)
		why = &dummy;
	memset(info, 0, sizeof(*info));
	if (!queue_id_valid(id)) {
		*why = "bad id";
		return errno_fail(EINVAL);
	}
	if (queue_dirfd == -1) {
		*why = "queue not open";
		return errno_fail(EBADF);
	}
	fd = dropped ? queue_open_dropped(id, &st, why) :
	    openat(queue_dirfd, id, O_RDONLY | O_CLOEXEC | O_NOFOLLOW |
	    O_NONBLOCK);
	if (fd == -1) {
		if (!dropped || errno != EBADMSG)
			*why = "cannot open";
		return -1;
	}
	/* fstatat(AT_EMPTY_PATH): fstat() without its own import. */
	if (!dropped && fstatat(fd, "", &st, AT_EMPTY_PATH) == -1) {
		*why = "cannot stat";
		goto done;
	}
	if (!S_ISREG(st.st_mode)) {
		*why = "not a regular file";
		errno = EBADMSG;
		goto done;
	}
	hlen = (uint64_t)st.st_size < QUEUE_HDR_MAX ? (size_t)st.st_size :
	    QUEUE_HDR_MAX;
	tlen = (uint64_t)st.st_size < QUEUE_TRAILER_MAX ?
	    (size_t)st.st_size : QUEUE_TRAILER_MAX;
	if ((head = malloc(hlen + 1)) == NULL) {
		*why = "out of memory";
		goto done;
	}
	if (queue_rw_all(fd, head, hlen, 0) == -1 ||
	    queue_rw_all(fd, tail, tlen, st.st_size - (off_t)tlen) == -1) {
		*why = "read error";
		goto done;
	}
	if (parse_image(head, hlen, tail, tlen, (uint64_t)st.st_size, info,
	    why) == -1)
		goto done;
	if (strcmp(info->id, id) != 0) {
		*why = "id does not match file name";
		queue_info_free(info);
		errno = EBADMSG;
		goto done;
	}
	info->maildrop = dropped;
	if (!dropped && load_state(info) == -1) {
		*why = "cannot read state file";
		queue_info_free(info);
		goto done;
	}
	rc = 0;
done:
	return read_done(fd, head, rc);
}

/*
 * A missing ID.st means "all queued".  A bad one is moved to corrupt/ and
 * the recipients start over as queued: a duplicate is allowed, a loss is
 * not, so the message itself is kept.  -1 only for I/O errors.
 */
static int
load_state(struct queue_info *info)
{
	char name[QUEUE_ID_SIZE + sizeof(QUEUE_ST_SUFFIX)];
	const char *why = "";
	struct stat st;
	char *buf = NULL;
	int fd, rc = -1;

	snprintf(name, sizeof(name), "%s" QUEUE_ST_SUFFIX, info->id);
	fd = openat(queue_dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd == -1)
		return errno == ENOENT ? 0 : -1;
	if (fstatat(fd, "", &st, AT_EMPTY_PATH) == -1)
		goto done;
	if (!S_ISREG(st.st_mode) || st.st_size > QUEUE_STATE_MAX)
		why = "not a small regular file";
	else if ((buf = malloc((size_t)st.st_size + 1)) == NULL ||
	    queue_rw_all(fd, buf, (size_t)st.st_size, 0) == -1)
		goto done;
	else if (queue_parse_state(buf, (size_t)st.st_size, info, &why) == 0)
		why = NULL;
	else if (errno == ENOMEM)
		goto done;	/* the file is fine: try again later */
	if (why != NULL) {
		if (corrupt_move(name, name) == -1)
			log_warn(LP_QMGR, "rename %s", name);
		log_warnx(LP_QMGR, "%s: state file moved to corrupt/: %s; "
		    "all recipients queued again", info->id, why);
	}
	rc = 0;
done:
	return read_done(fd, buf, rc);
}

int
queue_update(const struct queue_info *info, int durable, const unsigned *idx,
    unsigned nidx)
{
	/* "tmp/ID.st", and name its "ID.st": one snprintf for both. */
	char tname[4 + QUEUE_ID_SIZE + sizeof(QUEUE_ST_SUFFIX)];
	const char *name = tname + 4;
	char reason[QUEUE_REASON_MAX], seal[QUEUE_SEAL_LEN + 1];
	char *buf = NULL;
	struct stat st;
	size_t cap, len = 0, i, k;
	int fd = -1, rc = -1, e, n;
	const char *what = "format";

	if (!queue_id_valid(info->id) || info->nrcpt > QUEUE_MAX_RCPT ||
	    (info->nrcpt > 0 && info->rcpt == NULL))
		return errno_fail(EINVAL);
	for (i = 0; i < info->nrcpt; i++)
		if ((unsigned)info->rcpt[i].status >= QUEUE_NSTATUS)
			return errno_fail(EINVAL);
	if (queue_dirfd == -1)
		return errno_fail(EBADF);
	/* No state for a message that is gone: it would be an orphan. */
	if (fstatat(queue_dirfd, info->id, &st, AT_SYMLINK_NOFOLLOW) == -1)
		return -1;
	snprintf(tname, sizeof(tname), "tmp/%s" QUEUE_ST_SUFFIX, info->id);

	cap = 128 + (size_t)info->nrcpt * (QUEUE_REASON_MAX + 40);
	if ((buf = malloc(cap)) == NULL)
		return -1;
	/* An append is R records and their seal (the top of this file
	 * says why): no header. */
	if (idx == NULL) {
		len = (size_t)snprintf(buf, cap, QUEUE_STATE_MAGIC "\nI %s\nN %"
		    PRIu64 "\nA %u\n", info->id, info->next_attempt,
		    info->attempts);
		n = info->warned == 0 ? 0 : snprintf(buf + len, cap - len,
		    "W %" PRIu64 "\n", info->warned);
		if (n < 0 || (size_t)n >= cap - len) {
			errno = EOVERFLOW;
			goto fail;
		}
		len += (size_t)n;
	}
	for (i = 0; i < (idx != NULL ? nidx : info->nrcpt); i++) {
		k = idx != NULL ? idx[i] : i;
		clean_copy(reason, sizeof(reason), info->rcpt[k].reason ?
		    info->rcpt[k].reason : "");
		/* The mark means something only for a bounced one. */
		n = snprintf(buf + len, cap - len, "R %zu %s%s%s\n", k,
		    info->rcpt[k].status == RS_BOUNCED &&
		    info->rcpt[k].notified ? QUEUE_NOTIFIED_WORD :
		    queue_status_names[info->rcpt[k].status],
		    reason[0] != '\0' ? " " : "", reason);
		if (n < 0 || (size_t)n >= cap - len) {
			errno = EOVERFLOW;
			goto fail;
		}
		len += (size_t)n;
	}
	if (idx != NULL) {
		state_seal(seal, info->id, buf, len);
		n = snprintf(buf + len, cap - len, "I %s\n", seal);
	} else
		n = snprintf(buf + len, cap - len, "E %u\n", info->nrcpt);
	if (n < 0 || (size_t)n >= cap - len) {
		errno = EOVERFLOW;
		goto fail;
	}
	len += (size_t)n;

	what = "create";
	/* Without a whole file under it an append would be all there is:
	 * not O_CREAT. */
	fd = openat(queue_dirfd, idx != NULL ? name : tname, idx != NULL ?
	    O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW : O_WRONLY |
	    O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd == -1)
		goto fail;
	what = "write";
	if (queue_rw_all(fd, buf, len, -1) == -1)
		goto fail;
	/* The index queue_index() reads at the next start; only an index:
	 * where the file system refuses the time, the state still counts
	 * (a lost update would repeat deliveries), and the message is
	 * merely due at the next start.  A time a 32-bit time_t cannot
	 * hold is left out the same way. */
	if (info->next_attempt != 0 &&
	    (uint64_t)(time_t)info->next_attempt == info->next_attempt &&
	    futimens(fd, (const struct timespec[2]){ { 0, UTIME_OMIT },
	    { (time_t)info->next_attempt, 0 } }) == -1)
		log_warn(LP_QMGR, "%s: state file time", info->id);
	what = "fsync";
	if (durable && fsync(fd) == -1)
		goto fail;
	what = "close";
	e = close(fd);
	fd = -1;
	if (e == -1)
		goto fail;
	what = "rename";
	if (idx == NULL && renameat(queue_dirfd, tname, queue_dirfd,
	    name) == -1)
		goto fail;
	/* After an append too: the name may come from a whole write made
	 * without durable, its rename not yet on disk. */
	what = "fsync directory";
	if (durable && fsync(queue_dirfd) == -1)
		goto fail;
	rc = 0;
fail:
	e = errno;
	if (rc == -1) {
		log_warn(LP_QMGR, "%s: state update: %s", info->id, what);
		if (fd != -1)
			(void)close(fd);	/* the file is thrown away */
		(void)unlinkat(queue_dirfd, tname, 0);
	}
	free(buf);
	errno = e;
	return rc;
}

int
queue_open_dropped(const char *name, struct stat *st, const char **why)
{
	char path[sizeof("maildrop/") + NAME_MAX];
	struct stat pre;
	int fd, e;

	if (snprintf(path, sizeof(path), "maildrop/%s", name) >=
	    (int)sizeof(path))
		return errno_fail(ENAMETOOLONG);
	/* Nothing but a plain file of one link is opened at all: a device
	 * hard-linked here must not see an open from root's mailq. */
	if (fstatat(queue_dirfd, path, &pre, AT_SYMLINK_NOFOLLOW) == -1)
		return -1;
	*why = S_ISLNK(pre.st_mode) ? "a symbolic link" :
	    "not a regular file with one link";
	if (!S_ISREG(pre.st_mode) || pre.st_nlink != 1)
		return errno_fail(EBADMSG);
	fd = openat(queue_dirfd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW |
	    O_NONBLOCK | O_NOCTTY);
	if (fd == -1) {
		if (errno == ELOOP)	/* a link swapped in meanwhile */
			*why = "a symbolic link";
		/* sendmail leaves 0640 in our group (0644 in its own), so
		 * its owner took the read bits away, or the group (chgrp):
		 * out of the way, or it is tried (and warned about) every
		 * minute for ever.  Refused although the mode lets us read,
		 * it is an LSM's doing: the admin's to fix, it waits. */
		else if (errno == EACCES && !(pre.st_mode &
		    (pre.st_gid == getegid() ? S_IRGRP : S_IROTH)))
			*why = "unreadable";
		else
			return -1;
		return errno_fail(EBADMSG);
	}
	e = fstatat(fd, "", st, AT_EMPTY_PATH) == -1 ? errno : EBADMSG;
	/* Swapped between the two looks: not the file checked. */
	if (e != EBADMSG || !S_ISREG(st->st_mode) || st->st_nlink != 1 ||
	    st->st_dev != pre.st_dev || st->st_ino != pre.st_ino) {
		(void)close(fd);	/* read-only */
		return errno_fail(e);
	}
	return fd;
}

/* ferry delete: a file sendmail left in maildrop/ (queue_walk lists it). */
int
queue_delete_dropped(const char *id)
{
	char name[sizeof("maildrop/") + QUEUE_ID_SIZE];

	if (!queue_id_valid(id) || queue_dirfd == -1)
		return errno_fail(queue_dirfd == -1 ? EBADF : EINVAL);
	snprintf(name, sizeof(name), "maildrop/%s", id);
	return unlinkat(queue_dirfd, name, 0);
}

/* ID first, then ID.st: a crash between leaves an orphan, not a resend.
 * Not synced (see below). */
int
queue_delete(const char *id)
{
	char name[QUEUE_ID_SIZE + sizeof(QUEUE_ST_SUFFIX)];

	if (!queue_id_valid(id))
		return errno_fail(EINVAL);
	if (queue_dirfd == -1)
		return errno_fail(EBADF);
	if (unlinkat(queue_dirfd, id, 0) == -1)
		return -1;
	snprintf(name, sizeof(name), "%s" QUEUE_ST_SUFFIX, id);
	if (unlinkat(queue_dirfd, name, 0) == -1 && errno != ENOENT)
		log_warn(LP_QMGR, "unlink %s", name);
	/*
	 * No fsync: a removal that a crash undoes costs a duplicate
	 * delivery, which is allowed, never a loss; the next commit's
	 * directory fsync makes it durable along with the new files.
	 */
	return 0;
}

/*
 * name is a file in queue_dir, or "sub/name" one level down (pickup hands
 * in "maildrop/ID"); it lands in corrupt/ under its last component (a
 * suffix if that is taken).  Never deleted or replaced: an admin may
 * want to see what went wrong.
 */
int
queue_quarantine(const char *name, const char *why)
{
	char st[NAME_MAX + 1];
	const char *base, *slash;
	size_t n = name != NULL ? strlen(name) : 0;
	int fd;

	/* Room for NAME.st in NAME_MAX; no control bytes. */
	if (n == 0 ||
	    !text_ok(name, n, NAME_MAX + 1 - sizeof(QUEUE_ST_SUFFIX)))
		return errno_fail(EINVAL);
	slash = strchr(name, '/');
	base = slash != NULL ? slash + 1 : name;
	/* No "..", no hidden names, at most one level, nothing empty. */
	if (name[0] == '.' || base[0] == '.' || base[0] == '\0' ||
	    slash == name || strchr(base, '/') != NULL)
		return errno_fail(EINVAL);
	if (queue_dirfd == -1)
		return errno_fail(EBADF);
	if (corrupt_move(name, base) == -1) {
		log_warn(LP_QMGR, "%s: cannot move to corrupt/", name);
		return -1;
	}
	if (slash == NULL) {
		memcpy(st, name, n);
		memcpy(st + n, QUEUE_ST_SUFFIX, sizeof(QUEUE_ST_SUFFIX));
		if (corrupt_move(st, st) == -1 && errno != ENOENT)
			log_warn(LP_QMGR, "%s: cannot move to corrupt/", st);
	}
	log_warnx(LP_QMGR, "%s: moved to corrupt/: %s", name,
	    why != NULL ? why : "unknown");
	/* Best effort: losing the move on a crash only means doing it again. */
	if (fsync(queue_dirfd) == -1)
		log_warn(LP_QMGR, "fsync %s", queue_path);
	fd = openat(queue_dirfd, "corrupt", O_RDONLY | O_DIRECTORY |
	    O_CLOEXEC);
	if (fd != -1) {
		if (fsync(fd) == -1)
			log_warn(LP_QMGR, "fsync %s/corrupt", queue_path);
		(void)close(fd);	/* read-only */
	}
	return 0;
}

/*
 * from, a name in queue_dir, into corrupt/ as base, never over a file
 * there: a local user's junk in maildrop/ reuses names, a state file may
 * be there before its message or go bad twice, and each is kept for the
 * admin.  A clash takes ".XXXXXXXX" at random (base cut to fit).
 * RENAME_NOREPLACE tests and moves in one step; a file system without it
 * (NFS) gets a lookup first.
 */
static int
corrupt_move(const char *from, const char *base)
{
	char dst[sizeof("corrupt/") + NAME_MAX];
	int tries, r;

	snprintf(dst, sizeof(dst), "corrupt/%s", base);
	for (tries = 0; tries < QUEUE_CORRUPT_TRIES; tries++) {
		/* long: what syscall() reads each argument as. */
		r = (int)syscall(SYS_renameat2, (long)queue_dirfd, from,
		    (long)queue_dirfd, dst, (long)RENAME_NOREPLACE);
		if (r == -1 && (errno == EINVAL || errno == ENOSYS) &&
		    (r = name_exists(queue_dirfd, dst)) == 0)
			r = renameat(queue_dirfd, from, queue_dirfd, dst);
		else if (r == 1)
			r = errno_fail(EEXIST);
		if (r == 0 || errno != EEXIST)
			return r;
		snprintf(dst, sizeof(dst), "corrupt/%.*s.%08" PRIX32,
		    NAME_MAX - 9, base, randombytes_uniform(UINT32_MAX));
	}
	return -1;
}

/* --- the walk --- */

int
queue_id_cmp(const void *a, const void *b)
{
	return memcmp(a, b, QUEUE_ID_SIZE);
}

/* Every committed message's ID, sorted: IDs begin with the arrival time in
 * fixed-width hex, so this is arrival order. */
static int
walk_ids(const char *sub, char (**out)[QUEUE_ID_SIZE], size_t *count)
{
	char (*ids)[QUEUE_ID_SIZE] = NULL, (*grown)[QUEUE_ID_SIZE];
	struct dirent *de;
	size_t n = 0, cap = 0;
	DIR *d;
	int rc = -1, e;

	if ((d = queue_opendir(sub, NULL)) == NULL)
		return -1;
	while ((errno = 0, de = readdir(d)) != NULL) {
		if (!queue_id_valid(de->d_name))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : QUEUE_WALK_INIT;
			if ((grown = realloc(ids, cap * sizeof(*ids))) == NULL)
				goto done;
			ids = grown;
		}
		memcpy(ids[n++], de->d_name, QUEUE_ID_SIZE);
	}
	if (errno != 0)
		goto done;
	if (n > 0)
		qsort(ids, n, sizeof(*ids), queue_id_cmp);
	rc = 0;
done:
	e = errno;
	(void)closedir(d);	/* read-only */
	if (rc == -1) {
		free(ids);
		ids = NULL;
		n = 0;
	}
	*out = ids;
	*count = n;
	errno = e;
	return rc;
}

/*
 * The queue, then maildrop/ as Postfix's showq lists it: mail a sendmail
 * left there while the daemon was down is not lost, and the admin should
 * see it.  maildrop/ is read only where it can be (root or the queue's
 * user); its files are local users' and stay where they are when they do
 * not parse (the pickup deals with them).
 */
int
queue_walk(int (*cb)(const struct queue_info *, void *), void *arg)
{
	char (*ids)[QUEUE_ID_SIZE];
	struct queue_info info;
	struct stat st;
	const char *why;
	size_t n, i, k;
	int stop = 0;

	for (k = 0; k < 2 && stop == 0; k++) {
		if (walk_ids(k ? "maildrop" : ".", &ids, &n) == -1) {
			if (k == 0)
				return -1;
			break;		/* maildrop/: not ours to read */
		}
		for (i = 0; i < n && stop == 0; i++) {
			/* A local user may name a file after a queued
			 * message: one ID, one message (delete takes the
			 * queue's), and pickup gives the file its own. */
			if (k == 1 && fstatat(queue_dirfd, ids[i], &st,
			    AT_SYMLINK_NOFOLLOW) == 0)
				continue;
			if (queue_load(k, ids[i], &info,
			    &why) == -1) {
				if (k == 0 && errno == EBADMSG)
					(void)queue_quarantine(ids[i], why);
				else if (k == 0 && errno != ENOENT)
					log_warn(LP_QMGR, "%s: %s", ids[i],
					    why);
				continue;	/* or deleted meanwhile */
			}
			stop = cb(&info, arg);
			queue_info_free(&info);
		}
		free(ids);
	}
	return 0;
}

/*
 * Also the sweep of orphan ID.st files (a crash between the two unlinks
 * of queue_delete): looked up in the sorted IDs, not with an fstatat of
 * each message file, which cost a cold start with 50,000 deferred
 * messages 0.3 s.  The second readdir finds the directory cached.
 */
int
queue_ids(char (**ids)[QUEUE_ID_SIZE], size_t *n)
{
	if (walk_ids(".", ids, n) == -1)
		return -1;
	orphan_ids = *ids;
	orphan_n = *n;
	sweep_dir(".", sweep_orphan, "orphan state file");
	return 0;
}

/* ID.st with no ID: looked up in queue_ids()'s sorted list. */
static int
sweep_orphan(int dirfd, const char *name)
{
	char id[QUEUE_ID_SIZE];

	(void)dirfd;
	if (strlen(name) != QUEUE_ID_LEN + 3 ||
	    strcmp(name + QUEUE_ID_LEN, QUEUE_ST_SUFFIX) != 0)
		return 0;
	memcpy(id, name, QUEUE_ID_LEN);
	id[QUEUE_ID_LEN] = '\0';
	return queue_id_valid(id) && (orphan_n == 0 ||
	    bsearch(id, orphan_ids, orphan_n, sizeof(*orphan_ids),
	    queue_id_cmp) == NULL);
}

/*
 * Reads no message: a state file's mtime is its next attempt (stamped by
 * queue_update), as Postfix's deferred queue keeps it, so a start with
 * 50,000 deferred messages costs a directory read and an inode each
 * instead of two file reads each.  No state file: never tried, due now.
 */
uint64_t
queue_next_attempt(const char *id)
{
	char name[QUEUE_ID_SIZE + sizeof(QUEUE_ST_SUFFIX)];
	struct stat st;

	snprintf(name, sizeof(name), "%s" QUEUE_ST_SUFFIX, id);
	return fstatat(queue_dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    st.st_mtim.tv_sec > 0 ? (uint64_t)st.st_mtim.tv_sec : 0;
}

const char *
queue_status_name(enum rcpt_status s)
{
	if ((unsigned)s >= QUEUE_NSTATUS)
		return "unknown";
	return queue_status_names[s];
}
