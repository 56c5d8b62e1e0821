-- Erasure of a user's personal data
--
-- A user may ask to be forgotten (GDPR Art. 17), but the money they moved must stay honest:
-- financial records, the ledger and the audit chain are kept, whole and verifiable, for as
-- long as their retention asks. So a user is never deleted once money moved for them: their
-- personal data is erased instead. Erasure pseudonymizes the profile (public.users), the
-- Supabase account (auth.users and what hangs off it) and the free text they wrote about their
-- payment and payout methods, ends their sessions, bans the account, and shreds the key under
-- which the audit trail fingerprinted their personal data (audit_capture.sql), so that the
-- fingerprints in sealed audit rows, which are never changed, can no longer be linked to any
-- value. Ids and amounts stay: every payment, transfer and audit row still names the same
-- (now anonymous) user.
--
-- Erasure is refused (PT409, nothing changed) while the user has open money: a payment not
-- yet settled, funded escrow, a withdrawal under way, an open dispute, a pending processor
-- transaction, a live subscription or a wallet balance. Deleting a user (as Supabase's auth
-- server does, `delete from auth.users`) who has any money history is refused too (PT409),
-- with a hint to erase instead; a user without it is deleted with everything that is theirs.
--
-- This file is the current definition of everything in its domain. Change it first, then
-- write the migration that makes the same change (docs/schema-changes.md); `payguard schema
-- check` proves that the migrations and these files build the same database.
-- See also: tests/sql/erasure/, tests/py/test_erasure.py, docs/erasure.md

set local check_function_bodies = off;

-- Section: money history and open money

/**
 * What money history `subject` has, one line per kind (empty when none): payments as payer
 * or payee, processor transactions, escrow held for them or for a project they own, a wallet,
 * withdrawals and their approvals, disputes opened or resolved, subscriptions, security
 * alerts about them. A user with any of it is erased, never deleted.
 */
create or replace function private.money_history(subject uuid) returns text[]
language sql
stable
security definer
set search_path = ''
as $$
  select array_remove(array[
    case when exists (
      select from public.milestone_payments as mp where subject in (mp.payer_id, mp.payee_id)
    ) then 'milestone payments' end,
    case when exists (
      select from public.payment_transactions as t where t.user_id = subject
    ) then 'processor transactions' end,
    case when exists (
      select from public.escrow_accounts as e
      where e.user_id = subject
        or e.project_id in (select p.id from public.projects as p where p.owner_id = subject)
    ) then 'escrow accounts' end,
    case when exists (
      select from private.ledger_accounts as a where a.user_id = subject
    ) then 'a wallet in the ledger' end,
    case when exists (
      select from public.withdrawals as w where w.user_id = subject
    ) then 'withdrawals' end,
    case when exists (
      select from public.withdrawal_approvals as wa where wa.approved_by = subject
    ) then 'withdrawal approvals' end,
    case when exists (
      select from public.disputes as d where subject in (d.opened_by, d.resolved_by)
    ) then 'disputes' end,
    case when exists (
      select from public.subscriptions as s where s.user_id = subject
    ) then 'subscriptions' end,
    case when exists (
      select from public.security_alerts as sa where sa.user_id = subject
    ) then 'security alerts' end
  ], null)
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

-- Section: deleting a user
--
-- Supabase's auth server deletes a user with `delete from auth.users`, which cascades to the
-- profile (public.users) and from it to what is the user's alone: payment and payout methods,
-- processor customers and accounts, notifications, limits' counters, the projects they own
-- (with their milestones) and their place as a project's contractor (set null). A user with
-- money history is refused here, before any foreign key is reached.

/**
 * BEFORE DELETE on public.users: a user with money history (private.money_history) is never
 * deleted (PT409, hint: erase them); the delete of any other user goes on.
 */
create or replace function private.refuse_delete_with_money_history() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  history text[] := private.money_history(old.id);
begin
  if cardinality(history) > 0 then
    raise exception 'user % has money history (%) and is never deleted', old.id,
    array_to_string(history, ', ')
    using errcode = 'PT409',
    hint = 'erase the user instead: public.erase_user(user_id, reason), or '
    || '`payguard users erase USER_ID --reason ...`';
  end if;
  return old;
end
$$;

-- The roles that delete profiles (service_role; the owner through the cascade from
-- auth.users) run the trigger.
grant execute on function private.money_history(uuid) to service_role;

grant execute on function private.refuse_delete_with_money_history() to service_role;

create trigger refuse_delete_with_money_history
before delete on public.users
for each row execute function private.refuse_delete_with_money_history();

-- Section: erasure

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
