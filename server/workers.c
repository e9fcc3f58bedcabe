/* SPDX-License-Identifier: BSD-3-Clause */
/* The worker pool: engine calls never run inside the event loop.
 *
 *   loop --workers_submit--> [queue] --> N threads: command_run,
 *                                        conn_send_from_worker
 *   loop <--ev_async-- [done list] <-------------+
 *
 * Both lists are FIFOs of struct req linked through r->next, each under
 * its own mutex; beside them run jobs (handshake lookups, which may open
 * an image), after the requests waiting.  A worker touches only the
 * request it holds (and the thread-safe engine); the loop drains the
 * done list in async_cb and hands each request to transmission_complete.
 * Workers block every signal; the main thread takes them (libev's
 * handler wakes whichever thread leads the loop), except while it runs
 * a request or a job itself.
 *
 * Leader and followers.  The loop is not tied to one thread: whichever
 * thread leads it (the main thread at first) runs ev_run a pass at a
 * time, and the others wait in next_work for work or for the loop.
 * Waking a sleeping thread is dear on this kind of virtual machine: a
 * 4 KiB allocating write at queue depth 1 on disk took 100-160 us from
 * fio when a worker was woken for it, 50-70 us when the thread that read
 * it ran it.  So the one request of a connection that has nothing else
 * out, while nothing else is out at all (workers_submit), is kept: after
 * the pass the leader leaves the loop free for any thread (lead_free)
 * without waking one, arms the guard timer, runs the request, disarms
 * the timer and takes the loop back if nobody took it.  A request that
 * runs longer than LEAD_GUARD_NS (a flush on a slow disk, a read from a
 * remote base) sets the guard thread off, which wakes a waiting thread
 * to lead the loop meanwhile: other clients wait at most that much
 * longer than they would have for a worker, never for the request.  One
 * request at a time is kept so (guarded), and only while a thread waits
 * idle to take the loop.
 *
 * LEAD_GUARD_NS is above what a flush takes on an ordinary disk (0.3 to
 * 0.5 ms here): a guard that goes off costs the wake-ups it was meant to
 * save (at 0.2 ms, write + flush at depth 1 ran slower than through a
 * worker).
 */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>

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

/* How long the loop may go without a leader while a request runs. */
#define LEAD_GUARD_NS 2000000

static bool lead_free;          /* queue_lock held: nobody leads the loop */
static bool loop_finished;      /* queue_lock held: the loop has ended; only
                                   the main thread takes it back */
static bool guarded;            /* queue_lock held: a leader runs a request
                                   under the guard timer */
static unsigned idle;           /* queue_lock held: threads in next_work */
static int guard_fd = -1;       /* the guard timer (timerfd) */
static pthread_t guard_thread;
static bool guard_started;

/* Leader only. */
static bool in_pass;            /* in ev_run */
static bool loop_over;          /* workers_break was called */
static struct req *kept;        /* the request the leader runs itself
                                   after this pass */
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

/* What a thread does next: lead the loop (*lead; *finished if the loop
 * has ended, which only the main thread is told), or a request, or (if
 * none) a job; nothing when stopping.  Leading comes first: a loop that
 * nobody leads leaves every client waiting. */
