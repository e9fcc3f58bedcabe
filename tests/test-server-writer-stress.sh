#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Allocating 4 KiB random writes at queue depth 32 over a base full of
# data (each new cluster takes a copy-on-write fill), the load of a VM's
# first boot: replies written by the loop and by workers interleave, and
# pending replies are handed to a drain job again and again.  Every
# round must finish (a drain job queued twice once linked itself into
# the workers' done list and the loop spun forever), the server must
# still answer and exit cleanly, fio must read back what it wrote
# (--verify) and qemu-img check must find the image clean.  The race is
# rare (one run in four of a 1 GiB copy-on-write bench hung), so this
# test makes it possible, not certain; workers_submit_job asserts that a
# job is never queued twice, which turns it into an abort if it happens.
. "${srcdir:-.}/server-functions.sh"
requires fio --version
requires nbdinfo --version

cd "$tmp"
head -c 256M /dev/urandom > base.raw
rounds=${STRESS_ROUNDS:-4}

for fmt in qed qcow2; do
    for ((i = 0; i < rounds; i++)); do
        rm -f ov.$fmt
        qemu-img create -q -f $fmt -b base.raw -F raw ov.$fmt 256M
        start_server "$tmp/ov.$fmt"
        rc=0
        timeout 60 fio --name=w --ioengine=nbd --uri="$(uri)" \
            --rw=randwrite --bs=4k --iodepth=32 --number_ios=16384 \
            --randseed=$i --verify=crc32c --output=/dev/null || rc=$?
        if [ $rc -ne 0 ] || ! timeout 10 nbdinfo --size "$(uri)" >/dev/null
        then
            kill -9 $server_pid
            server_pid=
            fail "$fmt round $i: fio exit $rc or the server stopped answering"
        fi
        stop_server
        qemu-img check -q -f $fmt ov.$fmt || fail "$fmt round $i: check"
    done
done
