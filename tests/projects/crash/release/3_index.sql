CREATE INDEX CONCURRENTLY accounts_n_idx ON accounts (n);
