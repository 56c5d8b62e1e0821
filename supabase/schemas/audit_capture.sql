-- Audit trail: capture
--
-- Every change to a payment table or to the ledger writes an audit row in the same transaction:
-- who acted and from where, old and new values with card data and tokens fingerprinted, never
-- stored. The rows' hash chain (sealing, verifying, anchoring) is audit_chain.sql's.
--
-- Sections, in this order: the log; no card data in the log; who acted, from where; capturing
-- the audited tables; reads of restricted data.
--
-- This file is the current definition of everything in its domain. Change it first, then
-- write the migration that makes the same change (docs/schema-changes.md); `payguard schema
-- check` proves that the migrations and these files build the same database.
-- See also: docs/audit-trail.md, tests/sql/audit_capture/

set local check_function_bodies = off;

-- Section: the log
--
-- The audit trail of payment operations: the source document's columns, and each row's place
-- in the hash chain. Append-only: rows are inserted, sealed once (their hashes filled in), and
-- never otherwise changed or deleted (audit_chain.sql guards that).

create table public.payment_audit_logs (
  -- A fresh random id per row (the column's default, or the stamp trigger's); not indexed.
  id uuid not null default gen_random_uuid(),
  timestamp timestamptz not null default now(),
  operation varchar(50) not null,
  entity_type varchar(50) not null,
  entity_id text not null,
  user_id uuid,
  user_role varchar(50) not null,
  ip_address varchar(50),
  user_agent text,
  old_values jsonb,
  new_values jsonb,
  success boolean not null,
  error_message text,
  metadata jsonb,
  seq bigint not null,
  prev_hash bytea,
  row_hash bytea,
  -- The chain's order, by which the sealer, verify and anchors find rows.
  constraint payment_audit_logs_pkey primary key (seq)
)
-- Each row is updated once, when it is sealed: room on its page lets that update stay on the
-- page without touching the indexes (a heap-only tuple).
with (fillfactor = 45);

comment on table public.payment_audit_logs is
'Who did what to which payment record, when, from where, and with what result. Append-only.';

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

-- ip_address holds an address, written as PostgreSQL writes it, or nothing. The check skips
-- sealed rows, so that sealing a row never fails on it, and is NOT VALID: it holds the rows
-- written after it, not those already there.
alter table public.payment_audit_logs
add constraint payment_audit_logs_ip_address_is_an_address check (
  case
    when (
      (ip_address is null)
      or (row_hash is not null)
    ) then true
    when ((ip_address)::text !~ '^[0-9a-f:.]{2,45}$'::text) then false
    else (host((ip_address)::inet) = (ip_address)::text)
  end
) not valid;

-- The planner has no use for statistics on the log's payloads (no query selects rows by
-- them), and computing them would be most of what each automatic ANALYZE of this fast-growing
-- table costs.
alter table public.payment_audit_logs alter column user_agent set statistics 0;

alter table public.payment_audit_logs alter column old_values set statistics 0;

alter table public.payment_audit_logs alter column new_values set statistics 0;

alter table public.payment_audit_logs alter column metadata set statistics 0;

create index payment_audit_logs_entity_idx
on public.payment_audit_logs (entity_type, entity_id);

create index payment_audit_logs_timestamp_idx on public.payment_audit_logs (timestamp);

-- Each row's `seq`, its place in the hash chain, drawn when it is inserted
-- (private.stamp_audit_log_row, or the capture triggers).
create sequence private.audit_log_seq as bigint cache 1;

comment on sequence private.audit_log_seq is
'The order of payment_audit_logs rows. Cache 1, always: the sealer relies on a row''s seq '
'being drawn from the sequence itself, in the order the rows were inserted.';

-- Section: no card data in the log
--
-- The log is append-only and kept ten years: a card number that lands in it can never be
-- removed. So no card data gets in, whatever writes a row: every value a row brings is
-- searched as stored (never as JSON text, where a tab between digit groups is the two
-- characters \t), column by column and, in JSON, value by value (private.card_data_in); what
-- holds card data is replaced by "[removed: it held card data]", the rest of the row is kept:
-- - rows that a statement or a refused call inserts (trigger depth 0, or any row recording a
--   refusal, whatever its depth) are stamped by private.stamp_audit_log_row, every column;
-- - the capture triggers search the rows they copy, old and new, every column that can hold
--   card data (one regular expression settles most rows): a value stored before the guard
--   knew its form, a table without the guard, or a column the guard skips may bring it along.
--   They take the actor from private.audit_actor, which searches what a request brings;
-- - ip_address only ever holds an address, written as PostgreSQL writes it (a check
--   constraint holds every new row to it), and never one that holds a card number.

