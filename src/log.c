/*
 * log.c: stderr logging with sd-daemon priority prefixes (see log.h).
 * Each line is written with a single write(2) so that lines from several
 * processes sharing stderr do not interleave.
 *
 * The "<N>" prefix is for journald and other log collectors reading a
 * pipe; on a terminal it is noise, so it is left out when stderr is a tty
 * (unless JOURNAL_STREAM says journald is on the other end after all).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "log.h"

/* The process tag and level: globals by design (set once per process). */
static char		 log_tag[32] = "denokv-fcgi";
static enum log_level	 log_level = LOG_LVL_INFO;
/* -1 until the first line decides; inherited by forked children. */
static int		 log_prefixed = -1;

/* Whether lines carry the sd-daemon "<N>" priority prefix. */
static int
log_wants_prefix(void)
{
	if (log_prefixed < 0)
		log_prefixed = !isatty(STDERR_FILENO) ||
		    getenv("JOURNAL_STREAM") != NULL;
	return log_prefixed;
}

void
log_init(const char *tag, enum log_level level)
{
	log_settag(tag);
	log_level = level;
}

void
log_settag(const char *tag)
{
	snprintf(log_tag, sizeof(log_tag), "%s", tag);
}

int
log_parse_level(const char *name, enum log_level *out)
{
	static const struct {
		const char	*name;
		enum log_level	 level;
	} names[] = {
		{ "error", LOG_LVL_ERR },
		{ "warning", LOG_LVL_WARNING },
		{ "notice", LOG_LVL_NOTICE },
		{ "info", LOG_LVL_INFO },
		{ "debug", LOG_LVL_DEBUG },
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcasecmp(name, names[i].name) == 0) {
			*out = names[i].level;
			return 0;
		}
	}
	return -1;
}

static void
vlog(enum log_level level, int errnum, const char *fmt, va_list ap)
{
	char	 line[1024];
	int	 n, m;

	if (level > log_level)
		return;
	if (log_wants_prefix())
		n = snprintf(line, sizeof(line), "<%d>%s[%ld]: ", (int)level,
		    log_tag, (long)getpid());
	else
		n = snprintf(line, sizeof(line), "%s[%ld]: ", log_tag,
		    (long)getpid());
	if (n < 0)
		return;
	m = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	if (m < 0)
		return;
	n += m;
	if ((size_t)n >= sizeof(line) - 2)
		n = sizeof(line) - 2;
	if (errnum != 0) {
		m = snprintf(line + n, sizeof(line) - n, ": %s", strerror(errnum));
		if (m > 0)
			n += m;
		if ((size_t)n >= sizeof(line) - 2)
			n = sizeof(line) - 2;
	}
	line[n++] = '\n';
	/* Best effort: there is nowhere to report a failed log write. */
	if (write(STDERR_FILENO, line, n) < 0)
		return;
}

void
log_errorx(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vlog(LOG_LVL_ERR, 0, fmt, ap);
	va_end(ap);
}

void
log_warn(const char *fmt, ...)
{
	int	 saved = errno;
	va_list	 ap;

	va_start(ap, fmt);
	vlog(LOG_LVL_WARNING, saved, fmt, ap);
	va_end(ap);
	errno = saved;
}

void
log_warnx(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vlog(LOG_LVL_WARNING, 0, fmt, ap);
	va_end(ap);
}

void
log_info(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vlog(LOG_LVL_INFO, 0, fmt, ap);
	va_end(ap);
}

void
log_debug(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vlog(LOG_LVL_DEBUG, 0, fmt, ap);
	va_end(ap);
}

void
fatal(const char *fmt, ...)
{
	int	 saved = errno;
	va_list	 ap;

	va_start(ap, fmt);
	vlog(LOG_LVL_ERR, saved, fmt, ap);
	va_end(ap);
	exit(EXIT_NO_RESTART);
}

void
fatalx(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vlog(LOG_LVL_ERR, 0, fmt, ap);
	va_end(ap);
	exit(EXIT_NO_RESTART);
}
