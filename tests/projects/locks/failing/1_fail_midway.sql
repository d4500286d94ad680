-- Takes a lock, waits a little, then fails: the monitor and the traffic must stop anyway.
LOCK TABLE accounts IN SHARE MODE;
SELECT pg_sleep(0.3);
SELECT 1 / 0;
