-- name: a_document
SELECT id, "Title" FROM "Document" WHERE id = 4242;

-- name: a_row_of_my_table
SELECT n FROM "My Table" WHERE id = 42;
