-- The search index: the values each SearchParameter selects in the current version of a
-- resource, written in the transaction of every create, update and delete (see
-- docs/search.md, "Storage"). One narrow table per kind of value; every row carries the
-- resource's key (resources.key) and the parameter's id (search_params.id).
--
-- Conventions the queries rely on:
-- * text compared by the index is `collate "C"` (byte order: prefix ranges work, and
--   comparisons are memcmp);
-- * an index holds text through `left(column, 256)`, so that no value is too long for a
--   b-tree entry; a search value shorter than 256 characters is compared as
--   `left(column, 256) = $v` alone, a longer one adds `column = $v`;
-- * `res_key` ends every value index, so that rows of one value come in resource order
--   (keyset paging, merge joins) and an index-only scan can answer;
-- * `(res_key, param)` indexes find a resource's rows (replacing them, `_include`,
--   `:missing`).

-- The parameters of each resource type, as the running server's definitions give them.
-- The server fills it at start-up; ids are never reused.
create table search_params (
    id          integer generated always as identity primary key,
    res_type    text not null,
    code        text not null,
    -- number, date, string, token, reference, composite, quantity, uri
    type        text not null,
    url         text not null,
    -- md5 of what decides the parameter's values: url, type, expression, components
    fingerprint text not null,
    unique (res_type, code)
);

-- For each resource type, the definitions its index rows were built with. A server whose
-- definitions differ re-indexes the type in batches, recording how far it got.
create table search_index_state (
    res_type     text primary key,
    -- md5 over the type's parameters' fingerprints (and the index format)
    fingerprint  text   not null,
    -- while a re-index runs: the last resources.key done; null once complete
    reindexed_to bigint
);

-- string parameters (normalized for the default prefix match and :contains, exact for
-- :exact), and the text of token parameters (:text) under the token parameter's id.
create table search_string (
    res_key    bigint  not null,
    param      integer not null,
    normalized text    collate "C" not null,
    exact      text    not null
);
create index search_string_value on search_string (param, (left(normalized, 256)), res_key);
create index search_string_res on search_string (res_key, param);

-- token parameters: system (null: none) and code.
create table search_token (
    res_key bigint  not null,
    param   integer not null,
    system  text    collate "C",
    code    text    collate "C" not null
);
create index search_token_value on search_token (param, (left(code, 256)), (left(system, 256)), res_key);
create index search_token_res on search_token (res_key, param);

-- Identifier values with each coding of their type, for :of-type.
create table search_token_type (
    res_key     bigint  not null,
    param       integer not null,
    type_system text    collate "C",
    type_code   text    collate "C" not null,
    value       text    collate "C" not null
);
create index search_token_type_value on search_token_type (param, (left(value, 256)), (left(type_code, 256)), res_key);
create index search_token_type_res on search_token_type (res_key, param);

-- date parameters: the instants a value covers, [low, high); an unbounded side is
-- -infinity / infinity, so that every prefix is a plain comparison. One index leads with
-- low (eq, lt, sa, ...), the other with high (gt, eb, ...).
create table search_date (
    res_key bigint      not null,
    param   integer     not null,
    low     timestamptz not null,
    high    timestamptz not null
);
create index search_date_low on search_date (param, low, high, res_key);
create index search_date_high on search_date (param, high, low, res_key);
create index search_date_res on search_date (res_key, param);

-- reference parameters: local targets by type and id; other absolute references and URNs
-- by url; logical references by identifier.
create table search_reference (
    res_key           bigint  not null,
    param             integer not null,
    target_type       text    collate "C",
    target_id         text    collate "C",
    target_version    text    collate "C",
    url               text    collate "C",
    identifier_system text    collate "C",
    identifier_value  text    collate "C"
);
create index search_reference_target on search_reference
    (param, (left(target_id, 256)), (left(target_type, 256)), res_key) where target_id is not null;
create index search_reference_url on search_reference
    (param, (left(url, 256)), res_key) where url is not null;
create index search_reference_identifier on search_reference
    (param, (left(identifier_value, 256)), res_key) where identifier_value is not null;
create index search_reference_res on search_reference (res_key, param);

-- quantity parameters (Money: system urn:iso:std:iso:4217, the currency as code): the
-- value exactly as written.
create table search_quantity (
    res_key    bigint  not null,
    param      integer not null,
    value      numeric not null,
    comparator text    collate "C",
    unit       text    collate "C",
    system     text    collate "C",
    code       text    collate "C"
);
create index search_quantity_value on search_quantity (param, value, res_key);
create index search_quantity_res on search_quantity (res_key, param);

-- number parameters.
create table search_number (
    res_key bigint  not null,
    param   integer not null,
    value   numeric not null
);
create index search_number_value on search_number (param, value, res_key);
create index search_number_res on search_number (res_key, param);

-- uri parameters, as written (:below is a prefix range, :above the prefixes of the value).
create table search_uri (
    res_key bigint  not null,
    param   integer not null,
    uri     text    collate "C" not null
);
create index search_uri_value on search_uri (param, (left(uri, 256)), res_key);
create index search_uri_res on search_uri (res_key, param);

-- composite parameters: one row per combination of component values, as an object keyed
-- by the component's position ("0", "1", ...), each component in the column names of its
-- own table ({"system": ..., "code": ...}, {"low": ..., "high": ...}, {"value": ...}).
create table search_composite (
    res_key    bigint  not null,
    param      integer not null,
    components jsonb   not null
);
create index search_composite_value on search_composite using gin (components jsonb_path_ops);
create index search_composite_res on search_composite (res_key, param);
