/* SPDX-License-Identifier: BSD-3-Clause */
/* Image locks that QEMU understands.
 *
 * QEMU's file-posix driver says what each opener of a file does with it
 * through OFD byte-range locks (F_OFD_SETLK: owned by the open file
 * description, so two opens in one process are two users too):
 *
 *   byte 100 + i   shared lock: "I hold permission bit i"
 *   byte 200 + i   shared lock: "I do not let others hold bit i"
 *
 * with the bits of QEMU's BLK_PERM_* (include/block/block-common.h):
 *
 *   bit 0  consistent read     byte 100 / 200
 *   bit 1  write               byte 101 / 201
 *   bit 2  write unchanged     byte 102 / 202
 *   bit 3  resize              byte 103 / 203
 *
 * An opener first takes its own bytes, then checks that no one else
 * holds a lock on 200 + i for a bit it holds, nor on 100 + i for a bit
 * it denies (F_OFD_GETLK asking for an exclusive lock: any other user's
 * shared lock conflicts, our own does not).  Taking before checking
 * means that of two openers racing, at least one sees the other.
 *
 * What qemu 7.2 takes, seen in /proc/locks:
 *
 *   read-write (qemu-nbd, qemu-io, commit target)  holds 100 101 103
 *                                                  denies 201 203
 *   read-only, and every backing file             holds 100, denies 201 203
 *   read-only with -U (force-share)                holds 100
 *   qemu-img create over an existing file         holds 101 103, denies 203
 *
 * We take the same: so a writer excludes every other writer and every
 * reader that did not say -U, and a reader (an overlay's backing file
 * above all) excludes writers.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define LOCK_PERM_BASE   100
#define LOCK_SHARED_BASE 200

/* QEMU's BLK_PERM_* bits. */
#define PERM_CONSISTENT_READ  0x01
#define PERM_WRITE            0x02
#define PERM_WRITE_UNCHANGED  0x04
#define PERM_RESIZE           0x08
#define PERM_BITS             4

#ifdef F_OFD_SETLK

/* What each bit lets its holder do, for messages. */
static const char *const perm_verbs[PERM_BITS] = {
  "read", "write", "write", "resize",
};

/* One byte's lock: F_RDLCK, F_UNLCK. */
static int
lock_byte (int fd, off_t off, short type)
{
  struct flock fl = {
    .l_type = type, .l_whence = SEEK_SET, .l_start = off, .l_len = 1,
  };

  return fcntl (fd, F_OFD_SETLK, &fl);
}

/* Sets *taken if another open file description holds a lock on off. */
static int
byte_taken (int fd, off_t off, bool *taken)
{
  struct flock fl = {
    .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = off, .l_len = 1,
  };

  if (fcntl (fd, F_OFD_GETLK, &fl) == -1)
    return -1;
  *taken = fl.l_type != F_UNLCK;
  return 0;
}

/* Gives back every byte this module may have taken on fd. */
static void
lock_release (int fd)
{
  struct flock fl = {
    .l_type = F_UNLCK, .l_whence = SEEK_SET, .l_start = LOCK_PERM_BASE,
    .l_len = LOCK_SHARED_BASE + PERM_BITS - LOCK_PERM_BASE,
  };

  fcntl (fd, F_OFD_SETLK, &fl);
}

/* Takes base + i for every bit i of mask. */
static int
lock_bytes (int fd, off_t base, unsigned mask)
{
  unsigned i;

  for (i = 0; i < PERM_BITS; i++)
    if ((mask & (1u << i)) && lock_byte (fd, base + i, F_RDLCK) == -1)
      return -1;
  return 0;
}

/* The first bit i of mask whose byte base + i another process holds, or -1
 * (and -2 with errno when it cannot tell). */
static int
first_taken (int fd, off_t base, unsigned mask)
{
  unsigned i;
  bool taken;

  for (i = 0; i < PERM_BITS; i++) {
    if (!(mask & (1u << i)))
      continue;
    if (byte_taken (fd, base + i, &taken) == -1)
      return -2;
    if (taken)
      return (int) i;
  }
  return -1;
}

/* A file system without byte-range locks (some network ones): QEMU's
 * locking=auto goes on without them, and so do we. */
static bool
locks_unsupported (int e)
{
  return e == ENOLCK || e == EOPNOTSUPP || e == EINVAL;
}

static int
lock_sys_error (const char *filename, int e)
{
  return error_set (e, "%s: taking the image locks: %s", filename,
                    strerror (e));
}

/* held_by_other: another process holds bit, which we deny; else it
 * denies bit, which we hold. */
static int
lock_in_use (const char *filename, bool held_by_other, int bit)
{
  return error_set (EBUSY, "%s: image is in use (locked by another "
                    "process); another process %s %s%s", filename,
                    held_by_other ? "has it open to" : "does not let others",
                    perm_verbs[bit], held_by_other ? "" : " it");
}

/* Fails if someone else holds a byte that conflicts with held or
 * denied. */
static int
lock_check (int fd, const char *filename, unsigned held, unsigned denied)
{
  int bit = first_taken (fd, LOCK_SHARED_BASE, held);

  if (bit >= 0)
    return lock_in_use (filename, false, bit);
  if (bit == -1) {
    bit = first_taken (fd, LOCK_PERM_BASE, denied);
    if (bit >= 0)
      return lock_in_use (filename, true, bit);
  }
  if (bit == -2)
    return lock_sys_error (filename, errno);
  return 0;
}

/* Takes the bytes of held and denied, then checks that nobody else's
 * conflict with them; on any failure, keeps none. */
static int
lock_file (int fd, const char *filename, unsigned held, unsigned denied)
{
  int e;

  if (lock_bytes (fd, LOCK_PERM_BASE, held) == 0 &&
      lock_bytes (fd, LOCK_SHARED_BASE, denied) == 0) {
    if (lock_check (fd, filename, held, denied) == 0)
      return 0;
    e = errno;
    lock_release (fd);
    errno = e;
    return -1;
  }
  e = errno;
  lock_release (fd);
  return locks_unsupported (e) ? 0 : lock_sys_error (filename, e);
}

#else /* !F_OFD_SETLK */

static int
lock_file (int fd, const char *filename, unsigned held, unsigned denied)
{
  (void) fd, (void) filename, (void) held, (void) denied;
  return 0;                     /* no OFD locks on this system */
}

#endif

int
lock_image (struct image *img, unsigned open_flags)
{
  unsigned held = PERM_CONSISTENT_READ;
  unsigned denied = PERM_WRITE | PERM_RESIZE;

  if (!img->readonly)
    held |= PERM_WRITE | PERM_RESIZE;
  else if (open_flags & IMAGE_OPEN_FORCE_SHARE)
    denied = 0;
  return lock_file (img->fd, img->filename, held, denied);
}

int
lock_for_create (int fd, const char *filename)
{
  return lock_file (fd, filename, PERM_WRITE | PERM_RESIZE, PERM_RESIZE);
}
