# SPDX-License-Identifier: BSD-3-Clause
# Tests of the engine; included from tests/Makefile.am.
