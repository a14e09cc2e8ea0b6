/*
 * compat.h - the library versions ferry builds against, in one place.
 *
 * Supported, and built by test/compat.sh: mbedTLS 2.28 (Debian 12) and
 * 3.6 (Debian 13, OpenWrt 24.10); c-ares 1.18 (Debian 12) to 1.34 (Debian
 * 13); libsodium 1.0.18+.  Differences are bridged here with small
 * macros, so the rest of the tree is written once.  c-ares 1.28+ can
 * parse TLSA records itself; ferry keeps its own fuzzed parser of the
 * raw answer on every version (it needs the header's AD bit too), so
 * the calls 1.28 deprecated stay: dns.c defines CARES_NO_DEPRECATED.
 */
#ifndef FERRY_COMPAT_H
#define FERRY_COMPAT_H

#include <ares_version.h>
#include <sodium/version.h>

#if __has_include(<mbedtls/build_info.h>)
#include <mbedtls/build_info.h>		/* 3.x */
#else
#include <mbedtls/version.h>		/* 2.x */
#endif

#if MBEDTLS_VERSION_NUMBER < 0x021C0000
#error "ferry needs mbedTLS 2.28 or newer"
#endif
#define COMPAT_MBEDTLS3	(MBEDTLS_VERSION_NUMBER >= 0x03000000)
/* A certificate's raw SubjectPublicKeyInfo, what selector 1 and the
 * spki fingerprints hash: 3.0 alone made it private (public since 3.1). */
#if COMPAT_MBEDTLS3 && MBEDTLS_VERSION_NUMBER < 0x03010000
#define COMPAT_PK_RAW(crt)	((crt)->MBEDTLS_PRIVATE(pk_raw))
#else
#define COMPAT_PK_RAW(crt)	((crt)->pk_raw)
#endif

#if ARES_VERSION < 0x011000
#error "ferry needs c-ares 1.16 or newer"
#endif

#if SODIUM_LIBRARY_VERSION_MAJOR < 10
#error "ferry needs libsodium 1.0.12 or newer"
#endif

#endif
