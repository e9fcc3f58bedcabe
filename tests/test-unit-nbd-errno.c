/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd_errno (server/nbd-errno.h): every errno the engine may return, for
 * each command and flag combination that changes the answer.  ENOTSUP
 * may only reach a fast WRITE_ZEROES, EOVERFLOW only a READ with DF;
 * everything else maps the same whatever the request.  And
 * errno_has_nbd_name (common/errno-nbd.h), which the plugin uses to send
 * an errno without an NBD name as EIO. */
#include <config.h>
#undef NDEBUG
#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "nbd-errno.h"

static const uint16_t types[] = {
  NBD_CMD_READ, NBD_CMD_WRITE, NBD_CMD_FLUSH, NBD_CMD_TRIM, NBD_CMD_CACHE,
  NBD_CMD_WRITE_ZEROES, NBD_CMD_BLOCK_STATUS,
};
#define NTYPES (sizeof types / sizeof types[0])

/* Every subset of the five command flags. */
#define ALL_FLAGS (NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE | \
                   NBD_CMD_FLAG_DF | NBD_CMD_FLAG_REQ_ONE | \
                   NBD_CMD_FLAG_FAST_ZERO)

/* What the spec allows for err on (type, flags): the two narrowed
 * errors first, then a fixed table. */
static uint32_t
expected (int err, uint16_t type, uint16_t flags)
{
  bool fast_zero = type == NBD_CMD_WRITE_ZEROES &&
    (flags & NBD_CMD_FLAG_FAST_ZERO);
  bool df_read = type == NBD_CMD_READ && (flags & NBD_CMD_FLAG_DF);

  if (err == ENOTSUP || err == EOPNOTSUPP)
    return fast_zero ? 95 : 22;
  if (err == EOVERFLOW)
    return df_read ? 75 : 22;
  switch (err) {
  case 0: return 0;
  case EPERM: case EROFS: return 1;
  case EIO: return 5;
  case ENOMEM: return 12;
  case EINVAL: return 22;
  case ENOSPC: case EDQUOT: case EFBIG: return 28;
  case ESHUTDOWN: return 108;
  default: return 5;
  }
}

/* Whether the spec names err, or asks for it to be sent as one it
 * names. */
static bool
spec_named (int err)
{
  return err == EPERM || err == EROFS || err == EIO || err == ENOMEM ||
    err == EINVAL || err == ENOSPC || err == EDQUOT || err == EFBIG ||
    err == ESHUTDOWN || err == EOVERFLOW || err == ENOTSUP ||
    err == EOPNOTSUPP;
}

int
main (void)
{
  static const int errs[] = {
    0, EPERM, EROFS, EIO, ENOMEM, EINVAL, ENOSPC, EDQUOT, EFBIG,
    ESHUTDOWN, EOVERFLOW, ENOTSUP, EOPNOTSUPP, EBADF, ENOENT, EAGAIN,
    ESTALE, -1, 100000,
  };
  unsigned i, t, n = 0;
  uint16_t f;

  for (i = 0; i < sizeof errs / sizeof errs[0]; i++) {
    if (errno_has_nbd_name (errs[i]) != spec_named (errs[i])) {
      fprintf (stderr, "errno_has_nbd_name (%d) = %d, expected %d\n",
               errs[i], errno_has_nbd_name (errs[i]), spec_named (errs[i]));
      return 1;
    }
    for (t = 0; t < NTYPES; t++)
      for (f = 0; f <= ALL_FLAGS; f++) {
        if (f & ~ALL_FLAGS)
          continue;
        if (nbd_errno (errs[i], types[t], f) !=
            expected (errs[i], types[t], f)) {
          fprintf (stderr, "nbd_errno (%d, type %u, flags 0x%x) = %u, "
                   "expected %u\n", errs[i], types[t], f,
                   nbd_errno (errs[i], types[t], f),
                   expected (errs[i], types[t], f));
          return 1;
        }
        n++;
      }
  }

  /* The cases the spec names, spelled out. */
  assert (nbd_errno (ENOTSUP, NBD_CMD_WRITE_ZEROES,
                     NBD_CMD_FLAG_FAST_ZERO) == NBD_ENOTSUP);
  assert (nbd_errno (ENOTSUP, NBD_CMD_WRITE_ZEROES,
                     NBD_CMD_FLAG_FAST_ZERO | NBD_CMD_FLAG_NO_HOLE |
                     NBD_CMD_FLAG_FUA) == NBD_ENOTSUP);
  assert (nbd_errno (ENOTSUP, NBD_CMD_WRITE_ZEROES, 0) == NBD_EINVAL);
  assert (nbd_errno (ENOTSUP, NBD_CMD_WRITE_ZEROES,
                     NBD_CMD_FLAG_NO_HOLE) == NBD_EINVAL);
  assert (nbd_errno (ENOTSUP, NBD_CMD_TRIM, NBD_CMD_FLAG_FAST_ZERO) ==
          NBD_EINVAL);
  assert (nbd_errno (ENOTSUP, NBD_CMD_READ, 0) == NBD_EINVAL);
  assert (nbd_errno (EOPNOTSUPP, NBD_CMD_WRITE, 0) == NBD_EINVAL);
  assert (nbd_errno (EOVERFLOW, NBD_CMD_READ, NBD_CMD_FLAG_DF) ==
          NBD_EOVERFLOW);
  assert (nbd_errno (EOVERFLOW, NBD_CMD_READ, 0) == NBD_EINVAL);
  assert (nbd_errno (EOVERFLOW, NBD_CMD_WRITE_ZEROES,
                     NBD_CMD_FLAG_FAST_ZERO) == NBD_EINVAL);
  assert (nbd_errno (EOVERFLOW, NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_DF) ==
          NBD_EINVAL);
  assert (nbd_errno (EDQUOT, NBD_CMD_WRITE, 0) == NBD_ENOSPC);
  assert (nbd_errno (EROFS, NBD_CMD_TRIM, 0) == NBD_EPERM);
  assert (nbd_errno (ESHUTDOWN, NBD_CMD_FLUSH, 0) == NBD_ESHUTDOWN);
  assert (nbd_errno (EBADF, NBD_CMD_READ, NBD_CMD_FLAG_DF) == NBD_EIO);
  printf ("nbd_errno: %u combinations ok\n", n);
  return 0;
}
