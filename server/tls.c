/* SPDX-License-Identifier: BSD-3-Clause */
/* TLS policy: the credentials and priorities every TLS session uses,
 * loaded once at start-up from the command line.
 *
 *   --tls-certificates=DIR   X.509, the layout nbdkit and qemu use:
 *       DIR/ca-cert.pem      CA that signs client certificates (required)
 *       DIR/server-cert.pem  our certificate (chain)
 *       DIR/server-key.pem   its private key
 *       DIR/ca-crl.pem       revoked client certificates (optional)
 *     --tls-verify-peer      the client must present a certificate signed
 *                            by that CA; GnuTLS checks it during the
 *                            handshake (gnutls_session_set_verify_cert)
 *   --tls-psk=FILE           pre-shared keys, psktool's "username:hexkey"
 *                            lines, parsed here into a table; GnuTLS asks
 *                            psk_lookup for the key of the identity the
 *                            client names
 *   --tls-priority=STRING    GnuTLS priority string; default: the
 *                            system's (@SYSTEM or NORMAL), TLS 1.3
 *                            first, and on a CPU with AES instructions
 *                            AES-GCM before ChaCha20-Poly1305 in our
 *                            order, which decides (see AES_FIRST).
 *                            With PSK the PSK key exchanges are appended.
 *
 * A file that is missing, unreadable or malformed stops the start-up
 * with one line naming it.  The sessions themselves (pull/push on the
 * socket, handshake, records) are transport-tls.c's business; this file
 * only hands it a configured gnutls_session_t.
 */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <gnutls/gnutls.h>

#include "cleanup.h"
#include "internal.h"
#include "tls.h"

/* Key exchanges a PSK session needs on top of the default priorities. */
#define PSK_PRIORITY "+ECDHE-PSK:+DHE-PSK:+PSK"
/* libnbd's clients here offer ChaCha20-Poly1305 first, and GnuTLS then
 * picks it even where the CPU runs AES-GCM nine times faster (4.4 GB/s
 * against 0.5 GB/s in gnutls-cli --benchmark-ciphers): TLS reads cost
 * three times the CPU on both ends.  Where the CPU has AES instructions
 * the default moves ChaCha20 to the end and lets our order decide; a
 * client that offers only ChaCha20 still gets it. */
#define AES_FIRST "-CHACHA20-POLY1305:+CHACHA20-POLY1305:%SERVER_PRECEDENCE"
/* Longest PSK line and key accepted from the file. */
#define PSK_MAX_LINE 4096
#define PSK_MAX_KEY  512

struct psk_entry {
  char *user;
  gnutls_datum_t key;
};

static gnutls_certificate_credentials_t x509_cred;
static gnutls_psk_server_credentials_t psk_cred;
static gnutls_priority_t priority;
static struct psk_entry *psks;
static size_t npsks;
static bool global_init;

/* ---- X.509 ------------------------------------------------------------- */

/* DIR/NAME, if it is readable; NULL (after saying why unless optional). */
static char *
cert_file (const char *dir, const char *name, bool optional)
{
  char *path;

  if (asprintf (&path, "%s/%s", dir, name) == -1) {
    log_error ("out of memory");
    return NULL;
  }
  if (access (path, R_OK) == 0)
    return path;
  if (!optional || errno != ENOENT)
    log_error ("--tls-certificates: %s: %m", path);
  free (path);
  return NULL;
}

