-- A claim's owner is compared with the rows of `resources`, whose res_type and id are
-- `collate "C"` (20261129000001): in the same collation, so that unique_claims_owner serves
-- those comparisons instead of an update or delete reading every claim.
alter table unique_claims
    alter column res_type type text collate "C",
    alter column res_id type text collate "C";
