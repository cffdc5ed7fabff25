-- The local references of every current resource (docs/rest.md, "Referential integrity"):
-- one row per target a resource's `reference` elements name on this server (relative
-- `Type/id`, or under the server's base URL), whatever the search parameters, written in
-- the statement that writes the resource with its search index rows, removed when it is
-- deleted. A delete looks here for the current resources that still refer to its target.
-- The re-index at the first start after this migration (the index format changed) fills
-- it for the resources already stored.
create table resource_references (
    res_key     bigint not null,
    target_type text   collate "C" not null,
    target_id   text   collate "C" not null
);
create index resource_references_target on resource_references (target_id, target_type, res_key);
create index resource_references_res on resource_references (res_key);
