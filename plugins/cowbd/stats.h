/* SPDX-License-Identifier: BSD-3-Clause */
/* Per-connection and per-export request counters of the plugin, kept
 * only when nbdkit runs with -D cowbd.stats=1 and printed as debug
 * messages (nbdkit -v): each connection's at its close, each export's
 * totals at unload.
 */
#ifndef COWBD_PLUGIN_STATS_H
#define COWBD_PLUGIN_STATS_H

#include <stdint.h>

#include <nbdkit-plugin.h>

#include "image.h"

enum stats_op {
  ST_READ, ST_WRITE, ST_ZERO, ST_TRIM, ST_FLUSH, ST_CACHE, ST_EXTENTS,
  NR_ST_OPS
};

struct conn_stats {
  uint64_t requests[NR_ST_OPS];
  uint64_t bytes[NR_ST_OPS];    /* of requests that succeeded */
  uint64_t errors[NR_ST_OPS];
};

/* Set by nbdkit's -D cowbd.stats=1. */
extern NBDKIT_DLL_PUBLIC int cowbd_debug_stats;

/* Counts one request that returned rc (0 or -1); returns rc.  Costs a
 * test of one variable when the counters are off; atomic adds when on
 * (a connection's requests run on several threads). */
static inline int
stats_count (struct conn_stats *s, enum stats_op op, uint64_t bytes, int rc)
{
  if (cowbd_debug_stats) {
    __atomic_fetch_add (&s->requests[op], 1, __ATOMIC_RELAXED);
    if (rc == 0)
      __atomic_fetch_add (&s->bytes[op], bytes, __ATOMIC_RELAXED);
    else
      __atomic_fetch_add (&s->errors[op], 1, __ATOMIC_RELAXED);
  }
  return rc;
}

/* A connection to export name, served by img, closes: prints its
 * counters and the image's engine figures, and adds them to the
 * export's totals. */
void stats_close (const char *name, const struct conn_stats *s,
                  struct image *img);
/* Prints every export's totals and forgets them. */
void stats_unload (void);

#endif /* COWBD_PLUGIN_STATS_H */
