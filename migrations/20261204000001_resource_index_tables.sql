-- The index tables that hold rows of a resource's current version, so that an update
-- replaces rows in those and the new version's only (every table costs its statement a
-- step even with no rows). Bit i stands for the i-th table of TABLES in
-- crates/store/src/search_index/rows.rs: search_string, search_token, search_date,
-- search_reference, search_quantity, search_number, search_uri, search_composite,
-- resource_references. Null: not recorded (rows written before this column, or
-- re-indexed since the last write), any table.
alter table resources add column index_tables integer;
