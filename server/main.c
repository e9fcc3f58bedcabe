/* SPDX-License-Identifier: BSD-3-Clause */
/* cowbd: serves copy-on-write disk images over NBD.
 *
 *   cowbd [OPTIONS] [NAME=]IMAGE...
 *
 * Start-up, in an order that keeps errors visible: parse options, open
 * every image, open the listening sockets, then (--fork) detach, write
 * the pid file, start the workers and the loop, and (--run) start the
 * captive command.  Shutdown (SIGTERM, SIGINT, SIGHUP, end of --run or
 * of the -s connection) stops accepting, lets every connection finish the
 * requests it has in flight and send their replies (for at most
 * SHUTDOWN_GRACE seconds), stops the workers, then flushes and closes
 * every image so that none is left needing a check.
 *
 * Signals that stop the server are blocked from the start until the
 * loop's watchers are installed, so one that comes while images are
 * being opened (a repair may take long) stops the server gracefully
 * once it runs, not by the default action in the middle of a write.
 * Once shutting down, further ones are ignored (and logged): timeout(1)
 * sends two, and an impatient user more; the grace timer bounds the
 * wait for clients, and the images are always closed cleanly.
 */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "size.h"
#include "tls.h"

#define SHUTDOWN_GRACE 10.

struct config cfg = {
  .threads = 16,
  .handshake_limit = DEFAULT_HANDSHAKE_LIMIT,
  .max_connections = DEFAULT_MAX_CONNECTIONS,
  .max_inflight = DEFAULT_MAX_INFLIGHT,
};

static const char *pidfile;
static const char *metrics_spec;        /* --metrics */
static const char *log_spec;            /* --log */
static const char *control_path;        /* --control */
static const char *clone_dir;           /* --clone-dir */
static bool do_fork;
static struct ev_loop *loop;
static bool shutting_down;
static int exit_status;
static ev_signal sig_term, sig_int, sig_hup;
static ev_timer grace_timer;

static void
usage (FILE *f)
{
  fprintf (f,
"Usage: cowbd [OPTIONS] [NAME=]IMAGE... [dir=DIR]\n"
"Serve disk images (raw, qed, qcow2) over NBD; the first is the default\n"
"export.  dir=DIR serves every image in DIR by its file name.\n"
"\n"
"  -p, --port=PORT        TCP port (default 10809)\n"
"  -i, --ipaddr=ADDR      listen on this address only\n"
"  -U, --unix=PATH        listen on a Unix socket (-: a private one)\n"
"  -s, --single           serve one connection on stdin/stdout\n"
"      --run=CMD          run CMD with $uri set, exit with its status\n"
"  -r, --readonly         serve every export read-only\n"
"  -f, --format=FMT       image format (default: probe)\n"
"  -t, --threads=N        worker threads (default 16)\n"
"      --cache-size=SIZE  metadata cache per image (e.g. 32M)\n"
"      --remote-timeout=SECONDS  a read of a remote (nbd://) backing image\n"
"                         fails with EIO after this long (default 10)\n"
"      --base-cache=DIR   keep what is read of remote backing images in\n"
"                         DIR, fetched once per host, kept across restarts\n"
"      --base-cache-size=SIZE  bound on that cache (default: none)\n"
"      --fork             run in the background once listening\n"
"  -P, --pidfile=FILE     write the server's pid to FILE\n"
"  -v, --verbose          log connections too (-vv: every request)\n"
"      --log=stderr|syslog  where log lines go (default stderr; syslog:PATH\n"
"                         names the syslog socket, default /dev/log)\n"
"      --metrics=[ADDR:]PORT|unix:PATH  serve GET /metrics (Prometheus\n"
"                         text format) there; ADDR defaults to 127.0.0.1\n"
"      --tls=off|on|require  TLS after STARTTLS: off (default), offered,\n"
"                         or required before any export is named\n"
"      --tls-certificates=DIR  ca-cert.pem, server-cert.pem, server-key.pem\n"
"                         (and ca-crl.pem) in DIR\n"
"      --tls-psk=FILE     pre-shared keys, username:hexkey (psktool)\n"
"      --tls-verify-peer  demand a client certificate signed by the CA\n"
"      --tls-priority=STR GnuTLS priority string (default: the system's,\n"
"                         AES-GCM first where the CPU has AES)\n"
"      --handshake-limit=SECONDS  drop a client that has not finished the\n"
"                         handshake by then (default 10, 0: no limit)\n"
"      --max-connections=N  refuse clients past N open connections\n"
"                         (default 1000, 0: no limit)\n"
"      --control=PATH     a Unix socket (mode 0600) taking JSON commands,\n"
"                         one a line: export-add, export-remove,\n"
"                         export-list, clone-create, query-status\n"
"                         (cowbdctl(1) is its client)\n"
"      --clone-from=[TEMPLATE=]BASE  an unknown export NAME (or\n"
"                         TEMPLATE/NAME) becomes a new qcow2 overlay of\n"
"                         BASE in --clone-dir (repeatable)\n"
"      --clone-dir=DIR    where overlays made on demand or by\n"
"                         clone-create live (DIR/NAME.qcow2)\n"
"      --max-exports=N    cap on exports, clones included (0: none)\n"
"      --max-inflight=SIZE  bytes of request buffers all clients together\n"
"                         may hold before the server stops reading\n"
"                         requests (default 256M)\n"
"      --backing-dir=DIR  backing files must resolve inside DIR (may be\n"
"                         repeated; default: dir= confines its images to\n"
"                         DIR, images named here are trusted)\n"
"  -h, --help             show this help\n"
"  -V, --version          show the version\n"
"\n"
"Socket activation: LISTEN_PID and LISTEN_FDS as systemd sets them;\n"
"readiness through NOTIFY_SOCKET (Type=notify).\n");
}

