-- The audit trail, part 1: capture. Every change to a payment table or to the ledger writes
-- one row to public.payment_audit_logs, in the same transaction, with who made it (from the
-- JWT, or the database role acting), from where (PostgREST's request headers), and the
-- old and new values with sensitive columns redacted.
--
-- Each row gets `seq`, its place in the hash chain, when it is inserted. `prev_hash` and
-- `row_hash` are filled in later by the sealer (20261126080200_audit_sealing.sql).

create sequence private.audit_log_seq as bigint cache 1;

comment on sequence private.audit_log_seq is
'The order of payment_audit_logs rows. Cache 1, always: the sealer relies on a row''s seq '
'being drawn from the sequence itself, in the order the rows were inserted.';

alter table public.payment_audit_logs
alter column entity_id type text using entity_id::text,
alter column user_id drop not null,
add column seq bigint,
add column prev_hash bytea,
add column row_hash bytea,
add constraint payment_audit_logs_seq_key unique (seq),
add constraint payment_audit_logs_sealed_together check (
  (prev_hash is null) = (row_hash is null)
),
add constraint payment_audit_logs_hash_length check (
  octet_length(prev_hash) = 32 and octet_length(row_hash) = 32
);

-- Rows written before the chain existed take their places in the order they were written.
update public.payment_audit_logs as l set seq = ordered.seq
from (
  select
    by_time.id,
    nextval('private.audit_log_seq') as seq
  from (
    select earlier.id from public.payment_audit_logs as earlier
    order by earlier.timestamp, earlier.id
  ) as by_time
) as ordered
where l.id = ordered.id;

alter table public.payment_audit_logs alter column seq set not null;

comment on column public.payment_audit_logs.entity_id is
'The changed row''s key, as text (most are uuids; webhook events and ledger entries are not).';
comment on column public.payment_audit_logs.user_id is
'The signed-in user (the JWT''s sub); null when a service role or the owner acted.';
comment on column public.payment_audit_logs.seq is
'The row''s place in the hash chain: drawn when the row is inserted.';
comment on column public.payment_audit_logs.prev_hash is
'The row_hash of the sealed row before this one (32 zero bytes for the first).';
comment on column public.payment_audit_logs.row_hash is
'sha256(prev_hash || the row''s canonical serialization); null until the row is sealed.';

-- Each row is updated once, when it is sealed (its hashes filled in): room on its page lets
-- that update stay on the page without touching the indexes (a heap-only tuple).
alter table public.payment_audit_logs set (fillfactor = 50);

/** A text that holds a card-number-like run, replaced whole; the text itself otherwise. */
create function private.without_card_numbers(candidate text) returns text
language plpgsql
immutable
set search_path = ''
as $$
begin
  if private.holds_card_number(candidate) then
    return '[removed: it held card data]';
  end if;
  return candidate;
end
$$;

/** True when a jsonb value has, at any depth, a key that names a card verification code. */
create function private.holds_card_verification_key(candidate jsonb) returns boolean
language plpgsql
immutable
set search_path = ''
as $$
begin
  return candidate::text ~* '(cvv|cvc|cvn|csc|cav|cid|security|verification)'
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
 * A jsonb object (a request's metadata, a refused call's parameters) with every top-level
 * value that holds card data (a card number, or a card-verification key at any depth)
 * replaced; the object itself when it holds none.
 */
create function private.without_card_data(candidate jsonb) returns jsonb
language plpgsql
immutable
set search_path = ''
as $$
declare
  removed constant jsonb := '"[removed: it held card data]"';
  cleaned jsonb := '{}';
  field record;
begin
  if candidate is null or not (
    private.holds_card_number(candidate::text)
    or private.holds_card_verification_key(candidate)
  ) then
    return candidate;
  end if;
  if jsonb_typeof(candidate) <> 'object' then
    return removed;
  end if;
  for field in select e.key, e.value from jsonb_each(candidate) as e loop
    cleaned := cleaned || jsonb_build_object(
      field.key,
      case
        when private.is_card_verification_key(field.key)
          or private.holds_card_number(field.value::text)
          or private.holds_card_verification_key(field.value)
          then removed
        else field.value
      end
    );
  end loop;
  return cleaned;
end
$$;

/**
 * BEFORE INSERT on payment_audit_logs, for rows not written by the capture trigger (which
 * stamps its own rows the same way): whatever the writer sent, a row is stamped with the
 * time, the next seq, and no hashes. The transaction is given its id before the seq is
 * drawn, so that a transaction holding a seq is always one the sealer can see running.
 *
 * What a request brings (its user agent, address, metadata, an error message, the
 * parameters of a refused call) never stores a card number: it is removed, not refused, so
 * that a refusal is still recorded. The old and new values of a changed row come from
 * tables that already refuse card data.
 */
create function private.stamp_audit_log_row() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  perform pg_catalog.pg_current_xact_id();
  new.seq := nextval('private.audit_log_seq');
  new.timestamp := now();
  new.prev_hash := null;
  new.row_hash := null;
  if private.holds_card_number(concat_ws(' ', new.user_agent, new.ip_address, new.error_message))
    then
    new.user_agent := private.without_card_numbers(new.user_agent);
    new.ip_address := private.without_card_numbers(new.ip_address);
    new.error_message := private.without_card_numbers(new.error_message);
  end if;
  new.metadata := private.without_card_data(new.metadata);
  if not new.success then
    new.new_values := private.without_card_data(new.new_values);
  end if;
  return new;
end
$$;

-- Rows the capture trigger writes (at trigger depth 1 or more) are stamped by it, in the
-- same way, without a second trigger per row; every other insert is stamped here.
create trigger stamp_audit_log_row
before insert on public.payment_audit_logs
for each row when (pg_trigger_depth() = 0)
execute function private.stamp_audit_log_row();

-- The card-data guard would refuse the row, and with it the record of a refusal: the stamp
-- above removes card numbers instead.
drop trigger refuse_card_data on public.payment_audit_logs;


/**
 * The redaction list, in one place: per table, the columns whose values never reach the
 * audit trail (processor tokens that can move money, bank account numbers, encryption
 * material, raw processor payloads).
 */
create function private.audit_redacted_columns(table_name text) returns text[]
language plpgsql
immutable
set search_path = ''
as $$
begin
  return case table_name
    when 'payment_methods' then array['processor_payment_method_id', 'processor_customer_id']
    when 'payout_methods' then array['processor_account_id', 'processor_external_account_id']
    when 'webhook_events' then array['payload']
    else array[]::text []
  end;
end
$$;

/**
 * A row as the audit trail keeps it: its columns as jsonb, each redacted one replaced by
 * "[redacted <fingerprint>]", the first 16 hex digits of the value's SHA-256. The value
 * cannot be read back, yet a change shows (a payout redirected to another account changes
 * the fingerprint) and equal values match. The listed values are random processor ids and
 * whole payloads; a short guessable value (a bare account number) would need a keyed hash.
 */
create function private.audit_redact(table_name text, row_values jsonb) returns jsonb
language plpgsql
immutable
set search_path = ''
as $$
declare
  column_name text;
begin
  foreach column_name in array private.audit_redacted_columns(table_name) loop
    if jsonb_typeof(row_values -> column_name) is distinct from 'null'
      and row_values ? column_name then
      row_values := jsonb_set(
        row_values, array[column_name],
        to_jsonb('[redacted ' || left(encode(
          sha256(convert_to(row_values ->> column_name, 'UTF8')), 'hex'
        ), 16) || ']')
      );
    end if;
  end loop;
  return row_values;
end
$$;

create type private.audit_actor as (
  user_id uuid,
  user_role text,
  ip_address text,
  user_agent text,
  metadata jsonb
);

/** True when `candidate` has the shape of an IPv4 or IPv6 address. */
create function private.looks_like_ip(candidate text) returns boolean
language plpgsql
immutable
set search_path = ''
as $$
begin
  return candidate ~ '^([0-9]{1,3}\.){3}[0-9]{1,3}$'
    or (candidate ~ '^[0-9a-fA-F:.]+$' and candidate like '%:%' and length(candidate) <= 45);
end
$$;

/**
 * Who is acting, from where: the JWT's user and their application role (else the database
 * role PostgREST switched to, or the login role); the client's address (the first hop of
 * x-forwarded-for, else x-real-ip, else the connection's address: the first that looks like
 * an address; the whole x-forwarded-for goes to metadata when it says more, since its first
 * hop is whatever the client sent to the first proxy); the user agent; and the request's
 * method, path, correlation id (x-correlation-id or x-request-id), database role and
 * transaction id.
 */
create function private.audit_actor() returns private.audit_actor
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  -- What the actor is derived from. A request writes many audit rows: the parsed request is
  -- kept for the rest of the transaction under this key (a setting local to the
  -- transaction, so that a rolled-back subtransaction forgets it too).
  request_key text := concat_ws(
    e'\x1f', current_setting('role', true), current_setting('request.jwt.claims', true),
    current_setting('request.jwt.claim.sub', true), current_setting('request.headers', true),
    current_setting('request.method', true), current_setting('request.path', true),
    session_user::text
  );
  cached text := current_setting('payguard.audit_request', true);
  headers jsonb;
  first_hop text;
  ip text;
  actor private.audit_actor;
begin
  if cached is not null and starts_with(cached, request_key || e'\x1e') then
    actor := jsonb_populate_record(
      null::private.audit_actor, substr(cached, length(request_key) + 2)::jsonb
    );
  else
    headers := coalesce(nullif(current_setting('request.headers', true), '')::jsonb, '{}');
    first_hop := btrim(split_part(headers ->> 'x-forwarded-for', ',', 1));
    if private.looks_like_ip(first_hop) then
      ip := first_hop;
    elsif private.looks_like_ip(btrim(headers ->> 'x-real-ip')) then
      ip := btrim(headers ->> 'x-real-ip');
    else
      ip := host(inet_client_addr());
    end if;
    actor.user_id := (select auth.uid());
    actor.ip_address := ip;
    actor.user_agent := headers ->> 'user-agent';
    actor.metadata := jsonb_strip_nulls(jsonb_build_object(
      'method', nullif(current_setting('request.method', true), ''),
      'path', nullif(current_setting('request.path', true), ''),
      'correlation_id', coalesce(headers ->> 'x-correlation-id', headers ->> 'x-request-id'),
      'forwarded_for', nullif(left(headers ->> 'x-forwarded-for', 200), ip),
      'db_role', coalesce(nullif(current_setting('role', true), 'none'), session_user::text),
      'transaction', pg_catalog.pg_current_xact_id()::text
    ));
    -- What the client sent never brings a card number into the log.
    if private.holds_card_number(concat_ws(' ', actor.user_agent, actor.metadata::text)) then
      actor.user_agent := private.without_card_numbers(actor.user_agent);
      actor.metadata := private.without_card_data(actor.metadata);
    end if;
    perform set_config(
      'payguard.audit_request', request_key || e'\x1e' || to_jsonb(actor)::text, true
    );
  end if;
  -- The application role is read each time: it may change within a transaction.
  actor.user_role := coalesce(
    (select u.role::text from public.users as u where u.id = actor.user_id),
    actor.metadata ->> 'db_role'
  );
  return actor;
end
$$;

/**
 * AFTER INSERT, UPDATE or DELETE, for each row, on every audited table: one audit row. The
 * trigger's argument names the table's key column.
 */
create function private.capture_audit_row() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  actor private.audit_actor := private.audit_actor();
  old_values jsonb;
  new_values jsonb;
begin
  if tg_op <> 'INSERT' then
    old_values := private.audit_redact(tg_table_name, to_jsonb(old));
  end if;
  if tg_op <> 'DELETE' then
    new_values := private.audit_redact(tg_table_name, to_jsonb(new));
  end if;
  -- Stamped as private.stamp_audit_log_row() stamps: the transaction has its id (it has
  -- just changed a row) before the seq is drawn; the actor holds no card data.
  perform pg_catalog.pg_current_xact_id();
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

/** BEFORE TRUNCATE on every audited table: a truncate would change rows unseen. */
create function private.refuse_unaudited_truncate() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  raise exception '%.% is audited row by row and is never truncated', tg_table_schema, tg_table_name
  using errcode = '42501';
end
$$;

revoke all on function private.without_card_numbers(text) from public;
revoke all on function private.holds_card_verification_key(jsonb) from public;
revoke all on function private.without_card_data(jsonb) from public;
revoke all on function private.stamp_audit_log_row() from public;
revoke all on function private.audit_redacted_columns(text) from public;
revoke all on function private.audit_redact(text, jsonb) from public;
revoke all on function private.looks_like_ip(text) from public;
revoke all on function private.audit_actor() from public;
revoke all on function private.capture_audit_row() from public;
revoke all on function private.refuse_unaudited_truncate() from public;

do $$
declare
  audited record;
begin
  for audited in
    select * from (values
      ('public', 'users', 'id'),
      ('public', 'projects', 'id'),
      ('public', 'project_milestones', 'id'),
      ('public', 'payment_methods', 'id'),
      ('public', 'payout_methods', 'id'),
      ('public', 'payment_transactions', 'id'),
      ('public', 'escrow_accounts', 'id'),
      ('public', 'milestone_payments', 'id'),
      ('public', 'disputes', 'id'),
      ('public', 'withdrawals', 'id'),
      ('public', 'withdrawal_approvals', 'id'),
      ('public', 'subscriptions', 'id'),
      ('public', 'webhook_events', 'id'),
      ('private', 'ledger_accounts', 'id'),
      ('private', 'ledger_transfers', 'id'),
      ('private', 'ledger_entries', 'id'),
      ('private', 'fee_schedule', 'currency'),
      ('private', 'settings', 'key')
    ) as t (table_schema, table_name, key_column)
  loop
    execute format(
      'create trigger audit_trail after insert or update or delete on %I.%I '
      'for each row execute function private.capture_audit_row(%L)',
      audited.table_schema, audited.table_name, audited.key_column
    );
    execute format(
      'create trigger refuse_unaudited_truncate before truncate on %I.%I '
      'for each statement execute function private.refuse_unaudited_truncate()',
      audited.table_schema, audited.table_name
    );
  end loop;
end
$$;
