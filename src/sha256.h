/*
 * sha256: SHA-256 (FIPS 180-4), self-contained. The server keeps the
 * digest of its access token and compares it with the digest of the token
 * a request presents: two fixed-size values, so the time taken says
 * nothing about the secret's contents or its length. Not for bulk data (no
 * streaming interface is needed here).
 */
#ifndef DENOKV_SHA256_H
#define DENOKV_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_DIGEST_LEN	32

/* Writes the digest of len bytes at data to out. */
void	sha256(const void *data, size_t len, uint8_t out[SHA256_DIGEST_LEN]);

/*
 * 1 if the two digests are equal, 0 if not, in the same time whatever
 * they hold (no early exit).
 */
int	sha256_digest_equal(const uint8_t a[SHA256_DIGEST_LEN],
	    const uint8_t b[SHA256_DIGEST_LEN]);

#endif
