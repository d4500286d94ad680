CREATE TABLE accounts (
    id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email text NOT NULL UNIQUE
);
INSERT INTO accounts (email) SELECT 'user' || n || '@example.com' FROM generate_series(1, 2000) n;

CREATE TABLE events (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES accounts (id),
    kind       text NOT NULL,
    at         timestamptz NOT NULL DEFAULT '2025-01-01'
);
INSERT INTO events (account_id, kind)
SELECT 1 + n % 2000, (ARRAY['login', 'logout', 'purchase'])[1 + n % 3]
FROM generate_series(1, 20000) n;

CREATE TABLE reports (id int PRIMARY KEY, title text NOT NULL);
INSERT INTO reports VALUES (1, 'daily'), (2, 'weekly');
ANALYZE;