enum { OPT_RUN = 256, OPT_CACHE_SIZE, OPT_FORK, OPT_TLS, OPT_TLS_CERTS,
       OPT_TLS_PSK, OPT_TLS_VERIFY, OPT_TLS_PRIORITY,
       OPT_HANDSHAKE_LIMIT, OPT_MAX_CONNECTIONS, OPT_METRICS, OPT_LOG,
       OPT_CONTROL, OPT_CLONE_FROM, OPT_CLONE_DIR, OPT_MAX_EXPORTS,
       OPT_MAX_INFLIGHT, OPT_BACKING_DIR,
       OPT_REMOTE_TIMEOUT, OPT_BASE_CACHE, OPT_BASE_CACHE_SIZE };

static const struct option long_options[] = {
  { "port", required_argument, NULL, 'p' },
  { "ipaddr", required_argument, NULL, 'i' },
  { "unix", required_argument, NULL, 'U' },
  { "single", no_argument, NULL, 's' },
  { "run", required_argument, NULL, OPT_RUN },
  { "readonly", no_argument, NULL, 'r' },
  { "read-only", no_argument, NULL, 'r' },
  { "format", required_argument, NULL, 'f' },
  { "threads", required_argument, NULL, 't' },
  { "cache-size", required_argument, NULL, OPT_CACHE_SIZE },
  { "remote-timeout", required_argument, NULL, OPT_REMOTE_TIMEOUT },
  { "base-cache", required_argument, NULL, OPT_BASE_CACHE },
  { "base-cache-size", required_argument, NULL, OPT_BASE_CACHE_SIZE },
  { "fork", no_argument, NULL, OPT_FORK },
  { "pidfile", required_argument, NULL, 'P' },
  { "verbose", no_argument, NULL, 'v' },
  { "help", no_argument, NULL, 'h' },
  { "version", no_argument, NULL, 'V' },
  { "tls", required_argument, NULL, OPT_TLS },
  { "tls-certificates", required_argument, NULL, OPT_TLS_CERTS },
  { "tls-psk", required_argument, NULL, OPT_TLS_PSK },
  { "tls-verify-peer", no_argument, NULL, OPT_TLS_VERIFY },
  { "tls-priority", required_argument, NULL, OPT_TLS_PRIORITY },
  { "handshake-limit", required_argument, NULL, OPT_HANDSHAKE_LIMIT },
  { "max-connections", required_argument, NULL, OPT_MAX_CONNECTIONS },
  { "max-inflight", required_argument, NULL, OPT_MAX_INFLIGHT },
  { "backing-dir", required_argument, NULL, OPT_BACKING_DIR },
  { "metrics", required_argument, NULL, OPT_METRICS },
  { "log", required_argument, NULL, OPT_LOG },
  { "control", required_argument, NULL, OPT_CONTROL },
  { "clone-from", required_argument, NULL, OPT_CLONE_FROM },
  { "clone-dir", required_argument, NULL, OPT_CLONE_DIR },
  { "max-exports", required_argument, NULL, OPT_MAX_EXPORTS },
  { NULL, 0, NULL, 0 },
};

static void __attribute__ ((format (printf, 1, 2), noreturn))
bad_usage (const char *fmt, ...)
{
  va_list ap;

  fprintf (stderr, "cowbd: ");
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fprintf (stderr, "\nTry 'cowbd --help' for more information.\n");
  exit (EXIT_FAILURE);
}

