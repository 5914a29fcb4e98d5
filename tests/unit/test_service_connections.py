"""The service's share of each server's connection cap (migrate/service/connections.py)."""

from __future__ import annotations

from migrate.service.connections import ConnectionShares, share

SRC, DST = ("imap.example.com", 993), ("mail.example.net", 993)


def test_a_lone_import_gets_the_whole_cap_and_a_full_pool_splits_it():
    servers = {SRC: (4, 1), DST: (8, 1)}
    assert share(servers, wanted=4, contenders=1) == 4
    assert share(servers, wanted=4, contenders=2) == 2
    assert share(servers, wanted=4, contenders=4) == 1
    assert share(servers, wanted=4, contenders=16) == 1  # never zero


def test_source_and_target_on_one_server_count_twice():
    assert share({SRC: (4, 2)}, wanted=4, contenders=1) == 2
    assert share({SRC: (15, 2)}, wanted=4, contenders=2) == 3


def test_no_capped_server_gives_what_is_wanted():
    assert share({}, wanted=3, contenders=8) == 3


def test_peak_counts_what_the_running_imports_hold():
    shares = ConnectionShares()
    n1, held1 = shares.take({SRC: (4, 1)}, wanted=4, contenders=4)
    n2, held2 = shares.take({SRC: (4, 1)}, wanted=4, contenders=4)
    assert (n1, n2) == (1, 1) and shares.peak() == {SRC: 2}
    shares.give_back(held1)
    shares.give_back(held2)
    n3, _ = shares.take({SRC: (4, 1)}, wanted=4, contenders=1)
    assert n3 == 4 and shares.peak() == {SRC: 4}
