-- Statistics on (parameter, value) together: a code is frequent under one parameter and rare
-- over all of them (`status=issued`), and estimated apart the two conditions multiply into
-- an estimate ten times too small, which leads the planner to the wrong index.
create statistics search_token_value_stats (mcv, dependencies) on param, (left(code, 256)) from search_token;
create statistics search_string_value_stats (mcv, dependencies) on param, (left(normalized, 256)) from search_string;
