-- One row per value of a name, address or contact point, whatever the parameters that
-- select it (fhir_core::search::SearchParameter::kept_in):
-- * `family` (`Patient.name.family`) selects a part of what `name` (`Patient.name`) does:
--   its values are no longer rows of their own but the rows of `name` whose `part` is the
--   family name (fhir_core::search::Part; 0 is a whole value). The same holds for `given`,
--   the address parts (`address-city`, ...) and the contact points of one system (`phone`,
--   `email` of `telecom`).
-- * `phonetic` (also `Patient.name`) matches the same names by sound: a row of `name` holds
--   the phonetic code of its value in `sound` (a value of several words is a row per word).
-- A Patient has about 40 % fewer string and token rows. The value indexes hold the part, so
-- a search on one part stays an index-only scan; phonetic codes have an index of their own.
alter table search_string add column part smallint not null default 0;
alter table search_string add column sound text collate "C";
alter table search_token add column part smallint not null default 0;

create index search_string_value_part on search_string (param, (left(normalized, 256)), res_key)
    include (part);
drop index search_string_value;
alter index search_string_value_part rename to search_string_value;

create index search_string_sound on search_string (param, sound, res_key) where sound is not null;

create index search_token_value_part on search_token
    (param, (left(code, 256)), (left(system, 256)), res_key) include (part);
drop index search_token_value;
alter index search_token_value_part rename to search_token_value;
