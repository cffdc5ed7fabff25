-- Current versions, full history, and the uniqueness claims of business rules.

create table resources (
    key          bigint generated always as identity primary key,
    res_type     text        not null,
    id           text        not null,
    version      bigint      not null,
    last_updated timestamptz not null,
    deleted      boolean     not null default false,
    -- null for a deleted resource: the last content stays in resource_history
    content      jsonb,
    unique (res_type, id)
);

-- Conditional create by identifier (If-None-Exist) until the search index owns it.
create index resources_identifier on resources
    using gin ((content -> 'identifier') jsonb_path_ops) where not deleted;

create table resource_history (
    -- global order of versions: history is read newest first by seq
    seq          bigint generated always as identity primary key,
    res_type     text        not null,
    id           text        not null,
    version      bigint      not null,
    last_updated timestamptz not null,
    -- how the version came to be: POST, PUT or DELETE, and the status answered
    method       text        not null check (method in ('POST', 'PUT', 'DELETE')),
    status       smallint    not null,
    -- null for a deletion (tombstone)
    content      jsonb,
    unique (res_type, id, version)
);

create index resource_history_type_seq on resource_history (res_type, seq);
create index resource_history_last_updated on resource_history (last_updated);

-- A value that must be unique among current resources (e.g. a Patient's email), held by
-- the resource that claims it; the primary key makes the rule race-free.
create table unique_claims (
    rule     text not null,
    value    text not null,
    res_type text not null,
    res_id   text not null,
    primary key (rule, value)
);

create index unique_claims_owner on unique_claims (res_type, res_id);
