/*
 * fuzz_fcgi_mux.c: libFuzzer target for the multiplexed model's FastCGI
 * record reader (fcgi_mux.c). The input is what a proxy sends on one
 * connection, fed in pieces whose sizes come from the input itself (its
 * first byte seeds them), with the clock stepping forward so that arrival
 * deadlines pass too. Every ready request is read as a handler would (its
 * parameters, its body) and answered; then the output must be well-formed
 * records. Any crash, leak or sanitizer report is a bug, and so is output
 * that is not a sequence of whole version-1 records. Build and run:
 * tests/fuzz/run.sh.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fcgi_mux.h"
#include "http.h"

int	LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t
cap_of(void *arg, struct fcgi_conn *c)
{
	(void)c;
	return *(const size_t *)arg;
}

/* The output holds whole records of version 1 only. */
static void
check_output(const struct fcgi_mux_conn *c)
{
	size_t	 off = c->out_off;

	while (off < c->out_len) {
		const uint8_t	*h = c->out + off;

		if (c->out_len - off < 8 || h[0] != 1)
			__builtin_trap();
		off += 8 + (size_t)(h[4] << 8 | h[5]) + h[6];
	}
	if (off != c->out_len)
		__builtin_trap();
}

/* What a handler does with a ready request: read it and answer it. */
static void
serve(struct fcgi_mux_conn *c, size_t cap, int64_t now)
{
	uint8_t		*body;
	size_t		 len;

	(void)http_param(&c->fc, "REQUEST_METHOD");
	(void)http_param(&c->fc, "CONTENT_LENGTH");
	if (fcgi_mux_body(c, cap, &body, &len) == KV_OK && len > 0 &&
	    body[len] != '\0')
		__builtin_trap();
	(void)fcgi_mux_stdout(c, "Status: 200 OK\r\n\r\n", 18, now);
	fcgi_mux_end_request(c, 0, now);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fcgi_mux_conn	 c;
	size_t			 cap, off = 0, piece;
	unsigned		 seed;
	int64_t			 now = 0;

	if (size < 2)
		return 0;
	seed = data[0];
	cap = (size_t)data[1] * 64;
	data += 2;
	size -= 2;
	fcgi_mux_conn_init(&c, -1, 1000, 1000, cap_of, &cap);
	while (off < size && !c.broken) {
		seed = seed * 1103515245u + 12345u;
		piece = 1 + (seed >> 16) % 300;
		if (piece > size - off)
			piece = size - off;
		if (fcgi_mux_input(&c, data + off, piece, now) != 0 &&
		    !c.broken)
			__builtin_trap();
		off += piece;
		now += (seed >> 8) % 200;
		fcgi_mux_check_arrival(&c, now);
		if (c.state == FCGI_MUX_READY && !c.broken)
			serve(&c, cap, now);
		check_output(&c);
		/* As the event loop does once a response is out. */
		c.out_off = c.out_len = 0;
	}
	fcgi_mux_conn_fini(&c);
	return 0;
}
