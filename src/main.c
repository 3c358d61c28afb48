/*
 * main.c: denokv-fcgi start-up: settings, listening socket, database,
 * then the serving loop.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "conf.h"
#include "listen.h"
#include "log.h"
#include "worker.h"

int
main(int argc, char **argv)
{
	struct conf	 conf;
	struct server	 srv;
	const char	*desc;
	char		 err[1024];
	int		 fd, rc;

	log_init("denokv-fcgi", LOG_LVL_INFO);
	switch (conf_parse(argc, argv, &conf, err, sizeof(err))) {
	case CONF_EXIT:
		return 0;
	case CONF_ERROR:
		fatalx("%s", err);
	case CONF_OK:
		break;
	}
	log_init("denokv-fcgi", conf.log_level);
	if ((fd = listen_open(&conf, &desc, err, sizeof(err))) < 0)
		fatalx("%s", err);
	if (server_init(&srv, &conf, fd, err, sizeof(err)) != 0)
		fatalx("cannot open database %s: %s", conf.sqlite_path, err);
	log_info("serving %sdatabase %s on %s", conf.read_only ?
	    "read-only " : "", conf.sqlite_path, desc);
	rc = worker_run(&srv);
	server_fini(&srv);
	return rc;
}
