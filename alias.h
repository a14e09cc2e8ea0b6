/*
 * alias.h - the aliases file (`root: admin@example.org, ops`), applied
 * when mail is accepted so a null client's mail for root reaches a real
 * mailbox.
 *
 * Keys are local parts, matched case-insensitively, for addresses
 * without a domain or in `origin`.  Values are lists of addresses
 * (commas and/or blanks between them) and nothing else: a display name
 * (`John Doe <j@x>`), |command, /file or :include: is refused at load,
 * as ferry delivers nothing locally.  A bare
 * one is looked up again (chains), up to ALIAS_DEPTH_MAX levels and
 * ALIAS_EXPAND_MAX addresses in all (and a bounded number of steps,
 * duplicates counted), but not in its own list, where it
 * is final (`root: root, admin@example.org`, as in Postfix).  Comments
 * start with '#'; a line that starts with a space or tab continues the
 * previous one, as in /etc/aliases.  Parsing takes explicit lengths and is fuzzed.
 */
#ifndef FERRY_ALIAS_H
#define FERRY_ALIAS_H

#include <stddef.h>

#define ALIAS_DEPTH_MAX		8
/* What one recipient (or a DSN's sender) may become: smtp.c, pickup.c
 * and sched.c expand into a stack array of this many 512-byte addresses. */
#define ALIAS_EXPAND_MAX	32
#define ALIAS_FILE_MAX		(256 * 1024)

struct alias_table;

/* Returns a table, or NULL with "FILE:LINE: what" in err. */
struct alias_table *alias_parse(const char *name, const char *text,
    size_t len, char *err, size_t errsz);
/* alias_parse(), then every alias expanded once for origin: a loop, a
 * chain too deep or too many addresses is "FILE: KEY: what" at load
 * (newaliases, start, SIGHUP), not a 451 for every message later. */
struct alias_table *alias_load(const char *path, const char *origin,
    char *err, size_t errsz);
void alias_free(struct alias_table *);

/*
 * Expand addr (qualified or bare) into out[0..max): the address itself
 * when no alias matches.  Bare results are qualified with origin.
 * Returns the count, or -1 with *why on a loop or too many addresses.
 */
int alias_expand(const struct alias_table *, const char *addr,
    const char *origin, char (*out)[512], int max, const char **why);

#endif
