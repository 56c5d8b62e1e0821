-- A key naming a card verification code is found in every form the key check reads.
--
-- private.is_card_verification_key reads a key with every character but ASCII letters and
-- digits dropped (`card_cvv`, `CVV-2`), but the expression that decides whether a value's keys
-- are read at all looked for the words as written: `c_v_v`, `cv v`, `c\u200bvv` (a
-- zero-width space) were never read, and stored. Full-width letters (`ｃｖｖ`) were dropped
-- whole by the key check. Now the key check reads a key in NFKC form (full-width letters and
-- other compatibility forms as the letters they stand for) before dropping the rest, and the
-- expression that decides whether to read the keys (private.may_name_card_verification,
-- used by the guard's trigger and private.card_data_in) lets through every text in which the
-- words appear with anything but letters and digits between their letters, or that holds a
-- full-width character.

/**
 * True when `candidate` may hold a key naming a card verification code: one of the words
 * private.is_card_verification_key looks for, with anything but ASCII letters and digits
 * (or JSON's escapes) between its letters, case aside; or a full-width character, which NFKC
 * makes a letter.
 * Every key private.is_card_verification_key accepts matches it, so false means none.
 */
create function private.may_name_card_verification(candidate text) returns boolean
language plpgsql
immutable
strict
parallel safe
set search_path = ''
as $$
begin
  return candidate ~* (
    -- between two letters: anything but a letter or digit, or a JSON escape (\t, \u200b)
    replace(
      '(c_v_v|c_v_c|c_v_n|c_s_c|c_a_v|c_i_d|s_e_c_u_r_i_t_y|v_e_r_i_f_i_c_a_t_i_o_n)',
      '_',
      '(?:[^a-z0-9]|\\[bfnrt]|\\u[0-9a-f]{4})*'
    )
  ) or candidate ~ '[\uff01-\uff5e]';
end
$$;

/**
 * True when `key` names a card verification code: read in NFKC form, lowercase, with every
 * character but ASCII letters and digits dropped.
 */
create or replace function private.is_card_verification_key(key text) returns boolean
language plpgsql
immutable
strict
parallel safe
set search_path = ''
as $$
begin
  return (
    select normalized !~ 'check$' and (
      normalized ~ '^(card)?(cvv|cvc|cvn|csc|cav)'
      or normalized in ('cid', 'cardcid')
      or normalized ~ '(security|verification)(code|value|number)'
      or normalized ~ 'cardverification'
    )
    from (
      select lower(regexp_replace(normalize(key, nfkc), '[^a-zA-Z0-9]', '', 'g')) as normalized
    ) as k
  );
end
$$;

/** True when `candidate` holds, at any depth, an object key naming a card verification code. */
create or replace function private.holds_card_verification_key(candidate jsonb) returns boolean
language plpgsql
immutable
set search_path = ''
as $$
begin
  return private.may_name_card_verification(candidate::text)
    and exists (
      select from jsonb_path_query(candidate, 'strict $.**') as item
      cross join lateral jsonb_object_keys(
        case when jsonb_typeof(item) = 'object' then item else '{}'::jsonb end
      ) as item_key
      where private.is_card_verification_key(item_key)
    );
end
$$;

/**
 * What card data `candidate` holds, as stored (not as its JSON text): a card number in a
 * string, a number, an object key, or across the items of an array; or a key naming a card
 * verification code, which is returned.
 */
create or replace function private.card_data_in(
  candidate jsonb, out card_number boolean, out verification_key text
)
language plpgsql
immutable
strict
parallel safe
set search_path = ''
as $$
declare
  scanned text := candidate::text;
  numbers boolean := private.may_hold_card_number(scanned);
  keys boolean := private.may_name_card_verification(scanned);
  item jsonb;
  item_key text;
begin
  card_number := false;
  if not (numbers or keys) then
    return;
  end if;
  for item in select p from jsonb_path_query(candidate, 'strict $.**') as p loop
    if numbers and (
      (jsonb_typeof(item) in ('string', 'number') and private.holds_card_number(item #>> '{}'))
      or (jsonb_typeof(item) = 'array'
        and private.holds_card_number(coalesce(private.json_array_text(item), '')))
    ) then
      card_number := true;
      return;
    end if;
    if jsonb_typeof(item) = 'object' then
      for item_key in select jsonb_object_keys(item) loop
        if numbers and private.holds_card_number(item_key) then
          card_number := true;
          return;
        end if;
        if keys and private.is_card_verification_key(item_key) then
          verification_key := item_key;
          return;
        end if;
      end loop;
    end if;
  end loop;
end
$$;

/**
 * BEFORE INSERT OR UPDATE trigger of every payment table: refuses card data (a card number
 * in any value, as private.card_data_in finds it; a card verification code key in a JSON
 * object) in every column that can hold it (private.card_data_columns). On update, only
 * what changed is read. The trigger's arguments name the columns that cannot hold it, so
 * that one regular expression over the rest of the row settles most rows; the columns read
 * are then taken from the catalog (a column added later is read; only a column retyped to
 * hold text needs the arguments renewed, which tests/sql/schema/invariants.test.sql checks).
 * Security definer, so that the helpers stay private; it reads only the new row, the old one
 * and the catalog.
 */
create or replace function private.refuse_card_data() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  -- private.may_hold_card_number's coarser expression, in line (see its comment)
  coarse constant text := '[^\x01-\x2f\x3a-\x7f](?:(?:[^A-Za-z0-9]|\\(?:[bfnrt]|u[0-9a-fA-F]{4}))*'
    || '[^\x01-\x2f\x3a-\x7f]){12}';
  row_values jsonb := to_jsonb(new);
  scanned text := (row_values - coalesce(tg_argv, '{}'))::text;
  old_values jsonb;
  column_name text;
  finding record;
begin
  if scanned !~ coarse and not private.may_name_card_verification(scanned) then
    return new;
  end if;
  if tg_op = 'UPDATE' then
    old_values := to_jsonb(old);
  end if;
  foreach column_name in array private.card_data_columns(tg_relid) loop
    continue when jsonb_typeof(row_values -> column_name) is null
      or jsonb_typeof(row_values -> column_name) = 'null'
      or (tg_op = 'UPDATE' and row_values -> column_name = old_values -> column_name);
    select * into finding from private.card_data_in(row_values -> column_name);
    if finding.card_number then
      raise exception 'card number in %.%: store the processor''s token (pm_…) instead',
      tg_table_name, column_name
      using errcode = 'PT422',
      detail = 'PCI DSS 3.5.1: a primary account number is never stored.';
    end if;
    if finding.verification_key is not null then
      raise exception 'card verification code key "%" in %.%: never store it',
      finding.verification_key, tg_table_name, column_name
      using errcode = 'PT422',
      detail = 'PCI DSS 3.3.1: sensitive authentication data is never stored.';
    end if;
  end loop;
  return new;
end
$$;

revoke all on function private.may_name_card_verification(text) from public;
