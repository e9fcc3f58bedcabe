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

/* dispatch's answer when the option went to a worker. */
#define LOOKUP_PENDING 1

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

/* ---- lookups, on a worker ------------------------------------------------
 *
 * GO, INFO, EXPORT_NAME, LIST and the meta context options need the
 * registry, which may open an image or rescan dir= (I/O that can take
 * long): the option goes to a worker as a lookup job, the connection
 * stops reading (its input handler paused) and in_flight keeps it
 * alive; when the job is done the loop answers the option and reads on.
 *
 *   option_payload --dispatch--> lookup_submit --> [worker] lookup_run
 *                                                        |
 *   read on <-- the option's answer <-- lookup_done <----+  (loop)
 */

struct lookup {
  struct job job;
  struct conn *c;
  uint32_t opt;
  char *name;                   /* the export asked for (a copy) */
  uint32_t namelen;
  struct export *exp;           /* GO, INFO, EXPORT_NAME: the result */
  bool exists;                  /* meta contexts: the result */
  char *list;                   /* LIST: the replies, ACK included */
  size_t list_len, list_cap;
  bool list_failed;
  char *error;                  /* why the lookup failed */
};

static int answer (struct conn *c, struct lookup *l);

/* Appends one option reply to l->list. */
static int
list_append (struct lookup *l, uint32_t reply, const void *payload,
             uint32_t len)
{
  struct nbd_option_reply h = {
    .magic = htobe64 (NBD_REP_MAGIC),
    .option = htobe32 (NBD_OPT_LIST),
    .reply = htobe32 (reply),
    .length = htobe32 (len),
  };
  size_t need = l->list_len + sizeof h + len;

  if (need > l->list_cap) {
    size_t cap = need > 2 * l->list_cap ? need : 2 * l->list_cap;
    char *p = realloc (l->list, cap);
    if (p == NULL)
      return -1;
    l->list = p;
    l->list_cap = cap;
  }
  memcpy (l->list + l->list_len, &h, sizeof h);
  if (len)
    memcpy (l->list + l->list_len + sizeof h, payload, len);
  l->list_len = need;
  return 0;
}

static int
list_one (void *opaque, const char *name, const char *description)
{
  size_t nlen = strlen (name), dlen = strlen (description);
  char buf[4 + 2 * NBD_MAX_STRING];
  uint32_t be = htobe32 ((uint32_t) nlen);

  if (dlen > NBD_MAX_STRING)
    dlen = NBD_MAX_STRING;
  memcpy (buf, &be, 4);
  memcpy (buf + 4, name, nlen);
  memcpy (buf + 4 + nlen, description, dlen);
  return list_append (opaque, NBD_REP_SERVER, buf,
                      (uint32_t) (4 + nlen + dlen));
}

static void
lookup_run (struct job *j)
{
  struct lookup *l = (struct lookup *) j;

  switch (l->opt) {
  case NBD_OPT_LIST:
    l->list_failed = exports_list (list_one, l) != 0 ||
      list_append (l, NBD_REP_ACK, NULL, 0) == -1;
    break;
  case NBD_OPT_LIST_META_CONTEXT:
  case NBD_OPT_SET_META_CONTEXT:
    l->exists = export_exists (l->name, l->namelen);
    return;
  case NBD_OPT_INFO:             /* told from the header: not opened */
    l->exp = export_info (l->name, l->namelen);
    break;
  default:
    l->exp = export_get (l->name, l->namelen);
    break;
  }
  if ((l->exp == NULL && l->opt != NBD_OPT_LIST) || l->list_failed)
    l->error = strdup (image_error ());
}

static void
lookup_free (struct lookup *l)
{
  export_release (l->exp);
  free (l->name);
  free (l->list);
  free (l->error);
  free (l);
}

/* The export was found but cannot be served (no memory for its stats). */
static void
lookup_lost (struct lookup *l)
{
  export_release (l->exp);
  l->exp = NULL;
  free (l->error);
  l->error = strdup ("out of memory");
}

static void
lookup_done (struct job *j)
{
  struct lookup *l = (struct lookup *) j;
  struct conn *c = l->c;
  int r = 0;

  c->in_flight--;
  c->looking_up = false;
  if (!c->dead && l->exp && l->exp->ref && export_stats_attach (l->exp) == -1)
    lookup_lost (l);
  if (!c->dead)
    r = answer (c, l);
  lookup_free (l);
  free (c->optbuf);
  c->optbuf = NULL;
  if (c->dead) {
    conn_req_returned (c);      /* frees it if nothing else is out */
    return;
  }
  if (r == -1) {
    conn_close (c, "protocol error");
    return;
  }
  if (c->exp == NULL && !c->draining)
    conn_expect (c, sizeof (struct nbd_option), option_header);
  conn_kick_output (c);
  conn_resume_input (c);
}

