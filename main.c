/*
 * main.c - argv, multicall, start-up and privilege drop.
 *
 * `ferry [-c FILE] [-T TRACE] [COMMAND ...]`, or argv[0] sendmail, mailq
 * or newaliases.
 * The daemon binds every socket as root, creates the queue directories
 * for its user, drops privileges (and checks they cannot come back), then
 * runs the loop.  Exit codes are sysexits.h: 64 usage, 75 temporary
 * failure, 78 configuration.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/auxv.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>

#include "alias.h"
#include "auth.h"
#include "check.h"
#include "cli.h"
#include "compat.h"
#include "config.h"
#include "dane.h"
#include "log.h"
#include "loop.h"
#include "net.h"
#include "dns.h"
#include "pickup.h"
#include "queue.h"
#include "sched.h"
#include "smtp.h"
#include "deliver.h"
#include "tls.h"
#include "textfile.h"

#define MAIN_BACKLOG	512	/* bursts of connects must not be dropped */
#define FERRY_VERSION	"0.1"
/* The two reload warnings' words, one copy. */
#define MAIN_RESTART	"reload: %s changes take effect after a restart"
/* listen_smtp, listen_submission and listen_smtps, in that order. */
#define MAIN_LISTEN_SPAN	(offsetof(struct config, listen_smtps) + \
	sizeof(struct listen_list) - offsetof(struct config, listen_smtp))
_Static_assert(offsetof(struct config, listen_submission) ==
    offsetof(struct config, listen_smtp) + sizeof(struct listen_list) &&
    offsetof(struct config, listen_smtps) ==
    offsetof(struct config, listen_submission) + sizeof(struct listen_list),
    "main_on_hup: the listener lists must be adjacent");
/* user, queue_dir, local_socket and the listener lists: what only a
 * restart changes, copied over on a reload as one. */
#define MAIN_KEPT_SPAN	(offsetof(struct config, listen_smtps) + \
	sizeof(struct listen_list) - offsetof(struct config, user))
_Static_assert(offsetof(struct config, queue_dir) ==
    offsetof(struct config, user) + sizeof(((struct config *)0)->user) &&
    offsetof(struct config, local_socket) ==
    offsetof(struct config, queue_dir) + CONFIG_PATH_MAX &&
    offsetof(struct config, listen_smtp) <
    offsetof(struct config, local_socket) + CONFIG_PATH_MAX +
    _Alignof(struct listen_list),
    "main_on_hup: the kept settings must be adjacent");
_Static_assert(SMTP_KIND_SUBMISSION == SMTP_KIND_SMTP + 1 &&
    SMTP_KIND_SMTPS == SMTP_KIND_SMTP + 2,
    "main_bind_inet: the kinds in the order of the lists");

/* The commands, in the order of main_names[]. */
enum main_cmd {
	MC_NEWALIASES, MC_SENDMAIL, MC_MAILQ,	/* also names of their own */
	MC_DELETE, MC_CAT, MC_FLUSH, MC_CHECK,	/* main_cmds[] */
	MC_PASSWD, MC_TLSA, MC_SERVE, MC_CHECK_CONFIG, MC_NONE
};

/* The tables of main_creds, in the order of main_tables[]. */
enum main_table { MT_USERS, MT_FPS, MT_POLICY, MAIN_TABLES };

/* The files behind TLS and AUTH (and tls_policy), loaded as one set,
 * swapped on SIGHUP. */
struct main_creds {
	struct tls_server *server;
	struct tls_client *client;
	void *table[MAIN_TABLES];	/* by enum main_table */
};

struct main_user {
	int drop;
	uid_t uid;
	gid_t gid;
	char name[64];
};

static enum main_cmd main_lookup(const char *);
static int main_usage(void);
static int main_serve(struct config *);
static int main_check_config(struct config *);
/* always_inline here and on main_on_hup(): measured smaller than the
 * calls LTO kept. */
static inline int main_load(struct config *, const char *)
    __attribute__((always_inline));
static int main_read(struct config *, struct config_src *, char *, size_t);
static char *const *main_environ(void);
static void main_resolve_user(const struct config *, struct main_user *);
static void main_bind_inet(const struct config *);
static int main_bind_local(const char *);
static int main_socket(int);
static void main_listen(int, enum smtp_kind, const char *);
static void main_drop(const struct main_user *);
static void main_on_signal(int);
static void main_on_term(int);
static inline void main_on_hup(void) __attribute__((always_inline));
static void main_on_chld(void);
static void main_done(void);
static int main_load_aliases(const struct config *, struct alias_table **);
static int main_load_creds(const struct config *, struct main_creds *,
    struct main_creds *);
