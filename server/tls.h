/* SPDX-License-Identifier: BSD-3-Clause */
/* TLS with GnuTLS: the policy loaded at start-up (tls.c) and the
 * transport of a connection after STARTTLS (transport-tls.c).  Without
 * GnuTLS the server builds with TLS refused. */
#ifndef COWBD_SERVER_TLS_H
#define COWBD_SERVER_TLS_H

#include "transport.h"

#ifdef HAVE_GNUTLS
#include <gnutls/gnutls.h>

/* tls.c: loads certificates, keys and priorities for --tls; 0 or -1
 * after one line naming what is wrong.  tls_free undoes it. */
int tls_init (void);
void tls_free (void);
/* Gives a new server session the credentials and priorities. */
int tls_session_setup (gnutls_session_t s);
/* The first username of --tls-psk's file (for captive mode's $uri), or
 * NULL. */
const char *tls_psk_first_user (void);

/* transport-tls.c: a TLS server session over rfd/wfd (NULL on error,
 * logged); its handshake runs through transport->handshake. */
extern const struct transport transport_tls;
struct conn;
void *transport_tls_new (int rfd, int wfd, const struct conn *conn);
#else
static inline int tls_init (void) { return 0; }
static inline void tls_free (void) { }
static inline const char *tls_psk_first_user (void) { return NULL; }
#endif

#endif /* COWBD_SERVER_TLS_H */
