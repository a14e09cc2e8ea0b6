/*
 * queue.h - the flat-directory queue.
 *
 * Layout under queue_dir: one file per message named by its ID (envelope
 * records, then the body, then an end record that proves the file whole),
 * an optional "ID.st" next to it with per-recipient state, tmp/ for
 * messages being written, maildrop/ (mode 3733: setgid, so what sendmail
 * drops there while the daemon is down is in the queue's group, 0640),
 * corrupt/ for files that did not parse.
 *
 * Writing: queue_writer_new() creates tmp/ID with O_EXCL and buffers the
 * envelope; queue_writer_body() appends; queue_writer_finish() adds the
 * end record.  queue_commit() parks the writer: all commits asked for in
 * one loop iteration are made durable together (fsync each file, rename
 * into place, one fsync of the directory) and only then is each callback
 * called.  Nothing may answer 250 before its callback says ok.
 *
 * Reading: queue_parse() checks a whole file image with explicit lengths
 * (fuzzed); queue_load() and queue_walk() use it for mailq and rescans.
 * All functions return 0 on success and -1 on failure with errno set,
 * unless they say otherwise.
 */
#ifndef FERRY_QUEUE_H
#define FERRY_QUEUE_H

#include <dirent.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define QUEUE_ID_LEN	18	/* 13 hex digits of µs time + 5 random */
#define QUEUE_ID_SIZE	(QUEUE_ID_LEN + 1)
#define QUEUE_ADDR_MAX	512	/* longest address kept, with NUL */
#define QUEUE_REASON_MAX 512	/* last error text kept per recipient (256
				   before the server's name was in it) */
#define QUEUE_MAX_RCPT	1000	/* the parser's cap, above max_recipients */
#define QUEUE_HDR_MAX	(64 * 1024)	/* envelope part of a file */
/* What its R records ("R address\n") may take of it, after the longest
 * start of an envelope and before "B\n": a session that takes no
 * recipient past this never meets queue_writer_rcpt()'s E2BIG. */
#define QUEUE_RCPT_ROOM	(QUEUE_HDR_MAX - 1024)
#define QUEUE_MINFREE	(1024 * 1024)	/* bytes kept free */
#define QUEUE_MININODES	64
#define QUEUE_BUF_SIZE	(16 * 1024)	/* writer buffer: one write for
					   most messages */

enum rcpt_status { RS_QUEUED, RS_DEFERRED, RS_SENT, RS_BOUNCED };

/* The strings are allocated to fit, not QUEUE_*_MAX arrays: the
 * scheduler holds up to 1,024 recipients, most with a short address and
 * no reason.  queue_info puts its scalars before the big array: an offset
 * below 128 is a one-byte displacement on x86-64 (smaller code).  Neither
 * is ever written to disk, so the order is free. */
struct queue_rcpt {
	enum rcpt_status status;
	int notified;		/* RS_BOUNCED and its DSN is committed (state
				   "bounced-notified"): a later DSN leaves
				   it out */
	char *address;		/* shorter than QUEUE_ADDR_MAX; owned by the
				   rcpt array (queue_parse() puts them after
				   it, in its one allocation) */
	char *reason;		/* NULL: none, else not empty, shorter than
				   QUEUE_REASON_MAX; set only through
				   queue_rcpt_reason(), freed with the
				   info */
};

/* Everything mailq and the scheduler know about a message. */
struct queue_info {
	struct queue_rcpt *rcpt;	/* nrcpt entries, owned */
	unsigned nrcpt;
	unsigned attempts;
	uint64_t arrival;		/* unix seconds */
	uint64_t size;			/* body bytes */
	uint64_t next_attempt;		/* unix seconds, 0 = now */
	uint64_t warned;		/* unix seconds the delay warning went
					   out (state "W"), 0 = not yet */
	uint64_t body_off;		/* where the body starts in the file */
	unsigned flags;			/* QF_* */
	uid_t uid;			/* submitting uid (local), else -1 */
	int maildrop;			/* queue_walk: the file is in maildrop/
					   (sendmail left it; not queued yet) */
	char id[QUEUE_ID_SIZE];
	char sender[QUEUE_ADDR_MAX];	/* "" is the null sender */
};

#define QF_8BITMIME	0x1u
#define QF_SMTPUTF8	0x2u
#define QF_BOUNCE	0x4u	/* a DSN we made: never bounce it */

struct queue_writer;

/* Remember the directory (no side effects; tools use it too). */
int queue_open(const char *dir);
/* Daemon start-up only: create subdirectories, empty tmp/, drop stale
 * maildrop temp files (queue_ids() sweeps orphan ID.st files). */
int queue_sweep(void);
int queue_init_dirs(const char *dir, uid_t owner, gid_t group);
const char *queue_dir(void);
/* A subdirectory of the queue ("maildrop", "."), opened through the
 * queue's own descriptor and never through a symbolic link; *fd (if
 * fd is not NULL) gets the stream's descriptor. */
