/* SPDX-License-Identifier: BSD-3-Clause */
/* Format-specific create options, as qemu's drivers have them: each
 * driver lists the options it takes (driver.create_options) and reads
 * their values itself; this file answers, for the front ends, which
 * options exist and of what type, and for the drivers, what was given
 * and what belongs to another format.  A new option of one format is a
 * line in its driver's list and the code in its create that reads it.
 */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* The option named name in drv's list, or NULL. */
static const struct image_option *
driver_option (const struct driver *drv, const char *name)
{
  const struct image_option *o;

  for (o = drv->create_options; o && o->name; o++)
    if (strcmp (o->name, name) == 0)
      return o;
  return NULL;
}

/* True if an earlier driver than number d (chain_driver_at) lists
 * name. */
static bool
listed_before (unsigned d, const char *name)
{
  unsigned i;

  for (i = 0; i < d; i++)
    if (driver_option (chain_driver_at (i), name))
      return true;
  return false;
}

const struct image_option *
image_option_at (unsigned i)
{
  const struct driver *drv;
  const struct image_option *o;
  unsigned d;

  for (d = 0; (drv = chain_driver_at (d)) != NULL; d++)
    for (o = drv->create_options; o && o->name; o++)
      if (!listed_before (d, o->name) && i-- == 0)
        return o;
  return NULL;
}

const struct image_option *
image_option_lookup (const char *name)
{
  const struct image_option *o;
  unsigned i;

  for (i = 0; (o = image_option_at (i)) != NULL; i++)
    if (strcmp (o->name, name) == 0)
      return o;
  return NULL;
}

const struct image_option_value *
image_option_find (const struct image_create_opts *opts, const char *name)
{
  size_t i;

  for (i = 0; i < opts->nr_options; i++)
    if (strcmp (opts->options[i].name, name) == 0)
      return &opts->options[i];
  return NULL;
}

/* True if v asks for something: a string, or a number other than 0
 * (off, or a size of 0, which means the format's default). */
static bool
asks (const struct image_option_value *v)
{
  return v->string != NULL || v->number != 0;
}

/* Appends name to the list in buf as "a, b or c" would read once
 * complete: the previous last name is followed by ", " (the caller
 * turns the last ", " into " or "). */
static void
list_add (char *buf, size_t len, const char *name)
{
  size_t n = strlen (buf);

  snprintf (buf + n, len - n, "%s%s", n ? ", " : "", name);
}

/* "a, b or c" from "a, b, c" in place. */
static void
list_finish (char *buf, size_t len)
{
  char *last = strrchr (buf, ',');

  if (last && strlen (buf) + 2 < len) {
    memmove (last + 3, last + 1, strlen (last + 1) + 1);
    memcpy (last, " or", 3);
  }
}

int
create_refuse_others (const char *filename, const struct driver *drv,
                      const struct image_create_opts *opts,
                      bool no_clusters)
{
  const struct image_option *o;
  const struct image_option_value *v;
  bool refused = no_clusters && opts->cluster_size;
  char list[512] = "";
  unsigned i, n = 0;

  if (no_clusters) {
    list_add (list, sizeof list, "cluster_size");
    n++;
  }
  for (i = 0; (o = image_option_at (i)) != NULL; i++) {
    if (driver_option (drv, o->name))
      continue;
    list_add (list, sizeof list, o->name);
    n++;
    v = image_option_find (opts, o->name);
    refused |= v && asks (v);
  }
  if (!refused)
    return 0;
  list_finish (list, sizeof list);
  if (no_clusters)              /* raw's own wording */
    return error_set (EINVAL, "%s: format %s takes no %s", filename,
                      drv->name, list);
  return error_set (EINVAL, "%s: format %s has no %s option%s", filename,
                    drv->name, list, n > 1 ? "s" : "");
}

uint64_t
create_opt_number (const struct image_create_opts *opts, const char *name,
                   uint64_t dflt)
{
  const struct image_option_value *v = image_option_find (opts, name);

  return v ? v->number : dflt;
}

const char *
create_opt_string (const struct image_create_opts *opts, const char *name)
{
  const struct image_option_value *v = image_option_find (opts, name);

  return v ? v->string : NULL;
}