static int
load_x509 (const char *dir)
{
  CLEANUP_FREE char *ca = NULL, *cert = NULL, *key = NULL, *crl = NULL;
  int r;

  if ((ca = cert_file (dir, "ca-cert.pem", false)) == NULL ||
      (cert = cert_file (dir, "server-cert.pem", false)) == NULL ||
      (key = cert_file (dir, "server-key.pem", false)) == NULL)
    return -1;
  crl = cert_file (dir, "ca-crl.pem", true);
  if (crl == NULL && errno != ENOENT)
    return -1;

  r = gnutls_certificate_allocate_credentials (&x509_cred);
  if (r < 0) {
    log_error ("TLS credentials: %s", gnutls_strerror (r));
    return -1;
  }
  r = gnutls_certificate_set_x509_trust_file (x509_cred, ca,
                                              GNUTLS_X509_FMT_PEM);
  if (r <= 0) {
    log_error ("%s: %s", ca, r == 0 ? "no CA certificate in it"
               : gnutls_strerror (r));
    return -1;
  }
  if (crl) {
    r = gnutls_certificate_set_x509_crl_file (x509_cred, crl,
                                              GNUTLS_X509_FMT_PEM);
    if (r < 0) {
      log_error ("%s: %s", crl, gnutls_strerror (r));
      return -1;
    }
  }
  r = gnutls_certificate_set_x509_key_file (x509_cred, cert, key,
                                            GNUTLS_X509_FMT_PEM);
  if (r < 0) {
    log_error ("%s, %s: %s", cert, key, gnutls_strerror (r));
    return -1;
  }
  /* For the TLS 1.2 DHE suites a priority string may enable. */
  gnutls_certificate_set_known_dh_params (x509_cred,
                                          GNUTLS_SEC_PARAM_MEDIUM);
  return 0;
}

/* ---- PSK --------------------------------------------------------------- */

/* Parses one "username:hexkey" line (newline removed) into e. */
static int
psk_parse_line (char *line, struct psk_entry *e)
{
  char *colon = strchr (line, ':');
  gnutls_datum_t hex;
  size_t hexlen;

  if (colon == NULL || colon == line)
    return -1;
  *colon = '\0';
  hexlen = strlen (colon + 1);
  if (hexlen == 0 || hexlen % 2 || hexlen > 2 * PSK_MAX_KEY)
    return -1;
  hex.data = (unsigned char *) colon + 1;
  hex.size = (unsigned) hexlen;
  if (gnutls_hex_decode2 (&hex, &e->key) < 0)
    return -1;
  e->user = strdup (line);
  if (e->user == NULL) {
    gnutls_free (e->key.data);
    return -1;
  }
  return 0;
}

static int
psk_add (char *line, const char *file, unsigned lineno)
{
  struct psk_entry *p;

  p = realloc (psks, (npsks + 1) * sizeof *psks);
  if (p == NULL) {
    log_error ("out of memory");
    return -1;
  }
  psks = p;
  if (psk_parse_line (line, &psks[npsks]) == -1) {
    log_error ("%s:%u: not a username:hexkey line", file, lineno);
    return -1;
  }
  npsks++;
  return 0;
}

static int
load_psk_file (const char *file)
{
  FILE *fp = fopen (file, "r");
  CLEANUP_FREE char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  unsigned lineno = 0;
  int r = 0;

  if (fp == NULL) {
    log_error ("--tls-psk: %s: %m", file);
    return -1;
  }
  while (r == 0 && (len = getline (&line, &cap, fp)) != -1) {
    lineno++;
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
      line[--len] = '\0';
    if (len == 0)
      continue;
    if (len > PSK_MAX_LINE) {
      log_error ("%s:%u: line too long", file, lineno);
      r = -1;
    }
    else
      r = psk_add (line, file, lineno);
  }
  if (r == 0 && ferror (fp)) {
    log_error ("--tls-psk: %s: %m", file);
    r = -1;
  }
  fclose (fp);
  if (line)
    gnutls_memset (line, 0, cap);
  if (r == 0 && npsks == 0) {
    log_error ("%s: no keys in the file", file);
    r = -1;
  }
  return r;
}

/* GnuTLS asks for the key of the identity a client names (key is freed
 * by GnuTLS). */
static int
psk_lookup (gnutls_session_t session, const char *user,
            gnutls_datum_t *key)
{
  size_t i;

  for (i = 0; i < npsks; i++) {
    if (strcmp (psks[i].user, user) != 0)
      continue;
    key->data = gnutls_malloc (psks[i].key.size);
    if (key->data == NULL)
      return -1;
    memcpy (key->data, psks[i].key.data, psks[i].key.size);
    key->size = psks[i].key.size;
    return 0;
  }
  return -1;
}