static const char *main_ca_file(const struct config *);
static void main_set_creds(struct main_creds *);
static void main_free_creds(struct main_creds *);
static void main_trim(void);
static int main_dns_changed(const struct config *, const struct config *);
/* noinline: measured smaller than LTO's inlined copies. */
static void main_log_config(const char *, const struct config *)
    __attribute__((noinline));

static struct config *main_conf;
static struct alias_table *main_aliases;
static struct main_creds main_creds;
static const char *main_conf_path;	/* -c or FERRY_CONFIG; NULL: default */
static struct config_src main_src;

/*
 * The commands by name, one string (main_lookup() gives the index): the
 * names that are also links to ferry first, then those of main_cmds[]
 * in its order, then the ones main() runs itself.  aligned(1): the ABI's
 * 16 for an array this long is only padding here.
 */
static const char main_names[] __attribute__((aligned(1))) =
    "newaliases\0sendmail\0mailq\0"
    "delete\0cat\0flush\0check\0passwd\0tlsa\0serve\0check-config\0";
/* MC_SENDMAIL to MC_CHECK. */
static int (*const main_cmds[])(const struct config *, int, char **)
    __attribute__((aligned(sizeof(void *)))) = {
	cli_sendmail, cli_mailq, cli_delete, cli_cat, cli_flush, check_cli
};
_Static_assert(sizeof(main_cmds) / sizeof(main_cmds[0]) ==
    MC_CHECK - MC_SENDMAIL + 1, "main_cmds: one function per name");

/* The tables main_load_creds() loads alike: the setting that names the
 * file (an offset into struct config) and what a reload keeps.
 * aligned(2), its uint16_t's, not the ABI's 16 for an array this long. */
static const struct {
	uint16_t conf;
	char name[19];
	char old[7];
} main_tables[MAIN_TABLES] __attribute__((aligned(2))) = {
	{ offsetof(struct config, auth_users), "auth_users", "users" },
	{ offsetof(struct config, relay_client_certs), "relay_client_certs",
	    "list" },
	{ offsetof(struct config, tls_policy), "tls_policy", "policy" },
};

/* The signals main_on_signal() takes, 0-terminated. */
static const char main_signals[] = { SIGTERM, SIGINT, SIGHUP, SIGUSR1,
	SIGUSR2, SIGCHLD, 0 };

