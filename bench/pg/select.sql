-- Primary-key read of one of the pre-created rows (bench-0 .. bench-<nids-1>).
\set n random(0, :nids - 1)
select version, last_updated, deleted, content::text
from resources where res_type = 'Patient' and id = 'bench-' || :n;
