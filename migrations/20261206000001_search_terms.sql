-- Strings and tokens as terms: every string and token value of a resource's current
-- version is a lexeme of one tsvector (crates/store/src/search_index/terms.rs), in one row
-- of search_terms per resource (more for a resource with very many values), found through
-- a GIN index. A create writes one row and one index entry per value in GIN's pending list,
-- merged into the index in bulk, where it wrote a row and two b-tree entries per value
-- (docs/search.md, "Strings and tokens as terms"). The rows are filled by the re-index at
-- the next start (the index format changed); until it is done, string and token searches
-- see the resources it has reached.
create table search_terms (
    res_key bigint not null,
    terms tsvector not null
);
create index search_terms_res on search_terms (res_key);
-- The pending list is searched in full by every query until it is merged: kept short.
create index search_terms_terms on search_terms using gin (terms)
    with (fastupdate = on, gin_pending_list_limit = 1024);

drop table search_string;
drop table search_token;

-- resources.index_tables names tables by position in the list of the server's index
-- tables, which this changes: every resource is taken to have rows in any of them until
-- its next write.
update resources set index_tables = null where index_tables is not null;
