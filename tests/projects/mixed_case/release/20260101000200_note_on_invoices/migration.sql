-- AlterTable
ALTER TABLE "Billing Ops"."Rechnungen-Ü" ADD COLUMN "Notiz" TEXT;