static unsigned
parse_threads (const char *s)
{
  char *end;
  long n;

  errno = 0;
  n = strtol (s, &end, 10);
  if (errno || *end || n < 1 || n > 1024)
    bad_usage ("-t %s: expected 1 to 1024 threads", s);
  return (unsigned) n;
}

/* --handshake-limit, --max-connections: 0 (no limit) to max. */
static unsigned
parse_limit (const char *opt, const char *s, long max)
{
  char *end;
  long n;

  errno = 0;
  n = strtol (s, &end, 10);
  if (errno || end == s || *end || n < 0 || n > max)
    bad_usage ("--%s=%s: expected a number from 0 (no limit) to %ld", opt,
               s, max);
  return (unsigned) n;
}

static void
parse_port (const char *s)
{
  char *end;
  long n;

  errno = 0;
  n = strtol (s, &end, 10);
  if (errno || *end || n < 0 || n > 65535)
    bad_usage ("-p %s: not a port number", s);
  cfg.port = s;
}

static void
parse_tls (const char *s)
{
  if (strcmp (s, "off") == 0)
    cfg.tls = TLS_OFF;
  else if (strcmp (s, "on") == 0)
    cfg.tls = TLS_ON;
  else if (strcmp (s, "require") == 0)
    cfg.tls = TLS_REQUIRE;
  else
    bad_usage ("--tls=%s: expected off, on or require", s);
}

/* --max-inflight: at least one request of the largest size, so that a
 * client sending one is always served in the end. */
static void
parse_max_inflight (const char *s)
{
  if (size_parse (s, &cfg.max_inflight) == -1 ||
      cfg.max_inflight < MAX_PAYLOAD)
    bad_usage ("--max-inflight=%s: expected a size of at least 32M", s);
}

/* --backing-dir, repeatable: appended to the NULL-terminated list, made
 * absolute (--fork changes directory). */
static void
add_backing_dir (const char *dir)
{
  static size_t n;
  struct stat st;
  const char **v = realloc (cfg.backing_dirs, (n + 2) * sizeof *v);
  char *abs;

  if (v == NULL)
    bad_usage ("%s", "out of memory");
  v[n] = NULL;
  cfg.backing_dirs = v;
  if (stat (dir, &st) == -1)
    bad_usage ("--backing-dir=%s: %s", dir, strerror (errno));
  if (!S_ISDIR (st.st_mode))
    bad_usage ("--backing-dir=%s: not a directory", dir);
  if ((abs = realpath (dir, NULL)) == NULL)
    bad_usage ("--backing-dir=%s: %s", dir, strerror (errno));
  v[n++] = abs;
  v[n] = NULL;
  cfg.backing_dirs = v;
}

/* --base-cache=DIR: an existing folder (made absolute: --fork changes
 * directory). */
static void
parse_base_cache (const char *s)
{
  struct stat st;
  char *abs;

  if (stat (s, &st) == -1)
    bad_usage ("--base-cache=%s: %s", s, strerror (errno));
  if (!S_ISDIR (st.st_mode))
    bad_usage ("--base-cache=%s: not a directory", s);
  abs = realpath (s, NULL);
  if (abs == NULL)
    bad_usage ("--base-cache=%s: %s", s, strerror (errno));
  cfg.base_cache_dir = abs;
}

