#ifndef PYSTRIB_HOSTS_H
#define PYSTRIB_HOSTS_H

#include <stddef.h>

#include "buf.h"

/*
 * The hosts of one job over several hosts ([remote] hosts, run --hosts):
 * "[USER@]HOST[:PORT][*SLOTS], ...". The first host is rank 0's: the job
 * is submitted there, and its HOST is MASTER_ADDR, as the others reach it.
 */
struct host_entry {
	char *user;		/* NULL: as for the other hosts ([remote] user) */
	char *host;		/* a name or an address (IPv6 as "[::1]") */
	int port;		/* 0: not given */
	int slots;		/* 0: not given (mpirun counts the host's cores) */
};

struct host_list {
	struct host_entry *v;
	size_t nr;
};

#define HOST_LIST_INIT { NULL, 0 }

/*
 * Parses text into l (emptied first). Entries are separated by commas and
 * blanks; HOST is required, PORT 1..65535, SLOTS 1..4096; the same
 * HOST:PORT twice is refused. 0, or -1 with the error set (PS_EXIT_USAGE,
 * the entry named).
 */
int hosts_parse(struct host_list *l, const char *text);

void hosts_release(struct host_list *l);

/* The slots of every host, 0 when one has none given (mpirun decides). */
int hosts_slots(const struct host_list *l);

/* "[USER@]HOST[:PORT]" of entry e, for ssh_target_parse and messages. */
void hosts_dest(const struct host_entry *e, struct buf *out);

/* mpirun's -H value: "HOST:SLOTS,HOST,..." (no user, no port). */
void hosts_mpirun_list(const struct host_list *l, struct buf *out);

#endif