/** A text that holds a card-number-like run, replaced whole; the text itself otherwise. */
create or replace function private.without_card_numbers(candidate text) returns text
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
create or replace function private.without_card_values(relation regclass, row_values jsonb)
returns jsonb
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

-- Rows that a statement or a refused call inserts are stamped; the capture triggers stamp
-- their own.
create trigger stamp_audit_log_row
before insert on public.payment_audit_logs
for each row when (pg_trigger_depth() = 0 or not new.success)
execute function private.stamp_audit_log_row();

-- Section: who acted, from where
--
-- Who acted and from where, as the audit trail records it: the client's address taken from
-- the end of X-Forwarded-For that our own proxies wrote, and nothing the client sent (the
-- address chain, user agent, correlation id, path) bringing card data into the log.
--
-- Each proxy appends the address it received the request from to what it was sent, so the
-- first hop of X-Forwarded-For is whatever the client wrote there. The address is read from
-- the right: private.settings' trusted_proxy_hops says how many addresses at the right-hand
-- end our own proxies appended after the one that saw the client, and the client's address
-- is the next one to their left. It must be an address (private.audit_address); when it is
-- not, or when the chain is shorter than that, X-Real-IP is read, then the connection's own
-- address. The whole chain is kept in metadata, bounded from the right (its hops nearest us,
-- up to 1000 characters, so that a client's long hops never push out the real address), its
-- hops joined by " via " and each cleaned of card data, with the number of hops the request
-- brought whenever it says more than the address. docs/audit-trail.md says how to set the
-- number of hops for Supabase's gateway.
--
-- What a request brings is searched for card data field by field, as stored; and what
-- private.audit_actor keeps for the rest of the transaction is searched again when it is read
-- back.

insert into private.settings (key, value, description)
values (
  'trusted_proxy_hops', '0',
  'How many addresses at the right-hand end of X-Forwarded-For our own proxies appended after '
  || 'the one that received the client''s connection: the audit trail records the address to '
  || 'their left as the client''s. 0 when the first proxy (on Supabase, Cloudflare) appends the '
  || 'client''s address last. See docs/audit-trail.md.'
);

/** The number of trusted proxy hops (private.settings, trusted_proxy_hops); 0 when unset. */
create or replace function private.trusted_proxy_hops() returns integer
language sql
stable
security definer
set search_path = ''
as $$
  select coalesce(
    (select s.value::text::integer from private.settings as s where s.key = 'trusted_proxy_hops'),
    0
  )
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
 * `candidate` as an address (v4 or v6; a port, and the brackets around a v6 address, are
 * dropped); null when it is not one.
 */
create or replace function private.client_address(candidate text) returns inet
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
create or replace function private.audit_address(address inet) returns text
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
create or replace function private.audit_address(candidate text) returns text
language sql
immutable
set search_path = ''
as $$
  select private.audit_address(private.client_address(candidate))
$$;

/**
 * The X-Forwarded-For chain the audit trail keeps, from its hops: those at the right-hand end
 * (the end our proxies wrote) that fit in 1000 characters, in order, joined by " via " (a word,
 * so that no number runs from one hop into the next: a card number split across hops is no
 * card number in what is kept), each hop that holds card data written
 * "[removed: it held card data]". Null when no hop fits.
 */
create or replace function private.forwarded_chain(hops text[]) returns text
language plpgsql
immutable
set search_path = ''
as $$
declare
  kept text;
  longer text;
begin
  if hops is null then
    return null;
  end if;
  for position in reverse cardinality(hops) .. 1 loop
    longer := concat_ws(' via ', private.without_card_numbers(hops[position]), kept);
    exit when length(longer) > 1000;
    kept := longer;
  end loop;
  return nullif(kept, '');
end
$$;

-- Who is acting, as private.audit_actor works it out once per request.
create type private.audit_actor as (
  user_id uuid,
  user_role text,
  ip_address text,
  user_agent text,
  metadata jsonb
);

-- The actor kept for a transaction cannot be forged.
--
-- private.audit_actor works out who is acting and from where once per request and keeps it,
-- for the rest of the transaction, in settings (payguard.audit_actor under the request's key,
-- payguard.audit_request). Any session can write those settings, and a direct connection as
-- `authenticated` can work out the key from settings it can read: an actor naming another
-- user, the admin role or any address must not be taken from them. So the actor is kept with
-- a seal: an HMAC (SHA-256) of the transaction's id, the request's key and the actor, under a
-- key made at random once and readable by the owner alone (private.audit_actor_key). An actor
-- is read back only under its seal; one whose seal does not match is worked out anew from the
-- request.
--
-- The seal is made and checked in line in private.audit_actor, which reads the key in the
-- statement that reads the user's role: a SQL function of its own would be planned anew the
-- first time each calling expression runs in a transaction, about a third of the cost of
-- working the actor out, on every request (the release benchmark's audit budget is 30%).
-- private.audit_actor runs with its caller's rights and only the owner may execute it (every
-- caller is a security definer function of the owner), so the key is read by the owner alone.
create table private.audit_actor_key (
  id boolean primary key default true check (id),
  secret bytea not null default extensions.gen_random_bytes(32)
);

-- The one key, made at random.
insert into private.audit_actor_key default values;

/**
 * Who is acting, from where: the JWT's user and their application role (else the database
 * role PostgREST switched to, or the login role); the client's address (X-Forwarded-For read
 * from the right, past private.trusted_proxy_hops() hops our proxies appended; else X-Real-IP;
 * else the connection's address; always an address, holding no card number); the user agent;
 * and the request's method, path, correlation id (X-Correlation-Id or X-Request-Id), the
 * X-Forwarded-For chain (private.forwarded_chain) and its number of hops when it says more
 * than the address, the database role and the transaction id. Every field a request brings
 * holds no card data: one that does is "[removed: it held card data]".
 *
 * It is worked out once per request in a transaction and kept in three settings local to the
 * transaction (payguard.audit_request, the request's key, compared whole; payguard.audit_actor,
 * the actor; payguard.audit_seal, an HMAC of the transaction's id and both under
 * private.audit_actor_key's secret); a change to users makes the next call work it out
 * again. Settings can be written by any session: an actor is read back only when its seal,
 * which only the owner can make, is the one for this request and transaction; else it is
 * worked out anew. It runs with its caller's rights: every caller is a
 * security definer function of the owner.
 */
create or replace function private.audit_actor() returns private.audit_actor
language plpgsql
stable
set search_path = ''
as $$
declare
  request_key text := concat_ws(
    e'\x1f', current_setting('role', true), current_setting('request.jwt.claims', true),
    current_setting('request.jwt.claim.sub', true), current_setting('request.headers', true),
    current_setting('request.method', true), current_setting('request.path', true),
    session_user::text
  );
  cached text := current_setting('payguard.audit_request', true);
  -- private.may_hold_card_number's coarser expression, in line (see its comment)
  coarse constant text := '[^\x01-\x2f\x3a-\x7f](?:(?:[^A-Za-z0-9]|\\(?:[bfnrt]|u[0-9a-fA-F]{4}))*'
    || '[^\x01-\x2f\x3a-\x7f]){12}';
  kept text;
  key bytea;
  headers jsonb;
  hops text [];
  trusted integer;
  chain text;
  ip text;
  correlation_id text;
  request_method text;
  request_path text;
  actor private.audit_actor;
begin
  if cached = request_key then
    kept := current_setting('payguard.audit_actor', true);
    -- Only an actor this function kept, for this request in this transaction, is read back.
    select k.secret into key from private.audit_actor_key as k;
    if current_setting('payguard.audit_seal', true) = encode(extensions.hmac(
      convert_to(concat_ws(e'\x1f', pg_catalog.pg_current_xact_id()::text, request_key, kept), 'UTF8'),
      key, 'sha256'
    ), 'hex') then
      return kept::private.audit_actor;
    end if;
  end if;
  headers := coalesce(nullif(current_setting('request.headers', true), '')::jsonb, '{}');
  if headers ->> 'x-forwarded-for' is not null then
    hops := regexp_split_to_array(btrim(headers ->> 'x-forwarded-for'), '\s*,\s*');
    trusted := private.trusted_proxy_hops();
    if cardinality(hops) > trusted then
      ip := private.audit_address(hops[cardinality(hops) - trusted]);
    end if;
    chain := private.forwarded_chain(hops);
  end if;
  if ip is null and headers ? 'x-real-ip' then
    ip := private.audit_address(headers ->> 'x-real-ip');
  end if;
  if ip is null and inet_client_addr() is not null then
    ip := private.audit_address(inet_client_addr());
  end if;
  actor.user_id := auth.uid();
  actor.ip_address := ip;
  actor.user_agent := headers ->> 'user-agent';
  correlation_id := coalesce(headers ->> 'x-correlation-id', headers ->> 'x-request-id');
  request_method := nullif(current_setting('request.method', true), '');
  request_path := nullif(current_setting('request.path', true), '');
  -- What the client sent never brings a card number into the log.
  if concat_ws(' x ', actor.user_agent, correlation_id, request_method, request_path) ~ coarse then
    actor.user_agent := private.without_card_numbers(actor.user_agent);
    correlation_id := private.without_card_numbers(correlation_id);
    request_method := private.without_card_numbers(request_method);
    request_path := private.without_card_numbers(request_path);
  end if;
  actor.metadata := jsonb_strip_nulls(jsonb_build_object(
    'method', request_method,
    'path', request_path,
    'correlation_id', correlation_id,
    'forwarded_for', case when cardinality(hops) > 1 or chain is distinct from ip then chain end,
    'forwarded_hops',
    case when cardinality(hops) > 1 or chain is distinct from ip then cardinality(hops) end,
    'db_role', coalesce(nullif(current_setting('role', true), 'none'), session_user::text),
    'transaction', pg_catalog.pg_current_xact_id()::text
  ));
  -- One statement reads both the user's role and the seal's key.
  select coalesce(u.role::text, actor.metadata ->> 'db_role'), k.secret
  into actor.user_role, key
  from private.audit_actor_key as k
  left join public.users as u on u.id = actor.user_id;
  -- Kept for the rest of the transaction (settings local to it, so that a rolled-back
  -- subtransaction forgets them too): the actor, then the request it is for.
  kept := set_config('payguard.audit_actor', actor::text, true);
  cached := set_config('payguard.audit_seal', encode(extensions.hmac(
    convert_to(concat_ws(e'\x1f', pg_catalog.pg_current_xact_id()::text, request_key, kept), 'UTF8'),
    key, 'sha256'
  ), 'hex'), true);
  cached := set_config('payguard.audit_request', request_key, true);
  return actor;
end
$$;

/**
 * AFTER INSERT, UPDATE OR DELETE on public.users, for each statement: a user's application
 * role may have changed, so the actor is worked out again for the next audit row.
 */
create or replace function private.forget_audit_actor() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  perform set_config('payguard.audit_request', '', true);
  return null;
end
$$;

-- A change to users (a role) makes the actor be worked out again.
create trigger forget_audit_actor
after insert or delete or update of role on public.users
for each statement execute function private.forget_audit_actor();

-- Section: capturing the audited tables
--
-- Each audited table has a trigger that writes one audit row per changed row, in the same
-- transaction, with the old and new values redacted (private.audit_redact) and searched for
-- card data. The ledger's tables, written in bulk, are captured statement by statement
-- (transition tables).

/**
 * The columns the audit trail keeps out of its rows: processor tokens, in both forms they are
 * stored in (sealed, and their lookups: payment_methods.sql), and whole payloads.
 */
create or replace function private.audit_redacted_columns(table_name text) returns text[]
language plpgsql
immutable
set search_path = ''
as $$
begin
  return case table_name
    when 'payment_methods' then array[
      'processor_payment_method_id_sealed', 'processor_payment_method_id_lookup',
      'processor_customer_id_lookup'
    ]
    when 'payout_methods' then array[
      'processor_external_account_id_sealed', 'processor_external_account_id_lookup',
      'processor_account_id_lookup'
    ]
    when 'webhook_events' then array['payload']
    when 'processor_customers' then array[
      'processor_customer_id_sealed', 'processor_customer_id_lookup'
    ]
    when 'processor_accounts' then array[
      'processor_account_id_sealed', 'processor_account_id_lookup'
    ]
    when 'funding_attempts' then array[
      'processor_payment_method_id_lookup', 'processor_customer_id_lookup'
    ]
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
create or replace function private.audit_redact(table_name text, row_values jsonb) returns jsonb
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

-- Personal data: keyed fingerprints.
--
-- The log is kept ten years and never changed, yet a user may ask to be forgotten. So the
-- personal data an audited row holds (a profile's email, name and phone; the nickname and
-- metadata a user writes on a payment or payout method) is never written in clear: each value
-- is replaced by "[personal <user id> <fingerprint>]", an HMAC-SHA-256 of the column's name and
-- the value under a key of that user's own (private.audit_fingerprint_keys), made at random
-- the first time it is needed. Equal values of one user match and a change shows, and the
-- owner can tell whether a value is the one recorded (private.audit_fingerprint). Erasing the
-- user deletes the key (users_and_projects.sql): the sealed rows stay as they are, and their
-- fingerprints can no longer be linked to any value. An empty value (null, '' or an empty
-- object) is kept as it is: it says nothing about anyone.

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
 * AFTER DELETE on public.users, for each row, deferred to the end of the transaction: the
 * user's fingerprint key is deleted with them, once every audit row of the delete (theirs,
 * and those of the rows the cascade removes with them, written after it) is written.
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

