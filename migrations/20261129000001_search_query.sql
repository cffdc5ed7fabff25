-- What the search query side needs (docs/search.md, "Queries").

-- Resource types and ids compare byte-wise, like the index tables' references to them, so
-- that a reference row joins its target through the unique index in either direction.
alter table resources alter column res_type type text collate "C";
alter table resources alter column id type text collate "C";

-- A type's current resources in key order: the default order of a search, paged by key.
create index resources_type_key on resources (res_type, key) where not deleted;

-- Conditional create now searches the index (search_token); the JSONB index it used goes.
drop index resources_identifier;

-- Secrets the servers sharing this database agree on (e.g. the key that signs search
-- paging cursors), created by the first server that needs one.
create table server_secrets (
    name  text primary key,
    value bytea not null
);
