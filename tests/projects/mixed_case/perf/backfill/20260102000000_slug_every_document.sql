-- Every "Document" row rewritten: the table doubles until compacted; its queries do not change.
ALTER TABLE "Document" ADD COLUMN "Slug" text;
UPDATE "Document" SET "Slug" = lower("Title");