/* Hands the option to a worker; name (namelen bytes) is the export. */
static int
lookup_submit (struct conn *c, const char *name, uint32_t namelen)
{
  struct lookup *l = calloc (1, sizeof *l);

  if (l == NULL || (l->name = malloc (namelen + 1)) == NULL) {
    free (l);
    log_error ("out of memory");
    return -1;
  }
  memcpy (l->name, name, namelen);
  l->name[namelen] = '\0';
  l->namelen = namelen;
  l->opt = c->opt;
  l->c = c;
  l->job.run = lookup_run;
  l->job.done = lookup_done;
  c->in_flight++;
  c->looking_up = true;
  workers_submit_job (&l->job);
  return LOOKUP_PENDING;
}

/* ---- the options ------------------------------------------------------- */

/* A client may ask for names that do not exist as fast as it likes: the
 * lines saying so are budgeted (loop thread only). */
static void
log_unknown_export (struct conn *c, struct lookup *l)
{
  static struct log_budget budget = { .burst = 20, .per_sec = 5 };

  c->hs_outcome = HS_UNKNOWN_EXPORT;
  if (log_allow (&budget, "unknown exports"))
    log_conn (c, LOG_NOTICE, "%s: %s", name_option (c->opt),
              l->error ? l->error : "unknown export");
}

static int
opt_export_name (struct conn *c, struct lookup *l)
{
  struct nbd_export_name_reply r;
  static const char zeroes[NBD_EXPORT_NAME_ZEROES];
  struct export *exp = l->exp;

  if (exp == NULL) {
    /* This option cannot carry an error: the client is just dropped. */
    log_unknown_export (c, l);
    return -1;
  }
  r.size = htobe64 (exp->size);
  r.eflags = htobe16 (export_eflags (exp, c->structured));
  if (conn_send (c, &r, sizeof r) == -1 ||
      (!c->no_zeroes && conn_send (c, zeroes, sizeof zeroes) == -1))
    return -1;
  l->exp = NULL;                /* the connection holds it now */
  transmission_start (c, exp, l->name, l->namelen);
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

/* GO and INFO, before the lookup: checks the framing. */
static int
opt_info_go (struct conn *c)
{
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
  return lookup_submit (c, p + 4, namelen);
}

/* GO and INFO, after the lookup. */
static int
opt_info_go_found (struct conn *c, struct lookup *l)
{
  const char *req = c->optbuf + 6 + l->namelen;
  uint16_t nreq = (uint16_t) ((c->optlen - 6 - l->namelen) / 2);
  struct export *exp = l->exp;

  if (exp == NULL) {
    log_unknown_export (c, l);
    return handshake_reply (c, NBD_REP_ERR_UNKNOWN, NULL, 0);
  }
  if (info_replies (c, exp, req, nreq) == -1 ||
      handshake_reply (c, NBD_REP_ACK, NULL, 0) == -1)
    return -1;
  if (c->opt == NBD_OPT_GO) {
    l->exp = NULL;              /* the connection holds it now */
    transmission_start (c, exp, l->name, l->namelen);
  }
  return 0;
}

static int
opt_list (struct conn *c)
{
  if (c->optlen != 0)
    return handshake_reply (c, NBD_REP_ERR_INVALID, NULL, 0);
  return lookup_submit (c, "", 0);
}

static int
opt_list_found (struct conn *c, struct lookup *l)
{
  if (l->list_failed) {
    log_error ("connection %lu: LIST: %s", c->id,
               l->error ? l->error : "out of memory");
    return handshake_reply (c, NBD_REP_ERR_PLATFORM, NULL, 0);
  }
  return conn_send_unbounded (c, l->list, l->list_len);
}

static int
opt_meta (struct conn *c)
{
  const char *name;
  uint32_t len;

  if (!meta_context_name (c, &name, &len))
    return meta_context_option (c, c->opt == NBD_OPT_SET_META_CONTEXT,
                                false);
  return lookup_submit (c, name, len);
}

/* The loop's answer to an option whose lookup is done. */
static int
answer (struct conn *c, struct lookup *l)
{
  switch (l->opt) {
  case NBD_OPT_EXPORT_NAME:
    return opt_export_name (c, l);
  case NBD_OPT_LIST:
    return opt_list_found (c, l);
  case NBD_OPT_LIST_META_CONTEXT:
  case NBD_OPT_SET_META_CONTEXT:
    return meta_context_option (c, l->opt == NBD_OPT_SET_META_CONTEXT,
                                l->exists);
  default:
    return opt_info_go_found (c, l);
  }
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
  free (c->meta_name);
  c->meta_name = NULL;
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
    return lookup_submit (c, c->optbuf ? c->optbuf : "", c->optlen);
  case NBD_OPT_INFO:
  case NBD_OPT_GO:
    return opt_info_go (c);
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
    return opt_meta (c);
  default:
    return handshake_reply (c, NBD_REP_ERR_UNSUP, NULL, 0);
  }
}

/* ---- option framing ---------------------------------------------------- */

static int
option_payload (struct conn *c, const char *data)
{
  int r = dispatch (c);

  if (r == LOOKUP_PENDING) {
    conn_pause_input (c);       /* lookup_done answers and reads on */
    return INPUT_OK;
  }
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
