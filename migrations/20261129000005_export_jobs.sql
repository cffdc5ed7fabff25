-- Bulk Data $export jobs (docs/bulk-export.md): kicked off by a request, run in the
-- background by any server (claimed with SKIP LOCKED, kept alive by a heartbeat, taken over
-- when the heartbeat stops), their files on disk under FHIR_EXPORT_DIR.
create table export_jobs (
    id             uuid primary key,
    -- accepted, running, completed, failed, cancelled
    status         text        not null,
    -- what to export, as the server wrote it (types, _since, filters, level, caller)
    request        jsonb       not null,
    -- the kick-off request URL, for the manifest
    request_url    text        not null,
    -- the client that kicked it off (downloads need a token of the same client)
    owner          text,
    requires_token boolean     not null,
    created_at     timestamptz not null default now(),
    -- the snapshot's time, once the job ran
    transaction_time timestamptz,
    -- for X-Progress
    progress       text,
    -- why it failed, for the client
    error          text,
    -- the manifest's output entries: [{"type", "file", "count"}]
    output         jsonb,
    -- when the job and its files go
    expires_at     timestamptz,
    -- the server running it, and when it last said so
    claimed_by     uuid,
    heartbeat_at   timestamptz,
    -- the last status request (polling too fast is 429)
    polled_at      timestamptz
);
create index export_jobs_waiting on export_jobs (created_at) where status in ('accepted', 'running');
create index export_jobs_expiring on export_jobs (expires_at);