static void
parse_options (int argc, char *argv[])
{
  int c;

  while ((c = getopt_long (argc, argv, "p:i:U:srf:t:P:vhV", long_options,
                           NULL)) != -1) {
    switch (c) {
    case 'p': parse_port (optarg); break;
    case 'i': cfg.ipaddr = optarg; break;
    case 'U': cfg.unix_path = optarg; break;
    case 's': cfg.single = true; break;
    case OPT_RUN: cfg.run = optarg; break;
    case 'r': cfg.readonly = true; break;
    case 'f': cfg.format = optarg; break;
    case 't': cfg.threads = parse_threads (optarg); break;
    case OPT_CACHE_SIZE:
      if (size_parse (optarg, &cfg.cache_size) == -1)
        bad_usage ("--cache-size %s: not a size", optarg);
      break;
    case OPT_REMOTE_TIMEOUT:
      cfg.remote_timeout_ms = 1000 *
        parse_limit ("remote-timeout", optarg, 3600);
      if (cfg.remote_timeout_ms == 0)
        bad_usage ("--remote-timeout=%s: expected 1 to 3600 seconds",
                   optarg);
      break;
    case OPT_BASE_CACHE: parse_base_cache (optarg); break;
    case OPT_BASE_CACHE_SIZE:
      if (size_parse (optarg, &cfg.base_cache_size) == -1)
        bad_usage ("--base-cache-size %s: not a size", optarg);
      break;
    case OPT_FORK: do_fork = true; break;
    case 'P': pidfile = optarg; break;
    case 'v': cfg.verbose++; break;
    case OPT_MAX_INFLIGHT: parse_max_inflight (optarg); break;
    case OPT_BACKING_DIR: add_backing_dir (optarg); break;
    case OPT_METRICS: metrics_spec = optarg; break;
    case OPT_LOG: log_spec = optarg; break;
    case OPT_CONTROL: control_path = optarg; break;
    case OPT_CLONE_FROM:
      if (exports_clone_from (optarg) == -1)
        exit (EXIT_FAILURE);
      break;
    case OPT_CLONE_DIR: clone_dir = optarg; exports_clone_dir (optarg); break;
    case OPT_MAX_EXPORTS:
      exports_max (parse_limit ("max-exports", optarg, 10000000));
      break;
    case OPT_TLS: parse_tls (optarg); break;
    case OPT_TLS_CERTS: cfg.tls_certificates = optarg; break;
    case OPT_TLS_PSK: cfg.tls_psk = optarg; break;
    case OPT_TLS_VERIFY: cfg.tls_verify_peer = true; break;
    case OPT_TLS_PRIORITY: cfg.tls_priority = optarg; break;
    case OPT_HANDSHAKE_LIMIT:
      cfg.handshake_limit = parse_limit ("handshake-limit", optarg, 86400);
      break;
    case OPT_MAX_CONNECTIONS:
      cfg.max_connections = parse_limit ("max-connections", optarg, 1000000);
      break;
    case 'h': usage (stdout); exit (EXIT_SUCCESS);
    case 'V':
      printf ("cowbd %s\n", PACKAGE_VERSION);
      printf ("features:");
#ifdef HAVE_GNUTLS
      printf (" tls");
#endif
#ifdef HAVE_LIBMICROHTTPD
      printf (" metrics");
#endif
#ifdef HAVE_LIBSYSTEMD
      printf (" sd_notify");
#endif
      printf ("\n");
      exit (EXIT_SUCCESS);
    default:
      fprintf (stderr, "Try 'cowbd --help' for more information.\n");
      exit (EXIT_FAILURE);
    }
  }
}

static void
check_tls_options (void)
{
  bool creds = cfg.tls_certificates || cfg.tls_psk;

#ifndef HAVE_GNUTLS
  if (cfg.tls != TLS_OFF || creds)
    bad_usage ("%s", "this cowbd was built without TLS (GnuTLS)");
#endif
  if (cfg.tls != TLS_OFF && !creds)
    bad_usage ("%s", "--tls=on or require needs --tls-certificates or "
               "--tls-psk");
  if (cfg.tls == TLS_OFF && (creds || cfg.tls_verify_peer ||
                             cfg.tls_priority))
    bad_usage ("%s", "TLS options given with --tls=off (say --tls=on or "
               "--tls=require)");
  if (cfg.tls_verify_peer && !cfg.tls_certificates)
    bad_usage ("%s", "--tls-verify-peer needs --tls-certificates");
}

static void
check_options (int nimages)
{
  bool net = cfg.port || cfg.ipaddr || cfg.unix_path;

  /* A server that makes its exports (clones, --control) may start with
   * none. */
  if (nimages == 0 && exports_nclones () == 0 && control_path == NULL)
    bad_usage ("%s", "no image to serve");
  if (exports_nclones () && clone_dir == NULL)
    bad_usage ("%s", "--clone-from needs --clone-dir");
#ifndef HAVE_JSON_C
  if (control_path)
    bad_usage ("%s", "this cowbd was built without --control (json-c)");
#endif
  if (cfg.single && (net || cfg.run || do_fork))
    bad_usage ("%s", "-s cannot be combined with -p, -i, -U, --run or "
               "--fork");
  if (cfg.unix_path && (cfg.port || cfg.ipaddr))
    bad_usage ("%s", "-U cannot be combined with -p or -i");
  if (cfg.run && do_fork)
    bad_usage ("%s", "--run cannot be combined with --fork");
  check_tls_options ();
  /* A captive server needs no public socket. */
  if (cfg.run && !net)
    cfg.unix_path = "-";
}

/* ---- shutdown ---------------------------------------------------------- */

static void
grace_cb (struct ev_loop *l, ev_timer *w, int revents)
{
  log_error ("clients did not finish within %g s: closing them",
             SHUTDOWN_GRACE);
  conns_close_all ();
}

