# SPDX-License-Identifier: BSD-3-Clause
# Flags shared by every directory's Makefile.am.
AM_CPPFLAGS = -I$(top_srcdir)/common -I$(top_srcdir)/formats
AM_CFLAGS = $(WARNING_CFLAGS) $(PTHREAD_CFLAGS)
