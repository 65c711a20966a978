-- What `beanswap demo --break-migration` ships instead: the same column, but required. The new version
-- writes it and works; the version still serving production does not know it and can no longer insert an
-- order (null value in column "note" violates not-null constraint). The smoke test's check of the live
-- environment catches it before the swap. (Expand-only would add it nullable, or with a default.)
ALTER TABLE orders ADD COLUMN note text NOT NULL DEFAULT '';
ALTER TABLE orders ALTER COLUMN note DROP DEFAULT;
