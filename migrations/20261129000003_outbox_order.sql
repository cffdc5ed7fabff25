-- The resource (resources.key) each change event is about: a relay never claims an event
-- while an older one of the same resource is unsent, so that several relays publish the
-- changes of one resource in version order.
alter table outbox add column res_key bigint;
create index outbox_unsent_resource on outbox (res_key, id) where sent_at is null;
