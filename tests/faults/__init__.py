"""Faults we can make, kept as tests (issue 14): a message arriving at one broker by two
paths (test_duplicate_path), a user moving between brokers counting frames
(test_move_frames), a full data disk on a small tmpfs (test_disk_full; skipped with the
reason where the machine cannot mount one), a consumer that does not read while its broker's
memory is sampled (test_slow_consumer). Short versions; not yet here: the chaos run (random
kill -9 in a 6-broker cloud under load)."""
