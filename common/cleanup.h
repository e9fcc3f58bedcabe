/* SPDX-License-Identifier: BSD-3-Clause */
/* Scoped cleanup: early returns leak neither memory, descriptors nor locks. */
#ifndef COWBD_CLEANUP_H
#define COWBD_CLEANUP_H

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>
#include <assert.h>

static inline void
cleanup_free (void *ptr)
{
  free (*(void **) ptr);
}
#define CLEANUP_FREE __attribute__ ((cleanup (cleanup_free)))

static inline void
cleanup_close (int *fd)
{
  if (*fd >= 0)
    close (*fd);
}
#define CLEANUP_CLOSE __attribute__ ((cleanup (cleanup_close)))

static inline void
cleanup_unlock (pthread_mutex_t **m)
{
  int r = pthread_mutex_unlock (*m);
  assert (r == 0);
  (void) r;
}

#define CLEANUP_CONCAT_(a, b) a##b
#define CLEANUP_CONCAT(a, b) CLEANUP_CONCAT_ (a, b)

/* Holds mutex m until the end of the enclosing block. */
#define ACQUIRE_LOCK_FOR_CURRENT_SCOPE(m)                               \
  __attribute__ ((cleanup (cleanup_unlock)))                            \
  pthread_mutex_t *CLEANUP_CONCAT (lock_, __LINE__) = (m);              \
  do {                                                                  \
    int r_ = pthread_mutex_lock (CLEANUP_CONCAT (lock_, __LINE__));     \
    assert (r_ == 0);                                                   \
    (void) r_;                                                          \
  } while (0)

#endif /* COWBD_CLEANUP_H */
