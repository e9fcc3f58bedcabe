/* SPDX-License-Identifier: BSD-3-Clause */
/* The worker pool: engine calls never run on the event loop.
 *
 *   loop --workers_submit--> [queue] --> N threads: command_run,
 *                                        conn_send_from_worker
 *   loop <--ev_async-- [done list] <-------------+
 *
 * Both lists are FIFOs of struct req linked through r->next, each under
 * its own mutex; beside them run jobs (handshake lookups, which may open
 * an image), after the requests waiting.  A worker touches only the request it holds (and the
 * thread-safe engine); the loop drains the done list in async_cb and
 * hands each request to transmission_complete.  Workers block every
 * signal: signals are the loop's business (ev_signal).
 */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static pthread_mutex_t queue_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t queue_cond = PTHREAD_COND_INITIALIZER;
static struct req *queue_head, *queue_tail;  /* queue_lock held */
static struct job *jobs_head, *jobs_tail;    /* queue_lock held */
static bool stopping;                        /* queue_lock held */
static unsigned queue_len;                   /* written with queue_lock
                                                held, read without */

static pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
static struct req *done_head, *done_tail;    /* done_lock held */
static struct job *jobs_done_head, *jobs_done_tail; /* done_lock held */

static pthread_t *threads;
static unsigned nthreads;
static struct ev_loop *loop;
static ev_async done_async;
static unsigned long out;       /* requests submitted, not yet done (loop
                                   thread only) */

static void
push (struct req **head, struct req **tail, struct req *r)
{
  r->next = NULL;
  if (*tail)
    (*tail)->next = r;
  else
    *head = r;
  *tail = r;
}

/* The done list links through done_next: a reply a worker could not
 * write whole is already in its connection's output queue (r->next). */
static void
push_done (struct req *r)
{
  r->done_next = NULL;
  if (done_tail)
    done_tail->done_next = r;
  else
    done_head = r;
  done_tail = r;
}

static void
push_job (struct job **head, struct job **tail, struct job *j)
{
  j->next = NULL;
  if (*tail)
    (*tail)->next = j;
  else
    *head = j;
  *tail = j;
}

/* The next request or (if none) job; both NULL when stopping. */
static void
next_work (struct req **rp, struct job **jp)
{
  struct req *r;
  struct job *j = NULL;

  pthread_mutex_lock (&queue_lock);
  while (queue_head == NULL && jobs_head == NULL && !stopping)
    pthread_cond_wait (&queue_cond, &queue_lock);
  r = queue_head;
  if (r) {
    queue_head = r->next;
    if (queue_head == NULL)
      queue_tail = NULL;
    __atomic_store_n (&queue_len, queue_len - 1, __ATOMIC_RELAXED);
  }
  else if ((j = jobs_head) != NULL) {
    jobs_head = j->next;
    if (jobs_head == NULL)
      jobs_tail = NULL;
  }
  pthread_mutex_unlock (&queue_lock);
  *rp = r;
  *jp = j;
}

void
workers_done (struct req *r)
{
  pthread_mutex_lock (&done_lock);
  push_done (r);
  pthread_mutex_unlock (&done_lock);
  ev_async_send (loop, &done_async);
}

static void *
worker (void *arg)
{
  struct req *r;
  struct job *j;

  for (;;) {
    next_work (&r, &j);
    if (r == NULL && j == NULL)
      break;
    if (r) {                    /* goes back through workers_done */
      if (!zerocopy_prepare (r))
        command_run (r);
      conn_send_from_worker (r);
      continue;
    }
    j->run (j);
    pthread_mutex_lock (&done_lock);
    push_job (&jobs_done_head, &jobs_done_tail, j);
    pthread_mutex_unlock (&done_lock);
    ev_async_send (loop, &done_async);
  }
  return NULL;
}

static void
async_cb (struct ev_loop *l, ev_async *w, int revents)
{
  struct req *r, *next;
  struct job *j, *jnext;

  pthread_mutex_lock (&done_lock);
  r = done_head;
  done_head = done_tail = NULL;
  j = jobs_done_head;
  jobs_done_head = jobs_done_tail = NULL;
  pthread_mutex_unlock (&done_lock);
  for (; r; r = next) {
    next = r->done_next;
    out--;
    transmission_complete (r);
  }
  for (; j; j = jnext) {
    jnext = j->next;
    j->queued = false;
    j->done (j);
  }
}

int
workers_start (struct ev_loop *l, unsigned n)
{
  sigset_t all, old;
  unsigned i;
  int e;

  loop = l;
  ev_async_init (&done_async, async_cb);
  ev_async_start (loop, &done_async);
  threads = calloc (n, sizeof *threads);
  if (threads == NULL) {
    log_error ("out of memory");
    return -1;
  }
  sigfillset (&all);
  pthread_sigmask (SIG_BLOCK, &all, &old);
  for (i = 0; i < n; i++) {
    e = pthread_create (&threads[i], NULL, worker, NULL);
    if (e) {
      pthread_sigmask (SIG_SETMASK, &old, NULL);
      log_error ("starting worker threads: %s", strerror (e));
      return -1;
    }
    nthreads++;
  }
  pthread_sigmask (SIG_SETMASK, &old, NULL);
  return 0;
}

void
workers_submit (struct req *r)
{
  out++;
  pthread_mutex_lock (&queue_lock);
  push (&queue_head, &queue_tail, r);
  __atomic_store_n (&queue_len, queue_len + 1, __ATOMIC_RELAXED);
  pthread_mutex_unlock (&queue_lock);
  /* After the unlock: a worker woken under it would only block on it. */
  pthread_cond_signal (&queue_cond);
}

unsigned long
workers_out (void)
{
  return out;
}

unsigned
workers_queue_depth (void)
{
  return __atomic_load_n (&queue_len, __ATOMIC_RELAXED);
}

void
workers_submit_job (struct job *j)
{
  assert (!j->queued);
  j->queued = true;
  pthread_mutex_lock (&queue_lock);
  push_job (&jobs_head, &jobs_tail, j);
  pthread_mutex_unlock (&queue_lock);
  pthread_cond_signal (&queue_cond);
}

void
workers_stop (void)
{
  unsigned i;

  pthread_mutex_lock (&queue_lock);
  stopping = true;
  pthread_cond_broadcast (&queue_cond);
  pthread_mutex_unlock (&queue_lock);
  for (i = 0; i < nthreads; i++)
    pthread_join (threads[i], NULL);
  free (threads);
  threads = NULL;
  nthreads = 0;
  /* What finished after the loop stopped. */
  async_cb (loop, &done_async, 0);
  ev_async_stop (loop, &done_async);
}
