-- Schema version 7 (SQLite): numeric metrics in a typed column, the rest as JSON.
--
-- A record's top-level metric keys and their types form its layout, kept once in
-- ``metric_layouts`` (``keys`` a JSON array, ``types`` one letter per key: f float64, i int64,
-- b boolean, j JSON; ``digest`` the layout's sha256, unique). A prediction row then carries its
-- layout's id, its f/i/b values packed as little-endian binary in ``numbers``, and in
-- ``metrics`` only a JSON array of its j values ('' when every value is a number), so reads
-- turn a batch of rows into columns without decoding text. A row whose ``layout_id`` is NULL
-- keeps the whole metrics object as JSON text, as before version 7. The rows already stored are
-- converted in the same transaction, by ``modelyard.store.typed.convert_rows`` (same encoding
-- as ingest).
CREATE TABLE metric_layouts (
    id INTEGER PRIMARY KEY,
    digest TEXT NOT NULL UNIQUE,
    keys TEXT NOT NULL,
    types TEXT NOT NULL
);
ALTER TABLE predictions ADD COLUMN layout_id INTEGER;
ALTER TABLE predictions ADD COLUMN numbers BLOB;
