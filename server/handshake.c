/* SPDX-License-Identifier: BSD-3-Clause */
/* The fixed newstyle handshake, as a chain of input handlers:
 *
 *   greeting sent --> client flags (4) --> option header (16)
 *        ^                                      |
 *        |          payload <= 64 KiB: sink into optbuf, then handle
 *        |          payload  > 64 KiB: NBD_REP_ERR_TOO_BIG, drop the client
 *        +------------ option reply  <----------+
 *                     GO / EXPORT_NAME --> transmission_start
 *                     ABORT --> ACK, drain and close
 *
 * Options: EXPORT_NAME, GO, INFO (EXPORT, NAME, DESCRIPTION,
 * BLOCK_SIZE), LIST, ABORT, STRUCTURED_REPLY, LIST_ and SET_META_CONTEXT
 * (meta-context.c), STARTTLS.
 *
 * TLS: with --tls=on or require, STARTTLS is acknowledged and the
 * connection switches to the TLS transport (conn_starttls); after its
 * handshake the negotiation starts over, forgetting what was agreed in
 * plaintext (handshake_tls_done).  With --tls=require, before TLS only
 * STARTTLS and ABORT are served: every other option gets
 * NBD_REP_ERR_TLS_REQD (EXPORT_NAME, which cannot be refused, drops the
 * connection), so a plaintext client learns no export name, size or
 * description.
 *
 * Limits: the whole handshake has a deadline (--handshake-limit, in
 * conn.c, stopped by transmission_start), and an option announcing more
 * than MAX_OPTION_LEN bytes is not read at all: no option needs that
 * much, and draining it would let a client hold its connection (and
 * our attention) for as long as it trickles bytes.
 */
#include <config.h>

#include <endian.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "nbd-protocol.h"
#include "tls.h"

static int client_flags (struct conn *c, const char *data);
static int option_header (struct conn *c, const char *data);

void
handshake_start (struct conn *c)
{
  struct nbd_greeting g = {
    .magic = htobe64 (NBD_MAGIC),
    .ihaveopt = htobe64 (NBD_IHAVEOPT),
    .flags = htobe16 (NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES),
  };
  conn_send (c, &g, sizeof g);
  conn_expect (c, 4, client_flags);
  conn_kick_output (c);
}

static int
client_flags (struct conn *c, const char *data)
{
  uint32_t f;

  memcpy (&f, data, 4);
  f = be32toh (f);
  if (f & ~(uint32_t) (NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)) {
    log_conn (c, LOG_INFO, "unknown client flags 0x%x", f);
    c->hs_outcome = HS_BAD_OPTION;
    return INPUT_CLOSE;
  }
  c->fixed_newstyle = f & NBD_FLAG_C_FIXED_NEWSTYLE;
  c->no_zeroes = f & NBD_FLAG_C_NO_ZEROES;
  conn_expect (c, sizeof (struct nbd_option), option_header);
  return INPUT_OK;
}

int
handshake_reply (struct conn *c, uint32_t reply, const void *payload,
                 size_t len)
{
  struct nbd_option_reply h = {
    .magic = htobe64 (NBD_REP_MAGIC),
    .option = htobe32 (c->opt),
    .reply = htobe32 (reply),
    .length = htobe32 ((uint32_t) len),
  };

  if (conn_send (c, &h, sizeof h) == -1 ||
      (len && conn_send (c, payload, len) == -1)) {
    log_conn (c, LOG_ERR, "option reply does not fit");
    return -1;
  }
  return 0;
}

/* ---- the options ------------------------------------------------------- */

static int
opt_export_name (struct conn *c)
{
  const struct export *exp = export_lookup (c->optbuf, c->optlen);
  struct nbd_export_name_reply r;
  static const char zeroes[NBD_EXPORT_NAME_ZEROES];

  if (exp == NULL) {
    /* This option cannot carry an error: the client is just dropped. */
    c->hs_outcome = HS_UNKNOWN_EXPORT;
    log_conn (c, LOG_NOTICE, "%s: unknown export '%.*s'",
              name_option (c->opt),
              (int) (c->optlen > 256 ? 256 : c->optlen), c->optbuf);
    return -1;
  }
  r.size = htobe64 (exp->size);
  r.eflags = htobe16 (export_eflags (exp, c->structured));
  if (conn_send (c, &r, sizeof r) == -1 ||
      (!c->no_zeroes && conn_send (c, zeroes, sizeof zeroes) == -1))
    return -1;
  transmission_start (c, exp);
  return 0;
}

static int
info_string (struct conn *c, uint16_t type, const char *s)
{
  size_t len = strlen (s);
  char buf[2 + NBD_MAX_STRING];
  uint16_t t = htobe16 (type);

  if (len > NBD_MAX_STRING)
    len = NBD_MAX_STRING;
  memcpy (buf, &t, 2);
  memcpy (buf + 2, s, len);
  return handshake_reply (c, NBD_REP_INFO, buf, 2 + len);
}

