-- No card data in the audit trail, whatever writes a row. The log is append-only and kept ten
-- years: a card number that lands in it can never be removed.
--
-- Three ways one got in:
-- - a refused call's parameters were searched as JSON text, where a tab between digit groups
--   is the two characters \t, so a card number the table's guard refused was stored anyway;
-- - the rows the capture triggers write were never searched, on the grounds that the tables
--   they copy refuse card data already: but a value stored before the guard knew its form, a
--   table without the guard, or a column the guard skipped brought it along;
-- - the address was kept when it looked like one (`4242424242424242::1` did) and was never
--   searched.
--
-- Now every value a row brings is searched as stored, column by column and, in JSON, value by
-- value (private.card_data_in); what holds card data is replaced by
-- "[removed: it held card data]", the rest of the row is kept:
-- - rows that a statement or a refused call inserts (trigger depth 0, or any row recording a
--   refusal, whatever its depth) are stamped by private.stamp_audit_log_row, every column;
-- - the capture triggers search the rows they copy, old and new, every column that can hold
--   card data (one regular expression settles most rows), and take the actor from
--   private.audit_actor, which searches what a request brings (20261204230200);
-- - ip_address only ever holds an address, written as PostgreSQL writes it (a check
--   constraint holds every new row to it), and never one that holds a card number.

/**
 * An object (a request's metadata, a refused call's parameters) with each member that holds
 * card data, as stored, replaced: its value by "[removed: it held card data]", and its key
 * too when the key holds a card number. Any other value that holds card data is replaced
 * whole; a value that holds none is returned as it is.
 */
create or replace function private.without_card_data(candidate jsonb) returns jsonb
language plpgsql
immutable
set search_path = ''
as $$
declare
  removed constant text := '[removed: it held card data]';
  cleaned jsonb := '{}';
  field record;
begin
  if candidate is null or not private.holds_card_data(candidate) then
    return candidate;
  end if;
  if jsonb_typeof(candidate) <> 'object' then
    return to_jsonb(removed);
  end if;
  for field in select e.key, e.value from jsonb_each(candidate) as e loop
    if private.holds_card_number(field.key) then
      cleaned := cleaned || jsonb_build_object(removed, removed);
    elsif private.is_card_verification_key(field.key) or private.holds_card_data(field.value) then
      cleaned := cleaned || jsonb_build_object(field.key, removed);
    else
      cleaned := cleaned || jsonb_build_object(field.key, field.value);
    end if;
  end loop;
  return cleaned;
end
$$;

/**
 * A row of `relation` as jsonb, with the value of each column that holds card data replaced
 * by "[removed: it held card data]"; the columns read are those that can hold it
 * (private.card_data_columns).
 */
create function private.without_card_values(relation regclass, row_values jsonb) returns jsonb
language plpgsql
stable
set search_path = ''
as $$
declare
  column_name text;
  cleaned jsonb := row_values;
begin
  if row_values is null then
    return null;
  end if;
  foreach column_name in array private.card_data_columns(relation) loop
    if private.holds_card_data(row_values -> column_name) then
      cleaned := jsonb_set(cleaned, array[column_name], '"[removed: it held card data]"');
    end if;
  end loop;
  return cleaned;
end
$$;

/**
 * `candidate` as an address (v4 or v6; a port, and the brackets around a v6 address, are
 * dropped); null when it is not one.
 */
create function private.client_address(candidate text) returns inet
language plpgsql
immutable
set search_path = ''
as $$
declare
  hop text := btrim(candidate);
begin
  hop := regexp_replace(hop, '^\[([0-9A-Fa-f:.]+)\](:[0-9]{1,5})?$', '\1');
  hop := regexp_replace(hop, '^([0-9]{1,3}(\.[0-9]{1,3}){3}):[0-9]{1,5}$', '\1');
  if hop is null or hop !~ '^[0-9A-Fa-f:.]{2,45}$' then
    return null;
  end if;
  return hop::inet;
exception when invalid_text_representation then
  return null;
