CREATE TABLE accounts (
    id     int PRIMARY KEY,
    visits int NOT NULL DEFAULT 0,
    n      int NOT NULL DEFAULT 0
);
INSERT INTO accounts (id) SELECT generate_series(1, 200);
CREATE TABLE applied (tag text NOT NULL);
ANALYZE;
