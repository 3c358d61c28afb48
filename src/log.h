/*
 * log: one line per event on stderr, with an sd-daemon priority prefix
 * ("<3>") so journald keeps the level, and a process tag ("worker[1234]").
 * The OpenBSD daemon API: log_warn adds strerror(errno), log_warnx does not;
 * fatal/fatalx log and exit. Never log tokens, keys or values.
 */
#ifndef DENOKV_LOG_H
#define DENOKV_LOG_H

#include <stdarg.h>

enum log_level {
	LOG_LVL_ERR = 3,
	LOG_LVL_WARNING = 4,
	LOG_LVL_NOTICE = 5,
	LOG_LVL_INFO = 6,
	LOG_LVL_DEBUG = 7,
};

/* Exit status of a fatal start-up error: a supervisor must not respawn. */
#define EXIT_NO_RESTART	2

void	log_init(const char *tag, enum log_level level);
void	log_settag(const char *tag);
int	log_parse_level(const char *name, enum log_level *out);
/* An error the process survives or reports before exiting on its own. */
void	log_errorx(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_warn(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_warnx(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_info(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_debug(const char *, ...) __attribute__((format(printf, 1, 2)));
void	fatal(const char *, ...)
	    __attribute__((format(printf, 1, 2), noreturn));
void	fatalx(const char *, ...)
	    __attribute__((format(printf, 1, 2), noreturn));

#endif
