-- AlterTable
ALTER TABLE "My Table" ADD COLUMN "Note" TEXT;
