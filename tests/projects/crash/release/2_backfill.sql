-- dbgate: no-transaction
-- A backfill in two batches, each committed on its own; then a block of the file's own.
INSERT INTO applied VALUES ('2.1');
DO $$
BEGIN
    UPDATE accounts SET n = n + 1 WHERE id <= 100;
    INSERT INTO applied VALUES ('2.2 batch 1');
    COMMIT;
    UPDATE accounts SET n = n + 1 WHERE id > 100;
    INSERT INTO applied VALUES ('2.2 batch 2');
END
$$;
BEGIN;
UPDATE accounts SET visits = visits + 10 WHERE id <= 10;
INSERT INTO applied VALUES ('2.5');
COMMIT;
