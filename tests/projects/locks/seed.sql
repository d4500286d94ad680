-- A table with rows that the migrations lock, and an empty one whose locks harm nobody.
CREATE TABLE accounts (id bigint PRIMARY KEY, balance bigint NOT NULL);
INSERT INTO accounts SELECT i, i * 10 FROM generate_series(1, 20000) AS i;
CREATE TABLE audit (id bigint PRIMARY KEY, note text);
ANALYZE;
