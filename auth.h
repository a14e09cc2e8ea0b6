/*
 * auth.h - the SASL server's core, with no socket in it: the users file
 * (`user:$argon2id$...`), password hashing and checking, decoding of
 * AUTH PLAIN and AUTH LOGIN responses, a failure throttle per client
 * address, and `ferry passwd`.  The SMTP dialogue, TLS and the log lines
 * belong to smtp.c; everything here is a pure function or works on a
 * table the caller owns.  Decoders take explicit lengths and are fuzzed.
 * Returns: 0 success, -1 failure, unless a function says otherwise.
 */
#ifndef FERRY_AUTH_H
#define FERRY_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include <sodium.h>

/*
 * RFC 4616 section 2: a server MUST accept authzid, authcid and passwd
 * of up to 255 octets each.  Longer ones are refused, never truncated.
 */
#define AUTH_USER_MAX	255
#define AUTH_PASS_MAX	255
/* Largest decoded PLAIN message: authzid NUL authcid NUL passwd. */
#define AUTH_PLAIN_MAX	(2 * AUTH_USER_MAX + AUTH_PASS_MAX + 2)
/* Base64 length of n bytes, padded; the +1 in buffers is the NUL. */
#define AUTH_B64_LEN(n)	(((n) + 2) / 3 * 4)

/*
 * Argon2id cost of new hashes, sized for a router: 4 MiB and 2 passes
 * take about 4 ms on the 2-core x86 build host and about 135 ms under
 * qemu-mipsel (see auth.c).  Checking uses the cost written in each hash.
 */
#define AUTH_PWHASH_OPS	2U
#define AUTH_PWHASH_MEM	(4U * 1024 * 1024)
/* A users file hash costing more than this is refused at load time. */
#define AUTH_PWHASH_OPS_MAX	16U
#define AUTH_PWHASH_MEM_MAX_KIB	(64U * 1024)

#define AUTH_USERS_FILE_MAX	(256 * 1024)
#define AUTH_USERS_MAX		1000

/* auth_plain_decode() and auth_login_decode() results. */
#define AUTH_DECODE_OK		0
#define AUTH_DECODE_CANCEL	1	/* the client sent "*" (RFC 4954) */
#define AUTH_DECODE_BAD		(-1)

/* auth_users_verify() results. */
#define AUTH_VERIFY_OK		0
#define AUTH_VERIFY_DENIED	(-1)	/* unknown user or wrong password */

/* The failure throttle. */
#define AUTH_THROTTLE_SLOTS	256	/* client addresses remembered */
#define AUTH_THROTTLE_FREE	3	/* failures before any delay */
#define AUTH_THROTTLE_REFUSE	10	/* failures that shut the door */
#define AUTH_THROTTLE_DELAY_MS	1000	/* first delay, doubled per failure */
#define AUTH_THROTTLE_DELAY_MAX_MS	8000
#define AUTH_THROTTLE_DECAY_MS	(60 * 1000)	/* one failure forgiven */
#define AUTH_THROTTLE_DENY	(-1)	/* auth_throttle_check(): refuse */

struct auth_users;
struct auth_throttle;
struct config;

/*
 * Base64 (RFC 4648 section 4, padded, no white space; RFC 4954 wants it
 * strict).  decode: writes *outlen bytes, no NUL added; -1 on a bad
 * character, bad padding or an out buffer that is too small.  encode:
 * writes a NUL-terminated string; -1 when out is too small.
 */
int auth_b64_decode(const char *b64, size_t len, unsigned char *out,
    size_t outsz, size_t *outlen);
int auth_b64_encode(const void *in, size_t len, char *out, size_t outsz);

/*
 * AUTH PLAIN (RFC 4616): b64 is the initial response or the response
 * line without CRLF.  An authzid must be empty or equal the authcid;
 * user and password must be non-empty, at most AUTH_USER_MAX and
 * AUTH_PASS_MAX, without NUL; the user has no control characters (it
 * is logged).  On success user and pass are NUL-terminated (pass may
 * hold any other byte) and *passlen is set; the caller wipes pass with
 * sodium_memzero().  On AUTH_DECODE_BAD, *why is a static reason made of
 * letters and spaces only, so it can follow "authentication failed: " in
 * a log line that fail2ban's postfix-sasl filter still matches; nothing
 * of the secret is left in user or pass.  RFC 4954's "=" for an empty
 * initial response is the caller's to handle (it is not valid here).
 */
int auth_plain_decode(const char *b64, size_t len, char *user, size_t usz,
    char *pass, size_t psz, size_t *passlen, const char **why);