create constraint trigger shred_audit_fingerprint_key
after delete on public.users
deferrable initially deferred
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

/** BEFORE TRUNCATE on every audited table: a truncate would change rows unseen. */
create or replace function private.refuse_unaudited_truncate() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  raise exception '%.% is audited row by row and is never truncated', tg_table_schema, tg_table_name
  using errcode = '42501';
end
$$;

/**
 * Recreate the audit triggers of `relation` (audit_trail and audit_trail_updates, on the same
 * events) with their key column and, after it, the columns that cannot hold card data, from
 * the catalog as it is now. A migration that adds or retypes a column of an audited table
 * calls it (a column added later is searched anyway, at a cost; one retyped to hold text is
 * not until this runs).
 */
create or replace function private.renew_audit_trail(relation regclass) returns void
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

-- Every audited table: each change writes its audit row (the trigger's arguments are the key
-- column, then the columns that cannot hold card data), and a truncate, which would change
-- rows unseen, is refused.

create trigger audit_trail
after insert or delete or update
on private.token_key_rotations
for each row
execute function private.capture_audit_row(
  'id', 'id', 'created_at', 'updated_at', 'finished_at'
);

create trigger refuse_unaudited_truncate
before truncate
on private.token_key_rotations
for each statement
execute function private.refuse_unaudited_truncate();

