-- Settings
--
-- The thresholds, windows and limits that policies and triggers read, kept in a table so that
-- operations can change them without a migration; never exposed to app clients. Each domain
-- file inserts the settings it reads; this one holds the table, its reader, and the MFA
-- step-up threshold that several domains share.
--
-- This file is the current definition of everything in its domain. Change it first, then
-- write the migration that makes the same change (docs/schema-changes.md); `payguard schema
-- check` proves that the migrations and these files build the same database.
-- See also: tests/sql/settings/

set local check_function_bodies = off;

create table private.settings (
  key text not null,
  value jsonb not null,
  -- What the setting governs, and its unit: for whoever changes it.
  description text not null,
  updated_at timestamptz not null default now(),
  constraint settings_pkey primary key (key),
  -- The audit trail trusts this many proxy hops of X-Forwarded-For (audit_capture.sql): a
  -- count from 0 to 20, never a string or a fraction that would make it guess.
  constraint settings_trusted_proxy_hops_is_a_count check (
    key <> 'trusted_proxy_hops'
    or (jsonb_typeof(value) = 'number' and value::text ~ '^(1?[0-9]|20)$')
  )
);

comment on table private.settings is
'Operational settings of payguard, one JSON value per key. Read through private.setting().';

-- Hot helper functions, here and in every domain (settings, thresholds, ownership tests),
-- are PL/pgSQL, so that their plans are cached.
--
-- A SQL-language function that cannot be inlined (these all set search_path, and most are
-- security definer) is parsed and planned again each time a statement calls it: once per
-- transaction when a trigger calls it, once per statement when a policy does. A release
-- calls a dozen of them, and planning would cost more than the work. As PL/pgSQL, the same
-- bodies keep their plans for the session.

/**
 * The value of a setting; raises if it is missing, so a typo never reads as "no limit".
 */
create or replace function private.setting(setting_key text) returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  found jsonb;
begin
  select s.value into found from private.settings as s where s.key = setting_key;
  if found is null then
    raise exception 'payguard setting % is not set', setting_key
    using errcode = 'PT500', hint = 'insert it into private.settings';
  end if;
  return found;
end
$$;

insert into private.settings (key, value, description)
values (
  'mfa_step_up_threshold_minor',
  '{"default": 100000, "USD": 100000, "EUR": 100000, "GBP": 80000, "JPY": 150000}',
  'Per currency, the amount in minor units at or above which a Conditional operation '
  || '(a transaction, a milestone payment, a release) needs aal2.'
);

/**
 * The amount, in minor units of `currency`, at or above which a "Conditional" operation of
 * the endpoint matrix needs aal2. A currency without its own threshold uses the default.
 */
create or replace function private.mfa_threshold(currency char(3)) returns bigint
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  return (
    select coalesce(
      (private.setting('mfa_step_up_threshold_minor') ->> upper(currency))::bigint,
      (private.setting('mfa_step_up_threshold_minor') ->> 'default')::bigint
    )
  );
end
$$;

grant execute on function private.mfa_threshold(character) to authenticated;