end
$$;

/**
 * `address` as the audit trail records it: written as PostgreSQL writes it, and when that
 * holds a card number (a v6 address's groups can be chosen), its /48 network instead, whose
 * 12 hex digits cannot hold one.
 */
create function private.audit_address(address inet) returns text
language plpgsql
immutable
strict
set search_path = ''
as $$
declare
  written text := host(address);
begin
  if family(address) = 6 and private.holds_card_number(written) then
    written := host(network(set_masklen(address, 48)));
  end if;
  return written;
end
$$;

/** The address in `candidate` (private.client_address) as the audit trail records it. */
create function private.audit_address(candidate text) returns text
language sql
immutable
set search_path = ''
as $$
  select private.audit_address(private.client_address(candidate))
$$;

/** True when `candidate` is an address (private.client_address reads one in it). */
create or replace function private.looks_like_ip(candidate text) returns boolean
language sql
immutable
set search_path = ''
as $$
  select private.client_address(candidate) is not null
$$;

/**
 * BEFORE INSERT on payment_audit_logs, for every row a statement inserts (trigger depth 0)
 * and every row that records a refusal (success false), whatever its depth; the rows the
 * capture triggers write are stamped by them in the same way. The row is stamped with a fresh
 * id, the time, the next seq and no hashes; the transaction is given its id before the seq is
 * drawn, so that a transaction holding a seq is always one the sealer can see running.
 *
 * Every value the row brings is searched for card data as stored: a text that holds a card
 * number, a JSON member or value that holds card data, is replaced by
 * "[removed: it held card data]" (removed, not refused, so that a refusal is still recorded).
 * ip_address keeps only an address, holding no card number (private.audit_address).
 */
create or replace function private.stamp_audit_log_row() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  perform pg_catalog.pg_current_xact_id();
  new.id := gen_random_uuid();
  new.seq := nextval('private.audit_log_seq');
  new.timestamp := now();
  new.prev_hash := null;
  new.row_hash := null;
  new.operation := private.without_card_numbers(new.operation);
  new.entity_type := private.without_card_numbers(new.entity_type);
  new.entity_id := private.without_card_numbers(new.entity_id);
  new.user_role := private.without_card_numbers(new.user_role);
  new.ip_address := private.audit_address(new.ip_address);
  new.user_agent := private.without_card_numbers(new.user_agent);
  new.error_message := private.without_card_numbers(new.error_message);
  new.old_values := private.without_card_data(new.old_values);
  new.new_values := private.without_card_data(new.new_values);
  new.metadata := private.without_card_data(new.metadata);
  return new;
end
$$;

drop trigger stamp_audit_log_row on public.payment_audit_logs;
create trigger stamp_audit_log_row
before insert on public.payment_audit_logs
for each row when (pg_trigger_depth() = 0 or not new.success)
execute function private.stamp_audit_log_row();

-- New rows hold an address or none; rows already written are as they were (a check that
-- ignores sealed rows, so that sealing one written before it is not refused).
alter table public.payment_audit_logs
add constraint payment_audit_logs_ip_address_is_an_address check (
  case
    when ip_address is null or row_hash is not null then true
    when ip_address !~ '^[0-9a-f:.]{2,45}$' then false
    else host(ip_address::inet) = ip_address
  end
) not valid;

/**
 * AFTER INSERT, UPDATE or DELETE, for each row, on every audited table but the ledger's: one
 * audit row. The trigger's first argument names the table's key column, the others its
 * columns that cannot hold card data. The old and new values are searched for card data
 * (one regular expression over the columns that can hold it settles most rows; then each
 * column, as stored), and what holds it is removed before the row is redacted and written.
 */