DIR *queue_opendir(const char *sub, int *fd);

struct queue_writer *queue_writer_new(const char *subdir_or_null,
    const char *sender, unsigned flags, uid_t uid, const char *client);
int queue_writer_rcpt(struct queue_writer *, const char *address);
int queue_writer_body(struct queue_writer *, const void *, size_t);
int queue_writer_finish(struct queue_writer *);
const char *queue_writer_id(const struct queue_writer *);
uint64_t queue_writer_size(const struct queue_writer *);
void queue_writer_abort(struct queue_writer *);		/* frees */

/* Hand the finished writer to the group commit; it is freed by the
 * queue after cb ran.  ok is 1 when the message is durable. */
void queue_commit(struct queue_writer *,
    void (*cb)(void *arg, const char *id, int ok), void *arg);
/* The owner went away: run the commit, call no one. */
void queue_commit_forget(void *arg);
/* Called with the id of every message committed into queue_dir by
 * queue_commit(), after its owner's callback (the scheduler listens). */
void queue_set_listener(void (*)(const char *id, unsigned nrcpt));
/* Synchronous commit for one-shot tools (sendmail into maildrop). */
int queue_commit_now(struct queue_writer *);
/* All n bytes: written at the file offset (off < 0), or read at off (a
 * short file is EIO: it shrank). */
int queue_rw_all(int fd, void *, size_t n, off_t off);

/* Parse a whole file image; info->rcpt is allocated.  Returns 0, or -1
 * with a short reason in why. */
int queue_parse(const char *buf, size_t len, struct queue_info *,
    const char **why);
/* -1 with errno ENOMEM: info holds part of the state (free it). */
int queue_parse_state(const char *buf, size_t len, struct queue_info *,
    const char **why);
/* r's reason becomes the first n bytes of s, up to a NUL, cut to
 * QUEUE_REASON_MAX - 1 as a buffer of that size cut it; none when that
 * is empty.  -1 (ENOMEM): r has none. */
int queue_rcpt_reason(struct queue_rcpt *r, const char *s, size_t n);
/* The reasons and the rcpt array (with its addresses). */
void queue_info_free(struct queue_info *);

/* Load one message (file and state) by id; dropped: maildrop/ID instead
 * (a local user's file, no state). */
int queue_load(int dropped, const char *id, struct queue_info *,
    const char **why);
/* Rewrite ID.st with the per-recipient state in info (tmp + rename).
 * durable: fsync before and after the rename.  Needed once any recipient
 * is sent or bounced (losing that would repeat a delivery); while every
 * recipient is still pending the caller may skip it, since a lost or torn
 * ID.st then only means an early retry, and a deferral is not worth two
 * flash writes.  idx (not NULL, durable 1): their records are appended
 * instead, for the nidx recipients it names, onto the file as the
 * caller's last queue_update() that succeeded left it; after a failure
 * (the file may end in a torn append), or in a new process, the next
 * call writes it whole. */
int queue_update(const struct queue_info *, int durable, const unsigned *idx,
    unsigned nidx);
int queue_delete(const char *id);
int queue_delete_dropped(const char *id);	/* maildrop/ID */
/* maildrop/NAME, a local user's file, opened for reading (O_NONBLOCK:
 * a FIFO must not hang us) only when it is a regular file of one link,
 * the same one when open as when looked at: a link must not make root
 * or the daemon read what its owner could not.  -1 with errno EBADMSG
 * and *why ("a symbolic link", "not a regular file with one link") for
 * such a file, else errno of the call (ENOENT: gone). */
struct stat;
int queue_open_dropped(const char *name, struct stat *, const char **why);
/* Move a bad file to corrupt/ and log it. */
int queue_quarantine(const char *name, const char *why);
int queue_id_valid(const char *);
/* For qsort/bsearch of queue_ids()'s IDs. */
int queue_id_cmp(const void *, const void *);

/* 1 when queue_dir has room for a message of about need bytes with
 * QUEUE_MINFREE and QUEUE_MININODES to spare (OpenSMTPD's MINSPACE, Postfix's
 * queue_minfree): mail is refused with a 4xx before the disk is full. */
int queue_space_ok(uint64_t need);

/* Every committed message in ID order, then maildrop/'s where readable
 * (info->maildrop); queue files that do not parse are quarantined.  cb
 * returns non-zero to stop. */
int queue_walk(int (*cb)(const struct queue_info *, void *), void *arg);
/* The scheduler's start-up index: every committed message's ID, in ID
 * (arrival) order, allocated; then each one's next attempt (0 = now) from
 * its state file's mtime, without reading any file.  A file that does
 * not parse is found when it is loaded. */
int queue_ids(char (**ids)[QUEUE_ID_SIZE], size_t *n);
uint64_t queue_next_attempt(const char *id);

const char *queue_status_name(enum rcpt_status);

#endif
