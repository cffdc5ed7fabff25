-- `_id` and `_lastUpdated` are searched on the resources row itself (no index rows): a
-- type's current resources by time of their last change.
create index resources_type_last_updated on resources (res_type, last_updated) where not deleted;
