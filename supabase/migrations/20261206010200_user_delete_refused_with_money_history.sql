-- Deleting a user (`delete from auth.users`, as Supabase's auth server does) works, or is
-- refused with a reason; it never fails on a foreign key. A user with money history is
-- refused (PT409, hint: erase them); any other user takes their projects with them and leaves
-- the projects they were hired for without a contractor; the removal of their payment methods
-- notifies no one; their fingerprint key is shredded when the transaction ends, after the
-- audit rows of everything the cascade removed.

set local check_function_bodies = off;

alter table public.projects drop constraint projects_owner_id_fkey;

alter table public.projects
add constraint projects_owner_id_fkey foreign key (owner_id)
references public.users (id) on delete cascade;

alter table public.projects drop constraint projects_contractor_id_fkey;

alter table public.projects
add constraint projects_contractor_id_fkey foreign key (contractor_id)
references public.users (id) on delete set null;

/**
 * AFTER INSERT OR DELETE trigger on payment_methods: the owner hears of each change, unless
 * the method goes with its owner (a user being deleted: their profile is gone already).
 */
create or replace function private.payment_method_events() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if tg_op = 'INSERT' then
    perform private.notify(new.user_id, 'payment_method.added', 'A payment method was added');
  elsif exists (select from public.users as u where u.id = old.user_id) then
    perform private.notify(old.user_id, 'payment_method.removed', 'A payment method was removed');
  end if;
  return null;
end
$$;

-- A profile's fingerprint key is shredded when the transaction ends, after the audit rows of
-- the rows the cascade removes with it (which come after the profile's own).
drop trigger shred_audit_fingerprint_key on public.users;

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

create constraint trigger shred_audit_fingerprint_key
after delete on public.users
deferrable initially deferred
for each row execute function private.shred_audit_fingerprint_key();

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
