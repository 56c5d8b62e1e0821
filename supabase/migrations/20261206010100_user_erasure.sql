-- Erasure of a user's personal data (GDPR Art. 17) that keeps the money honest: an admin at
-- aal2 with a recent step-up (public.erase_user) or the owner (`payguard users erase`)
-- pseudonymizes the profile, the auth account and the user's method nicknames, bans the
-- account and shreds the user's audit fingerprint key; refused (PT409) while money is open.
-- See supabase/schemas/users_and_projects.sql, section "erasure".

set local check_function_bodies = off;

alter table public.users add column erased_at timestamptz;

comment on column public.users.erased_at is
'When the user''s personal data was erased (private.erase_user): email, name and phone are '
'gone, the account is banned, and private.has_app_role no longer holds for the user.';

-- The new column cannot hold card data: the guard and the audit trigger of users name it.
select private.renew_card_data_guard('public.users');

select private.renew_audit_trail('public.users');

/**
 * True when the requesting user's application role is one of `roles`, and the user is not
 * erased. Security definer, so that a policy can ask without granting the caller a read of
 * other profiles.
 */
create or replace function private.has_app_role(roles public.app_role[]) returns boolean
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  return (
    select exists (
      select from public.users as u
      where u.id = (select auth.uid()) and u.role = any(roles) and u.erased_at is null
    )
  );
end
$$;

/**
 * What money of `subject` is still open, one line per item naming it (empty when none):
 * milestone payments pending, funded or disputed (as payer or payee), escrow with a balance
 * held for them, withdrawals requested, approved or processing, open disputes they are a
 * party to, pending processor transactions, live subscriptions, and wallets whose balance
 * (posted or pending) is not zero.
 */
create or replace function private.open_money(subject uuid) returns text[]
language sql
stable
security definer
set search_path = ''
as $$
  select coalesce(array_agg(item order by item), array[]::text[])
  from (
    select format('milestone payment %s is %s', mp.id, mp.status) as item
    from public.milestone_payments as mp
    where subject in (mp.payer_id, mp.payee_id)
      and mp.status in ('pending', 'funded', 'disputed')
    union all
    select format('escrow account %s holds %s %s', e.id, e.balance_minor, e.currency)
    from public.escrow_accounts as e
    where e.user_id = subject and e.balance_minor <> 0
    union all
    select format('withdrawal %s is %s', w.id, w.status)
    from public.withdrawals as w
    where w.user_id = subject and w.status in ('requested', 'approved', 'processing')
    union all
    select format('dispute %s is open', d.id)
    from public.disputes as d
    inner join public.milestone_payments as mp on mp.id = d.milestone_payment_id
    where d.status = 'open' and subject in (d.opened_by, mp.payer_id, mp.payee_id)
    union all
    select format('processor transaction %s is pending', t.id)
    from public.payment_transactions as t
    where t.user_id = subject and t.status = 'pending'
    union all
    select format('subscription %s is %s', s.id, s.status)
    from public.subscriptions as s
    where s.user_id = subject and s.status not in ('canceled')
    union all
    select format(
      'wallet %s holds %s %s posted and %s %s pending', b.account_id,
      b.credits_posted - b.debits_posted, b.currency,
      b.credits_pending - b.debits_pending, b.currency
    )
    from private.ledger_limited_balances as b
    where b.user_id = subject
      and (b.credits_posted <> b.debits_posted or b.credits_pending <> b.debits_pending)
  ) as open_items
$$;

/**
 * Erase `subject`'s personal data, for `reason` (10 to 2000 characters of writing, naming no
 * one): PT422 without it, PT404 for no such user, PT409 for a user already erased or with
 * open money (private.open_money, named in the message and nothing changed).
 *   * public.users: email, full_name and phone set to null, erased_at set;
 *   * auth.users: email, phone, password, tokens and both metadata cleared, banned for ever;
 *     the account's MFA factors, identities, sessions, refresh and one-time tokens deleted
 *     (each of the last four where the auth server has the table);
 *   * payment and payout methods: nickname and metadata cleared;
 *   * notifications: deleted;
 *   * the user's audit fingerprint key: deleted (crypto-shredding, audit_capture.sql).
 * Ids, amounts, the ledger and the audit trail are left whole. Writes an ERASE audit row
 * with the reason. Returns what was done. Only its owner executes it: admins call
 * public.erase_user, operators `payguard users erase`.
 */
create or replace function private.erase_user(subject uuid, reason text) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  profile public.users;
  open_items text[];
  erased timestamptz := now();
  methods bigint;
  payout bigint;
  notes bigint;
  factors bigint;
  removed bigint;
  auth_rows jsonb;
  auth_table text;
  actor private.audit_actor;
  summary jsonb;
