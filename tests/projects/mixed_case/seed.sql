CREATE TABLE "Document" (
    id      serial PRIMARY KEY,
    "Title" text NOT NULL
);
INSERT INTO "Document" ("Title") SELECT 'document ' || n FROM generate_series(1, 50000) n;
CREATE TABLE document (id int PRIMARY KEY, title text);
CREATE TABLE "My Table" (id int PRIMARY KEY, n int NOT NULL);
INSERT INTO "My Table" SELECT n, n FROM generate_series(1, 5000) n;
ANALYZE;
CREATE SCHEMA "Billing Ops";
CREATE TABLE "Billing Ops"."Rechnungen-Ü" (id int PRIMARY KEY, "Betrag €" int NOT NULL);
INSERT INTO "Billing Ops"."Rechnungen-Ü" SELECT n, n FROM generate_series(1, 3000) n;
ANALYZE;
