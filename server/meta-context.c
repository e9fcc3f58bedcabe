/* SPDX-License-Identifier: BSD-3-Clause */
/* NBD_OPT_LIST_META_CONTEXT and NBD_OPT_SET_META_CONTEXT.
 *
 * Two contexts exist, on every export:
 *   base:allocation        holes and zeros (NBD_STATE_HOLE, _ZERO)
 *   qemu:allocation-depth  0: unallocated in the whole chain, 1: the
 *                          image itself, 2: its backing file, ...
 * LIST also accepts the namespaces alone ("base:", "qemu:") as queries,
 * and no query at all for every context.  SET takes exact names only;
 * names from unknown namespaces are ignored, as the specification asks.
 *
 * Payload: export name length (4), name, number of queries (4), then per
 * query its length (4) and the string.  Anything inconsistent gets
 * NBD_REP_ERR_INVALID.
 */
#include <config.h>

#include <endian.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "nbd-protocol.h"

#define CTX_BASE  "base:allocation"
#define CTX_DEPTH "qemu:allocation-depth"

static bool
is (const char *q, uint32_t len, const char *s)
{
  return strlen (s) == len && memcmp (q, s, len) == 0;
}

/* Marks the contexts query q selects (namespaces too for LIST). */
static void
match_query (const char *q, uint32_t len, bool list, bool *base,
             bool *depth)
{
  if (is (q, len, CTX_BASE) || (list && is (q, len, "base:")))
    *base = true;
  if (is (q, len, CTX_DEPTH) || (list && is (q, len, "qemu:")))
    *depth = true;
}

static uint32_t
load32 (const char *p)
{
  uint32_t v;

  memcpy (&v, p, 4);
  return be32toh (v);
}

/* Parses c->optbuf: the export and the contexts the queries select.
 * Returns 0, or the NBD_REP_ERR to answer. */
bool
meta_context_name (const struct conn *c, const char **name, uint32_t *len)
{
  if (c->optlen < 8)
    return false;
  *len = load32 (c->optbuf);
  if (*len > c->optlen - 8)
    return false;
  *name = c->optbuf + 4;
  return true;
}

static uint32_t
parse (struct conn *c, bool list, bool exists, bool *base, bool *depth)
{
  const char *p, *end;
  uint32_t namelen, nq, qlen, i;

  /* An empty option has no buffer at all (optbuf is NULL). */
  if (c->optlen < 8)
    return NBD_REP_ERR_INVALID;
  p = c->optbuf;
  end = c->optbuf + c->optlen;
  namelen = load32 (p);
  if (namelen > c->optlen - 8)
    return NBD_REP_ERR_INVALID;
  p += 4 + namelen;
  nq = load32 (p);
  p += 4;
  for (i = 0; i < nq; i++) {
    if (end - p < 4)
      return NBD_REP_ERR_INVALID;
    qlen = load32 (p);
    p += 4;
    if (qlen > (uint32_t) (end - p))
      return NBD_REP_ERR_INVALID;
    match_query (p, qlen, list, base, depth);
    p += qlen;
  }
  if (p != end)
    return NBD_REP_ERR_INVALID;
  if (!exists)
    return NBD_REP_ERR_UNKNOWN;
  if (nq == 0 && list)
    *base = *depth = true;
  return 0;
}

static int
context_reply (struct conn *c, uint32_t id, const char *name)
{
  char buf[4 + 64];
  size_t len = strlen (name);
  uint32_t be = htobe32 (id);

  memcpy (buf, &be, 4);
  memcpy (buf + 4, name, len);
  return handshake_reply (c, NBD_REP_META_CONTEXT, buf, 4 + len);
}

/* Remembers the export of a SET (its name as the client wrote it). */
static int
set_meta_name (struct conn *c)
{
  const char *name;
  uint32_t len;

  if (!meta_context_name (c, &name, &len) ||
      (c->meta_name = malloc (len + 1)) == NULL)
    return -1;
  memcpy (c->meta_name, name, len);
  c->meta_name[len] = '\0';
  c->meta_namelen = len;
  return 0;
}

int
meta_context_option (struct conn *c, bool set, bool exists)
{
  bool base = false, depth = false;
  uint32_t err;

  if (set) {
    /* SET replaces the selection, even when it fails. */
    free (c->meta_name);
    c->meta_name = NULL;
    c->meta_base = c->meta_depth = false;
    if (!c->structured)
      return handshake_reply (c, NBD_REP_ERR_INVALID, NULL, 0);
  }
  err = parse (c, !set, exists, &base, &depth);
  if (err)
    return handshake_reply (c, err, NULL, 0);
  if (base && context_reply (c, set ? META_ID_BASE_ALLOCATION : 0,
                             CTX_BASE) == -1)
    return -1;
  if (depth && context_reply (c, set ? META_ID_ALLOCATION_DEPTH : 0,
                              CTX_DEPTH) == -1)
    return -1;
  if (set) {
    if (set_meta_name (c) == -1)
      return -1;
    c->meta_base = base;
    c->meta_depth = depth;
  }
  return handshake_reply (c, NBD_REP_ACK, NULL, 0);
}
