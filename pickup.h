/*
 * pickup.h - moves what sendmail dropped into maildrop/ (while the daemon
 * was down) into the queue: at start and then every PICKUP_INTERVAL.
 * A maildrop file is written by an unprivileged user and is parsed as
 * untrusted input; one that does not parse goes to corrupt/.
 */
#ifndef FERRY_PICKUP_H
#define FERRY_PICKUP_H

struct config;

struct alias_table;

void pickup_configure(const struct config *);
void pickup_set_aliases(const struct alias_table *);
void pickup_start(void);
void pickup_stop(void);

#endif
