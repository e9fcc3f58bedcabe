# SPDX-License-Identifier: BSD-3-Clause
# Tests of the server; included from tests/Makefile.am.