/* The NBD_REP_INFO replies for exp: EXPORT and BLOCK_SIZE always (the
 * client must obey the limits either way), NAME and DESCRIPTION when
 * asked for. */
static int
info_replies (struct conn *c, const struct export *exp, const char *req,
              uint16_t nreq)
{
  struct nbd_info_export ie = {
    .info = htobe16 (NBD_INFO_EXPORT),
    .size = htobe64 (exp->size),
    .eflags = htobe16 (export_eflags (exp, c->structured)),
  };
  struct nbd_info_block_size bs = {
    .info = htobe16 (NBD_INFO_BLOCK_SIZE),
    .minimum = htobe32 (1),
    .preferred = htobe32 (exp->preferred_block),
    .maximum = htobe32 (MAX_PAYLOAD),
  };
  uint16_t i, type;

  if (handshake_reply (c, NBD_REP_INFO, &ie, sizeof ie) == -1 ||
      handshake_reply (c, NBD_REP_INFO, &bs, sizeof bs) == -1)
    return -1;
  for (i = 0; i < nreq; i++) {
    memcpy (&type, req + 2 * i, 2);
    type = be16toh (type);
    if (type == NBD_INFO_NAME && info_string (c, type, exp->name) == -1)
      return -1;
    if (type == NBD_INFO_DESCRIPTION &&
        info_string (c, type, exp->description) == -1)
      return -1;
  }
  return 0;
}

static int
opt_info_go (struct conn *c, bool go)
{
  const struct export *exp;
  uint32_t namelen;
  uint16_t nreq;
  const char *p = c->optbuf;

  /* name length (4), name, number of requests (2), requests (2 each) */
  if (c->optlen < 6)
    return handshake_reply (c, NBD_REP_ERR_INVALID, NULL, 0);
  memcpy (&namelen, p, 4);
  namelen = be32toh (namelen);
  if (namelen > c->optlen - 6)
    return handshake_reply (c, NBD_REP_ERR_INVALID, NULL, 0);
  memcpy (&nreq, p + 4 + namelen, 2);
  nreq = be16toh (nreq);
  if (c->optlen != 6 + namelen + 2 * (uint32_t) nreq)
    return handshake_reply (c, NBD_REP_ERR_INVALID, NULL, 0);

  exp = export_lookup (p + 4, namelen);
  if (exp == NULL) {
    c->hs_outcome = HS_UNKNOWN_EXPORT;
    log_conn (c, LOG_NOTICE, "%s: unknown export '%.*s'",
              name_option (c->opt),
              (int) (namelen > 256 ? 256 : namelen), p + 4);
    return handshake_reply (c, NBD_REP_ERR_UNKNOWN, NULL, 0);
  }
  if (info_replies (c, exp, p + 6 + namelen, nreq) == -1 ||
      handshake_reply (c, NBD_REP_ACK, NULL, 0) == -1)
    return -1;
  if (go)
    transmission_start (c, exp);
  return 0;
}

static int
opt_list (struct conn *c)
{
  size_t i;

  if (c->optlen != 0)
    return handshake_reply (c, NBD_REP_ERR_INVALID, NULL, 0);
  for (i = 0; i < exports_count (); i++) {
    const struct export *e = exports_at (i);
    size_t nlen = strlen (e->name), dlen = strlen (e->description);
    char buf[4 + 2 * NBD_MAX_STRING];
    uint32_t l = htobe32 ((uint32_t) nlen);

    if (dlen > NBD_MAX_STRING)
      dlen = NBD_MAX_STRING;
    memcpy (buf, &l, 4);
    memcpy (buf + 4, e->name, nlen);
    memcpy (buf + 4 + nlen, e->description, dlen);
    if (handshake_reply (c, NBD_REP_SERVER, buf, 4 + nlen + dlen) == -1)
      return -1;
  }
  return handshake_reply (c, NBD_REP_ACK, NULL, 0);
}

static int
opt_starttls (struct conn *c)
{
#ifdef HAVE_GNUTLS
  void *t;

  if (cfg.tls == TLS_OFF)
    return handshake_reply (c, NBD_REP_ERR_UNSUP, NULL, 0);
  if (c->tls)                   /* once is all the protocol allows */
    return handshake_reply (c, NBD_REP_ERR_INVALID, NULL, 0);
  t = transport_tls_new (c->rfd, c->wfd, c);
  if (t == NULL)
    return -1;
  if (handshake_reply (c, NBD_REP_ACK, NULL, 0) == -1) {
    transport_tls.free (t);
    return -1;
  }
  conn_starttls (c, &transport_tls, t);
  return 0;
#else
  return handshake_reply (c, NBD_REP_ERR_UNSUP, NULL, 0);
#endif
}

void
handshake_tls_done (struct conn *c)
{
  c->structured = false;
  c->meta_exp = NULL;
  c->meta_base = c->meta_depth = false;
}

