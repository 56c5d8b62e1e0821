-- The card-number check, made cheap for the common case. It runs on every text and jsonb
-- value a payment table writes, and on what each audit row brings from the request; most of
-- that text holds no run of 13 digits at all, which one regular expression can tell. Only
-- text that has such a run goes on to the group-by-group Luhn search, as before.

/**
 * True when `candidate` holds a card-number-like run: groups of digits joined by up to
 * three separators (any white space, `-`, `.` or `_`), of which some consecutive groups make
 * 13 to 19 digits that pass Luhn. Full-width digits count as digits, and no-break or thin
 * spaces as spaces.
 */
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
