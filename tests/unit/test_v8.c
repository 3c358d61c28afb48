/*
 * test_v8.c: unit tests for the V8 scalar codec (src/v8scalar.c), printing
 * TAP. The byte vectors come from the real V8 (Deno 2.9.6, V8 15.0): the
 * version 15 ones from node:v8 serialize(), the version 16 ones from what
 * Deno KV itself stored in its SQLite file, so the codec is checked
 * against the serializer it must interoperate with, not against itself.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "v8scalar.h"

static int	ntests, nfailed;

static void	ok(int, const char *, ...) __attribute__((format(printf, 2, 3)));
static void	diag(const char *, ...) __attribute__((format(printf, 1, 2)));

static void
ok(int cond, const char *fmt, ...)
{
	va_list	ap;

	ntests++;
	if (!cond)
		nfailed++;
	printf("%s %d - ", cond ? "ok" : "not ok", ntests);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

static void
diag(const char *fmt, ...)
{
	va_list	ap;

	fputs("# ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

/* Hex string to bytes; the vectors are short, so a fixed buffer does. */
#define MAXBUF	4096

static size_t
unhex(const char *s, uint8_t *out)
{
	size_t		n = 0;
	unsigned int	b;

	while (s[0] != '\0' && s[1] != '\0') {
		if (n >= MAXBUF || sscanf(s, "%2x", &b) != 1) {
			fprintf(stderr, "bad test vector %s\n", s);
			exit(2);
		}
		out[n++] = (uint8_t)b;
		s += 2;
	}
	return n;
}