create trigger audit_trail
after insert or delete or update
on private.fee_schedule
for each row
execute function private.capture_audit_row(
  'currency', 'updated_at'
);

create trigger refuse_unaudited_truncate
before truncate
on private.fee_schedule
for each statement
execute function private.refuse_unaudited_truncate();

create trigger audit_trail
after insert or delete
on private.ledger_accounts
for each row
execute function private.capture_audit_row(
  'id', 'id', 'kind', 'user_id', 'escrow_account_id', 'debits_must_not_exceed_credits', 'created_at'
);

create trigger audit_trail_updates
after update
on private.ledger_accounts
referencing old table as removed new table as added
for each statement
execute function private.capture_audit_updates(
  'id', 'id', 'kind', 'user_id', 'escrow_account_id', 'debits_must_not_exceed_credits', 'created_at'
);

create trigger refuse_unaudited_truncate
before truncate
on private.ledger_accounts
for each statement
execute function private.refuse_unaudited_truncate();

create trigger audit_trail
after insert
on private.ledger_entries
referencing new table as inserted
for each statement
execute function private.capture_audit_inserts(
  'id', 'transfer_id', 'account_id', 'created_at'
);

create trigger refuse_unaudited_truncate
before truncate
on private.ledger_entries
for each statement
execute function private.refuse_unaudited_truncate();