int
main(int argc, char **argv, char **envp)
{
	static struct config conf;
	const char *path = NULL, *prog, *cmd, *p;
	enum main_cmd k;
	int c;

	/* main()'s third argument (glibc, musl): nothing here changes the
	 * environment, and taking it from there instead of environ saves
	 * the copy relocation and two imported symbols (environ,
	 * __environ).  In a set-id entry the caller's is not trusted. */
	cli_environ = getauxval(AT_SECURE) ? NULL : envp;
	/* A caller may have closed stdin, stdout or stderr: the next socket
	 * or file would take that number, and sendmail's "550 ..." on
	 * stderr would land in its SMTP session to the daemon, costing the
	 * recipients after it.  /dev/null fills the gaps (as in Postfix's
	 * sendmail); the first descriptor past 2 is not needed. */
	while ((c = textfile_open("/dev/null", O_RDWR)) >= 0 && c < 3)
		;
	(void)close(c);		/* or -1: no /dev/null, go on as before */
	/* execve() with no argv at all (kernels before 5.18 pass it on):
	 * nothing to run, and a setgid entry must not fall over. */
	if (argc < 1)
		return EX_USAGE;
	/* By hand, as below: strrchr() would be one more import. */
	for (prog = p = argv[0]; *p != '\0';)
		if (*p++ == '/')
			prog = p;
	/* argv[0] sendmail, mailq, newaliases: `ferry NAME` with no ferry
	 * options, their own untouched (no getopt here). */
	if (main_lookup(prog) <= MC_MAILQ)
		cmd = prog;
	else {
		while ((c = getopt(argc, argv, "+c:T:h")) != -1) {
			switch (c) {
			case 'c':
				path = optarg;
				break;
			case 'T':
				log_trace_mask |= log_trace_parse(optarg);
				break;
			default:
				return main_usage();
			}
		}
		argc -= optind;
		argv += optind;
		cmd = argc > 0 ? argv[0] : "serve";
	}
	/* A set-id entry runs for a caller it must not trust (DESIGN.md):
	 * FERRY_CONFIG is not read there (main_environ(), as
	 * secure_getenv() but one import less), -c and -T are refused,
	 * and it does only what the entry is for: submit and list. */
	k = main_lookup(cmd);
	if (getauxval(AT_SECURE) && (path != NULL || log_trace_mask != 0 ||
	    k > MC_MAILQ)) {
		log_cli("ferry", "%s is refused in a set-id program",
		    path != NULL ? "-c" : log_trace_mask != 0 ? "-T" : cmd);
		return EX_USAGE;
	}
	/* An empty FERRY_CONFIG (a Compose file's ${FERRY_CONFIG} with
	 * nothing behind it) names no file: as if unset. */
	if (path == NULL && main_environ() != NULL &&
	    (path = config_env_find(main_environ(), CONFIG_ENV_PATH)) !=
	    NULL && path[0] == '\0')
		path = NULL;
	/* passwd only prints a users file line: it needs no config. */
	if (k == MC_PASSWD)
		return auth_cli_passwd(NULL, argc, argv);
	if (k == MC_TLSA)
		return cli_tlsa(NULL, argc, argv);
	if (main_load(&conf, path) != 0)
		return EX_CONFIG;
	/* These take no argument: one is a mistake, not a file to read
	 * (`ferry check-config relay.conf` checked the default file and
	 * said it was fine). */
	if ((k == MC_FLUSH || k == MC_SERVE || k == MC_CHECK_CONFIG) &&
	    argc > 1)
		return main_usage();
	switch (k) {
	case MC_NEWALIASES:
		return cli_newaliases(&conf);
	case MC_SERVE:
		return main_serve(&conf);
	case MC_CHECK_CONFIG:
		return main_check_config(&conf);
	case MC_NONE:
	case MC_PASSWD:	/* returned above */
	case MC_TLSA:
		return main_usage();
	default:
		return main_cmds[k - MC_SENDMAIL](&conf, argc, argv);
	}
}

/* cmd's index in main_names, MC_NONE if none.  Up to MC_MAILQ: the
 * commands that are also names of their own (links to ferry), and all
 * that a set-id entry may do. */
static enum main_cmd
main_lookup(const char *cmd)
{
	const char *n = main_names;
	int k;

	for (k = 0; *n != '\0' && strcmp(cmd, n) != 0; k++)
		n += strlen(n) + 1;
	return (enum main_cmd)k;
}

static int
main_usage(void)
{
	return cli_usage("ferry [-c FILE] [-T smtp,io,queue,...] [COMMAND]\n"
	    "commands:\n"
	    "  serve                 run the daemon in the foreground "
	    "(default)\n"
	    "  sendmail [OPTIONS] [RCPT ...]   submit a message (stdin)\n"
	    "  mailq [--json]        list the queue\n"
	    "  delete ID|all         remove messages from the queue\n"
	    "  cat ID                print a queued message\n"
	    "  flush                 retry every deferred message now\n"
	    "  passwd [USER]         print a users file line "
	    "(USER:$argon2id$...)\n"
	    "  tlsa [--usage U --selector S --match M] CERT [HOST [PORT]]\n"
	    "                        print the TLSA record to publish\n"
	    "  check [-l LEVEL] [-p PORT] [DOMAIN|[HOST]:PORT]\n"
	    "                        what a delivery there (default: the "
	    "smarthost)\n"
	    "                        would do: MX, TLSA, TLS\n"
	    "  check-config          validate and print the settings\n"
	    "  newaliases            check the aliases file");
}

static int
main_load(struct config *conf, const char *path)
{
	char err[CONFIG_ERR_MAX];

	main_conf_path = path;
	if (main_read(conf, &main_src, err, sizeof(err)) != 0) {
		log_cli("ferry", "%s", err);
		return -1;
	}
	return 0;
}

/*
 * The file and the environment, at start and on SIGHUP.  A file named
 * with -c or FERRY_CONFIG must exist; the default one may be missing, so
 * a container configured by FERRY_* variables alone needs no file.
 */
