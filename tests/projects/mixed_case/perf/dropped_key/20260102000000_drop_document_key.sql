-- The primary key of "Document" dropped: finding a document by id reads the whole table.
ALTER TABLE "Document" DROP CONSTRAINT "Document_pkey";
