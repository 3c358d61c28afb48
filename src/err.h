/*
 * err: the one space of result codes of the server. Each code has an HTTP
 * status and a one-line message the KV Connect client shows its user, kept
 * together in the table below (like sqlite3ErrStr). Protocol outcomes are
 * not errors: a failed check is a 200 with AW_CHECK_FAILURE.
 *
 * 5xx is reserved for conditions that are not the client's doing: KV
 * Connect clients retry a 5xx for ever, so a 5xx for a bad request would
 * hang the user's program. 503 says "busy, this passes by itself"; 507
 * (disk full) and 500 (a damaged file, an I/O error, an unwritable file)
 * say "the operator must act" and are logged and shown in STATUS=; the
 * client's retries then succeed once the operator has, without a restart.
 * A file the server cannot write is a 500, not a 4xx: the request is
 * valid and will succeed as it is once the file is fixed, and a 4xx would
 * make the client drop a valid write.
 */
#ifndef DENOKV_ERR_H
#define DENOKV_ERR_H

/* X(code, http status, message) */
#define KV_ERR_TABLE(X) \
	X(KV_OK, 200, "OK") \
	/* transport and routing */ \
	X(KV_ERR_NOT_FOUND, 404, "Resource not found.") \
	X(KV_ERR_NO_MOUNT, 404, "No database is mounted at this path.") \
	X(KV_ERR_METHOD, 405, "Method not allowed: KV Connect requests are POST.") \
	X(KV_ERR_BODY_TOO_LARGE, 413, "Request body too large.") \
	X(KV_ERR_BAD_CONTENT_LENGTH, 400, "Invalid or missing Content-Length.") \
	X(KV_ERR_BODY_READ, 400, "The request body ended early.") \
	/* authentication and headers */ \
	X(KV_ERR_AUTH_MALFORMED, 401, "Malformed authorization header.") \
	X(KV_ERR_AUTH_INVALID, 401, "Invalid access token.") \
	X(KV_ERR_TOKEN_EXPIRED, 401, "The access token has expired.") \
	X(KV_ERR_TOKEN_READ_ONLY, 403, "Refused: this token is read-only.") \
	X(KV_ERR_DATABASE_ID, 400, "Invalid database id.") \
	X(KV_ERR_PROTOCOL_VERSION, 400, "Expected protocol version 2 or 3 in x-denokv-version.") \
	/* metadata exchange */ \
	X(KV_ERR_METADATA_BODY, 400, "The metadata exchange body must be JSON like {\"supportedVersions\":[2,3]}.") \
	X(KV_ERR_MIN_PROTOCOL_VERSION, 400, "The server requires at least protocol version 2. Use Deno 1.38.0 or newer.") \
	X(KV_ERR_NO_PROTOCOL_VERSION, 400, "The server could not negotiate a protocol version. The server requires protocol version 2 or 3.") \
	/* request validation */ \
	X(KV_ERR_BAD_PROTOBUF, 400, "Request protobuf is invalid.") \
	X(KV_ERR_KEY_TOO_LONG, 400, "A key exceeds the key size limit.") \
	X(KV_ERR_VALUE_TOO_LONG, 400, "A value exceeds the value size limit.") \
	X(KV_ERR_READ_RANGE_TOO_LARGE, 400, "The total number of entries requested across read ranges in the read request is too large.") \
	X(KV_ERR_WRITE_TOO_LARGE, 400, "The total size of the atomic write is too large.") \
	X(KV_ERR_TOO_MANY_RANGES, 400, "Too many read ranges requested in one read request.") \
	X(KV_ERR_TOO_MANY_WATCHED_KEYS, 400, "Too many keys watched in a single watch request.") \
	X(KV_ERR_TOO_MANY_CHECKS, 400, "Too many checks included in atomic write.") \
	X(KV_ERR_TOO_MANY_MUTATIONS, 400, "Too many mutations / enqueues included in atomic write.") \
	X(KV_ERR_TOO_MANY_UNDELIVERED_KEYS, 400, "Too many dead letter keys for a single queue message.") \
	X(KV_ERR_TOO_MANY_BACKOFF_INTERVALS, 400, "Too many backoff intervals for a single queue message.") \
	X(KV_ERR_BACKOFF_TOO_LARGE, 400, "A backoff interval exceeds the maximum allowed backoff interval.") \
	X(KV_ERR_INVALID_LIMIT, 400, "The read range limit of the snapshot read request is invalid.") \
	X(KV_ERR_INVALID_VERSIONSTAMP, 400, "Invalid versionstamp.") \
	X(KV_ERR_INVALID_MUTATION, 400, "Invalid mutation kind or arguments.") \
	X(KV_ERR_INVALID_EXPIRE_AT, 400, "Invalid mutation expire at.") \
	X(KV_ERR_INVALID_DEADLINE, 400, "Invalid mutation enqueue deadline.") \
	X(KV_ERR_UNKNOWN_ENCODING, 400, "The value encoding is unknown.") \
	X(KV_ERR_INVALID_VALUE, 400, "A KvU64 value must be exactly 8 bytes.") \
	/* mutation failures: the whole write is refused */ \
	X(KV_ERR_LE64_OPERAND, 400, "Failed to perform a sum/min/max mutation on a non-U64 operand.") \
	X(KV_ERR_LE64_TARGET, 400, "Failed to perform a sum/min/max mutation on a non-U64 value in the database.") \
	X(KV_ERR_SUM_INVALID_V8, 400, "Some of the parameters of the sum are not valid V8 numbers or bigints.") \
	X(KV_ERR_SUM_MINMAX_TYPE, 400, "Min/max parameters have different types than the operand.") \
	X(KV_ERR_SUM_TYPE_MISMATCH, 400, "Cannot sum values of different types.") \
	X(KV_ERR_SUM_U64_MINMAX, 400, "Cannot use min/max parameters with KvU64 operands.") \
	X(KV_ERR_SUM_OUT_OF_RANGE, 400, "The result of a Sum operation would exceed its range limit.") \
	X(KV_ERR_STORED_VALUE, 400, "A stored value has an unknown encoding.") \
	X(KV_ERR_READ_ONLY, 400, "This database is read only.") \
	/* transient: clients retry these */ \
	X(KV_ERR_BUSY, 503, "The database is busy, try again later.") \
	X(KV_ERR_NOMEM, 503, "The server is out of memory, try again later.") \
	X(KV_ERR_TOO_MANY_WATCHES, 503, "The server has too many open watches, try again later.") \
	/* per-database limits of the configuration file: the operator's */ \
	X(KV_ERR_SIZE_LIMIT, 507, "The write was not applied: database size limit reached (reads still work).") \
	X(KV_ERR_WATCH_LIMIT, 429, "This database has too many open watches.") \
	X(KV_ERR_STORAGE, 500, "The database reported an unexpected error; the server's log says which.") \
	X(KV_ERR_INTERNAL, 500, "An internal server error occurred.") \
	/* transient: the write waited its whole turn-wait limit (busy-timeout) */ \
	X(KV_ERR_WRITE_TIMEOUT, 503, "The database is busy: timed out waiting for a turn to write behind a slow write, try again later.") \
	/* storage faults: the operator must act; reads go on where they can */ \
	X(KV_ERR_DISK_FULL, 507, "The database or disk is full: the write was not applied (reads still work).") \
	X(KV_ERR_CORRUPT, 500, "The database file is damaged (SQLite reports it corrupt or not a database).") \
	X(KV_ERR_IO, 500, "The database file could not be read or written (an I/O error).") \
	X(KV_ERR_NOT_WRITABLE, 500, "The server cannot write its database file (permissions or a read-only file system): the write was not applied.") \
	/* transport, continued */ \
	X(KV_ERR_BODY_TIMEOUT, 408, "The request body did not arrive in time.") \
	X(KV_ERR_BAD_PATH, 400, "Invalid request path: it must start with / and contain no backslash, dot segment or encoded slash.") \
	/* queue delivery (docs/queues.md) */ \
	X(KV_ERR_QUEUE_REQUEST, 400, "Invalid queue request: the body must be a JSON object with only the documented fields, each in its range.") \
	X(KV_ERR_QUEUE_ID, 400, "Invalid queue lease id.") \
	X(KV_ERR_QUEUE_LEASE_NOT_HELD, 409, "This queue lease is not held: the message was finished, or its lease expired and it was delivered again.") \
	X(KV_ERR_QUEUE_LEASE_EXPIRED, 410, "This queue lease expired; the message will be delivered again.") \
	X(KV_ERR_TOO_MANY_POLLS, 503, "This server holds as many queue long polls as it can, try again later.")

enum kv_err {
#define KV_ERR_ENUM(code, status, msg) code,
	KV_ERR_TABLE(KV_ERR_ENUM)
#undef KV_ERR_ENUM
	KV_ERR__COUNT
};

/* The one-line message for a code; never NULL. */
const char	*kv_err_message(enum kv_err);
/* The HTTP status for a code. */
int		 kv_err_status(enum kv_err);
/* The code's name ("KV_ERR_BUSY"), for logs and tests. */
const char	*kv_err_name(enum kv_err);
/*
 * A storage fault: the storage engine has logged it already (at error
 * level, rate-limited) and counted it for STATUS=, so callers need not.
 */
int		 kv_err_is_fault(enum kv_err);

#endif
