-- CreateIndex
CREATE INDEX "Document_Title_idx" ON "Document"("Title");