static int
main_read(struct config *conf, struct config_src *src, char *err,
    size_t errsz)
{
	return config_load_env(conf, src, main_conf_path != NULL ?
	    main_conf_path : CONFIG_DEFAULT_PATH, main_conf_path == NULL,
	    main_environ(), err, errsz);
}

/*
 * FERRY_<KEY> variables, except in a set-id entry: there the environment
 * is the caller's, and DESIGN.md says such an entry trusts none of it.
 */
static char *const *
main_environ(void)
{
	return cli_environ;
}

static int
main_check_config(struct config *conf)
{
	config_print_src(conf, &main_src, main_environ());
	return fflush(NULL) == 0 ? EX_OK : EX_IOERR;
}

static void
main_resolve_user(const struct config *conf, struct main_user *u)
{
	struct passwd *pw;

	memset(u, 0, sizeof(*u));
	if ((u->uid = geteuid()) != 0) {
		u->gid = getegid();
		return;
	}
	/*
	 * A missing or root `user` is the config's fault: EX_CONFIG, not
	 * log_fatalx()'s EX_TEMPFAIL, which tells a supervisor to retry.
	 */
	if (conf->user[0] == '\0') {
		log_warnx(LP_MASTER, "running as root needs \"user\" in %s",
		    conf->path);
		exit(EX_CONFIG);
	}
	errno = 0;
	if ((pw = getpwnam(conf->user)) == NULL) {
		/* Only a failed lookup (NSS down) is worth a retry. */
		if (errno != 0 && errno != ENOENT && errno != ESRCH &&
		    errno != EBADF && errno != EPERM)
			log_fatal(LP_MASTER, "user \"%s\": lookup", conf->user);
		log_warnx(LP_MASTER, "user \"%s\" (%s) does not exist; create "
		    "it, e.g. useradd --system --no-create-home --shell "
		    "/usr/sbin/nologin %s", conf->user, conf->path,
		    conf->user);
		exit(EX_CONFIG);
	}
	if (pw->pw_uid == 0) {
		log_warnx(LP_MASTER, "user \"%s\" (%s) has uid 0: refusing to "
		    "run as root", conf->user, conf->path);
		exit(EX_CONFIG);
	}
	u->drop = 1;
	u->uid = pw->pw_uid;
	u->gid = pw->pw_gid;
	textfile_copy(u->name, sizeof(u->name), conf->user);
}

/* The three listener lists, side by side in struct config (see
 * MAIN_LISTEN_SPAN) and in the order of their smtp_kind: one loop. */
static void
main_bind_inet(const struct config *conf)
{
	const struct listen_list *ll = &conf->listen_smtp;
	const struct listen_addr *a;
	char host[INET6_ADDRSTRLEN];
	unsigned port;
	int kind, i, fd, one = 1;

	for (kind = SMTP_KIND_SMTP; kind <= SMTP_KIND_SMTPS; kind++,
	    ll = (const struct listen_list *)((const char *)ll + sizeof(*ll)))
		for (i = 0; i < ll->n; i++) {
			a = &ll->a[i];
			/* Not main_socket(): a kernel without IPv6 fails
			 * here, with EAFNOSUPPORT, not at bind(). */
			fd = socket(a->ss.ss_family, SOCK_STREAM |
			    SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
			if (fd != -1) {
				(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR,
				    &one, sizeof(one));
				/* [::]:25 and 0.0.0.0:25 are two listeners,
				 * not a clash. */
				if (a->ss.ss_family == AF_INET6)
					(void)setsockopt(fd, IPPROTO_IPV6,
					    IPV6_V6ONLY, &one, sizeof(one));
			}
			if (fd == -1 || bind(fd, (const struct sockaddr *)
			    &a->ss, a->len) == -1) {
				/* inet_ntop() leaves errno alone: its buffer
				 * fits any address. */
				net_ntop(&a->ss, host);
				port = ntohs(((const struct sockaddr_in *)
				    (const void *)&a->ss)->sin_port);
				if (a->ss.ss_family == AF_INET6 &&
				    (errno == EADDRNOTAVAIL ||
				    errno == EAFNOSUPPORT)) {
					log_warnx(LP_MASTER, "no IPv6 here: "
					    "skipping listener %s port %u",
					    host, port);
					if (fd != -1)
						close(fd);
					continue;
				}
				/* Postfix's words: which address, which port. */
				log_fatal(LP_MASTER, "bind %s port %u", host,
				    port);
			}
			main_listen(fd, (enum smtp_kind)kind, "");
		}
}

/* A listener's socket, and below its hand-over to smtp.c once bound:
 * the same steps for the network and the local socket. */
static int
main_socket(int family)
{
	int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd == -1)
		log_fatal(LP_MASTER, "socket");
	return fd;
}