/*
 * AUTH LOGIN: one response, the user name or the password, decoded into
 * out (NUL-terminated, *outlen set) with the same rules as PLAIN's
 * authcid (is_pass == 0) or passwd (is_pass != 0).
 */
int auth_login_decode(const char *b64, size_t len, int is_pass, char *out,
    size_t outsz, size_t *outlen, const char **why);

/* The client side's initial response for AUTH PLAIN (no authzid). */
int auth_plain_encode(const char *user, const char *pass, size_t passlen,
    char *out, size_t outsz);

/* New hash of a password with the AUTH_PWHASH_* cost. */
int auth_hash_password(const char *pass, size_t len,
    char out[crypto_pwhash_STRBYTES]);

/*
 * The users file.  Lines are `user:$argon2id$v=19$m=M,t=T,p=1$SALT$HASH`;
 * blank lines and lines starting with '#' are skipped.  load refuses a
 * path that is not a regular file or that others may access (mode &
 * 007).  Both return NULL with "FILE:LINE: what" (or "FILE: what") in
 * err.
 */
struct auth_users *auth_users_load(const char *path, char *err,
    size_t errsz);
struct auth_users *auth_users_parse(const char *name, const char *text,
    size_t len, char *err, size_t errsz);
void auth_users_free(struct auth_users *);
size_t auth_users_count(const struct auth_users *);

/*
 * AUTH_VERIFY_OK or AUTH_VERIFY_DENIED.  Costs one Argon2 verification
 * whether or not the user exists, so timing does not tell which names
 * are real.  Blocks for the Argon2 time (milliseconds).
 */
int auth_users_verify(const struct auth_users *, const char *user,
    const char *pass, size_t passlen);

/*
 * Failure throttle per client address (IPv4, or IPv6 by its /64 since
 * one host has them all; anything else by its text).  now is loop_now().
 * check returns the delay in ms to impose before answering the next
 * AUTH, or AUTH_THROTTLE_DENY; fail records one failed attempt.  There
 * is no "success" call on purpose: logging in with one account that an
 * attacker holds must not wipe the count of guesses at the others.
 * Failures decay by one per AUTH_THROTTLE_DECAY_MS; when the table is
 * full the least recently used address is forgotten.
 */
struct auth_throttle *auth_throttle_new(void);
void auth_throttle_free(struct auth_throttle *);
int auth_throttle_check(struct auth_throttle *, const char *addr,
    uint64_t now);
void auth_throttle_fail(struct auth_throttle *, const char *addr,
    uint64_t now);

/*
 * Recent successful logins, so a client that reconnects often does not
 * cost an Argon2 run each time.  An entry is a keyed BLAKE2b (key random
 * per process) of user NUL password, never the password itself; it
 * lives AUTH_CACHE_TTL_MS after it was added; the table holds
 * AUTH_CACHE_SLOTS and forgets the oldest when full.  hit() compares in
 * constant time.  Clear it whenever the users file is re-read.
 */
#define AUTH_CACHE_SLOTS	64
#define AUTH_CACHE_TTL_MS	(10 * 60 * 1000)
struct auth_cache;
struct auth_cache *auth_cache_new(void);
void auth_cache_free(struct auth_cache *);
int auth_cache_hit(struct auth_cache *, const char *user, const char *pass,
    size_t passlen, uint64_t now);		/* 1 hit, 0 miss */
void auth_cache_add(struct auth_cache *, const char *user, const char *pass,
    size_t passlen, uint64_t now);
void auth_cache_clear(struct auth_cache *);

/*
 * The client side's credentials (smarthost_auth): one line `user
 * password` (the password is the rest of the line after the first run of
 * blanks, so it may hold spaces; a trailing CR is dropped); '#' comments
 * and blank lines around it are skipped; exactly one credential line.
 * load refuses a file others may read (mode & 007), like the users
 * file.  Errors are "NAME:LINE: what" (never quoting the password).
 * The struct is zeroed by auth_client_free().
 */
struct auth_client {
	char user[AUTH_USER_MAX + 1];
	char pass[AUTH_PASS_MAX + 1];
	size_t passlen;
};
int auth_client_parse(struct auth_client *, const char *name,
    const char *text, size_t len, char *err, size_t errsz);
int auth_client_load(struct auth_client *, const char *path, char *err,
    size_t errsz);
void auth_client_free(struct auth_client *);	/* wipes it */

/*
 * `ferry passwd [USER]`: prints `USER:$argon2id$...` on stdout.  The
 * password is read twice without echo from a terminal, or once (one
 * line) from a stdin that is not one.  USER defaults to the invoking
 * user.  The config is not used (the users file is the admin's to edit).
 * Returns a sysexits.h code.
 */
int auth_cli_passwd(const struct config *, int argc, char **argv);

#endif
