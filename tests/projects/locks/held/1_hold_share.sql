-- Holds SHARE (blocks writes) for 1.2 s.
LOCK TABLE accounts IN SHARE MODE;
SELECT pg_sleep(1.2);