/* path: the local socket's, for the message; "" for the network. */
static void
main_listen(int fd, enum smtp_kind kind, const char *path)
{
	if (listen(fd, MAIN_BACKLOG) == -1)
		log_fatal(LP_MASTER, "listen%s%s", path[0] != '\0' ? " " : "",
		    path);
	if (smtp_listen(fd, kind) == -1)
		log_fatal(LP_MASTER, "smtp_listen");
}

static int
main_bind_local(const char *path)
{
	struct sockaddr_un sun;
	char dir[sizeof(sun.sun_path)], *slash = NULL, *p;
	int fd, probe;

	if (path[0] == '\0')
		return 0;
	if (net_unix(&sun, path) == -1)
		log_fatalx(LP_MASTER, "local_socket %s: path too long", path);
	memcpy(dir, sun.sun_path, sizeof(dir));
	/* /run/ferry may not exist after a reboot (tmpfs).  The *at() forms
	 * here and below, and no dirname(): every libc symbol costs ~70
	 * bytes of dynamic linking tables.  "/x" and "x" need no directory
	 * made. */
	for (p = dir; *p != '\0'; p++)
		if (*p == '/')
			slash = p;
	/* The directory stays root's when root makes it: were it the
	 * user's, a daemon run as that user could swap the socket for a
	 * symlink between bind() and the chmod below at the next start,
	 * which runs as root (and would make, say, /etc/shadow 0666). */
	if (slash != NULL && slash != dir) {
		*slash = '\0';
		(void)mkdirat(AT_FDCWD, dir, 0755);
	}
	/* A socket someone answers on is another daemon: do not steal it. */
	probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (probe != -1 && connect(probe, (struct sockaddr *)&sun,
	    sizeof(sun)) == 0)
		log_fatalx(LP_MASTER, "local_socket %s: another daemon is "
		    "running", path);
	if (probe != -1)
		close(probe);
	(void)unlinkat(AT_FDCWD, path, 0);
	fd = main_socket(AF_UNIX);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1)
		log_fatal(LP_MASTER, "bind %s", path);
	/* Any local user may submit, as with Postfix's sendmail. */
	if (fchmodat(AT_FDCWD, path, 0666, 0) == -1)
		log_fatal(LP_MASTER, "chmod %s", path);
	main_listen(fd, SMTP_KIND_LOCAL, path);
	return 0;
}

/* Resolve first, then drop, then prove root cannot come back. */
static void
main_drop(const struct main_user *u)
{
	if (!u->drop)
		return;
	if (setgroups(1, &u->gid) == -1 ||
	    setresgid(u->gid, u->gid, u->gid) == -1 ||
	    setresuid(u->uid, u->uid, u->uid) == -1)
		log_fatal(LP_MASTER, "cannot drop privileges to %s", u->name);
	if (setresuid(0, 0, 0) != -1 || geteuid() == 0 || getuid() == 0)
		log_fatalx(LP_MASTER, "root privileges could be regained");
}

