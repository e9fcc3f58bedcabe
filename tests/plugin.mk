# SPDX-License-Identifier: BSD-3-Clause
# Tests of the plugin; included from tests/Makefile.am.
