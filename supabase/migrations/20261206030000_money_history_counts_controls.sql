-- A user named by an incident control, a ledger correction or a setting change has money
-- history: deleting them is refused with a reason (erase them instead), never on a foreign key.

/**
 * What money history `subject` has, one line per kind (empty when none): payments as payer
 * or payee, processor transactions, escrow held for them or for a project they own, a wallet,
 * withdrawals and their approvals, disputes opened or resolved, subscriptions, security
 * alerts about them, incident controls (a suspension of theirs, or a suspension, freeze or
 * notice they made), ledger corrections and setting changes they proposed or decided. A user
 * with any of it is erased, never deleted.
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
    ) then 'security alerts' end,
    case when exists (
      select from public.payment_suspensions as ps
      where subject in (ps.user_id, ps.suspended_by, ps.lifted_by)
    ) or exists (
      select from public.platform_freezes as pf where subject in (pf.frozen_by, pf.lifted_by)
    ) or exists (
      select from public.incident_notices as n where n.sent_by = subject
    ) then 'incident controls' end,
    case when exists (
      select from public.ledger_corrections as lc where subject in (lc.proposed_by, lc.decided_by)
    ) then 'ledger corrections' end,
    case when exists (
      select from public.setting_changes as sc
      where subject in (sc.proposed_by, sc.approved_by, sc.canceled_by)
    ) then 'setting changes' end
  ], null)
$$;
