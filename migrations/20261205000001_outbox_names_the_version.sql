-- A change event names the version it announces (type, id, version) instead of carrying a
-- copy of its envelope: resource_history keeps every version, so the envelope is built
-- from it when the event is read (`outbox_envelopes`, docs/events.md). A write stores its
-- resource twice (current row, history) instead of three times, an outbox row is about a
-- hundred bytes instead of the resource's size, and marking an event sent rewrites a row
-- that small.
alter table outbox
    add column res_type text,
    add column res_id text,
    add column version bigint;

update outbox
set res_type = payload ->> 'resourceType',
    res_id = payload ->> 'id',
    version = (payload ->> 'versionId')::bigint;

alter table outbox
    alter column res_type set not null,
    alter column res_id set not null,
    alter column version set not null,
    drop column payload;

-- The envelope (specVersion 1) of each event, as JSON text: the resource of a create or
-- an update as its history row holds it, none for a delete. lastUpdated is the version's,
-- written as meta.lastUpdated is. Built as text around the stored resource's text, so the
-- resource is rendered once and not rebuilt.
create view outbox_envelopes as
select o.id, o.event_id, o.routing_key, o.sent_at,
       format('{"specVersion": 1, "eventId": %s, "action": %s, "resourceType": %s, '
                  '"id": %s, "versionId": %s, "lastUpdated": %s%s}',
              to_json(o.event_id::text), to_json(split_part(o.routing_key, '.', 2)),
              to_json(o.res_type), to_json(o.res_id), o.version,
              to_json(to_char(h.last_updated at time zone 'UTC',
                              'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')),
              ', "resource": ' || h.content::text) as payload
from outbox o
join resource_history h on h.res_type = o.res_type and h.id = o.res_id
                       and h.version = o.version;