static int
main_serve(struct config *conf)
{
	struct main_user u;
	unsigned queued = 0;
	const char *p;
	char *const *env = main_environ();
	size_t n;

	main_conf = conf;
	log_open(conf->log_stderr);
	if (loop_init() == -1)
		log_fatal(LP_MASTER, "loop_init");
	/* Signals are blocked now and read on the loop later.  One
	 * handler and a loop over their numbers: six calls' set-up was
	 * longer. */
	for (p = main_signals; *p != '\0'; p++)
		if (loop_signal(*p, main_on_signal) == -1)
			log_fatal(LP_MASTER, "signals");
	loop_sigpipe_ignore();
	main_on_chld();	/* orphans that died before SIGCHLD was ours */
	main_resolve_user(conf, &u);
	if (queue_init_dirs(conf->queue_dir, u.uid, u.gid) == -1)
		log_fatal(LP_MASTER, "queue directory %s", conf->queue_dir);
	if (main_load_aliases(conf, &main_aliases) == -1)
		exit(EX_CONFIG);
	/* Keys are read as root, before the drop. */
	if (main_load_creds(conf, &main_creds, NULL) == -1)
		exit(EX_CONFIG);
	if (conf->listen_submission.n > 0 && main_creds.server == NULL)
		log_warnx(LP_MASTER, "listen_submission without tls_cert: "
		    "clients there cannot start TLS, so they cannot send");
	smtp_configure(conf);
	smtp_set_aliases(main_aliases);
	main_set_creds(&main_creds);
	pickup_configure(conf);
	pickup_set_aliases(main_aliases);
	sched_set_aliases(main_aliases);
	main_bind_inet(conf);
	main_bind_local(conf->local_socket);
	main_drop(&u);
	if (geteuid() == 0)
		log_fatalx(LP_MASTER, "refusing to run as root");
	if (queue_open(conf->queue_dir) == -1 || queue_sweep() == -1)
		log_fatal(LP_MASTER, "queue %s", conf->queue_dir);
	if (dns_init(conf) == -1)
		log_fatalx(LP_MASTER, "cannot start the DNS resolver");
	sched_configure(conf);
	queue_set_listener(sched_enqueue);
	smtp_set_flush(sched_flush);
	/* Indexes the queue from names and state mtimes (queue_index). */
	if (sched_start(&queued) == -1)
		log_warn(LP_QMGR, "scanning %s", conf->queue_dir);
	main_log_config("daemon started", conf);
	/* check-config notes these too; a container's log says it here. */
	while ((p = config_env_stray(&env, &n)) != NULL)
		log_warnx(LP_MASTER, "%.*s" CONFIG_STRAY, (int)n, p);
	log_info(LP_QMGR, "%u message(s) in the queue", queued);
	log_started();
	pickup_start();
	main_trim();
	if (loop_run() == -1)
		log_fatal(LP_MASTER, "loop");
	log_info(LP_MASTER, "terminating");
	main_set_creds(&(struct main_creds){ 0 });	/* let go first */
	main_free_creds(&main_creds);
	alias_free(main_aliases);
	dns_free();
	loop_free();
	return EX_OK;
}

/* The aliases file named in conf, or none; -1 (logged) when it is bad. */
static int
main_load_aliases(const struct config *conf, struct alias_table **out)
{
	char err[CONFIG_ERR_MAX];

	*out = NULL;
	if (conf->aliases[0] == '\0')
		return 0;
	if ((*out = alias_load(conf->aliases, conf->origin, err,
	    sizeof(err))) == NULL) {
		log_warnx(LP_MASTER, "%s", err);
		return -1;
	}
	return 0;
}

/*
 * Load the TLS and AUTH files the config names into out.  At start (old
 * NULL) any error is fatal for the caller (-1, logged).  On reload a file
 * that fails keeps the running one from old (logged), so a typo in a
 * certificate never takes TLS away from a running server.  The TLS
 * contexts are shared (a reference); the tables have no reference count,
 * so they move over from old, which then no longer frees them.
 */
static int
main_load_creds(const struct config *conf, struct main_creds *out,
    struct main_creds *old)
{
	char err[CONFIG_ERR_MAX];
	int bad = 0;

	memset(out, 0, sizeof(*out));
	if (conf->tls_cert[0] != '\0' && conf->tls_key[0] != '\0' &&
	    (out->server = tls_server_new(conf->tls_cert, conf->tls_key,
	    conf->tls_ciphers, conf->relay_client_certs[0] != '\0', err,
	    sizeof(err))) == NULL) {
		bad = 1;
		if (old == NULL)
			log_warnx(LP_MASTER, "tls_cert %s: %s", conf->tls_cert,
			    err);
		else {
			log_warnx(LP_MASTER, "tls_cert %s: %s; keeping the old "
			    "certificate", conf->tls_cert, err);
			if (old->server != NULL)
				out->server = tls_server_ref(old->server);
		}
	}
	if ((out->client = tls_client_new(main_ca_file(conf), conf->client_cert,
	    conf->client_key, conf->tls_ciphers, err, sizeof(err))) == NULL) {
		bad = 1;
		log_warnx(LP_MASTER, "client_cert %s: %s%s", conf->client_cert,
		    err, old ? "; keeping the old one" : "");
		if (old != NULL && old->client != NULL)
			out->client = tls_client_ref(old->client);
	}
	for (int i = 0; i < MAIN_TABLES; i++) {
		const char *path = (const char *)conf + main_tables[i].conf;

		if (path[0] == '\0')
			continue;
		/* tls_policy's err names the file and the line. */
		if ((out->table[i] = i == MT_USERS ?
		    (void *)auth_users_load(path, err, sizeof(err)) :
		    i == MT_FPS ? (void *)tls_fplist_load(path, err,
		    sizeof(err)) : dane_policy_load(path, err, sizeof(err))) !=
		    NULL)
			continue;
		bad = 1;
		log_warnx(LP_MASTER, "%s: %s%s%s", main_tables[i].name, err,
		    old ? "; keeping the old " : "", old ? main_tables[i].old :
		    "");
		if (old != NULL) {
			out->table[i] = old->table[i];
			old->table[i] = NULL;
		}
	}
	if (bad && old == NULL) {
		main_free_creds(out);
		return -1;
	}
	return 0;
}