create trigger audit_trail
after insert
on private.ledger_transfers
referencing new table as inserted
for each statement
execute function private.capture_audit_inserts(
  'id',
  'id',
  'kind',
  'debit_account_id',
  'credit_account_id',
  'pending_id',
  'reference_id',
  'created_at'
);

create trigger refuse_unaudited_truncate
before truncate
on private.ledger_transfers
for each statement
execute function private.refuse_unaudited_truncate();

create trigger audit_trail
after insert or delete or update
on private.refund_obligations
for each row
execute function private.capture_audit_row(
  'id',
  'id',
  'milestone_payment_id',
  'processor_inconsistency_id',
  'last_failed_at',
  'sent_at',
  'confirmed_at',
  'created_at',
  'updated_at'
);

create trigger refuse_unaudited_truncate
before truncate
on private.refund_obligations
for each statement
execute function private.refuse_unaudited_truncate();

create trigger audit_trail
after insert or delete or update
on private.settings
for each row
execute function private.capture_audit_row(
  'key', 'updated_at'
);

create trigger refuse_unaudited_truncate
before truncate
on private.settings
for each statement
execute function private.refuse_unaudited_truncate();

create trigger audit_trail
after insert or delete or update
on public.disputes
for each row
execute function private.capture_audit_row(
  'id',
  'id',
  'milestone_payment_id',
  'opened_by',
  'status',
  'outcome',
  'resolved_by',
  'resolved_at',
  'created_at',
  'updated_at'
);