void
server_conns_gone (void)
{
  if (shutting_down)
    workers_break ();
  else if (cfg.single)
    server_shutdown (0);
}

void
server_shutdown (int status)
{
  if (shutting_down)
    return;
  shutting_down = true;
  exit_status = status;
  notify_stopping ();
  /* The signal watchers stay: a second SIGTERM (timeout(1) sends one to
   * the child and one to its group) must not kill a server that is
   * closing its images; the grace timer bounds the wait instead. */
  listen_stop (loop);
  control_stop ();
  if (conns_count () == 0) {
    workers_break ();
    return;
  }
  conns_drain_all ();
  ev_timer_init (&grace_timer, grace_cb, SHUTDOWN_GRACE, 0.);
  ev_timer_start (loop, &grace_timer);
}

static void
signal_cb (struct ev_loop *l, ev_signal *w, int revents)
{
  if (shutting_down) {
    log_notice ("signal %d: already shutting down (ignored: images are "
                "being closed cleanly)", w->signum);
    return;
  }
  log_verbose ("signal %d: shutting down", w->signum);
  /* As qemu-nbd and nbdkit do, a signal is a normal way to stop. */
  server_shutdown (0);
}

/* ---- main -------------------------------------------------------------- */

/* SIG_BLOCK or SIG_UNBLOCK the signals that stop the server. */
static void
mask_stop_signals (int how)
{
  sigset_t s;

  sigemptyset (&s);
  sigaddset (&s, SIGTERM);
  sigaddset (&s, SIGINT);
  sigaddset (&s, SIGHUP);
  sigprocmask (how, &s, NULL);
}

static int
start (void)
{
  if (tls_init () == -1 || exports_open () == -1 || listen_open () == -1 ||
      (metrics_spec && metrics_listen (metrics_spec) == -1) ||
      (control_path && control_open (control_path) == -1))
    return -1;
  if (do_fork && daemon_fork () == -1)
    return -1;
  if (pidfile && pidfile_write (pidfile) == -1)
    return -1;
  loop = ev_default_loop (EVFLAG_AUTO);
  if (loop == NULL) {
    log_error ("cannot start the event loop");
    return -1;
  }
  ev_signal_init (&sig_term, signal_cb, SIGTERM);
  ev_signal_init (&sig_int, signal_cb, SIGINT);
  ev_signal_start (loop, &sig_term);
  ev_signal_start (loop, &sig_int);
  /* SIGHUP (the terminal went away, or a service manager's reload) would
   * otherwise kill the process with images open: it stops the server
   * the same graceful way. */
  ev_signal_init (&sig_hup, signal_cb, SIGHUP);
  ev_signal_start (loop, &sig_hup);
  mask_stop_signals (SIG_UNBLOCK);
  if (workers_start (loop, cfg.threads) == -1 || metrics_start (loop) == -1)
    return -1;
  listen_start (loop);
  if (control_path)
    control_start (loop);
  if (cfg.single && conn_new (loop, STDIN_FILENO, STDOUT_FILENO,
                              "stdin/stdout") == NULL)
    return -1;
  if (cfg.run && captive_start (loop) == -1)
    return -1;
  if (cfg.verbose && !cfg.single) {
    char *uri = captive_uri ();
    log_verbose ("listening%s: %s", listen_activated () ?
                 " (socket activation)" : "", uri ? uri : "?");
    free (uri);
  }
  daemon_ready ();
  notify_ready (loop);
  return 0;
}

int
main (int argc, char *argv[])
{
  int i, r;

  signal (SIGPIPE, SIG_IGN);
  mask_stop_signals (SIG_BLOCK);
  parse_options (argc, argv);
  if (log_setup (log_spec) == -1)
    exit (EXIT_FAILURE);
  image_set_warn (log_engine_warning);
  for (i = optind; i < argc; i++)
    if (exports_add (argv[i]) == -1)
      exit (EXIT_FAILURE);
  check_options (argc - optind);

  r = start ();
  if (r == 0)
    workers_lead ();
  else
    exit_status = EXIT_FAILURE;
  listen_stop (loop);
  control_stop ();
  if (loop)
    workers_stop ();
  conns_close_all ();
  conns_reap ();
  metrics_stop (loop);
  if (exports_close () == -1 && exit_status == 0)
    exit_status = EXIT_FAILURE;
  if (loop)
    ev_loop_destroy (loop);
  tls_free ();
  for (const char **d = cfg.backing_dirs; d && *d; d++)
    free ((char *) *d);         /* realpath's */
  free (cfg.backing_dirs);
  return exit_status;
}
