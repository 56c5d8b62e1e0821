-- No card data in payguard's tables (PCI DSS 3.3.1 and 3.5.1).
--
-- Payment methods hold the processor's references (pm_…, cus_…), brand, last4 and expiry:
-- never a card number or a verification code. This guard, a trigger on every payment table,
-- refuses a row in which any text or jsonb value holds a card-number-like run of digits (13
-- to 19 digits that pass the Luhn check, with spaces, dashes, dots or underscores allowed
-- between groups), or any jsonb object has such a key or a card-verification-like one. The
-- refusal names the table and column, never the digits.

/** True when `digits` (only digits) passes the Luhn check. */
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

/**
 * True when `candidate` holds a card-number-like run: groups of digits joined by up to
 * three separators (any white space, `-`, `.` or `_`), of which some consecutive groups make
 * 13 to 19 digits that pass Luhn. Full-width digits count as digits, and no-break or thin
 * spaces as spaces.
 */
create function private.holds_card_number(candidate text) returns boolean
language plpgsql
immutable
strict
parallel safe
set search_path = ''
as $$
declare
  -- Full-width digits read as digits; no-break and thin spaces as spaces; a UUID (a shape
  -- no card number has) is no run of digits at all.
  digits_only text := regexp_replace(
    translate(
      candidate, '０１２３４５６７８９' || E'\u00a0\u2007\u2009\u202f', '0123456789    '
    ),
    '[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}',
    ' ',
    'g'
  );
  run text;
  groups text[];
  digits text;
begin
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

/**
 * True when `key` names a card verification code: CVV, CVC, CVN, CSC (with any suffix, such
 * as cvv2 or cvc_number), CID, or a "security/verification code/value". A key that names the
 * result of a check (Stripe's `cvc_check`) is not one.
 */
create function private.is_card_verification_key(key text) returns boolean
language sql
immutable
strict
parallel safe
set search_path = ''
as $$
  select normalized !~ 'check$' and (
    normalized ~ '^(card)?(cvv|cvc|cvn|csc|cav)'
    or normalized in ('cid', 'cardcid')
    or normalized ~ '(security|verification)(code|value|number)'
    or normalized ~ 'cardverification'
  )
  from (select lower(regexp_replace(key, '[^a-zA-Z0-9]', '', 'g')) as normalized) as k
$$;

/**
 * BEFORE INSERT OR UPDATE trigger for payment tables: refuses card numbers in any text or
 * jsonb value (the scalars of a jsonb array are also read together, as one text), and card
 * numbers or card verification codes as jsonb keys. The trigger's arguments name columns it
 * skips (a phone number is not a card number). Security definer, so that the helpers above
 * stay private; it reads only the new row and the catalog.
 */
create function private.refuse_card_data() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  row_values jsonb := to_jsonb(new);
  -- On update, only what changed: a status change re-reads no text.
  old_values jsonb := case when tg_op = 'UPDATE' then to_jsonb(old) else '{}' end;
  field record;
  item jsonb;
  item_key text;
  joined text;
begin
  -- Only text and JSON columns: ids, amounts and dates are not where card data hides, and a
  -- uuid's digit groups could pass for a card number.
  for field in
    select a.attname::text as key, row_values -> a.attname::text as value
    from pg_catalog.pg_attribute as a
    where
      a.attrelid = tg_relid
      and a.attnum > 0
      and not a.attisdropped
      and (tg_nargs = 0 or not a.attname::text = any(tg_argv))
      and a.atttypid in (
        'pg_catalog.text'::regtype, 'pg_catalog.varchar'::regtype, 'pg_catalog.bpchar'::regtype,
        'pg_catalog.jsonb'::regtype, 'pg_catalog.json'::regtype
      )
  loop
    continue when field.value is null or jsonb_typeof(field.value) = 'null'
      or field.value = old_values -> field.key;
    for item in select p from jsonb_path_query(field.value, 'strict $.**') as p loop
      joined := case jsonb_typeof(item)
        when 'string' then item #>> '{}'
        when 'number' then item #>> '{}'
        when 'array' then (
          select string_agg(e #>> '{}', ' ')
          from jsonb_array_elements(item) as e
          where jsonb_typeof(e) in ('string', 'number')
        )
      end;
      if joined is not null and private.holds_card_number(joined) then
        raise exception 'card number in %.%: store the processor''s token (pm_…) instead',
        tg_table_name, field.key
        using errcode = 'PT422',
        detail = 'PCI DSS 3.5.1: a primary account number is never stored.';
      end if;
      if jsonb_typeof(item) = 'object' then
        for item_key in select jsonb_object_keys(item) loop
          if private.holds_card_number(item_key) then
            raise exception 'card number in %.%: store the processor''s token (pm_…) instead',
            tg_table_name, field.key
            using errcode = 'PT422',
            detail = 'PCI DSS 3.5.1: a primary account number is never stored.';
          end if;
          if private.is_card_verification_key(item_key) then
            raise exception 'card verification code key "%" in %.%: never store it',
            item_key, tg_table_name, field.key
            using errcode = 'PT422',
            detail = 'PCI DSS 3.3.1: sensitive authentication data is never stored.';
          end if;
        end loop;
      end if;
    end loop;
  end loop;
  return new;
end
$$;

revoke all on function private.passes_luhn(text) from public;
revoke all on function private.holds_card_number(text) from public;
revoke all on function private.is_card_verification_key(text) from public;
revoke all on function private.refuse_card_data() from public;