create trigger refuse_unaudited_truncate
before truncate
on public.disputes
for each statement
execute function private.refuse_unaudited_truncate();

create trigger audit_trail
after insert or delete or update
on public.escrow_accounts
for each row
execute function private.capture_audit_row(
  'id', 'id', 'user_id', 'project_id', 'status', 'created_at', 'updated_at'
);

create trigger refuse_unaudited_truncate
before truncate
on public.escrow_accounts
for each statement
execute function private.refuse_unaudited_truncate();

create trigger audit_trail
after insert or delete or update
on public.ledger_corrections
for each row
execute function private.capture_audit_row(
  'id',
  'id',
  'debit_account_id',
  'credit_account_id',
  'proposed_by',
  'decided_by',
  'decided_at',
  'created_at',
  'updated_at'
);

create trigger refuse_unaudited_truncate
before truncate
on public.ledger_corrections
for each statement
execute function private.refuse_unaudited_truncate();

create trigger audit_trail
after insert or delete or update
on public.funding_attempts
for each row
execute function private.capture_audit_row(
  'id', 'id', 'milestone_payment_id', 'payment_method_id', 'created_at', 'updated_at'
);

create trigger refuse_unaudited_truncate
before truncate
on public.funding_attempts
for each statement
execute function private.refuse_unaudited_truncate();

create trigger audit_trail
after insert or delete or update
on public.milestone_payments
for each row
execute function private.capture_audit_row(
  'id',
  'id',
  'milestone_id',
  'escrow_account_id',
  'payer_id',
  'payee_id',
  'status',
  'funded_at',
  'released_at',
  'created_at',
  'updated_at'
);

create trigger refuse_unaudited_truncate
before truncate
on public.milestone_payments
for each statement
execute function private.refuse_unaudited_truncate();

create trigger audit_trail
after insert or delete or update
on public.payment_methods
for each row
execute function private.capture_audit_row(
  'id', 'id', 'user_id', 'type', 'is_default', 'created_at', 'updated_at'
);

create trigger refuse_unaudited_truncate
before truncate
on public.payment_methods
for each statement
execute function private.refuse_unaudited_truncate();

create trigger audit_trail
after insert or delete or update
on public.payment_transactions
for each row
execute function private.capture_audit_row(
  'id', 'id', 'user_id', 'payment_method_id', 'type', 'status', 'created_at', 'updated_at'
);

create trigger refuse_unaudited_truncate
before truncate
on public.payment_transactions
for each statement
execute function private.refuse_unaudited_truncate();

create trigger audit_trail
after insert or delete or update
on public.payout_methods
for each row
execute function private.capture_audit_row(
  'id', 'id', 'user_id', 'type', 'is_default', 'created_at', 'updated_at', 'cool_down_until'
);

create trigger refuse_unaudited_truncate
before truncate
on public.payout_methods
for each statement
execute function private.refuse_unaudited_truncate();

create trigger audit_trail
after insert or delete or update
on public.processor_accounts
for each row
execute function private.capture_audit_row(
  'id', 'id', 'user_id', 'created_at', 'updated_at', 'state_as_of'
);

create trigger refuse_unaudited_truncate
before truncate
on public.processor_accounts
for each statement
execute function private.refuse_unaudited_truncate();

