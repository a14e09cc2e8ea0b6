/*
 * cli.h - the one-shot commands that are not the daemon: the sendmail
 * interface, mailq, delete and cat.  Each takes the loaded config and its
 * own arguments (argv[0] is the command name) and returns a sysexits.h
 * exit code.  None of them runs the event loop.
 */
#ifndef FERRY_CLI_H
#define FERRY_CLI_H

struct config;

int cli_sendmail(const struct config *, int argc, char **argv);
int cli_mailq(const struct config *, int argc, char **argv);
int cli_delete(const struct config *, int argc, char **argv);
int cli_cat(const struct config *, int argc, char **argv);
int cli_flush(const struct config *, int argc, char **argv);
/* ferry tlsa: needs no config (conf may be NULL). */
int cli_tlsa(const struct config *, int argc, char **argv);
/* newaliases (and sendmail -bi, -I): check the aliases file. */
int cli_newaliases(const struct config *);
/* The environment main() was given; NULL in a set-id entry (DESIGN.md:
 * its caller's is not trusted).  sendmail reads NAME there. */
extern char *const *cli_environ;
/* "usage: SYNOPSIS" on stderr; returns EX_USAGE. */
int cli_usage(const char *synopsis);
/* "s" unless n is 1: the reports' plurals, one copy of the choice. */
const char *cli_plural(size_t n) __attribute__((noinline));

#endif
