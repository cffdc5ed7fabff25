-- A search for a value no statistics name (an identifier, a family name) is estimated by
-- PostgreSQL from the least frequent lexeme it keeps (half its frequency). With the
-- default statistics target it keeps about a thousand, far more frequent than one
-- identifier, and plans a search for one value as if hundreds of resources matched
-- (walking them in key order for a page). Twenty times as many lexemes kept bring the
-- estimate close to what a rare value matches.
alter table search_terms alter column terms set statistics 2000;