create or replace function private.capture_audit_row() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  actor private.audit_actor := private.audit_actor();
  redacts boolean := cardinality(private.audit_redacted_columns(tg_table_name)) > 0;
  unread text[] := tg_argv[1:tg_nargs - 1];
  -- private.may_hold_card_number's coarser expression, in line (see its comment)
  coarse constant text := '[^\x01-\x2f\x3a-\x7f](?:(?:[^A-Za-z0-9]|\\(?:[bfnrt]|u[0-9a-fA-F]{4}))*'
    || '[^\x01-\x2f\x3a-\x7f]){12}';
  old_values jsonb;
  new_values jsonb;
begin
  if tg_op <> 'INSERT' then
    old_values := to_jsonb(old);
  end if;
  if tg_op <> 'DELETE' then
    new_values := to_jsonb(new);
  end if;
  if concat_ws(' x ', (old_values - unread)::text, (new_values - unread)::text) ~ coarse then
    old_values := private.without_card_values(tg_relid, old_values);
    new_values := private.without_card_values(tg_relid, new_values);
  end if;
  if redacts then
    old_values := private.audit_redact(tg_table_name, old_values);
    new_values := private.audit_redact(tg_table_name, new_values);
  end if;
  -- The transaction has its id before the seq is drawn (it has just changed a row), as
  -- private.stamp_audit_log_row() makes sure for other inserts; the actor holds no card data.
  insert into public.payment_audit_logs (
    seq, timestamp, operation, entity_type, entity_id, user_id, user_role, ip_address,
    user_agent, old_values, new_values, success, metadata
  )
  values (
    nextval('private.audit_log_seq'), now(), tg_op, tg_table_name,
    coalesce(new_values, old_values) ->> tg_argv[0], actor.user_id, actor.user_role,
    actor.ip_address, actor.user_agent, old_values, new_values, true, actor.metadata
  );
  return null;
end
$$;

/**
 * AFTER INSERT, for each statement, on the ledger's tables: one audit row per inserted row,
 * searched for card data as private.capture_audit_row searches its rows. The trigger's
 * arguments are the same: the key column, then the columns that cannot hold card data.
 */
create or replace function private.capture_audit_inserts() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  actor private.audit_actor := private.audit_actor();
  redacts boolean := cardinality(private.audit_redacted_columns(tg_table_name)) > 0;
  unread text[] := tg_argv[1:tg_nargs - 1];
  -- private.may_hold_card_number's coarser expression, in line (see its comment)
  coarse constant text := '[^\x01-\x2f\x3a-\x7f](?:(?:[^A-Za-z0-9]|\\(?:[bfnrt]|u[0-9a-fA-F]{4}))*'
    || '[^\x01-\x2f\x3a-\x7f]){12}';
begin
  insert into public.payment_audit_logs (
    seq, timestamp, operation, entity_type, entity_id, user_id, user_role, ip_address,
    user_agent, old_values, new_values, success, metadata
  )
  select
    nextval('private.audit_log_seq'), now(), 'INSERT', tg_table_name,
    checked.row_values ->> tg_argv[0], actor.user_id, actor.user_role, actor.ip_address,
    actor.user_agent, null,
    case
      when redacts then private.audit_redact(tg_table_name, checked.row_values)
      else checked.row_values
    end,
    true, actor.metadata
  from (
    -- offset 0: each row's values are worked out once, not once per use
    select
      case
        when (raw.row_values - unread)::text ~ coarse
          then private.without_card_values(tg_relid, raw.row_values)
        else raw.row_values
      end as row_values
    from (select to_jsonb(i) as row_values from inserted as i offset 0) as raw
    offset 0
  ) as checked;
  return null;
end
$$;

/**
 * AFTER UPDATE, for each statement, on the ledger's accounts: one audit row per updated row,
 * its old and new values searched for card data as private.capture_audit_row searches them.
 */
create or replace function private.capture_audit_updates() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  actor private.audit_actor := private.audit_actor();
  redacts boolean := cardinality(private.audit_redacted_columns(tg_table_name)) > 0;
  unread text[] := tg_argv[1:tg_nargs - 1];
  -- private.may_hold_card_number's coarser expression, in line (see its comment)
  coarse constant text := '[^\x01-\x2f\x3a-\x7f](?:(?:[^A-Za-z0-9]|\\(?:[bfnrt]|u[0-9a-fA-F]{4}))*'
    || '[^\x01-\x2f\x3a-\x7f]){12}';
