-- The audit trail stops copying personal data in clear: a profile's email, name and phone,
-- and the nickname and metadata of payment and payout methods, are recorded as keyed
-- fingerprints (HMAC-SHA-256 under a key of each user's own, private.audit_fingerprint_keys),
-- so that erasing a user can shred their key and never needs to touch a sealed row. Audit
-- rows written before this migration are left as they are (the log is append-only).

set local check_function_bodies = off;

create table private.audit_fingerprint_keys (
  user_id uuid not null,
  secret bytea not null default extensions.gen_random_bytes(32),
  created_at timestamptz not null default now(),
  -- No foreign key: a user's key outlives the profile's row until the audit row of its
  -- delete is written (private.shred_audit_fingerprint_key).
  constraint audit_fingerprint_keys_pkey primary key (user_id),
  constraint audit_fingerprint_keys_secret_check check (octet_length(secret) = 32)
);

comment on table private.audit_fingerprint_keys is
'Each user''s key of the audit trail''s fingerprints of their personal data; deleted when the '
'user is erased or deleted (crypto-shredding). Read by the owner alone.';

/**
 * The column naming the user whose personal data a row of `table_name` holds, then the
 * columns that hold it; null for a table without personal data.
 */
create or replace function private.audit_personal_columns(table_name text) returns text[]
language plpgsql
immutable
set search_path = ''
as $$
begin
  return case table_name
    when 'users' then array['id', 'email', 'full_name', 'phone']
    when 'payment_methods' then array['user_id', 'nickname', 'metadata']
    when 'payout_methods' then array['user_id', 'nickname', 'metadata']
  end;
end
$$;

/**
 * `subject`'s fingerprint key, made at random the first time it is asked for. Runs with its
 * caller's rights: only the owner executes it (the capture trigger, security definer).
 */
create or replace function private.audit_fingerprint_key(subject uuid) returns bytea
language plpgsql
set search_path = ''
as $$
declare
  key bytea;
begin
  select k.secret into key from private.audit_fingerprint_keys as k where k.user_id = subject;
  if key is null then
    insert into private.audit_fingerprint_keys (user_id) values (subject)
    on conflict (user_id) do nothing;
    select k.secret into key from private.audit_fingerprint_keys as k where k.user_id = subject;
  end if;
  return key;
end
$$;

/**
 * The audit trail's fingerprint of `value` in column `column_name` of `subject`'s data:
 * "[personal <subject> <64 hex digits of HMAC-SHA-256>]"; null when `subject` has no key
 * (erased, or never fingerprinted). For the owner, to tell whether a recorded fingerprint
 * is of a given value.
 */
create or replace function private.audit_fingerprint(
  subject uuid, column_name text, value text
) returns text
language sql
stable
set search_path = ''
as $$
  select '[personal ' || subject::text || ' ' || encode(extensions.hmac(
    convert_to(column_name || e'\x1f' || value, 'UTF8'), k.secret, 'sha256'
  ), 'hex') || ']'
  from private.audit_fingerprint_keys as k
  where k.user_id = subject
$$;

/**
 * A row as the audit trail keeps it: each of its personal columns (`columns`, after the
 * column naming the user: private.audit_personal_columns) that holds something replaced by
 * its fingerprint under that user's key (made if need be).
 */
create or replace function private.audit_pseudonymize(columns text[], row_values jsonb)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  subject uuid := (row_values ->> columns[1])::uuid;
  keyed boolean := false;
  column_name text;
begin
  if row_values is null or subject is null then
    return row_values;
  end if;
  foreach column_name in array columns[2:] loop
    if coalesce(row_values ->> column_name, '') not in ('', '{}') then
      if not keyed then
        perform private.audit_fingerprint_key(subject);
        keyed := true;
      end if;
      row_values := jsonb_set(
        row_values, array[column_name],
        to_jsonb(private.audit_fingerprint(subject, column_name, row_values ->> column_name))
      );
    end if;
  end loop;
  return row_values;
end
$$;

/**
 * AFTER DELETE on public.users, for each row, after its audit row (the trigger's name sorts
 * after audit_trail): the user's fingerprint key is deleted with them.
 */
create or replace function private.shred_audit_fingerprint_key() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  delete from private.audit_fingerprint_keys as k where k.user_id = old.id;
  return null;
end
$$;

grant execute on function private.shred_audit_fingerprint_key() to service_role;

create trigger shred_audit_fingerprint_key
after delete on public.users
for each row execute function private.shred_audit_fingerprint_key();

/**
 * AFTER INSERT, UPDATE or DELETE, for each row, on every audited table but the ledger's: one
 * audit row. The trigger's first argument names the table's key column, the others its
 * columns that cannot hold card data. The old and new values are searched for card data
 * (one regular expression over the columns that can hold it settles most rows; then each
 * column, as stored), and what holds it is removed before the row is redacted, its personal
 * data fingerprinted (private.audit_pseudonymize), and written.
 */
create or replace function private.capture_audit_row() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  actor private.audit_actor := private.audit_actor();
  redacts boolean := cardinality(private.audit_redacted_columns(tg_table_name)) > 0;
  personal text[] := private.audit_personal_columns(tg_table_name);
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
  if personal is not null then
    old_values := private.audit_pseudonymize(personal, old_values);
    new_values := private.audit_pseudonymize(personal, new_values);
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
