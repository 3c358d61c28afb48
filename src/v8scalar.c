/*
 * v8scalar.c: decode, encode, add and compare a single top-level V8
 * value-serializer scalar (a JS number or bigint), so the server can apply
 * the KV "sum" mutation to values a Deno client stored as V8 bytes.
 *
 * Wire format, as in V8's src/objects/value-serializer.cc:
 *
 *	0xFF <varint version>		header (kVersionTag)
 *	0x00 ...			kPadding, skipped before any tag
 *	'?' <varint>			kVerifyObjectCount, legacy, skipped
 *	'N' <8 bytes LE double>		kDouble
 *	'I' <zigzag varint>		kInt32
 *	'U' <varint>			kUint32
 *	'Z' <varint bitfield> <bytes>	kBigInt: bit 0 sign, bits 1.. byte
 *					length of the little-endian magnitude
 *
 * Varints are base-128, least significant group first, at most 5 bytes
 * for 32 bits (V8 stops reading there too).
 *
 * We are stricter than V8 in a few places because a KV server must refuse
 * rather than guess: the header is mandatory, a version below 13 is
 * refused (older versions treat unknown tags as host objects), and bytes
 * after the value are an error. We are more lenient in one: any version
 * >= 13 is accepted, because a newer Deno writes a newer version (Deno 2.x
 * KV writes 16) without changing how numbers and bigints are written.
 *
 * The bigint byte length need not be a multiple of 8: V8 always writes
 * whole 64-bit digits, but its reader rounds up, and the Rust serializer
 * denokv uses writes the minimal number of bytes (0n even as one 0x00
 * byte). We read both and always write what V8 writes.
 */
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "v8scalar.h"

#define TAG_VERSION		0xFF
#define TAG_PADDING		0x00
#define TAG_VERIFY_COUNT	'?'
#define TAG_DOUBLE		'N'
#define TAG_INT32		'I'
#define TAG_UINT32		'U'
#define TAG_BIGINT		'Z'

/*
 * Version 15 rather than the 16 a current Deno writes: readers built on
 * older V8 and denokv's own reader refuse versions newer than they know,
 * and 15 and 16 write numbers and bigints identically.
 */
#define WRITE_VERSION		15
#define MIN_VERSION		13

#define VARINT32_MAX		5	/* bytes in a 32-bit varint */
#define DIGIT_BYTES		8

/*
 * A bound on bigints, so a hostile value cannot make us allocate or add
 * without limit. 64 KiB of magnitude is a 524288-bit number; no sum
 * counter needs more.
 */
#define MAX_BIGINT_BYTES	65536
#define MAX_DIGITS		(MAX_BIGINT_BYTES / DIGIT_BYTES)

/* Header, tag and a 5-byte bitfield: the most a bigint adds to its digits. */
#define BIGINT_OVERHEAD		(2 + 1 + VARINT32_MAX)
#define NUMBER_SIZE		(2 + 1 + 8)

struct reader {
	const uint8_t	*p;
	const uint8_t	*end;
};

static int
rd_byte(struct reader *r, uint8_t *b)
{
	if (r->p >= r->end)
		return -1;
	*b = *r->p++;
	return 0;
}

/*
 * V8 reads at most 5 bytes for a 32-bit varint and discards bits that do
 * not fit. A 5th byte that still has its continuation bit set is garbage
 * V8 would misparse, so we refuse it.
 */
static int
rd_varint32(struct reader *r, uint32_t *out)
{
	uint32_t	v = 0;
	uint8_t		b;
	int		i;

	for (i = 0; i < VARINT32_MAX; i++) {
		if (rd_byte(r, &b) == -1)
			return -1;
		v |= (uint32_t)(b & 0x7f) << (7 * i);
		if ((b & 0x80) == 0) {
			*out = v;
			return 0;
		}
	}
	return -1;
}

/* Read a tag, skipping padding as V8's ReadTag does. */
static int
rd_tag(struct reader *r, uint8_t *tag)
{
	do {
		if (rd_byte(r, tag) == -1)
			return -1;
	} while (*tag == TAG_PADDING);
	return 0;
}

