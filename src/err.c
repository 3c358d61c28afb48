/*
 * err.c: maps each result code to its HTTP status, message and name, from
 * the single table in err.h.
 */
#include <stddef.h>

#include "err.h"

static const struct {
	const char	*name;
	int		 status;
	const char	*message;
} kv_err_info[KV_ERR__COUNT] = {
#define KV_ERR_ROW(code, st, msg) [code] = { #code, st, msg },
	KV_ERR_TABLE(KV_ERR_ROW)
#undef KV_ERR_ROW
};

static enum kv_err
clamp(enum kv_err e)
{
	return ((unsigned)e < KV_ERR__COUNT) ? e : KV_ERR_INTERNAL;
}

const char *
kv_err_message(enum kv_err e)
{
	return kv_err_info[clamp(e)].message;
}

int
kv_err_status(enum kv_err e)
{
	return kv_err_info[clamp(e)].status;
}

const char *
kv_err_name(enum kv_err e)
{
	return kv_err_info[clamp(e)].name;
}

int
kv_err_is_fault(enum kv_err e)
{
	switch (e) {
	case KV_ERR_STORAGE:
	case KV_ERR_DISK_FULL:
	case KV_ERR_CORRUPT:
	case KV_ERR_IO:
	case KV_ERR_NOT_WRITABLE:
		return 1;
	default:
		return 0;
	}
}