begin
  if not private.is_written(reason, 2000) then
    raise exception 'erasing user % needs a written reason of 10 to 2000 characters', subject
    using errcode = 'PT422';
  end if;
  select * into profile from public.users as u where u.id = subject for update;
  if not found then
    raise exception 'no user %', subject using errcode = 'PT404';
  end if;
  if profile.erased_at is not null then
    raise exception 'user % was already erased at %', subject, profile.erased_at
    using errcode = 'PT409';
  end if;
  open_items := private.open_money(subject);
  if cardinality(open_items) > 0 then
    raise exception 'user % has open money and cannot be erased: %', subject,
    array_to_string(open_items, '; ')
    using errcode = 'PT409',
    hint = 'settle, cancel or pay out each of these first, then erase';
  end if;

  update public.users as u
  set email = null, full_name = null, phone = null, erased_at = erased
  where u.id = subject;
  update public.payment_methods as m set nickname = null, metadata = '{}'
  where m.user_id = subject and (m.nickname is not null or m.metadata <> '{}');
  get diagnostics methods = row_count;
  update public.payout_methods as m set nickname = null, metadata = '{}'
  where m.user_id = subject and (m.nickname is not null or m.metadata <> '{}');
  get diagnostics payout = row_count;
  delete from public.notifications as n where n.user_id = subject;
  get diagnostics notes = row_count;

  update auth.users as a
  -- The auth server reads its token columns as strings: emptied, never null.
  set email = null, phone = null, encrypted_password = '', email_confirmed_at = null,
    phone_confirmed_at = null, confirmation_token = '', recovery_token = '',
    email_change = '', last_sign_in_at = null, raw_user_meta_data = '{}',
    raw_app_meta_data = '{}', banned_until = 'infinity', updated_at = erased
  where a.id = subject;
  delete from auth.mfa_factors as f where f.user_id = subject;
  get diagnostics factors = row_count;
  auth_rows := jsonb_build_object('mfa_factors', factors);
  -- Tables the auth server has on Supabase, not all of them in every version: each is
  -- cleared where it exists and has a user_id column (named apart: dynamic SQL).
  foreach auth_table in array array['identities', 'sessions', 'refresh_tokens', 'one_time_tokens']
  loop
    if exists (
      select from pg_catalog.pg_attribute as att
      where att.attrelid = to_regclass(format('%I.%I', 'auth', auth_table))
        and att.attname = 'user_id' and not att.attisdropped
    ) then
      execute format('delete from %I.%I where user_id::text = $1', 'auth', auth_table)
      using subject::text;
      get diagnostics removed = row_count;
      auth_rows := auth_rows || jsonb_build_object(auth_table, removed);
    end if;
  end loop;

  delete from private.audit_fingerprint_keys as k where k.user_id = subject;

  summary := jsonb_build_object(
    'user_id', subject,
    'erased_at', erased,
    'payment_methods', methods,
    'payout_methods', payout,
    'notifications_deleted', notes,
    'auth_rows_deleted', auth_rows,
    'fingerprint_key', 'shredded'
  );
  actor := private.audit_actor();
  insert into public.payment_audit_logs (
    operation, entity_type, entity_id, user_id, user_role, ip_address, user_agent,
    new_values, success, metadata
  )
  values (
    'ERASE', 'users', subject::text, actor.user_id, actor.user_role, actor.ip_address,
    actor.user_agent, summary || jsonb_build_object('reason', reason), true, actor.metadata
  );
  return summary;
end
$$;

/**
 * An admin erases a user's personal data (private.erase_user), for a written reason. Needs
 * the admin role (an admin or system admin's token, from the access token hook), a
 * multi-factor session (aal2) and a recent MFA step-up, as every staff change to users does
 * (PT403 otherwise); an admin never erases themselves (PT409).
 */
create or replace function public.erase_user(user_id uuid, reason text) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  claims jsonb := coalesce(nullif(current_setting('request.jwt.claims', true), ''), '{}')::jsonb;
begin
  if not private.has_app_role(array['admin', 'system_admin']::public.app_role []) then
    raise exception 'only an admin may erase a user' using errcode = 'PT403';
  end if;
  if claims ->> 'aal' is distinct from 'aal2' then
    raise exception 'erasing a user needs multi-factor authentication (aal2)'
    using errcode = 'PT403', hint = 'verify a second factor, then retry';
  end if;
  if not private.has_recent_step_up() then
    raise exception 'erasing a user needs a recent MFA step-up'
    using errcode = 'PT403', hint = 'verify a second factor again, then retry';
  end if;
  if erase_user.user_id = (select auth.uid()) then
    raise exception 'an admin does not erase their own account (%)', erase_user.user_id
    using errcode = 'PT409', hint = 'another admin erases it';
  end if;
  return private.erase_user(erase_user.user_id, erase_user.reason);
end
$$;

grant execute on function public.erase_user(uuid, text) to admin;

revoke execute on function public.erase_user(uuid, text) from service_role;
