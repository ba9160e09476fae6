-- Console users act too: their entries name the user (key_id is then NULL).
ALTER TABLE audit ADD COLUMN user_id BLOB;
