#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# Generate ./configure from configure.ac and the Makefile.am files.
set -e
cd "$(dirname "$0")"
mkdir -p m4 build-aux
autoreconf -fi