/* Options that take no data and only toggle something. */
static int
opt_no_data (struct conn *c)
{
  if (c->optlen != 0)
    return handshake_reply (c, NBD_REP_ERR_INVALID, NULL, 0);
  switch (c->opt) {
  case NBD_OPT_STRUCTURED_REPLY:
    c->structured = true;
    return handshake_reply (c, NBD_REP_ACK, NULL, 0);
  case NBD_OPT_STARTTLS:
    return opt_starttls (c);
  }
  abort ();
}

static int
dispatch (struct conn *c)
{
  if (cfg.tls == TLS_REQUIRE && !c->tls &&
      c->opt != NBD_OPT_STARTTLS && c->opt != NBD_OPT_ABORT) {
    c->hs_outcome = HS_TLS_REFUSED;
    log_conn (c, LOG_INFO, "%s refused: TLS required",
              name_option (c->opt) ?: "unknown option");
    if (c->opt == NBD_OPT_EXPORT_NAME)
      return -1;                /* no error reply exists for it */
    return handshake_reply (c, NBD_REP_ERR_TLS_REQD, NULL, 0);
  }
  switch (c->opt) {
  case NBD_OPT_EXPORT_NAME:
    return opt_export_name (c);
  case NBD_OPT_INFO:
  case NBD_OPT_GO:
    return opt_info_go (c, c->opt == NBD_OPT_GO);
  case NBD_OPT_LIST:
    return opt_list (c);
  case NBD_OPT_ABORT:
    /* Any data is ignored, as the specification asks. */
    if (handshake_reply (c, NBD_REP_ACK, NULL, 0) == -1)
      return -1;
    c->hs_outcome = HS_ABORTED;
    log_conn (c, LOG_INFO, "client aborted the handshake");
    conn_drain (c);
    return 0;
  case NBD_OPT_STRUCTURED_REPLY:
  case NBD_OPT_STARTTLS:
    return opt_no_data (c);
  case NBD_OPT_LIST_META_CONTEXT:
  case NBD_OPT_SET_META_CONTEXT:
    return meta_context_option (c, c->opt == NBD_OPT_SET_META_CONTEXT);
  default:
    return handshake_reply (c, NBD_REP_ERR_UNSUP, NULL, 0);
  }
}

/* ---- option framing ---------------------------------------------------- */

static int
option_payload (struct conn *c, const char *data)
{
  int r = dispatch (c);

  free (c->optbuf);
  c->optbuf = NULL;
  if (r == -1)
    return INPUT_CLOSE;
  /* Still negotiating: the next option.  (GO and EXPORT_NAME set up the
   * transmission phase's input, ABORT stopped the input.) */
  if (c->exp == NULL && !c->draining)
    conn_expect (c, sizeof (struct nbd_option), option_header);
  conn_kick_output (c);
  return INPUT_OK;
}

/* An option longer than any we know: told so, and dropped unread. */
static int
option_too_big (struct conn *c)
{
  c->hs_outcome = HS_BAD_OPTION;
  log_conn (c, LOG_INFO, "option %s (%u) announces %u bytes of data "
            "(at most %u): dropping the client",
            name_option (c->opt) ?: "unknown", c->opt, c->optlen,
            MAX_OPTION_LEN);
  /* No error reply exists for EXPORT_NAME. */
  if (c->opt == NBD_OPT_EXPORT_NAME ||
      handshake_reply (c, NBD_REP_ERR_TOO_BIG, NULL, 0) == -1)
    return INPUT_CLOSE;
  conn_drain (c);               /* closes once the reply is out */
  conn_kick_output (c);
  return INPUT_OK;
}

static int
option_header (struct conn *c, const char *data)
{
  struct nbd_option o;

  /* Replies the client has not read yet: wait for it. */
  if (c->wlen - c->woff > MAX_HANDSHAKE_OUT / 2)
    return INPUT_PAUSE;
  memcpy (&o, data, sizeof o);
  if (be64toh (o.magic) != NBD_IHAVEOPT) {
    c->hs_outcome = HS_BAD_OPTION;
    log_conn (c, LOG_INFO, "bad option magic");
    return INPUT_CLOSE;
  }
  c->opt = be32toh (o.option);
  c->optlen = be32toh (o.length);
  /* Without fixed newstyle no option can be refused, only dropped. */
  if (!c->fixed_newstyle && c->opt != NBD_OPT_EXPORT_NAME) {
    c->hs_outcome = HS_BAD_OPTION;
    return INPUT_CLOSE;
  }
  log_conn (c, LOG_DEBUG, "option %s (%u), %u bytes",
            name_option (c->opt) ?: "unknown", c->opt, c->optlen);
  if (c->optlen > MAX_OPTION_LEN)
    return option_too_big (c);
  if (c->optlen == 0)
    return option_payload (c, NULL);
  c->optbuf = malloc (c->optlen);
  if (c->optbuf == NULL)
    return INPUT_CLOSE;
  conn_expect_sink (c, c->optbuf, c->optlen, option_payload);
  return INPUT_OK;
}