create trigger audit_trail
after insert or delete or update
on public.processor_customers
for each row
execute function private.capture_audit_row(
  'user_id', 'user_id', 'created_at', 'updated_at'
);

create trigger refuse_unaudited_truncate
before truncate
on public.processor_customers
for each statement
execute function private.refuse_unaudited_truncate();

create trigger audit_trail
after insert or delete or update
on public.processor_inconsistencies
for each row
execute function private.capture_audit_row(
  'id', 'id', 'milestone_payment_id', 'resolved_at', 'created_at', 'updated_at'
);

create trigger refuse_unaudited_truncate
before truncate
on public.processor_inconsistencies
for each statement
execute function private.refuse_unaudited_truncate();

create trigger audit_trail
after insert or delete or update
on public.project_milestones
for each row
execute function private.capture_audit_row(
  'id',
  'id',
  'project_id',
  'status',
  'due_on',
  'created_at',
  'updated_at',
  'submitted_at',
  'review_ends_at',
  'rejected_at'
);

create trigger refuse_unaudited_truncate
before truncate
on public.project_milestones
for each statement
execute function private.refuse_unaudited_truncate();

create trigger audit_trail
after insert or delete or update
on public.projects
for each row
execute function private.capture_audit_row(
  'id', 'id', 'owner_id', 'contractor_id', 'status', 'created_at', 'updated_at'
);

create trigger refuse_unaudited_truncate
before truncate
on public.projects
for each statement
execute function private.refuse_unaudited_truncate();

create trigger audit_trail
after insert or delete or update
on public.setting_changes
for each row
execute function private.capture_audit_row(
  'id',
  'id',
  'effective_from',
  'proposed_by',
  'approved_by',
  'approved_at',
  'canceled_by',
  'canceled_at',
  'applied_at',
  'created_at',
  'updated_at'
);

create trigger refuse_unaudited_truncate
before truncate
on public.setting_changes
for each statement
execute function private.refuse_unaudited_truncate();

create trigger audit_trail
after insert or delete or update
on public.subscriptions
for each row
execute function private.capture_audit_row(
  'id',
  'id',
  'user_id',
  'status',
  'current_period_end',
  'cancel_at_period_end',
  'created_at',
  'updated_at'
);

create trigger refuse_unaudited_truncate
before truncate
on public.subscriptions
for each statement
execute function private.refuse_unaudited_truncate();

create trigger audit_trail
after insert or delete or update
on public.users
for each row
execute function private.capture_audit_row(
  'id', 'id', 'role', 'created_at', 'updated_at', 'erased_at'
);

create trigger refuse_unaudited_truncate
before truncate
on public.users
for each statement
execute function private.refuse_unaudited_truncate();

create trigger audit_trail
after insert or delete or update
on public.webhook_events
for each row
execute function private.capture_audit_row(
  'id', 'status', 'received_at', 'processed_at', 'created_at', 'updated_at'
);

create trigger refuse_unaudited_truncate
before truncate
on public.webhook_events
for each statement
execute function private.refuse_unaudited_truncate();

create trigger audit_trail
after insert or delete or update
on public.withdrawal_approvals
for each row
execute function private.capture_audit_row(
  'id', 'id', 'withdrawal_id', 'approved_by', 'created_at', 'updated_at'
);

create trigger refuse_unaudited_truncate
before truncate
on public.withdrawal_approvals
for each statement
execute function private.refuse_unaudited_truncate();

create trigger audit_trail
after insert or delete or update
on public.withdrawal_processor_attempts
for each row
execute function private.capture_audit_row(
  'id', 'id', 'withdrawal_id', 'created_at', 'updated_at'
);

create trigger refuse_unaudited_truncate
before truncate
on public.withdrawal_processor_attempts
for each statement
execute function private.refuse_unaudited_truncate();

create trigger audit_trail
after insert or delete or update
on public.withdrawals
for each row
execute function private.capture_audit_row(
  'id', 'id', 'user_id', 'payout_method_id', 'status', 'processed_at', 'created_at', 'updated_at'
);

create trigger refuse_unaudited_truncate
before truncate
on public.withdrawals
for each statement
execute function private.refuse_unaudited_truncate();