static int
load_psk (const char *file)
{
  int r;

  if (load_psk_file (file) == -1)
    return -1;
  r = gnutls_psk_allocate_server_credentials (&psk_cred);
  if (r < 0) {
    log_error ("TLS credentials: %s", gnutls_strerror (r));
    return -1;
  }
  gnutls_psk_set_server_credentials_function (psk_cred, psk_lookup);
  return 0;
}

/* ---- priorities and sessions ------------------------------------------- */

static bool
cpu_has_aes (void)
{
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init ();
  return __builtin_cpu_supports ("aes") && __builtin_cpu_supports ("pclmul");
#else
  return false;
#endif
}

static int
load_priority (void)
{
  CLEANUP_FREE char *s = NULL;
  const char *err = NULL;
  int r;

  if (cfg.tls_priority == NULL) {
    const char *aes = cpu_has_aes () ? AES_FIRST : "";
    if (asprintf (&s, "%s%s%s", aes, *aes && psk_cred ? ":" : "",
                  psk_cred ? PSK_PRIORITY : "") == -1) {
      log_error ("out of memory");
      return -1;
    }
    r = *s ? gnutls_priority_init2 (&priority, s, &err,
                                    GNUTLS_PRIORITY_INIT_DEF_APPEND)
      : gnutls_priority_init (&priority, NULL, &err);
  }
  else {
    if (asprintf (&s, "%s%s", cfg.tls_priority,
                  psk_cred ? ":" PSK_PRIORITY : "") == -1) {
      log_error ("out of memory");
      return -1;
    }
    r = gnutls_priority_init (&priority, s, &err);
  }
  if (r < 0) {
    if (r == GNUTLS_E_INVALID_REQUEST && err && cfg.tls_priority)
      log_error ("--tls-priority: %s: error at '%s'", cfg.tls_priority,
                 err);
    else
      log_error ("--tls-priority: %s", gnutls_strerror (r));
    return -1;
  }
  return 0;
}

int
tls_init (void)
{
  int r;

  if (cfg.tls == TLS_OFF)
    return 0;
  r = gnutls_global_init ();
  if (r < 0) {
    log_error ("GnuTLS: %s", gnutls_strerror (r));
    return -1;
  }
  global_init = true;
  if (cfg.tls_certificates && load_x509 (cfg.tls_certificates) == -1)
    return -1;
  if (cfg.tls_psk && load_psk (cfg.tls_psk) == -1)
    return -1;
  return load_priority ();
}

int
tls_session_setup (gnutls_session_t s)
{
  int r;

  r = gnutls_priority_set (s, priority);
  if (r == 0 && x509_cred)
    r = gnutls_credentials_set (s, GNUTLS_CRD_CERTIFICATE, x509_cred);
  if (r == 0 && psk_cred)
    r = gnutls_credentials_set (s, GNUTLS_CRD_PSK, psk_cred);
  if (r < 0)
    return r;
  if (x509_cred && cfg.tls_verify_peer) {
    gnutls_certificate_server_set_request (s, GNUTLS_CERT_REQUIRE);
    gnutls_session_set_verify_cert (s, NULL, 0);
  }
  else
    gnutls_certificate_server_set_request (s, GNUTLS_CERT_IGNORE);
  return 0;
}

const char *
tls_psk_first_user (void)
{
  return npsks ? psks[0].user : NULL;
}

void
tls_free (void)
{
  size_t i;

  for (i = 0; i < npsks; i++) {
    gnutls_memset (psks[i].key.data, 0, psks[i].key.size);
    gnutls_free (psks[i].key.data);
    free (psks[i].user);
  }
  free (psks);
  psks = NULL;
  npsks = 0;
  if (priority)
    gnutls_priority_deinit (priority);
  if (x509_cred)
    gnutls_certificate_free_credentials (x509_cred);
  if (psk_cred)
    gnutls_psk_free_server_credentials (psk_cred);
  priority = NULL;
  x509_cred = NULL;
  psk_cred = NULL;
  if (global_init)
    gnutls_global_deinit ();
  global_init = false;
}
