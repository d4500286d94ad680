CREATE TABLE orders (id bigint PRIMARY KEY, total integer NOT NULL);
INSERT INTO orders SELECT n, n % 1000 FROM generate_series(1, 50000) n;
CREATE TABLE alembic_version (version_num varchar(32) NOT NULL PRIMARY KEY);
INSERT INTO alembic_version VALUES ('0001');
ANALYZE;
