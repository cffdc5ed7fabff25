-- The JSON of resources, history versions and change events is compressed with lz4 rather
-- than PostgreSQL's default pglz when the server was built with it (Debian's and the
-- official images are). A value over about 2 KB (an event envelope with its resource, a
-- larger resource) is compressed on every write: with pglz, 20,000 inserts of an envelope
-- of 1.9 KB took 240-260 ms, with lz4 103-104 ms, for the same size on disk. Only new values
-- are affected; reads decompress either. A server without lz4 keeps pglz.
do $$
begin
    alter table resources alter column content set compression lz4;
    alter table resource_history alter column content set compression lz4;
    alter table outbox alter column payload set compression lz4;
exception when feature_not_supported then
    raise notice 'lz4 is not available: the JSON columns keep pglz';
end
$$;