begin
  insert into public.payment_audit_logs (
    seq, timestamp, operation, entity_type, entity_id, user_id, user_role, ip_address,
    user_agent, old_values, new_values, success, metadata
  )
  with before_change as materialized (
    select
      r.row_values ->> tg_argv[0] as row_key,
      case
        when (r.row_values - unread)::text ~ coarse
          then private.without_card_values(tg_relid, r.row_values)
        else r.row_values
      end as row_values
    from (select to_jsonb(removed) as row_values from removed) as r
  ),

  after_change as materialized (
    select
      a.row_values ->> tg_argv[0] as row_key,
      case
        when (a.row_values - unread)::text ~ coarse
          then private.without_card_values(tg_relid, a.row_values)
        else a.row_values
      end as row_values
    from (select to_jsonb(added) as row_values from added) as a
  )

  select
    nextval('private.audit_log_seq'), now(), 'UPDATE', tg_table_name,
    after_change.row_values ->> tg_argv[0], actor.user_id, actor.user_role, actor.ip_address,
    actor.user_agent,
    case
      when redacts then private.audit_redact(tg_table_name, before_change.row_values)
      else before_change.row_values
    end,
    case
      when redacts then private.audit_redact(tg_table_name, after_change.row_values)
      else after_change.row_values
    end,
    true, actor.metadata
  from before_change
  inner join after_change on before_change.row_key = after_change.row_key;
  return null;
end
$$;

/**
 * Recreate the audit triggers of `relation` (audit_trail and audit_trail_updates, on the same
 * events) with their key column and, after it, the columns that cannot hold card data, from
 * the catalog as it is now. A migration that adds or retypes a column of an audited table
 * calls it (a column added later is searched anyway, at a cost; one retyped to hold text is
 * not until this runs).
 */
create function private.renew_audit_trail(relation regclass) returns void
language plpgsql
set search_path = ''
as $$
declare
  trigger_row record;
  key_column text;
begin
  for trigger_row in
    select t.tgname::text as name, pg_catalog.pg_get_triggerdef(t.oid) as definition,
      p.proname::text as function_name,
      pg_catalog.encode(t.tgargs, 'escape') as arguments
    from pg_catalog.pg_trigger as t
    inner join pg_catalog.pg_proc as p on p.oid = t.tgfoid
    where t.tgrelid = relation
      and p.proname in ('capture_audit_row', 'capture_audit_inserts', 'capture_audit_updates')
      and p.pronamespace = 'private'::regnamespace
  loop
    key_column := split_part(trigger_row.arguments, e'\\000', 1);
    execute format('drop trigger %I on %s', trigger_row.name, relation);
    execute regexp_replace(
      trigger_row.definition,
      'EXECUTE FUNCTION private\.' || trigger_row.function_name || '\(.*\)$',
      'EXECUTE FUNCTION private.' || trigger_row.function_name || '(' || (
        select string_agg(quote_literal(c.name), ', ' order by c.place)
        from unnest(
          key_column || private.card_data_columns(relation, false)
        ) with ordinality as c (name, place)
      ) || ')'
    );
  end loop;
end
$$;

revoke all on function private.without_card_values(regclass, jsonb) from public;
revoke all on function private.client_address(text) from public;
revoke all on function private.audit_address(inet) from public;
revoke all on function private.audit_address(text) from public;
revoke all on function private.renew_audit_trail(regclass) from public;

select private.renew_audit_trail(t.tgrelid::regclass)
from (
  select distinct t.tgrelid
  from pg_catalog.pg_trigger as t
  where t.tgfoid in (
    'private.capture_audit_row()'::regprocedure,
    'private.capture_audit_inserts()'::regprocedure,
    'private.capture_audit_updates()'::regprocedure
  )
) as t
order by t.tgrelid;