/*
 * The CA bundle to parse, or "" for none.  The system bundle costs about
 * 460 KB of private memory, and only verify and secure check a chain; at
 * the other levels it only turns "Untrusted" into "Trusted" in a log
 * line, so the built-in default is skipped there (Postfix, with no
 * CAfile, logs "Untrusted" too).  A ca_file the admin names is always
 * read, as is any under a tls_policy file, whose entries may say verify
 * or secure (dane.h has no way to ask; this errs towards loading).
 */
static const char *
main_ca_file(const struct config *conf)
{
	if (strcmp(conf->ca_file, CONFIG_DEFAULT_CA_FILE) != 0 ||
	    conf->tls_policy[0] != '\0' ||
	    conf->outbound_tls == TLS_VERIFY ||
	    conf->outbound_tls == TLS_SECURE ||
	    (conf->smarthost[0] != '\0' && (conf->smarthost_tls == TLS_VERIFY ||
	    conf->smarthost_tls == TLS_SECURE)))
		return conf->ca_file;
	return "";
}

static void
main_set_creds(struct main_creds *c)
{
	smtp_set_tls(c->server);
	smtp_set_auth(c->table[MT_USERS]);
	smtp_set_client_certs(c->table[MT_FPS]);
	deliver_set_tls(c->client);
	deliver_set_policy(c->table[MT_POLICY]);
}

static void
main_free_creds(struct main_creds *c)
{
	tls_server_unref(c->server);
	tls_client_unref(c->client);
	auth_users_free(c->table[MT_USERS]);
	tls_fplist_free(c->table[MT_FPS]);
	dane_policy_free(c->table[MT_POLICY]);
	memset(c, 0, sizeof(*c));
}

/*
 * Start-up frees most of what it allocates: the config text and the
 * parse's copy, the PEM files, the resolver channel dns_init() checks,
 * the directory buffers of the queue scan.  glibc gives freed heap back
 * to the kernel only from the top and only past M_TRIM_THRESHOLD
 * (128 KB), so those pages would stay resident for the daemon's life;
 * malloc_trim() hands back every whole free page.  A reload frees the
 * same kinds of things and trims too.  musl has no malloc_trim(): its
 * allocator returns freed memory itself.
 */
static void
main_trim(void)
{
#ifdef __GLIBC__
	(void)malloc_trim(0);
#endif
}

static void
main_done(void)
{
	pickup_stop();
	sched_stop();
	loop_stop();
}

static void
main_on_signal(int signo)
{
	switch (signo) {
	case SIGHUP:
		main_on_hup();
		break;
	case SIGUSR1:
		sched_flush();
		break;
	case SIGUSR2:
		log_trace_mask = log_trace_mask ? 0 : ~0u;
		log_info(LP_MASTER, "tracing %s", log_trace_mask ? "on" :
		    "off");
		break;
	case SIGCHLD:
		main_on_chld();
		break;
	default:	/* SIGTERM, SIGINT */
		main_on_term(signo);
		break;
	}
}

static void
main_on_term(int signo)
{
	static int again;

	if (again++) {
		log_info(LP_MASTER, "terminating on signal %d (again)", signo);
		exit(EX_OK);
	}
	log_info(LP_MASTER, "terminating on signal %d: finishing open "
	    "transactions", signo);
	smtp_shutdown(main_done);
}

/*
 * SIGHUP: read the file again; a broken file keeps the running config.
 * Listeners stay as bound (we are no longer root to bind port 25).
 */
