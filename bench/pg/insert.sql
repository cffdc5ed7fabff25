-- The server's create, done directly: version 1 in resources, its history row, its
-- change event in the outbox and its search index rows, in one statement, with a fresh UUID id and the document as a parameter
-- (-D doc=...). bench/run replaces the marker below with the index rows the server wrote
-- for the same document (tools.py index-insert); without that, no index rows.
-- The \set is there for the per-transaction log: pgbench 15 logs a latency of 0 for
-- most transactions of a script made of SQL alone.
\set unused 0
with cur as (
    insert into resources (res_type, id, version, last_updated, content)
    values ('Patient', gen_random_uuid()::text, 1, now(), :doc::jsonb)
    on conflict (res_type, id) do nothing
    returning key, res_type, id, content
), hist as (
    insert into resource_history (res_type, id, version, last_updated, method, status, content)
    select res_type, id, 1, now(), 'POST', 201, content from cur
), event as (
    insert into outbox (event_id, routing_key, res_key, res_type, res_id, version)
    select gen_random_uuid(), res_type || '.create', key, res_type, id, 1
    from cur
)
/*INDEX*/
select (select count(*) from cur);
