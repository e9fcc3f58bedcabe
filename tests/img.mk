# SPDX-License-Identifier: BSD-3-Clause
# Tests of the img; included from tests/Makefile.am.
