-- Dates by the range they cover: every date prefix implies that the indexed range overlaps
-- some range of the search value (docs/search.md, "Queries"), which one GiST index answers
-- in one descent, also when two conditions bound the same value on both sides
-- (`birthdate=ge1961-07-10&birthdate=lt1961-07-13`), where two b-trees could each only
-- bound one side. The bounds are ordered with least/greatest, so that a malformed value
-- (a Period ending before it starts) is indexed rather than refused.
create extension if not exists btree_gist;
create index search_date_range on search_date
    using gist (param, tstzrange(least(low, high), greatest(low, high), '[]'));
drop index search_date_low;
drop index search_date_high;