static void
next_work (bool is_main, struct req **rp, struct job **jp, bool *lead,
           bool *finished)
{
  struct req *r = NULL;
  struct job *j = NULL;

  pthread_mutex_lock (&queue_lock);
  idle++;
  while (queue_head == NULL && jobs_head == NULL && !stopping &&
         !(lead_free && (is_main || !loop_finished)))
    pthread_cond_wait (&queue_cond, &queue_lock);
  idle--;
  *lead = lead_free && (is_main || !loop_finished);
  *finished = loop_finished;
  if (*lead)
    lead_free = false;
  else if ((r = queue_head) != NULL) {
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

/* Runs a request (its reply goes back through workers_done) or a job
 * away from the loop.  The main thread's stop signals are not blocked:
 * there they wait until it is done, so that no handler interrupts the
 * engine (a poll on a remote base would fail with EINTR). */
static void
run_off_loop (bool is_main, struct req *r, struct job *j)
{
  sigset_t all, old;

  sigemptyset (&old);
  if (is_main) {
    sigfillset (&all);
    pthread_sigmask (SIG_BLOCK, &all, &old);
  }
  if (r) {
    if (!zerocopy_prepare (r))
      command_run (r);
    conn_send_from_worker (r);
  }
  else {
    j->run (j);
    pthread_mutex_lock (&done_lock);
    push_job (&jobs_done_head, &jobs_done_tail, j);
    pthread_mutex_unlock (&done_lock);
    ev_async_send (loop, &done_async);
  }
  if (is_main)
    pthread_sigmask (SIG_SETMASK, &old, NULL);
}

static void
enqueue (struct req *r)
{
  pthread_mutex_lock (&queue_lock);
  push (&queue_head, &queue_tail, r);
  __atomic_store_n (&queue_len, queue_len + 1, __ATOMIC_RELAXED);
  pthread_mutex_unlock (&queue_lock);
  /* After the unlock: a worker woken under it would only block on it. */
  pthread_cond_signal (&queue_cond);
}

static void
arm_guard (long ns)
{
  struct itimerspec t = { .it_value = { .tv_nsec = ns } };

  (void) timerfd_settime (guard_fd, 0, &t, NULL);
}

/* The leader leaves the loop to run a request: false if it may not (a
 * request is already run so, nobody idle could take over, or requests
 * wait for a worker, which should rather be woken for them). */
static bool
leave_loop (void)
{
  bool ok;

  pthread_mutex_lock (&queue_lock);
  ok = !guarded && idle > 0 && queue_head == NULL;
  if (ok)
    lead_free = guarded = true;
  pthread_mutex_unlock (&queue_lock);
  if (ok)
    arm_guard (LEAD_GUARD_NS);
  return ok;
}

/* The request is done: the loop back, unless another thread took it. */
static bool
take_back (void)
{
  bool took;

  arm_guard (0);
  pthread_mutex_lock (&queue_lock);
  guarded = false;
  took = lead_free && !loop_finished;
  if (took)
    lead_free = false;
  pthread_mutex_unlock (&queue_lock);
  return took;
}

/* The guard timer went off: the loop has been without a leader for
 * LEAD_GUARD_NS, so a waiting thread takes it over. */
static void *
guard (void *arg)
{
  uint64_t n;
  bool stop, wake;

  for (;;) {
    if (read (guard_fd, &n, sizeof n) == -1 && errno != EINTR &&
        errno != EAGAIN) {
      log_error ("the loop's guard timer: %s", strerror (errno));
      return NULL;
    }
    pthread_mutex_lock (&queue_lock);
    stop = stopping;
    wake = lead_free;
    pthread_mutex_unlock (&queue_lock);
    if (stop)
      return NULL;
    if (wake) {
      log_msg (LOG_DEBUG, "a request has run for %d ms: another thread "
               "leads the loop meanwhile", LEAD_GUARD_NS / 1000000);
      pthread_cond_signal (&queue_cond);
    }
  }
}

/* Leads the loop, running the requests it keeps, until the loop ends
 * (true) or another thread took it over during one (false). */
static bool
lead (bool is_main)
{
  struct req *r;

  for (;;) {
    in_pass = true;
    ev_run (loop, EVRUN_ONCE);
    in_pass = false;
    if (loop_over) {
      if (kept)
        enqueue (kept);         /* workers_stop waits for it */
      kept = NULL;
      return true;
    }
    if ((r = kept) == NULL)
      continue;
    kept = NULL;
    if (!leave_loop ()) {
      enqueue (r);
      continue;
    }
    run_off_loop (is_main, r, NULL);
    if (!take_back ())
      return false;
  }
}

/* The loop has ended under a worker: the main thread takes it back to
 * stop the server. */
static void
hand_back_ended_loop (void)
{
  pthread_mutex_lock (&queue_lock);
  lead_free = loop_finished = true;
  pthread_mutex_unlock (&queue_lock);
  pthread_cond_broadcast (&queue_cond);
}

/* A worker; or the main thread once another took the loop over (it
 * returns when the loop has ended). */
static void
serve (bool is_main)
{
  struct req *r;
  struct job *j;
  bool lead_now, finished;

  for (;;) {
    next_work (is_main, &r, &j, &lead_now, &finished);
    if (lead_now) {
      if (finished)             /* main thread only */
        return;
      if (lead (is_main)) {
        if (is_main)
          return;
        hand_back_ended_loop ();
      }
      continue;
    }
    if (r == NULL && j == NULL)
      break;
    run_off_loop (is_main, r, j);
  }
}

static void *
worker (void *arg)
{
  serve (false);
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
  /* Replies given back before new requests are read: a request read in
   * the same pass as the completion of the one before it then finds
   * nothing else out (workers_submit). */
  ev_set_priority (&done_async, EV_MAXPRI);
  ev_async_start (loop, &done_async);
  guard_fd = timerfd_create (CLOCK_MONOTONIC, TFD_CLOEXEC);
  if (guard_fd == -1) {
    log_error ("timerfd_create: %s", strerror (errno));
    return -1;
  }
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
  e = pthread_create (&guard_thread, NULL, guard, NULL);
  pthread_sigmask (SIG_SETMASK, &old, NULL);
  if (e) {
    log_error ("starting the guard thread: %s", strerror (e));
    return -1;
  }
  guard_started = true;
  return 0;
}

void
workers_submit (struct req *r)
{
  out++;
  if (in_pass && kept == NULL && out == 1 && r->conn->in_flight == 1)
    kept = r;
  else
    enqueue (r);
}

void
workers_lead (void)
{
  if (!lead (true))
    serve (true);
}

void
workers_break (void)
{
  loop_over = true;
  ev_break (loop, EVBREAK_ALL);
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
  if (guard_started) {
    arm_guard (1);
    pthread_join (guard_thread, NULL);
    guard_started = false;
  }
  if (guard_fd >= 0)
    close (guard_fd);
  guard_fd = -1;
  free (threads);
  threads = NULL;
  nthreads = 0;
  /* What finished after the loop stopped. */
  async_cb (loop, &done_async, 0);
  ev_async_stop (loop, &done_async);
}