static uint64_t
load_le64(const uint8_t *p)
{
	uint64_t	v = 0;
	int		i;

	for (i = DIGIT_BYTES - 1; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static void
store_le64(uint8_t *p, uint64_t v)
{
	int	i;

	for (i = 0; i < DIGIT_BYTES; i++) {
		p[i] = v & 0xff;
		v >>= 8;
	}
}

/*
 * Any NaN becomes the one quiet NaN, as V8's ReadDouble does, so that the
 * bytes we write back for a NaN are the ones V8 would write.
 */
static double
bits_to_double(uint64_t bits)
{
	double	d;

	memcpy(&d, &bits, sizeof(d));
	if (isnan(d))
		d = (double)NAN;
	return d;
}

static uint64_t
double_to_bits(double d)
{
	uint64_t	bits;

	if (isnan(d))
		return UINT64_C(0x7ff8000000000000);
	memcpy(&bits, &d, sizeof(bits));
	return bits;
}

/* Drop high zero digits; a zero bigint has no digits, no sign and no buffer. */
static void
bigint_trim(struct v8s_value *v)
{
	while (v->ndigits > 0 && v->digits[v->ndigits - 1] == 0)
		v->ndigits--;
	if (v->ndigits == 0) {
		free(v->digits);
		v->digits = NULL;
		v->neg = 0;
	}
}

/* The significant length of v, ignoring high zero digits a caller left. */
static size_t
bigint_len(const struct v8s_value *v)
{
	size_t	n = v->ndigits;

	while (n > 0 && v->digits[n - 1] == 0)
		n--;
	return n;
}

static enum v8s_result
decode_bigint(struct reader *r, struct v8s_value *out)
{
	uint32_t	 bitfield, bytelen, sig, i;
	const uint8_t	*mag;
	uint64_t	*digits;
	size_t		 ndigits;
	int		 neg;

	if (rd_varint32(r, &bitfield) == -1)
		return V8S_MALFORMED;
	neg = bitfield & 1;
	bytelen = bitfield >> 1;
	if (bytelen > (size_t)(r->end - r->p))
		return V8S_MALFORMED;
	/* V8 refuses "-0n": a sign with no digits at all is corrupt data. */
	if (neg && bytelen == 0)
		return V8S_MALFORMED;
	if (bytelen > MAX_BIGINT_BYTES)
		return V8S_UNSUPPORTED;
	mag = r->p;
	r->p += bytelen;

	/* Size by the significant bytes, so no high zero digits are kept. */
	for (sig = bytelen; sig > 0 && mag[sig - 1] == 0; sig--)
		;
	memset(out, 0, sizeof(*out));
	out->kind = V8S_BIGINT;
	if (sig == 0)
		return V8S_OK;		/* zero, whatever sign bit it carried */

	ndigits = (sig + DIGIT_BYTES - 1) / DIGIT_BYTES;
	if ((digits = calloc(ndigits, sizeof(*digits))) == NULL)
		return V8S_NOMEM;
	for (i = 0; i < sig; i++)
		digits[i / DIGIT_BYTES] |=
		    (uint64_t)mag[i] << (8 * (i % DIGIT_BYTES));
	out->neg = neg;
	out->ndigits = ndigits;
	out->digits = digits;
	return V8S_OK;
}

enum v8s_result
v8s_decode(const uint8_t *buf, size_t len, struct v8s_value *out)
{
	struct reader		r;
	struct v8s_value	v;
	enum v8s_result		rv;
	uint32_t		version, u;
	uint8_t			tag;

	assert(out != NULL);
	if (buf == NULL || len == 0)
		return V8S_MALFORMED;
	r.p = buf;
	r.end = buf + len;

	if (rd_byte(&r, &tag) == -1 || tag != TAG_VERSION)
		return V8S_MALFORMED;
	if (rd_varint32(&r, &version) == -1 || version < MIN_VERSION)
		return V8S_MALFORMED;

	/* V8 still reads, and ignores, the object count old writers emitted. */
	for (;;) {
		if (rd_tag(&r, &tag) == -1)
			return V8S_MALFORMED;
		if (tag != TAG_VERIFY_COUNT)
			break;
		if (rd_varint32(&r, &u) == -1)
			return V8S_MALFORMED;
	}

	memset(&v, 0, sizeof(v));
	switch (tag) {
	case TAG_DOUBLE:
		if (r.end - r.p < 8)
			return V8S_MALFORMED;
		v.kind = V8S_NUMBER;
		v.num = bits_to_double(load_le64(r.p));
		r.p += 8;
		break;
	case TAG_INT32:
		if (rd_varint32(&r, &u) == -1)
			return V8S_MALFORMED;
		/* Zigzag: 0, -1, 1, -2, ...; in double, nothing overflows. */
		v.kind = V8S_NUMBER;
		v.num = (u & 1) ? -(double)(u >> 1) - 1.0 : (double)(u >> 1);
		break;
	case TAG_UINT32:
		if (rd_varint32(&r, &u) == -1)
			return V8S_MALFORMED;
		v.kind = V8S_NUMBER;
		v.num = (double)u;
		break;
	case TAG_BIGINT:
		if ((rv = decode_bigint(&r, &v)) != V8S_OK)
			return rv;
		break;
	default:
		/* Strings, objects, oddballs, wrappers: opaque to us. */
		return V8S_UNSUPPORTED;
	}

	/* One value and nothing after it, or it is not what a client wrote. */
	if (r.p != r.end) {
		v8s_fini(&v);
		return V8S_MALFORMED;
	}
	*out = v;
	return V8S_OK;
}

static size_t
varint32_len(uint32_t v)
{
	size_t	n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

static uint8_t *
put_varint32(uint8_t *p, uint32_t v)
{
	while (v >= 0x80) {
		*p++ = (uint8_t)((v & 0x7f) | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t)v;
	return p;
}

/*
 * Numbers are always written as 'N', even integral ones V8 would write as
 * 'I' (it does that only for Smis, not heap numbers); every reader accepts
 * it and it is what denokv writes.
 */
enum v8s_result
v8s_encode(const struct v8s_value *v, uint8_t *buf, size_t cap, size_t *outlen)
{
	uint8_t		*p;
	uint32_t	 bitfield = 0;
	size_t		 need, n = 0, i;

	assert(v != NULL && outlen != NULL);
	assert(v->kind == V8S_NUMBER || v->kind == V8S_BIGINT);

	if (v->kind == V8S_NUMBER)
		need = NUMBER_SIZE;
	else {
		/* Canonical even if the caller left high zero digits. */
		n = bigint_len(v);
		if (n > MAX_DIGITS)
			return V8S_UNSUPPORTED;
		bitfield = (uint32_t)(n * DIGIT_BYTES) << 1;
		if (n > 0 && v->neg)
			bitfield |= 1;
		need = 3 + varint32_len(bitfield) + n * DIGIT_BYTES;
	}
	*outlen = need;		/* on V8S_NOROOM too: what it would take */
	if (cap < need)
		return V8S_NOROOM;

	p = buf;
	*p++ = TAG_VERSION;
	*p++ = WRITE_VERSION;
	if (v->kind == V8S_NUMBER) {
		*p++ = TAG_DOUBLE;
		store_le64(p, double_to_bits(v->num));
		p += 8;
	} else {
		*p++ = TAG_BIGINT;
		p = put_varint32(p, bitfield);
		for (i = 0; i < n; i++, p += DIGIT_BYTES)
			store_le64(p, v->digits[i]);
	}
	assert((size_t)(p - buf) == need);
	return V8S_OK;
}

size_t
v8s_encoded_max(const struct v8s_value *v)
{
	assert(v != NULL);
	if (v->kind == V8S_NUMBER)
		return NUMBER_SIZE;
	return BIGINT_OVERHEAD + v->ndigits * DIGIT_BYTES;
}

/* Compare magnitudes of two trimmed digit strings. */
static int
mag_cmp(const uint64_t *a, size_t na, const uint64_t *b, size_t nb)
{
	size_t	i;

	if (na != nb)
		return na < nb ? -1 : 1;
	for (i = na; i > 0; i--) {
		if (a[i - 1] != b[i - 1])
			return a[i - 1] < b[i - 1] ? -1 : 1;
	}
	return 0;
}

/* r = a + b over magnitudes, na >= nb; r has room for na + 1 digits. */
static size_t
mag_add(uint64_t *r, const uint64_t *a, size_t na, const uint64_t *b,
    size_t nb)
{
	uint64_t	carry = 0, s;
	size_t		i;

	for (i = 0; i < na; i++) {
		s = a[i] + carry;
		carry = s < carry;
		if (i < nb) {
			s += b[i];
			carry += s < b[i];
		}
		r[i] = s;
	}
	r[na] = carry;
	return na + 1;
}

/* r = a - b over magnitudes, a >= b (so na >= nb); r has room for na digits. */
static size_t
mag_sub(uint64_t *r, const uint64_t *a, size_t na, const uint64_t *b,
    size_t nb)
{
	uint64_t	borrow = 0, bi, d;
	size_t		i;

	for (i = 0; i < na; i++) {
		bi = i < nb ? b[i] : 0;
		d = a[i] - bi - borrow;
		borrow = a[i] < bi || (a[i] == bi && borrow);
		r[i] = d;
	}
	assert(borrow == 0);
	return na;
}

static enum v8s_result
bigint_add(const struct v8s_value *a, const struct v8s_value *b,
    struct v8s_value *out)
{
	const uint64_t	*bd, *sd;
	size_t		 bn, sn;
	int		 bneg, sneg, c;

	memset(out, 0, sizeof(*out));
	out->kind = V8S_BIGINT;

	/*
	 * Order the operands so that |big| >= |small|: a sum then needs at
	 * most one more digit than big, a difference never goes below zero,
	 * and the result takes big's sign either way.
	 */
	c = mag_cmp(a->digits, bigint_len(a), b->digits, bigint_len(b));
	if (c < 0) {
		const struct v8s_value	*t = a;

		a = b;
		b = t;
	}
	bd = a->digits;
	bn = bigint_len(a);
	bneg = a->neg && bn > 0;
	sd = b->digits;
	sn = bigint_len(b);
	sneg = b->neg && sn > 0;

	if (bn == 0)
		return V8S_OK;		/* 0 + 0 */
	if (bneg != sneg && c == 0)
		return V8S_OK;		/* x + -x */

	if ((out->digits = calloc(bn + 1, sizeof(*out->digits))) == NULL)
		return V8S_NOMEM;
	if (bneg == sneg)
		out->ndigits = mag_add(out->digits, bd, bn, sd, sn);
	else
		out->ndigits = mag_sub(out->digits, bd, bn, sd, sn);
	out->neg = bneg;
	bigint_trim(out);
	if (out->ndigits > MAX_DIGITS) {
		/* Keep every value we hand out decodable by ourselves. */
		v8s_fini(out);
		return V8S_UNSUPPORTED;
	}
	return V8S_OK;
}

/*
 * out may be a or b (an accumulator): the result is built aside and the
 * old value released only once the new one exists.
 */
enum v8s_result
v8s_add(const struct v8s_value *a, const struct v8s_value *b,
    struct v8s_value *out)
{
	struct v8s_value	r;
	enum v8s_result		rv;

	assert(a != NULL && b != NULL && out != NULL);
	assert(a->kind == b->kind);

	if (a->kind == V8S_NUMBER) {
		memset(&r, 0, sizeof(r));
		r.kind = V8S_NUMBER;
		r.num = a->num + b->num;
	} else if ((rv = bigint_add(a, b, &r)) != V8S_OK)
		return rv;
	if (out == a || out == b)
		v8s_fini(out);
	*out = r;
	return V8S_OK;
}

/*
 * Doubles compare with < and >, so a NaN on either side compares equal to
 * anything: it is neither below a minimum nor above a maximum, which is
 * what JavaScript comparisons would conclude too.
 */
int
v8s_cmp(const struct v8s_value *a, const struct v8s_value *b)
{
	size_t	na, nb;
	int	an, bn, c;

	assert(a != NULL && b != NULL);
	assert(a->kind == b->kind);

	if (a->kind == V8S_NUMBER)
		return (a->num > b->num) - (a->num < b->num);

	na = bigint_len(a);
	nb = bigint_len(b);
	an = a->neg && na > 0;
	bn = b->neg && nb > 0;
	if (an != bn)
		return an ? -1 : 1;
	c = mag_cmp(a->digits, na, b->digits, nb);
	return an ? -c : c;
}

enum v8s_result
v8s_copy(const struct v8s_value *src, struct v8s_value *dst)
{
	struct v8s_value	v;

	assert(src != NULL && dst != NULL);
	v = *src;
	v.digits = NULL;
	if (src->kind == V8S_BIGINT) {
		v.ndigits = bigint_len(src);
		if (v.ndigits == 0)
			v.neg = 0;
		else {
			v.digits = malloc(v.ndigits * sizeof(*v.digits));
			if (v.digits == NULL)
				return V8S_NOMEM;
			memcpy(v.digits, src->digits,
			    v.ndigits * sizeof(*v.digits));
		}
	}
	*dst = v;
	return V8S_OK;
}

void
v8s_fini(struct v8s_value *v)
{
	if (v == NULL)
		return;
	free(v->digits);
	memset(v, 0, sizeof(*v));
}
