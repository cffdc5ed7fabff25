-- The analytics worker's projections of the change stream (see docs/analytics.md): one
-- narrow fact row per current Patient, Account and Invoice, replaced by each newer version
-- and removed by a delete; the reports are GROUP BY queries over them.

create schema analytics;

-- Events already applied: a redelivered copy is acknowledged without effect.
create table analytics.processed_events (
    event_id     uuid        primary key,
    processed_at timestamptz not null default now()
);

-- The newest version applied per resource (a delete included): events with an older or
-- equal version are stale and change nothing.
create table analytics.applied_versions (
    res_type text    not null,
    id       text    not null,
    version  bigint  not null,
    deleted  boolean not null,
    primary key (res_type, id)
);

-- When each Patient came into existence: lastUpdated of its version 1. Kept apart from the
-- facts because version 1 may arrive after a newer version (then it is stale for the
-- facts) and because a Patient deleted and created again keeps its first registration.
create table analytics.patient_registrations (
    id            text        primary key,
    registered_at timestamptz not null
);

create table analytics.patient_facts (
    id         text primary key,
    -- Patient.gender code
    gender     text,
    -- Patient.birthDate; a partial date (year, year-month) is stored as its first day
    birth_date date,
    -- state and country of the address the reports use (docs/analytics.md)
    state      text,
    country    text,
    -- Patient.active as written; absent means active
    active     boolean,
    -- deceasedBoolean true, or any deceasedDateTime
    deceased   boolean not null
);

create table analytics.account_facts (
    id         text primary key,
    -- Account.status code
    status     text,
    -- the first code of Account.type
    type_code  text,
    -- the first Patient among Account.subject
    patient_id text
);

create index account_facts_patient on analytics.account_facts (patient_id);

create table analytics.invoice_facts (
    id          text primary key,
    -- Invoice.status code
    status      text,
    -- first day of the month of Invoice.date, as written (its own offset)
    month       date,
    -- the currency of totalGross, else of totalNet
    currency    text,
    total_net   numeric,
    total_gross numeric,
    -- Invoice.subject when it is a Patient
    patient_id  text,
    -- Invoice.account
    account_id  text
);

create index invoice_facts_patient on analytics.invoice_facts (patient_id);
create index invoice_facts_account on analytics.invoice_facts (account_id) where status = 'issued';
