/* SPDX-License-Identifier: BSD-3-Clause */
/* A streaming JSON writer laid out as qemu-img prints JSON:
 *
 *   {
 *       "virtual-size": 10485760,
 *       "filename": "a.qed"
 *   }
 *
 * Members appear in the order they are written (qemu-img's order is that
 * of its dictionary's hash buckets; the callers write them in that order).
 * Nesting is bounded by JSON_MAX_DEPTH, which our outputs never reach.
 */
#include <config.h>

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "img.h"

#define JSON_MAX_DEPTH 8

struct json {
  FILE *fp;
  unsigned depth;                     /* open containers */
  bool members[JSON_MAX_DEPTH];       /* container at depth has members */
};

struct json *
json_new (FILE *fp)
{
  struct json *j = calloc (1, sizeof *j);

  if (j == NULL) {
    perror ("cowbd-img: malloc");
    exit (1);
  }
  j->fp = fp;
  return j;
}

void
json_free (struct json *j)
{
  assert (j->depth == 0);
  fputc ('\n', j->fp);
  free (j);
}

void
json_quote (FILE *fp, const char *s)
{
  const unsigned char *p;

  fputc ('"', fp);
  for (p = (const unsigned char *) s; *p; p++) {
    switch (*p) {
    case '"': fputs ("\\\"", fp); break;
    case '\\': fputs ("\\\\", fp); break;
    case '\b': fputs ("\\b", fp); break;
    case '\f': fputs ("\\f", fp); break;
    case '\n': fputs ("\\n", fp); break;
    case '\r': fputs ("\\r", fp); break;
    case '\t': fputs ("\\t", fp); break;
    default:
      if (*p < 0x20 || *p == 0x7f)
        fprintf (fp, "\\u%04X", *p);
      else
        fputc (*p, fp);
    }
  }
  fputc ('"', fp);
}

static void
indent (struct json *j, unsigned depth)
{
  unsigned i;

  for (i = 0; i < depth; i++)
    fputs ("    ", j->fp);
}

/* Starts a member (or a list element when key is NULL). */
static void
member (struct json *j, const char *key)
{
  if (j->depth > 0) {
    fputs (j->members[j->depth - 1] ? ",\n" : "\n", j->fp);
    j->members[j->depth - 1] = true;
    indent (j, j->depth);
  }
  if (key) {
    json_quote (j->fp, key);
    fputs (": ", j->fp);
  }
}

static void
begin (struct json *j, const char *key, char c)
{
  assert (j->depth < JSON_MAX_DEPTH);
  member (j, key);
  fputc (c, j->fp);
  j->members[j->depth++] = false;
}

static void
end (struct json *j, char c)
{
  assert (j->depth > 0);
  if (j->members[--j->depth]) {
    fputc ('\n', j->fp);
    indent (j, j->depth);
  }
  fputc (c, j->fp);
}

void json_begin_object (struct json *j, const char *key) { begin (j, key, '{'); }
void json_end_object (struct json *j) { end (j, '}'); }
void json_begin_list (struct json *j, const char *key) { begin (j, key, '['); }
void json_end_list (struct json *j) { end (j, ']'); }

void
json_int (struct json *j, const char *key, int64_t v)
{
  member (j, key);
  fprintf (j->fp, "%" PRId64, v);
}

void
json_uint (struct json *j, const char *key, uint64_t v)
{
  member (j, key);
  fprintf (j->fp, "%" PRIu64, v);
}

void
json_bool (struct json *j, const char *key, bool v)
{
  member (j, key);
  fputs (v ? "true" : "false", j->fp);
}

void
json_string (struct json *j, const char *key, const char *v)
{
  member (j, key);
  json_quote (j->fp, v);
}
