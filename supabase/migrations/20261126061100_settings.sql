-- Settings that policies and triggers read: thresholds, windows and limits. Kept in a table
-- so that operations can change them without a migration; never exposed to app clients.

create table private.settings (
  key text primary key,
  value jsonb not null,
  description text not null,
  updated_at timestamptz not null default now()
);

comment on table private.settings is
'Operational settings of payguard, one JSON value per key. Read through private.setting().';

/**
 * The value of a setting; raises if it is missing, so a typo never reads as "no limit".
 */
create function private.setting(setting_key text) returns jsonb
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

revoke all on function private.setting(text) from public;

/**
 * The amount, in minor units of `currency`, at or above which a "Conditional" operation of
 * the endpoint matrix needs aal2. A currency without its own threshold uses the default.
 */
create function private.mfa_threshold(currency char(3)) returns bigint
language sql
stable
security definer
set search_path = ''
as $$
  select coalesce(
    (private.setting('mfa_step_up_threshold_minor') ->> upper(currency))::bigint,
    (private.setting('mfa_step_up_threshold_minor') ->> 'default')::bigint
  )
$$;

revoke all on function private.mfa_threshold(char) from public;
grant execute on function private.mfa_threshold(char) to authenticated;

insert into private.settings (key, value, description)
values (
  'mfa_step_up_threshold_minor',
  '{"default": 100000, "USD": 100000, "EUR": 100000, "GBP": 80000, "JPY": 150000}',
  'Per currency, the amount in minor units at or above which a Conditional operation '
  || '(a transaction, a milestone payment, a release) needs aal2.'
);
