-- The demo's second release (expand only): a nullable column the new version writes and reads, which the
-- version still in production does not know about and keeps working without.
ALTER TABLE orders ADD COLUMN note text;
