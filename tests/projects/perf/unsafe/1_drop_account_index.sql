DROP INDEX CONCURRENTLY events_account_idx;
