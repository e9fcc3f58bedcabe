/* SPDX-License-Identifier: BSD-3-Clause */
/* --fork and --pidfile.
 *
 * --fork happens after the images are open and the sockets listen, so
 * that every start-up error still reaches the user's terminal and exit
 * status, and a client may connect as soon as the parent has exited.  The
 * parent waits on a pipe until the child says it is ready (pid file
 * written), then exits 0; if the child dies first, 1.  The child starts
 * a new session and puts /dev/null on stdin and stdout; stderr stays.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

static int ready_fd = -1;

int
daemon_fork (void)
{
  int p[2], null;
  pid_t pid;
  char c;

  if (pipe2 (p, O_CLOEXEC) == -1 || (pid = fork ()) == -1) {
    log_error ("--fork: %m");
    return -1;
  }
  if (pid > 0) {
    close (p[1]);
    _exit (read (p[0], &c, 1) == 1 ? 0 : 1);
  }
  close (p[0]);
  ready_fd = p[1];
  setsid ();
  null = open ("/dev/null", O_RDWR);
  if (null >= 0) {
    dup2 (null, STDIN_FILENO);
    dup2 (null, STDOUT_FILENO);
    if (null > STDERR_FILENO)
      close (null);
  }
  return 0;
}

void
daemon_ready (void)
{
  if (ready_fd >= 0) {
    if (write (ready_fd, "", 1) != 1) {
      /* the parent is gone: nothing to tell */
    }
    close (ready_fd);
    ready_fd = -1;
  }
}

/* Written to a temporary name and renamed, so that a reader never sees
 * half a pid. */
int
pidfile_write (const char *path)
{
  char *tmp;
  FILE *f;

  if (asprintf (&tmp, "%s.tmp", path) == -1) {
    log_error ("out of memory");
    return -1;
  }
  f = fopen (tmp, "w");
  if (f != NULL && fprintf (f, "%ld\n", (long) getpid ()) < 0) {
    fclose (f);
    f = NULL;
  }
  if (f == NULL || fclose (f) == EOF || rename (tmp, path) == -1) {
    log_error ("%s: %m", path);
    free (tmp);
    return -1;
  }
  free (tmp);
  return 0;
}
