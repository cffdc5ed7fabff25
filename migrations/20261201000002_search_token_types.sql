-- An identifier's type codings are columns of its token rows instead of rows of a table of
-- their own: an identifier with a typed value is one row per type coding (system, value,
-- type system, type code) that serves both `identifier=system|value` and
-- `identifier:of-type=type-system|type-code|value`, and a write has one table less to
-- insert into. The rows are rebuilt by the re-index the index format (4) starts.
drop table search_token_type;

alter table search_token add column type_system text collate "C";
alter table search_token add column type_code text collate "C";

create index search_token_type_value on search_token
    (param, (left(code, 256)), (left(type_code, 256)), res_key) where type_code is not null;
