/* SPDX-License-Identifier: BSD-3-Clause */
/* File identity: (device, inode), the one test of "the same file" that
 * the engine (backing chain loops), cowbd-img and the front ends share. */
#include <config.h>

#include <sys/stat.h>

#include "internal.h"
#include "source.h"

void
image_file_id_of_stat (const struct stat *st, struct image_file_id *id)
{
  id->dev = (uint64_t) st->st_dev;
  id->ino = (uint64_t) st->st_ino;
}

int
fileid_of_fd (int fd, struct image_file_id *id)
{
  struct stat st;

  if (fstat (fd, &st) == -1)
    return -1;
  image_file_id_of_stat (&st, id);
  return 0;
}

/* A remote image (a URI) has no inode: its identity is the URI's text,
 * hashed (FNV-1a) into ino under a device number no file has. */
static void
id_of_uri (const char *uri, struct image_file_id *id)
{
  uint64_t h = 0xcbf29ce484222325ULL;

  for (; *uri; uri++)
    h = (h ^ (uint8_t) *uri) * 0x100000001b3ULL;
  id->dev = UINT64_MAX;
  id->ino = h;
}

int
image_file_id_path (const char *path, struct image_file_id *id)
{
  struct stat st;

  if (source_is_uri (path)) {
    id_of_uri (path, id);
    return 0;
  }
  if (stat (path, &st) == -1)
    return -1;
  image_file_id_of_stat (&st, id);
  return 0;
}

bool
image_file_id_equal (const struct image_file_id *a,
                     const struct image_file_id *b)
{
  return a->dev == b->dev && a->ino == b->ino;
}

bool
image_same_file (const char *a, const char *b)
{
  struct image_file_id ia, ib;

  return image_file_id_path (a, &ia) == 0 &&
         image_file_id_path (b, &ib) == 0 && image_file_id_equal (&ia, &ib);
}