static void
tohex(const uint8_t *p, size_t n, char *out)
{
	size_t	i;

	for (i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", p[i]);
	out[2 * n] = '\0';
}

static enum v8s_result
dec_hex(const char *hex, struct v8s_value *v)
{
	uint8_t	buf[MAXBUF];
	size_t	n = unhex(hex, buf);

	memset(v, 0, sizeof(*v));
	return v8s_decode(buf, n, v);
}

/* Encode v and compare with the expected hex; say what came out if not. */
static int
enc_is(const struct v8s_value *v, const char *want)
{
	uint8_t	buf[MAXBUF];
	char	got[2 * MAXBUF + 1];
	size_t	n = 0;

	if (v8s_encoded_max(v) > MAXBUF ||
	    v8s_encode(v, buf, sizeof(buf), &n) != V8S_OK)
		return 0;
	if (n > v8s_encoded_max(v))
		return 0;
	tohex(buf, n, got);
	if (strcmp(got, want) != 0) {
		diag("want %s", want);
		diag("got  %s", got);
		return 0;
	}
	return 1;
}

static int
same_double(double a, double b)
{
	if (isnan(a) || isnan(b))
		return isnan(a) && isnan(b);
	return a == b && signbit(a) == signbit(b);
}

/*
 * Numbers decoded from V8 bytes.
 */
static const struct {
	const char	*name;
	const char	*hex;
	double		 want;
} numbers[] = {
	{ "int32 123 (I, zigzag 246)",	"ff0f49f601", 123 },
	{ "int32 -5 (zigzag 9)",	"ff0f4909", -5 },
	{ "int32 0",			"ff0f4900", 0 },
	{ "int32 max",			"ff0f49feffffff0f", 2147483647.0 },
	{ "int32 min",			"ff0f49ffffffff0f", -2147483648.0 },
	{ "smi max (2^30-1)",		"ff0f49feffffff07", 1073741823.0 },
	{ "smi min (-2^30)",		"ff0f49ffffffff07", -1073741824.0 },
	{ "uint32 0",			"ff0f5500", 0 },
	{ "uint32 128 (two bytes)",	"ff0f558001", 128 },
	{ "uint32 max",			"ff0f55ffffffff0f", 4294967295.0 },
	{ "double 1.5",			"ff0f4e000000000000f83f", 1.5 },
	{ "double -0",			"ff0f4e0000000000000080", -0.0 },
	{ "double 2^31",		"ff0f4e000000000000e041", 2147483648.0 },
	{ "double 2^32",		"ff0f4e000000000000f041", 4294967296.0 },
	{ "double 2^32-1 (V8 writes N)", "ff0f4e0000e0ffffffef41", 4294967295.0 },
	{ "double 1e300",		"ff0f4e9c7500883ce4377e", 1e300 },
	{ "double Infinity",		"ff0f4e000000000000f07f", INFINITY },
	{ "double NaN",			"ff0f4e000000000000f87f", NAN },
	{ "double signalling NaN",	"ff0f4e010000000000f07f", NAN },
	{ "Deno KV v16 int32 123",	"ff1049f601", 123 },
	{ "Deno KV v16 int32 -5",	"ff104909", -5 },
	{ "Deno KV v16 double 1.5",	"ff104e000000000000f83f", 1.5 },
	{ "Deno KV v16 double 2^32",	"ff104e000000000000f041", 4294967296.0 },
	{ "version 13",			"ff0d4902", 1 },
	{ "version 14",			"ff0e4902", 1 },
	{ "padding before the tag",	"ff0f00004902", 1 },
	{ "verify-object-count prefix",	"ff0f3f034902", 1 },
	{ "padding and object count",	"ff0f003f0300004902", 1 },
	{ "two-byte version varint",	"ff8f014902", 1 },
};

/*
 * Bigints: the V8 bytes and the canonical form we must write back
 * (always version 15, whole 64-bit digits, no high zero digits).
 */
static const struct {
	const char	*name;
	const char	*hex;
	const char	*canon;
	int		 sign;		/* of the value: -1, 0, 1 */
	size_t		 ndigits;
} bigints[] = {
	{ "123n", "ff0f5a107b00000000000000",
	    "ff0f5a107b00000000000000", 1, 1 },
	{ "0n", "ff0f5a00", "ff0f5a00", 0, 0 },
	{ "-1n", "ff0f5a110100000000000000",
	    "ff0f5a110100000000000000", -1, 1 },
	{ "2^63", "ff0f5a100000000000000080",
	    "ff0f5a100000000000000080", 1, 1 },
	{ "2^64", "ff0f5a2000000000000000000100000000000000",
	    "ff0f5a2000000000000000000100000000000000", 1, 2 },
	{ "-(2^64)", "ff0f5a2100000000000000000100000000000000",
	    "ff0f5a2100000000000000000100000000000000", -1, 2 },
	{ "2^128-1", "ff0f5a20ffffffffffffffffffffffffffffffff",
	    "ff0f5a20ffffffffffffffffffffffffffffffff", 1, 2 },
	{ "Deno KV v16 123n", "ff105a107b00000000000000",
	    "ff0f5a107b00000000000000", 1, 1 },
	{ "Deno KV v16 0n", "ff105a00", "ff0f5a00", 0, 0 },
	{ "minimal bytes 123n (denokv's Rust writer)", "ff0f5a027b",
	    "ff0f5a107b00000000000000", 1, 1 },
	{ "minimal bytes -123n", "ff0f5a037b",
	    "ff0f5a117b00000000000000", -1, 1 },
	{ "0n as one zero byte (denokv's Rust writer)", "ff0f5a0200",
	    "ff0f5a00", 0, 0 },
	{ "9 bytes: 2^64+1", "ff0f5a12010000000000000001",
	    "ff0f5a2001000000000000000100000000000000", 1, 2 },
	{ "high zero digit dropped", "ff0f5a2005000000000000000000000000000000",
	    "ff0f5a100500000000000000", 1, 1 },
	{ "positive zero digits are 0n", "ff0f5a100000000000000000",
	    "ff0f5a00", 0, 0 },
	{ "negative zero digits are 0n, not -0n",
	    "ff0f5a110000000000000000", "ff0f5a00", 0, 0 },
	{ "padding before Z", "ff0f00005a107b00000000000000",
	    "ff0f5a107b00000000000000", 1, 1 },
};

/*
 * Bigint additions, all computed by V8 (a, b, a + b, and a < b ? -1 :
 * a > b ? 1 : 0), version 15 so the sums are byte-exact encoder output.
 */
static const struct {
	const char	*name;
	const char	*a, *b, *sum;
	int		 cmp;
} adds[] = {
	{ "1+1",
	    "ff0f5a100100000000000000",
	    "ff0f5a100100000000000000",
	    "ff0f5a100200000000000000", 0 },
	{ "0+0",
	    "ff0f5a00",
	    "ff0f5a00",
	    "ff0f5a00", 0 },
	{ "0+-7",
	    "ff0f5a00",
	    "ff0f5a110700000000000000",
	    "ff0f5a110700000000000000", 1 },
	{ "-7+0",
	    "ff0f5a110700000000000000",
	    "ff0f5a00",
	    "ff0f5a110700000000000000", -1 },
	{ "carry one digit",
	    "ff0f5a10ffffffffffffffff",
	    "ff0f5a100100000000000000",
	    "ff0f5a2000000000000000000100000000000000", 1 },
	{ "carry two digits",
	    "ff0f5a20ffffffffffffffffffffffffffffffff",
	    "ff0f5a100100000000000000",
	    "ff0f5a30000000000000000000000000000000000100000000000000", 1 },
	{ "carry both big",
	    "ff0f5a10ffffffffffffffff",
	    "ff0f5a10ffffffffffffffff",
	    "ff0f5a20feffffffffffffff0100000000000000", 0 },
	{ "neg carry",
	    "ff0f5a11ffffffffffffffff",
	    "ff0f5a110100000000000000",
	    "ff0f5a2100000000000000000100000000000000", -1 },
	{ "borrow shrinks",
	    "ff0f5a2100000000000000000100000000000000",
	    "ff0f5a100100000000000000",
	    "ff0f5a11ffffffffffffffff", -1 },
	{ "borrow three digits",
	    "ff0f5a400000000000000000000000000000000000000000000000000100000000000000",
	    "ff0f5a110100000000000000",
	    "ff0f5a30ffffffffffffffffffffffffffffffffffffffffffffffff", 1 },
	{ "x + -x = 0",
	    "ff0f5a100500000000000000",
	    "ff0f5a110500000000000000",
	    "ff0f5a00", 1 },
	{ "-x + x = 0 multi",
	    "ff0f5a31070000000000000000000000000000000400000000000000",
	    "ff0f5a30070000000000000000000000000000000400000000000000",
	    "ff0f5a00", -1 },
	{ "neg+pos cross zero",
	    "ff0f5a110300000000000000",
	    "ff0f5a100500000000000000",
	    "ff0f5a100200000000000000", -1 },
	{ "pos+neg cross zero",
	    "ff0f5a100300000000000000",
	    "ff0f5a110500000000000000",
	    "ff0f5a110200000000000000", 1 },
	{ "near-equal multi",
	    "ff0f5a31070000000000000000000000000000000400000000000000",
	    "ff0f5a30090000000000000000000000000000000400000000000000",
	    "ff0f5a100200000000000000", -1 },
	{ "near-equal multi neg",
	    "ff0f5a30070000000000000000000000000000000400000000000000",
	    "ff0f5a31090000000000000000000000000000000400000000000000",
	    "ff0f5a110200000000000000", 1 },
	{ "high digit cancels",
	    "ff0f5a400500000000000000000000000000000000000000000000000001000000000000",
	    "ff0f5a410000000000000000000000000000000000000000000000000001000000000000",
	    "ff0f5a100500000000000000", 1 },
	{ "int64 edge",
	    "ff0f5a100000000000000080",
	    "ff0f5a100000000000000080",
	    "ff0f5a2000000000000000000100000000000000", 0 },
	{ "neg big + small",
	    "ff0f5a5100000000000000000000000000000000000000000000000000000000000000000000000000100000",
	    "ff0f5a103930000000000000",
	    "ff0f5a51c7cfffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff0f0000", -1 },
	{ "random 1",
	    "ff0f5a8001519b4c9d97038bf73569784a8b8a974179a39f5f5ff3b1ef1d9b79271333884c21f98ed5a7f6274185fe13ef1be3d94b49c428336fd53a5c6d7b8fdea3220300",
	    "ff0f5a507d6c7b3df3edd2348153766087bec4fde57949f5fbaf943fa938cd234fdf509dcd00322a83010000",
	    "ff0f5a8001ce07c8da8af15d2cb7bceeaa12495c3f5f1de9545ba3462fc7d3464b6212d9e9eef9c0ff2af8274185fe13ef1be3d94b49c428336fd53a5c6d7b8fdea3220300", 1 },
	{ "random 2",
	    "ff0f5ab1011180736057839f78f50f94da4b94527f39bc1df81ff7e93cdd55c43fd32032f0e10599b4673e9330458d0439db748cf30985271c2f216dee2d9eb0f563189c3eb1e1b8b177e73c8695f0b5cf6b138362d94312bd3f59830c",
	    "ff0f5ab001057ce32c9be66ad8c9a5154eef4c3064ed209ab223ee821e7176c2e537d750d855c768402b0df4b4990ca8f4ffcca32c3d574a3ab3cbb30841107d2347767105a538dbd2bb31efcc69a95d410f9b8dd98d5341dc43c7920e",
	    "ff0f5ab001f4fb6fcc4363cb5fd4958173a3b8dde4b3647cba03f798e19320fea564b61ee873c1cf8bc3ce6084547fa3bb2458173933d2221e84aa461a1372cc2de35dd5c6f3562221444ab246d4b8a771a3870a77b40f2f1f046e0f02", -1 },
	{ "random 3",
	    "ff0f5a8002c5ca60a15b38e53d89262334af587417ad03fce0e3a307a3316bb5d8f7a6971715fecdd9ebe6e433593551fdbf2089d2fda165377389d676012d211b070e55a66557b3627b932daa297a75f2cf3653ef4d06f1e6038dba8bd1c46b1b17e36e52b5160ad80b7ed537f934175cdfdaee729d70832293eee5a7a172286c27000000",
	    "ff0f5a810285792c851b6a6bdf490780916f44291a6d4686e4a3399ab0f1bfc17ab7560117d5949524aba0c55c19be3d247f5423a2bd4c7d923327ab05c1a99221c7855f0525d681873bd5bfd6e9aa44ce8fb291940d19f161c332b83091696552d722e9bb757d8a3fcb4790acb90dbc2c9f9eb0395deb6661539c137e613f6dea67000000",
	    "ff0f5a8102c0aecbe3bf3186a1c0e05c5dc0ebb402c0428a03c095920dc0540ca2bfaf69ffbf96c74abfb9e028c088ec26bf339acfbfaa175bc09dd48ebf7c7106c0770a5fbf7ece24c041922cc030cfdbbf7b3ea5bf12007bbfa5fda4bfa4f936c03f7a69c0668067bfc9ba74c0d8a4d0bfc3c1c6bf7ae33ec0ad2dd6bfcc447e40000000", 1 },
	{ "random 4",
	    "ff0f5aa1017d574141f3a4a133818601e987dd807fe5b4f63bfbf615caa93bfbc34f0e3937cd8bf1fc83b8fb2d516e90619742fe233544c5258bf1f29679463c635f421ff11dc61e26132a2b75216c97f5a7550ec1",
	    "ff0f5ac102edebd3f12305a9d07189e6c43756fdb955e20b692bb416fa99efa0b9ff5b36663dc261d1b3022a7741c39dfb4715a9a9a5f3c192bbf89f73692cc91a0f4a39fd8d5ea2ff431ef55b11d31c7d57429e31f56a6ab74b7b6d2839dfc7501fc62ab1dd005b32d3979c87e1f8d62b671d15b54588f6dedb7b6df009485c812f103f362de9e8b863afaa23b174179477e67de1958b6fc16b3a0625d9a69d0e3f6862d7",
	    "ff0f5ac1026a43153317aa4a04f30fe8adbf337e393b9702a526ab2cc4432b9c7d4f6a6f9d0a4e53ce37bb25a592312e5ddf57a7cdda3787b846ea920ae372057e6e8c58eeab24c125574820d1323fb472ff97acf2f56a6ab74b7b6d2839dfc7501fc62ab1dd005b32d3979c87e1f8d62b671d15b54588f6dedb7b6df009485c812f103f362de9e8b863afaa23b174179477e67de1958b6fc16b3a0625d9a69d0e3f6862d7", 1 },
	{ "random 5",
	    "ff0f5a10c9e8e776efbba5ed",
	    "ff0f5a91025b3fa58689e9523daf474d7aad4ef7bae33a058431fe5e85f7a56f1b15991aeceb0d67c15998777abf2f8ffafd8c8e687340b43e016097bb072dc850659293b67bdacd3a297dde71cf6582c44d91b3490364148bd1973ab11722b9c3b5f129390be56f0af9d78e9edf29c3499d9bcbdf93e5d7a7a1e55b0327c59a5805f76ecd1b00000000000000",
	    "ff0f5a91029256bd0f9a2dad4fae474d7aad4ef7bae33a058431fe5e85f7a56f1b15991aeceb0d67c15998777abf2f8ffafd8c8e687340b43e016097bb072dc850659293b67bdacd3a297dde71cf6582c44d91b3490364148bd1973ab11722b9c3b5f129390be56f0af9d78e9edf29c3499d9bcbdf93e5d7a7a1e55b0327c59a5805f76ecd1b00000000000000", 1 },
};

/* Well-formed V8 values that are not numbers or bigints. */
static const struct {
	const char	*name;
	const char	*hex;
} unsupported[] = {
	{ "one-byte string \"a\"",	"ff0f220161" },
	{ "two-byte string",		"ff0f63023412" },
	{ "true",			"ff0f54" },
	{ "false",			"ff0f46" },
	{ "null",			"ff0f30" },
	{ "undefined",			"ff0f5f" },
	{ "empty object",		"ff0f6f7b00" },
	{ "empty array",		"ff0f4100240000" },
	{ "Number object (n)",		"ff0f6e000000000000f03f" },
	{ "BigInt object (z)",		"ff0f7a100100000000000000" },
	{ "Date",			"ff0f440000000000000000" },
	{ "Map",			"ff0f3b3a00" },
	{ "unknown tag 0x01",		"ff0f01" },
	{ "a second version tag",	"ff0fff0f4902" },
};

/* Garbled inputs that are not truncations of a valid vector. */
static const struct {
	const char	*name;
	const char	*hex;
} malformed[] = {
	{ "no header (V8 version 0)",		"4902" },
	{ "padding before the header",		"00ff0f4902" },
	{ "version 12",				"ff0c4902" },
	{ "version 0",				"ff004902" },
	{ "6-byte version varint",		"ff8f808080800f4902" },
	{ "6-byte int32 varint",		"ff0f49808080808001" },
	{ "6-byte uint32 varint",		"ff0f55ffffffffff01" },
	{ "6-byte bigint bitfield",		"ff0f5a808080808000" },
	{ "-0n (sign with no digits)",		"ff0f5a01" },
	{ "bigint length beyond input",		"ff0f5a107b" },
	{ "bigint 2^30-byte length",		"ff0f5a80808080087b" },
	{ "only padding after header",		"ff0f0000" },
	{ "object count with no value",		"ff0f3f03" },
	{ "trailing padding",			"ff0f490200" },
	{ "two values",				"ff0f49024902" },
};

static void
test_numbers(void)
{
	struct v8s_value	v;
	enum v8s_result		rv;
	size_t			i;

	for (i = 0; i < sizeof(numbers) / sizeof(numbers[0]); i++) {
		rv = dec_hex(numbers[i].hex, &v);
		ok(rv == V8S_OK && v.kind == V8S_NUMBER &&
		    same_double(v.num, numbers[i].want),
		    "decode %s", numbers[i].name);
		v8s_fini(&v);
	}
}

static void
test_bigints(void)
{
	struct v8s_value	v, zero;
	enum v8s_result		rv;
	size_t			i;
	int			sign;

	memset(&zero, 0, sizeof(zero));
	zero.kind = V8S_BIGINT;
	for (i = 0; i < sizeof(bigints) / sizeof(bigints[0]); i++) {
		rv = dec_hex(bigints[i].hex, &v);
		sign = rv == V8S_OK ? v8s_cmp(&v, &zero) : 99;
		ok(rv == V8S_OK && v.kind == V8S_BIGINT &&
		    v.ndigits == bigints[i].ndigits &&
		    (v.ndigits == 0 || v.digits[v.ndigits - 1] != 0) &&
		    (v.ndigits > 0 || (v.digits == NULL && v.neg == 0)) &&
		    (sign > 0) - (sign < 0) == bigints[i].sign,
		    "decode %s", bigints[i].name);
		ok(rv == V8S_OK && enc_is(&v, bigints[i].canon),
		    "encode %s as V8 does", bigints[i].name);
		v8s_fini(&v);
	}

	/* A few exact digit checks, beyond what re-encoding shows. */
	rv = dec_hex("ff0f5a12010000000000000001", &v);
	ok(rv == V8S_OK && v.ndigits == 2 && v.digits[0] == 1 &&
	    v.digits[1] == 1 && v.neg == 0, "digits of 2^64+1 from 9 bytes");
	v8s_fini(&v);
	rv = dec_hex("ff0f5a20efcdab8967452301fedcba9876543210", &v);
	ok(rv == V8S_OK && v.ndigits == 2 &&
	    v.digits[0] == UINT64_C(0x0123456789abcdef) &&
	    v.digits[1] == UINT64_C(0x1032547698badcfe),
	    "digits are little-endian 64-bit words");
	v8s_fini(&v);
}

/* Every strict prefix of a valid encoding is truncated, hence malformed. */
static void
test_truncations(void)
{
	const char		*all[128];
	struct v8s_value	 v;
	uint8_t			 buf[MAXBUF];
	size_t			 n, len, i, nall = 0, bad = 0, checked = 0;
	enum v8s_result		 rv;

	for (i = 0; i < sizeof(numbers) / sizeof(numbers[0]); i++)
		all[nall++] = numbers[i].hex;
	for (i = 0; i < sizeof(bigints) / sizeof(bigints[0]); i++)
		all[nall++] = bigints[i].hex;
	for (i = 0; i < sizeof(adds) / sizeof(adds[0]); i++) {
		all[nall++] = adds[i].a;
		all[nall++] = adds[i].sum;
	}

	for (i = 0; i < nall; i++) {
		len = unhex(all[i], buf);
		for (n = 0; n < len; n++) {
			/* Copy, so ASan sees a read past the prefix. */
			uint8_t	*p = malloc(n > 0 ? n : 1);

			if (p == NULL)
				exit(2);
			memcpy(p, buf, n);
			memset(&v, 0, sizeof(v));
			rv = v8s_decode(p, n, &v);
			checked++;
			if (rv != V8S_MALFORMED) {
				diag("%s cut at %zu: %d", all[i], n, rv);
				bad++;
				if (rv == V8S_OK)
					v8s_fini(&v);
			}
			free(p);
		}
	}
	ok(bad == 0, "all %zu prefixes of %zu valid encodings are malformed",
	    checked, nall);

	/* And one byte more than the value is malformed too. */
	bad = 0;
	for (i = 0; i < nall; i++) {
		len = unhex(all[i], buf);
		buf[len] = 0x01;
		rv = v8s_decode(buf, len + 1, &v);
		if (rv != V8S_MALFORMED) {
			diag("%s + 01: %d", all[i], rv);
			bad++;
			if (rv == V8S_OK)
				v8s_fini(&v);
		}
	}
	ok(bad == 0, "a trailing byte after each of %zu encodings is malformed",
	    nall);

	ok(v8s_decode(NULL, 0, &v) == V8S_MALFORMED, "NULL input is malformed");
	ok(v8s_decode(buf, 0, &v) == V8S_MALFORMED, "empty input is malformed");
}

static void
test_rejects(void)
{
	struct v8s_value	v;
	enum v8s_result		rv;
	size_t			i;

	for (i = 0; i < sizeof(unsupported) / sizeof(unsupported[0]); i++) {
		rv = dec_hex(unsupported[i].hex, &v);
		ok(rv == V8S_UNSUPPORTED, "unsupported: %s", unsupported[i].name);
	}
	for (i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++) {
		rv = dec_hex(malformed[i].hex, &v);
		ok(rv == V8S_MALFORMED, "malformed: %s", malformed[i].name);
	}
}

/* Build 'Z' with an explicit byte length, all 0xff, to probe the size bound. */
static uint8_t *
big_encoding(uint32_t bytelen, int neg, size_t *len)
{
	uint8_t		*p, *q;
	uint32_t	 bf = (bytelen << 1) | (neg ? 1 : 0);

	if ((p = malloc(8 + (size_t)bytelen)) == NULL)
		exit(2);
	q = p;
	*q++ = 0xff;
	*q++ = 0x0f;
	*q++ = 'Z';
	while (bf >= 0x80) {
		*q++ = (bf & 0x7f) | 0x80;
		bf >>= 7;
	}
	*q++ = bf;
	memset(q, 0xff, bytelen);
	*len = (size_t)(q - p) + bytelen;
	return p;
}

static void
test_size_bound(void)
{
	struct v8s_value	v, one, r;
	uint8_t			*p, *out;
	size_t			len, outlen, i;
	enum v8s_result		rv;
	int			allff = 1;

	p = big_encoding(65536, 0, &len);
	memset(&v, 0, sizeof(v));
	rv = v8s_decode(p, len, &v);
	ok(rv == V8S_OK && v.ndigits == 8192, "a 65536-byte bigint decodes");
	for (i = 0; rv == V8S_OK && i < v.ndigits; i++)
		allff &= v.digits[i] == UINT64_MAX;
	ok(rv == V8S_OK && allff, "its 8192 digits are all ones");

	/* And it encodes back to the very same bytes. */
	if ((out = malloc(v8s_encoded_max(&v))) == NULL)
		exit(2);
	rv = v8s_encode(&v, out, v8s_encoded_max(&v), &outlen);
	ok(rv == V8S_OK && outlen == len && memcmp(out, p, len) == 0,
	    "a 65536-byte bigint re-encodes byte for byte");
	free(out);
	free(p);

	/* Adding 1 would need digit 8193: refused, not silently kept. */
	rv = dec_hex("ff0f5a100100000000000000", &one);
	memset(&r, 0, sizeof(r));
	ok(rv == V8S_OK && v8s_add(&v, &one, &r) == V8S_UNSUPPORTED &&
	    r.digits == NULL, "a sum past 65536 bytes is unsupported");
	one.neg = 1;
	rv = v8s_add(&v, &one, &r);
	ok(rv == V8S_OK && r.ndigits == 8192 &&
	    r.digits[0] == UINT64_MAX - 1, "max - 1 at the bound still works");
	v8s_fini(&r);
	v8s_fini(&one);
	v8s_fini(&v);

	p = big_encoding(65537, 0, &len);
	ok(v8s_decode(p, len, &v) == V8S_UNSUPPORTED,
	    "a 65537-byte bigint is unsupported");
	free(p);
	p = big_encoding(65537, 1, &len);
	ok(v8s_decode(p, len, &v) == V8S_UNSUPPORTED,
	    "a negative 65537-byte bigint is unsupported");
	ok(v8s_decode(p, len - 1, &v) == V8S_MALFORMED,
	    "a truncated 65537-byte bigint is malformed");
	free(p);
}

static void
test_encode(void)
{
	struct v8s_value	v;
	uint8_t			buf[64];
	size_t			n;
	uint64_t		digits[3] = { 5, 0, 0 };

	memset(&v, 0, sizeof(v));
	v.kind = V8S_NUMBER;

	/* Integral numbers too are written as V8 writes heap numbers, 'N'. */
	v.num = 123;
	ok(enc_is(&v, "ff0f4e0000000000c05e40"), "encode 123 as a double");
	v.num = -5;
	ok(enc_is(&v, "ff0f4e00000000000014c0"), "encode -5 as a double");
	v.num = 1.5;
	ok(enc_is(&v, "ff0f4e000000000000f83f"), "encode 1.5");
	v.num = -0.0;
	ok(enc_is(&v, "ff0f4e0000000000000080"), "encode -0 keeps the sign");
	v.num = 4294967296.0;
	ok(enc_is(&v, "ff0f4e000000000000f041"), "encode 2^32");
	v.num = 1e300;
	ok(enc_is(&v, "ff0f4e9c7500883ce4377e"), "encode 1e300");
	v.num = INFINITY;
	ok(enc_is(&v, "ff0f4e000000000000f07f"), "encode Infinity");
	v.num = -INFINITY;
	ok(enc_is(&v, "ff0f4e000000000000f0ff"), "encode -Infinity");
	v.num = -NAN;
	ok(enc_is(&v, "ff0f4e000000000000f87f"), "encode any NaN as V8's NaN");

	v.num = 1.5;
	ok(v8s_encoded_max(&v) == 11, "encoded_max of a number is 11");
	ok(v8s_encode(&v, buf, 10, &n) == V8S_NOROOM && n == 11,
	    "number: one byte short is NOROOM and says 11");
	ok(v8s_encode(&v, buf, 0, &n) == V8S_NOROOM, "number: no room at all");
	ok(v8s_encode(&v, buf, 11, &n) == V8S_OK && n == 11,
	    "number: exactly enough room");

	/* A caller-built bigint with high zero digits and a sign on zero. */
	memset(&v, 0, sizeof(v));
	v.kind = V8S_BIGINT;
	v.digits = digits;
	v.ndigits = 3;
	ok(enc_is(&v, "ff0f5a100500000000000000"),
	    "encode drops high zero digits");
	ok(v8s_encoded_max(&v) >= 12, "encoded_max covers it");
	ok(v8s_encode(&v, buf, 11, &n) == V8S_NOROOM && n == 12,
	    "bigint: one byte short is NOROOM");
	digits[0] = 0;
	v.neg = 1;
	ok(enc_is(&v, "ff0f5a00"), "encode a signed zero as 0n");
	v.ndigits = 0;
	v.digits = NULL;
	ok(enc_is(&v, "ff0f5a00"), "encode the zero bigint");
	ok(v8s_encode(&v, buf, 3, &n) == V8S_NOROOM &&
	    v8s_encode(&v, buf, 4, &n) == V8S_OK && n == 4,
	    "zero bigint needs exactly 4 bytes");
}

static void
test_adds(void)
{
	struct v8s_value	a, b, r, r2;
	size_t			i;
	int			okd;

	for (i = 0; i < sizeof(adds) / sizeof(adds[0]); i++) {
		okd = dec_hex(adds[i].a, &a) == V8S_OK &&
		    dec_hex(adds[i].b, &b) == V8S_OK;
		memset(&r, 0, sizeof(r));
		memset(&r2, 0, sizeof(r2));
		ok(okd && v8s_add(&a, &b, &r) == V8S_OK &&
		    enc_is(&r, adds[i].sum), "add: %s", adds[i].name);
		ok(okd && v8s_add(&b, &a, &r2) == V8S_OK &&
		    v8s_cmp(&r, &r2) == 0 && enc_is(&r2, adds[i].sum),
		    "add commutes: %s", adds[i].name);
		ok(okd && v8s_cmp(&a, &b) == adds[i].cmp &&
		    v8s_cmp(&b, &a) == -adds[i].cmp && v8s_cmp(&a, &a) == 0,
		    "cmp: %s", adds[i].name);
		v8s_fini(&r2);
		/* As an accumulator: a = a + b, without leaking a's digits. */
		ok(okd && v8s_add(&a, &b, &a) == V8S_OK &&
		    v8s_cmp(&a, &r) == 0, "add in place: %s", adds[i].name);
		v8s_fini(&r);
		v8s_fini(&a);
		v8s_fini(&b);
	}

	/* x + x in place, with both operands the output. */
	dec_hex("ff0f5a10ffffffffffffffff", &a);
	ok(v8s_add(&a, &a, &a) == V8S_OK &&
	    enc_is(&a, "ff0f5a20feffffffffffffff0100000000000000"),
	    "a = a + a");
	v8s_fini(&a);
}

static void
test_number_math(void)
{
	struct v8s_value	a, b, r;

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	a.kind = b.kind = V8S_NUMBER;

	a.num = 1.5;
	b.num = 2.25;
	ok(v8s_add(&a, &b, &r) == V8S_OK && r.kind == V8S_NUMBER &&
	    r.num == 3.75 && r.digits == NULL, "1.5 + 2.25");
	a.num = 0.1;
	b.num = 0.2;
	ok(v8s_add(&a, &b, &r) == V8S_OK && r.num == 0.1 + 0.2 &&
	    enc_is(&r, "ff0f4e343333333333d33f"),
	    "0.1 + 0.2 is 0.30000000000000004, as in JS");
	a.num = INFINITY;
	b.num = -INFINITY;
	ok(v8s_add(&a, &b, &r) == V8S_OK && isnan(r.num),
	    "Infinity + -Infinity is NaN");
	a.num = 9007199254740992.0;
	b.num = 1;
	ok(v8s_add(&a, &b, &r) == V8S_OK && r.num == 9007199254740992.0,
	    "2^53 + 1 rounds like a double");
	a.num = -0.0;
	b.num = -0.0;
	ok(v8s_add(&a, &b, &r) == V8S_OK && signbit(r.num),
	    "-0 + -0 is -0");
	a.num = 5;
	ok(v8s_add(&a, &a, &a) == V8S_OK && a.num == 10, "a = a + a (number)");

	a.num = 1;
	b.num = 2;
	ok(v8s_cmp(&a, &b) < 0 && v8s_cmp(&b, &a) > 0 && v8s_cmp(&a, &a) == 0,
	    "cmp numbers");
	a.num = -0.0;
	b.num = 0.0;
	ok(v8s_cmp(&a, &b) == 0, "cmp -0 == 0");
	a.num = -INFINITY;
	b.num = -1e308;
	ok(v8s_cmp(&a, &b) < 0, "cmp -Infinity < -1e308");
	a.num = NAN;
	b.num = 1;
	ok(v8s_cmp(&a, &b) == 0 && v8s_cmp(&b, &a) == 0,
	    "cmp NaN is neither less nor greater (documented)");
}

static void
test_bigint_cmp(void)
{
	static const char *order[] = {	/* ascending */
		"ff0f5a2100000000000000000100000000000000",	/* -(2^64) */
		"ff0f5a11ffffffffffffffff",			/* -(2^64-1) */
		"ff0f5a110200000000000000",			/* -2 */
		"ff0f5a110100000000000000",			/* -1 */
		"ff0f5a00",					/* 0 */
		"ff0f5a100100000000000000",			/* 1 */
		"ff0f5a10ffffffffffffffff",			/* 2^64-1 */
		"ff0f5a2000000000000000000100000000000000",	/* 2^64 */
		"ff0f5a2001000000000000000100000000000000",	/* 2^64+1 */
		"ff0f5a2000000000000000000200000000000000",	/* 2^65 */
	};
	struct v8s_value	a, b;
	size_t			i, j, n = sizeof(order) / sizeof(order[0]);
	int			bad = 0, want, got;

	for (i = 0; i < n; i++) {
		for (j = 0; j < n; j++) {
			dec_hex(order[i], &a);
			dec_hex(order[j], &b);
			want = (i > j) - (i < j);
			got = v8s_cmp(&a, &b);
			if ((got > 0) - (got < 0) != want)
				bad++;
			v8s_fini(&a);
			v8s_fini(&b);
		}
	}
	ok(bad == 0, "cmp orders %zu bigints pairwise", n);
}

static void
test_copy_fini(void)
{
	struct v8s_value	a, c, z;

	dec_hex("ff0f5a31070000000000000000000000000000000400000000000000",
	    &a);
	ok(v8s_copy(&a, &c) == V8S_OK && c.digits != a.digits &&
	    c.ndigits == 3 && c.neg == 1 && v8s_cmp(&a, &c) == 0,
	    "copy is deep and equal");
	a.digits[0] = 8;
	ok(c.digits[0] == 7, "changing the source leaves the copy");
	v8s_fini(&a);
	ok(a.digits == NULL && a.ndigits == 0, "fini clears the value");
	ok(enc_is(&c, "ff0f5a31070000000000000000000000000000000400000000000000"),
	    "the copy outlives its source");
	v8s_fini(&c);

	dec_hex("ff0f5a00", &a);
	ok(v8s_copy(&a, &c) == V8S_OK && c.kind == V8S_BIGINT &&
	    c.ndigits == 0 && c.digits == NULL, "copy of 0n allocates nothing");
	v8s_fini(&c);
	dec_hex("ff0f4e000000000000f83f", &a);
	ok(v8s_copy(&a, &c) == V8S_OK && c.kind == V8S_NUMBER &&
	    c.num == 1.5, "copy of a number");
	v8s_fini(&c);

	/* A freed value is zeroed, so a second fini frees nothing twice. */
	dec_hex("ff0f5a31070000000000000000000000000000000400000000000000",
	    &a);
	v8s_fini(&a);
	v8s_fini(&a);
	memset(&z, 0, sizeof(z));
	ok(memcmp(&a, &z, sizeof(z)) == 0,
	    "fini twice on a decoded bigint leaves it all zero");
	v8s_fini(&z);
	v8s_fini(NULL);
	memset(&c, 0, sizeof(c));
	ok(memcmp(&z, &c, sizeof(c)) == 0,
	    "fini on a zeroed value, and on NULL, changes nothing");
}

/* xorshift64*: deterministic, so failures reproduce. */
static uint64_t
rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * UINT64_C(2685821657736338717);
}

