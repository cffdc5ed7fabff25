-- The same read with the server's own select list: the JSON text is rebuilt so that
-- resourceType comes first (jsonb keeps keys sorted by length).
\set n random(0, :nids - 1)
select version, last_updated, deleted,
       ('{"resourceType":' || to_json(content ->> 'resourceType')::text || ','
        || substr((content - 'resourceType')::text, 2)) as content
from resources where res_type = 'Patient' and id = 'bench-' || :n;
