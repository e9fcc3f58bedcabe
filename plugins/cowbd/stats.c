/* SPDX-License-Identifier: BSD-3-Clause */
/* The plugin's counters (stats.h): one debug line per connection at its
 * close, one per export at unload, in a form a script can split:
 *   cowbd.stats: connection to 'NAME': read 5/327680/0 write 7/28672/0 ...
 * (requests/bytes/errors by operation, operations used only), then the
 * engine's figures for the export's image.
 */
#include <config.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stats.h"

NBDKIT_DLL_PUBLIC int cowbd_debug_stats = 0;

static const char *const op_names[NR_ST_OPS] = {
  "read", "write", "zero", "trim", "flush", "cache", "extents",
};

struct export_totals {
  struct export_totals *next;
  struct conn_stats st;
  uint64_t connections;
  char name[];
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct export_totals *totals;

/* "read 5/327680/0 write 7/28672/0" into buf. */
static void
format_ops (char *buf, size_t size, const struct conn_stats *s)
{
  size_t len = 0;
  unsigned k;

  buf[0] = '\0';
  for (k = 0; k < NR_ST_OPS; k++) {
    int n;

    if (s->requests[k] == 0)
      continue;
    n = snprintf (buf + len, size - len, "%s%s %" PRIu64 "/%" PRIu64
                  "/%" PRIu64, len ? " " : "", op_names[k], s->requests[k],
                  s->bytes[k], s->errors[k]);
    if (n < 0 || (size_t) n >= size - len)
      return;
    len += (size_t) n;
  }
  if (len == 0)
    snprintf (buf, size, "no requests");
}

static struct export_totals *
totals_of (const char *name)
{
  struct export_totals *t;

  for (t = totals; t; t = t->next)
    if (strcmp (t->name, name) == 0)
      return t;
  t = calloc (1, sizeof *t + strlen (name) + 1);
  if (t == NULL)
    return NULL;
  strcpy (t->name, name);
  t->next = totals;
  totals = t;
  return t;
}

void
stats_close (const char *name, const struct conn_stats *s,
             struct image *img)
{
  struct export_totals *t;
  struct image_stats es;
  char ops[512];
  unsigned k;

  if (!cowbd_debug_stats)
    return;
  format_ops (ops, sizeof ops, s);
  image_get_stats (img, &es);
  nbdkit_debug ("cowbd.stats: connection to '%s': %s; backing read %"
                PRIu64 " bytes, allocated %" PRIu64 " bytes, metadata "
                "cache %" PRIu64 " hits %" PRIu64 " misses %" PRIu64
                " evictions", name, ops, es.backing_read_bytes,
                es.allocated_bytes, es.cache_hits, es.cache_misses,
                es.cache_evictions);
  pthread_mutex_lock (&lock);
  t = totals_of (name);
  if (t) {
    t->connections++;
    for (k = 0; k < NR_ST_OPS; k++) {
      t->st.requests[k] += s->requests[k];
      t->st.bytes[k] += s->bytes[k];
      t->st.errors[k] += s->errors[k];
    }
  }
  pthread_mutex_unlock (&lock);
}

void
stats_unload (void)
{
  struct export_totals *t, *next;
  char ops[512];

  pthread_mutex_lock (&lock);
  for (t = totals; t; t = next) {
    next = t->next;
    format_ops (ops, sizeof ops, &t->st);
    nbdkit_debug ("cowbd.stats: export '%s': %" PRIu64 " connections: %s",
                  t->name, t->connections, ops);
    free (t);
  }
  totals = NULL;
  pthread_mutex_unlock (&lock);
}
