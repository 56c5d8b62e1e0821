-- The card-number guard as it stood before the guard of card_data_guard.sql: its Luhn check and
-- its prefiltered search. `payguard bench --only card` loads it into a schema of its own and
-- measures it beside the present guard, in the same run on the same database.

create function private.passes_luhn(digits text) returns boolean
language sql
immutable
strict
parallel safe
set search_path = ''
as $$
  select coalesce(sum(
    case
      when (length(digits) - position) % 2 = 1 then
        case when digit * 2 > 9 then digit * 2 - 9 else digit * 2 end
      else digit
    end
  ) % 10 = 0, false)
  from (
    select ordinality::int as position, value::int as digit
    from unnest(string_to_array(digits, null)) with ordinality as d (value, ordinality)
  ) as numbered
$$;

create or replace function private.holds_card_number(candidate text) returns boolean
language plpgsql
immutable
strict
parallel safe
set search_path = ''
as $$
declare
  -- 13 digits in one run, at most three separators apart: every card number has them, and
  -- most text does not, so one regular expression settles most calls.
  candidate_run constant text := '[0-9０-９](?:[[:space:] .\-_'
    || E'\u00a0\u2007\u2009\u202f' || ']{0,3}[0-9０-９]){12}';
  digits_only text;
  run text;
  groups text[];
  digits text;
begin
  if candidate !~ candidate_run then
    return false;
  end if;
  -- Full-width digits read as digits; no-break and thin spaces as spaces; a UUID (a shape
  -- no card number has) is no run of digits at all.
  digits_only := regexp_replace(
    translate(
      candidate, '０１２３４５６７８９' || E'\u00a0\u2007\u2009\u202f', '0123456789    '
    ),
    '[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}',
    ' ',
    'g'
  );
  for run in
    select m[1]
    from regexp_matches(
      digits_only, '([0-9]+(?:[[:space:] .\-_]{1,3}[0-9]+)*)', 'g'
    ) as m
  loop
    groups := regexp_split_to_array(run, '[[:space:] .\-_]+');
    for first_group in 1 .. cardinality(groups) loop
      digits := '';
      for last_group in first_group .. cardinality(groups) loop
        digits := digits || groups[last_group];
        exit when length(digits) > 19;
        if length(digits) >= 13 and private.passes_luhn(digits) then
          return true;
        end if;
      end loop;
    end loop;
  end loop;
  return false;
end
$$;
