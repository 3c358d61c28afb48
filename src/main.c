/*
 * main.c: denokv-fcgi's entry point. Everything happens in the master,
 * which forks the workers and the housekeeper (master.c).
 */
#include "master.h"

int
main(int argc, char **argv)
{
	return master_main(argc, argv);
}