create trigger audit_trail
after insert or delete or update
on public.payment_suspensions
for each row
execute function private.capture_audit_row(
  'id', 'id', 'user_id', 'suspended_by', 'lifted_at', 'lifted_by', 'created_at', 'updated_at'
);

create trigger refuse_unaudited_truncate
before truncate
on public.payment_suspensions
for each statement
execute function private.refuse_unaudited_truncate();

create trigger audit_trail
after insert or delete or update
on public.platform_freezes
for each row
execute function private.capture_audit_row(
  'id', 'id', 'frozen_by', 'lifted_at', 'lifted_by', 'created_at', 'updated_at'
);

create trigger refuse_unaudited_truncate
before truncate
on public.platform_freezes
for each statement
execute function private.refuse_unaudited_truncate();

create trigger audit_trail
after insert or delete or update
on public.incident_notices
for each row
execute function private.capture_audit_row(
  'id', 'id', 'created_from', 'created_to', 'sent_by', 'created_at', 'updated_at'
);

create trigger refuse_unaudited_truncate
before truncate
on public.incident_notices
for each statement
execute function private.refuse_unaudited_truncate();

-- Section: reads of restricted data
--
-- PCI DSS 10.2.1.1 asks that every individual access to cardholder data be logged. A read
-- writes no row (PostgREST runs a GET in a read-only transaction), so reads are logged to the
-- server log, kept as docs/audit-trail.md says, in two lines per statement:
-- - pgaudit's object-level auditing: every statement of an API request (PostgREST logs in as
--   `authenticator`, whose setting pgaudit.role names payguard_read_audit) that reads a table
--   payguard_read_audit may select from is logged, as an `AUDIT: OBJECT` line with the
--   statement;
-- - a line of payguard's own names the staff member: the restrictive policy "Staff reads are
--   logged" of those tables calls private.log_staff_read() once per statement a staff role
--   runs on them, which logs the table and the acting user's id from the request's claims.
-- The two lines carry the same process and transaction in their prefix (log_line_prefix).
-- Where pgaudit is not loaded, or the deployer may not set pgaudit.role, the migration says so
-- and logs only payguard's line.

do $read_audit_role$
begin
  if not exists (select from pg_catalog.pg_roles as r where r.rolname = 'payguard_read_audit') then
    create role payguard_read_audit nologin noinherit;
  end if;
  -- It never logs in: no temporary objects either (roles_and_grants.sql gives them to the
  -- roles that exist when it runs).
  execute format(
    'revoke temporary on database %I from payguard_read_audit', current_database()
  );
end
$read_audit_role$;

-- What pgaudit logs the reads of: the audit role's grants, never used to log in.
grant select on public.payment_methods to payguard_read_audit;
grant select on public.payout_methods to payguard_read_audit;
grant select on public.withdrawals to payguard_read_audit;
grant select on public.payment_audit_logs to payguard_read_audit;

do $read_audit_setting$
begin
  if not exists (select from pg_catalog.pg_settings as s where s.name = 'pgaudit.role') then
    raise notice 'pgaudit is not loaded: API reads of restricted data are not logged by it';
  elsif not has_parameter_privilege('pgaudit.role', 'SET') then
    raise notice 'pgaudit.role cannot be set by %: as a role that may, run %', current_user,
    'alter role authenticator set pgaudit.role = ''payguard_read_audit''';
  else
    alter role authenticator set pgaudit.role = 'payguard_read_audit';
  end if;
end
$read_audit_setting$;

/**
 * Log a staff read of `relation` to the server log, with the acting user's id from the
 * request's claims, and return true: the restrictive policy "Staff reads are logged" calls it
 * once per statement (as an init plan) that a staff role runs on a restricted table.
 */
create or replace function private.log_staff_read(relation text) returns boolean
language plpgsql
stable
set search_path = ''
as $$
declare
  claims jsonb := nullif(current_setting('request.jwt.claims', true), '')::jsonb;
begin
  raise log 'payguard staff read: relation=% actor=% role=% app_role=%',
    relation,
    coalesce(claims ->> 'sub', 'none'),
    current_user,
    coalesce(claims ->> 'user_role', 'none');
  return true;
end
$$;

grant execute on function private.log_staff_read(text) to admin;
grant execute on function private.log_staff_read(text) to auditor;
grant execute on function private.log_staff_read(text) to authenticated;
