/*
 * v8scalar: the V8 value-serialization format, for numbers and bigints only.
 *
 * The server must add V8-serialized numbers and bigints for the KV "sum"
 * mutation (with optional min/max bounds and clamping), without a JavaScript
 * engine. Everything else a client stores as V8 is opaque bytes to us, so this
 * codec decodes exactly one top-level scalar (double, int32, uint32, bigint)
 * and refuses the rest.
 *
 * Ownership: v8s_decode() may allocate the digits of a bigint; every value
 * that v8s_decode() or v8s_add() filled must be released with v8s_fini().
 * v8s_fini() on a zeroed struct is a no-op.
 */
#ifndef DENOKV_V8SCALAR_H
#define DENOKV_V8SCALAR_H

#include <stddef.h>
#include <stdint.h>

enum v8s_kind {
	V8S_NUMBER = 1,	/* a JS number: double, int32 and uint32 all decode to this */
	V8S_BIGINT = 2,
};

struct v8s_value {
	enum v8s_kind	 kind;
	double		 num;		/* V8S_NUMBER */
	int		 neg;		/* V8S_BIGINT: 1 if negative (never for zero) */
	size_t		 ndigits;	/* V8S_BIGINT: magnitude, little-endian */
	uint64_t	*digits;	/*   64-bit digits, no leading zero digits */
};

enum v8s_result {
	V8S_OK = 0,
	V8S_MALFORMED = -1,	/* truncated, bad header, trailing bytes */
	V8S_UNSUPPORTED = -2,	/* well-formed but not a number or bigint */
	V8S_NOMEM = -3,
	V8S_NOROOM = -4,	/* encode: output buffer too small */
};

/*
 * Decode one serialized scalar; *out is valid (and must be v8s_fini'd) on
 * V8S_OK only. Accepts any format version >= 13 (Deno KV writes 16, node:v8
 * and denokv 15). A bigint of more than 65536 magnitude bytes is
 * V8S_UNSUPPORTED, so no input makes us allocate without bound.
 */
enum v8s_result	v8s_decode(const uint8_t *buf, size_t len, struct v8s_value *out);

/*
 * Encode v as V8 serialization (version header, then a double or bigint tag),
 * the way V8's own serializer writes it, so the Deno client deserializes it.
 * Writes at most cap bytes to buf and stores the length in *outlen.
 * On V8S_NOROOM, *outlen is the length it would need. Numbers are always
 * written as doubles ('N'), version 15, bigints in whole 64-bit digits.
 */
enum v8s_result	v8s_encode(const struct v8s_value *v, uint8_t *buf, size_t cap,
		    size_t *outlen);

/*
 * out = a + b; both of the same kind (assert). Numbers add as IEEE doubles.
 * out may be a or b (an accumulator: the old value is released); otherwise
 * *out is overwritten without being released. A bigint sum beyond the
 * 65536-byte bound is V8S_UNSUPPORTED. On error *out is unchanged.
 */
enum v8s_result	v8s_add(const struct v8s_value *a, const struct v8s_value *b,
		    struct v8s_value *out);

/*
 * <0, 0, >0 as a < b, a == b, a > b; both of the same kind (assert).
 * A NaN compares equal to everything (it is neither < nor >), so it never
 * falls below a minimum or above a maximum; -0 equals 0.
 */
int		v8s_cmp(const struct v8s_value *a, const struct v8s_value *b);

/* Deep copy; dst must be v8s_fini'd. */
enum v8s_result	v8s_copy(const struct v8s_value *src, struct v8s_value *dst);

void		v8s_fini(struct v8s_value *v);

/* Worst-case encoded size of v, for sizing buffers. */
size_t		v8s_encoded_max(const struct v8s_value *v);

#endif