/* Random bigints biased to the digit values that break carries and borrows. */
static void
rnd_bigint(uint64_t *s, struct v8s_value *v, uint64_t *store)
{
	static const uint64_t	edge[] = { 0, 1, UINT64_MAX, UINT64_MAX - 1,
	    UINT64_C(1) << 63 };
	size_t			i, n = rnd(s) % 5;
	uint64_t		r;

	memset(v, 0, sizeof(*v));
	v->kind = V8S_BIGINT;
	for (i = 0; i < n; i++) {
		r = rnd(s);
		store[i] = (r & 3) ? edge[(r >> 2) % 5] : rnd(s);
	}
	while (n > 0 && store[n - 1] == 0)
		n--;
	v->ndigits = n;
	v->digits = n > 0 ? store : NULL;
	v->neg = n > 0 && (rnd(s) & 1);
}

/*
 * Algebra over many random operands: (a + b) + -b == a, a + b == b + a,
 * and cmp(a + b, a) has the sign of b, and every result is canonical.
 */
static void
test_random(void)
{
	struct v8s_value	a, b, nb, s, back;
	uint64_t		da[8], db[8], seed = UINT64_C(0x9e3779b97f4a7c15);
	int			i, bad = 0, c, sb;

	for (i = 0; i < 20000; i++) {
		rnd_bigint(&seed, &a, da);
		rnd_bigint(&seed, &b, db);
		nb = b;
		nb.neg = b.ndigits > 0 && !b.neg;
		memset(&s, 0, sizeof(s));
		memset(&back, 0, sizeof(back));
		if (v8s_add(&a, &b, &s) != V8S_OK ||
		    v8s_add(&s, &nb, &back) != V8S_OK) {
			bad++;
			continue;
		}
		if (v8s_cmp(&back, &a) != 0 || back.ndigits != a.ndigits)
			bad++;
		if (s.ndigits > 0 && s.digits[s.ndigits - 1] == 0)
			bad++;
		if (s.ndigits == 0 && (s.neg || s.digits != NULL))
			bad++;
		c = v8s_cmp(&s, &a);
		sb = b.ndigits == 0 ? 0 : b.neg ? -1 : 1;
		if ((c > 0) - (c < 0) != sb)
			bad++;
		v8s_fini(&back);
		if (v8s_add(&b, &a, &back) != V8S_OK ||
		    v8s_cmp(&back, &s) != 0)
			bad++;
		v8s_fini(&back);
		v8s_fini(&s);
	}
	ok(bad == 0, "20000 random bigint sums: inverse, commutative, "
	    "ordered, canonical");
}

int
main(void)
{
	test_numbers();
	test_bigints();
	test_truncations();
	test_rejects();
	test_size_bound();
	test_encode();
	test_adds();
	test_number_math();
	test_bigint_cmp();
	test_copy_fini();
	test_random();

	printf("1..%d\n", ntests);
	if (nfailed > 0)
		diag("%d of %d tests failed", nfailed, ntests);
	return nfailed > 0 ? 1 : 0;
}
