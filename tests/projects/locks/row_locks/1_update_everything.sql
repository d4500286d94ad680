-- Every row of accounts, in one transaction, kept for a second.
UPDATE accounts SET balance = balance + 1;
SELECT pg_sleep(1);
