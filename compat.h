/*
 * compat.h - the library versions ferry builds against, in one place.
 *
 * Supported: mbedTLS 2.28 (Debian 12) and 3.x up to 3.6 (OpenWrt, Alpine);
 * c-ares 1.18 (Debian 12) and newer (1.19+ have ares_dns_record_t, which
 * the DNS code may use instead of its own TLSA parser); libsodium 1.0.18+.
 * Differences between them are bridged here with small macros, so the
 * rest of the tree is written once.
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

#if ARES_VERSION < 0x011000
#error "ferry needs c-ares 1.16 or newer"
#endif
#define COMPAT_ARES_DNS_RECORD	(ARES_VERSION >= 0x011C00)	/* 1.28 */

#if SODIUM_LIBRARY_VERSION_MAJOR < 10
#error "ferry needs libsodium 1.0.12 or newer"
#endif

#endif