static void
main_on_hup(void)
{
	/* Two configs, the running one and this: the next reload reads
	 * into the one that ran before (each is 14.6 KB, resident once
	 * config_defaults() has zeroed it). */
	static struct config spare, *idle = &spare;
	struct config *next = idle;
	char err[CONFIG_ERR_MAX];
	struct alias_table *aliases;
	struct main_creds creds;

	if (main_read(next, NULL, err, sizeof(err)) != 0) {
		log_warnx(LP_MASTER, "reload: %s; keeping the running "
		    "configuration", err);
		return;
	}
	/* config.c's rule, held against the bound listeners: a file that
	 * drops both listen_smtps and tls_cert passes it, and port 465
	 * would then reset every client. */
	if (main_conf->listen_smtps.n > 0 && next->tls_cert[0] == '\0') {
		log_warnx(LP_MASTER, "reload: %s; keeping the running "
		    "configuration", "listen_smtps stays bound until a "
		    "restart and needs tls_cert");
		return;
	}
	if (main_load_aliases(next, &aliases) == -1) {
		log_warnx(LP_MASTER, "reload: keeping the running "
		    "configuration and aliases");
		return;
	}
	smtp_set_aliases(aliases);
	pickup_set_aliases(aliases);
	sched_set_aliases(aliases);
	alias_free(main_aliases);
	main_aliases = aliases;
	(void)main_load_creds(next, &creds, &main_creds);
	main_set_creds(&creds);
	main_free_creds(&main_creds);
	main_creds = creds;
	/* The three listener lists, side by side in struct config: one
	 * compare (config_defaults() zeroes the padding). */
	if (memcmp(&next->listen_smtp, &main_conf->listen_smtp,
	    MAIN_LISTEN_SPAN) != 0 ||
	    strcmp(next->local_socket, main_conf->local_socket) != 0 ||
	    strcmp(next->queue_dir, main_conf->queue_dir) != 0 ||
	    strcmp(next->user, main_conf->user) != 0)
		log_warnx(LP_MASTER, MAIN_RESTART, "listener, queue_dir or "
		    "user");
	/* dns.c reads them once: pending lookups live in the channel. */
	if (main_dns_changed(next, main_conf))
		log_warnx(LP_MASTER, MAIN_RESTART, "dns_servers or dnssec");
	/* `log` needs no privilege: it moves now (log_open() may run again). */
	if (next->log_stderr != main_conf->log_stderr)
		log_open(next->log_stderr);
	/*
	 * What runs stays in the config, so the next reload compares with
	 * it: a file changed back says nothing, one still changed says so
	 * again.
	 */
	memcpy((char *)next + offsetof(struct config, user),
	    (char *)main_conf + offsetof(struct config, user), MAIN_KEPT_SPAN);
	next->dns_n = main_conf->dns_n;
	memcpy(next->dns_servers, main_conf->dns_servers,
	    sizeof(next->dns_servers));
	next->dnssec = main_conf->dnssec;
	idle = main_conf;
	main_conf = next;
	smtp_configure(main_conf);
	pickup_configure(main_conf);
	sched_configure(main_conf);
	main_log_config("reload", main_conf);
	main_trim();
}

static int
main_dns_changed(const struct config *a, const struct config *b)
{
	int i;

	if (a->dnssec != b->dnssec || a->dns_n != b->dns_n)
		return 1;
	for (i = 0; i < a->dns_n && i < CONFIG_MAX_DNS; i++)
		if (strcmp(a->dns_servers[i], b->dns_servers[i]) != 0)
			return 1;
	return 0;
}

/*
 * As PID 1 of a container every orphan there becomes our child: reap
 * them all, or they stay zombies.  ferry itself forks nothing, so any
 * child is one of those.  (PID 1 also gets no default signal actions:
 * every signal ferry needs is read on the loop, see main_serve.)
 */
static void
main_on_chld(void)
{
	int status;

	while (waitpid(-1, &status, WNOHANG) > 0)
		continue;
}

/* "daemon started" and "reload": the line that says which file runs. */
static void
main_log_config(const char *event, const struct config *conf)
{
	log_info(LP_MASTER, "%s -- version " FERRY_VERSION ", configuration "
	    "%s", event, conf->path[0] != '\0' ? conf->path :
	    "(none: defaults and environment)");
}
