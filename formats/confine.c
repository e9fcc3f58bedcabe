/* SPDX-License-Identifier: BSD-3-Clause */
/* Backing file confinement.
 *
 * An image names its backing file, and whoever can write an image's
 * header (a tenant dropping a file into a served directory, a guest of
 * a probed raw image) chooses which host file the server reads through
 * it: /etc/shadow, absolutely, by ../ or by a symbolic link.  With a
 * policy (image_open_opts.backing_dirs) every backing file of the chain
 * must resolve, after symbolic links, strictly inside one of the allowed
 * directories, else the open is refused with one line naming the image
 * and the path it asked for.  Without a policy the chain is trusted: the
 * user named the top image.
 *
 * The check runs on the resolved name before the backing file is opened
 * (and again over a shared backing image's own chain, which another
 * open may have made under another policy).  A symbolic link swapped in
 * between the check and the open could still lead out: whoever can do
 * that can also write the image itself, so directories of files from
 * untrusted writers should not hold links they may replace.  A remote
 * backing image (an NBD URI) is always refused under a policy.
 *
 * An image that was opened with no policy (a shared backing image that
 * its owner named: the registry opens a clone base so) keeps a trusted
 * chain: a confined image may name it if it lies in an allowed
 * directory, and what lies below it (a remote golden image, say) is not
 * checked again.
 */
#include <config.h>

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "internal.h"
#include "source.h"

/* True if path (resolved) lies strictly inside dir (resolved). */
static bool
path_inside (const char *path, const char *dir)
{
  size_t n = strlen (dir);

  if (n == 1 && dir[0] == '/')
    return path[1] != '\0';
  return strncmp (path, dir, n) == 0 && path[n] == '/' && path[n + 1];
}

/* 1 if resolved lies inside one of dirs, 0 if not, -1 (errno) if an
 * allowed directory cannot be resolved. */
static int
inside_any (const char *resolved, const char *const *dirs)
{
  for (; *dirs; dirs++) {
    CLEANUP_FREE char *d = realpath (*dirs, NULL);

    if (d == NULL)
      return -1;
    if (path_inside (resolved, d))
      return 1;
  }
  return 0;
}

int
confine_check (const char *image, const char *asked, const char *path,
               const char *const *dirs)
{
  CLEANUP_FREE char *resolved = NULL;
  int r;

  if (dirs == NULL)
    return 0;
  /* A URI would make the server connect wherever the image says (and
   * libnbd read a PSK file it names): never under a policy. */
  if (source_is_uri (path))
    return error_set (EPERM, "%s: backing file %s is a remote image, not "
                      "allowed where backing files are confined to "
                      "directories: refused", image, asked);
  resolved = realpath (path, NULL);
  if (resolved == NULL)
    return error_set (errno, "%s: backing file %s: %s", image, asked,
                      strerror (errno));
  r = inside_any (resolved, dirs);
  if (r == -1)
    return error_set (errno, "%s: backing file %s: an allowed backing "
                      "directory cannot be resolved: %s", image, asked,
                      strerror (errno));
  if (r == 0)
    return error_set (EINVAL, "%s: backing file %s resolves to %s, outside "
                      "the directories backing files may come from: "
                      "refused", image, asked, resolved);
  return 0;
}

int
image_check_confined (struct image *img, const char *const *dirs)
{
  for (; img && dirs && !img->chain_trusted; img = img->backing)
    if (img->full_backing_filename &&
        confine_check (img->filename, img->backing_filename,
                       img->full_backing_filename, dirs) == -1)
      return -1;
  return 0;
}

int
image_check_path_confined (const char *path, const char *const *dirs)
{
  CLEANUP_FREE char *resolved = NULL;
  int r;

  if (dirs == NULL)
    return 0;
  resolved = realpath (path, NULL);
  if (resolved == NULL)
    return error_set (errno, "%s: %s", path, strerror (errno));
  r = inside_any (resolved, dirs);
  if (r == -1)
    return error_set (errno, "%s: an allowed directory cannot be "
                      "resolved: %s", path, strerror (errno));
  if (r == 0)
    return error_set (EINVAL, "%s resolves to %s, outside the served "
                      "directory: refused", path, resolved);
  return 0;
}
