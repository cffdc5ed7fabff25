-- Transactional outbox of change events: written in the transaction of every committed
-- write, published to the broker by the relay, then marked sent. See docs/events.md.

create table outbox (
    id          bigint generated always as identity primary key,
    event_id    uuid        not null unique,
    -- <ResourceType>.<create|update|delete>
    routing_key text        not null,
    -- the event envelope (specVersion 1)
    payload     jsonb       not null,
    created_at  timestamptz not null default now(),
    -- null until the broker confirmed the event
    sent_at     timestamptz
);

-- The relay only ever looks at unsent rows, oldest first.
create index outbox_unsent on outbox (id) where sent_at is null;
