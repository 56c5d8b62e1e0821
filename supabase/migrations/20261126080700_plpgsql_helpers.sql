-- Hot helper functions as PL/pgSQL, so that their plans are cached.
--
-- A SQL-language function that cannot be inlined (these all set search_path, and most are
-- security definer) is parsed and planned again each time a statement calls it: once per
-- transaction when a trigger calls it, once per statement when a policy does. A release
-- calls a dozen of them, and the planning cost more than the work. The same bodies as
-- PL/pgSQL keep their plans for the session. Signatures, attributes and grants are unchanged
-- (create or replace keeps a function's privileges).

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

/**
 * True when `key` names a card verification code: CVV, CVC, CVN, CSC (with any suffix, such
 * as cvv2 or cvc_number), CID, or a "security/verification code/value". A key that names the
 * result of a check (Stripe's `cvc_check`) is not one.
 */
create or replace function private.is_card_verification_key(key text) returns boolean
language plpgsql
immutable
strict
parallel safe
set search_path = ''
as $$
begin
  return (
    select normalized !~ 'check$' and (
      normalized ~ '^(card)?(cvv|cvc|cvn|csc|cav)'
      or normalized in ('cid', 'cardcid')
      or normalized ~ '(security|verification)(code|value|number)'
      or normalized ~ 'cardverification'
    )
    from (select lower(regexp_replace(key, '[^a-zA-Z0-9]', '', 'g')) as normalized) as k
  );
end
$$;

/**
 * True when the requesting user's application role is one of `roles`. Security definer, so
 * that a policy can ask without granting the caller a read of other profiles.
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
      where u.id = (select auth.uid()) and u.role = any(roles)
    )
  );
end
$$;

/** True when the requesting user owns the project. */
create or replace function private.owns_project(project uuid) returns boolean
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  return (
    select exists (
      select from public.projects as p
      where p.id = project and p.owner_id = (select auth.uid())
    )
  );
end
$$;

/** True when the requesting user owns the project or is its contractor. */
create or replace function private.is_project_party(project uuid) returns boolean
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  return (
    select exists (
      select from public.projects as p
      where p.id = project and (select auth.uid()) in (p.owner_id, p.contractor_id)
    )
  );
end
$$;

/** True when the requesting user owns the payment method. */
create or replace function private.owns_payment_method(payment_method uuid) returns boolean
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  return (
    select exists (
      select from public.payment_methods as m
      where m.id = payment_method and m.user_id = (select auth.uid())
    )
  );
end
$$;

/** True when the requesting user owns the payout method. */
create or replace function private.owns_payout_method(payout_method uuid) returns boolean
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  return (
    select exists (
      select from public.payout_methods as m
      where m.id = payout_method and m.user_id = (select auth.uid())
    )
  );
end
$$;

/** True when the requesting user owns the project of the milestone. */
create or replace function private.owns_milestone(milestone uuid) returns boolean
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  return (
    select exists (
      select from public.project_milestones as m
      join public.projects as p on p.id = m.project_id
      where m.id = milestone and p.owner_id = (select auth.uid())
    )
  );
end
$$;

/** True when the requesting user is the payer or the payee of the milestone payment. */
create or replace function private.is_milestone_payment_party(milestone_payment uuid)
returns boolean
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  return (
    select exists (
      select from public.milestone_payments as mp
      where mp.id = milestone_payment and (select auth.uid()) in (mp.payer_id, mp.payee_id)
    )
  );
end
$$;

/**
 * True when the milestone payment has an open dispute that the caller may see. Security
 * invoker: it reads disputes under the caller's row-level security, so it tells a party
 * about their own payments and a stranger nothing.
 */
create or replace function private.has_open_dispute(milestone_payment uuid) returns boolean
language plpgsql
stable
set search_path = ''
as $$
begin
  return (
    select exists (
      select from public.disputes as d
      where d.milestone_payment_id = milestone_payment and d.status = 'open'
    )
  );
end
$$;

/**
 * Who is asking, for the transition rules: a service or staff role by its database role
 * (`requester`, the caller's current_user), else the payer or payee by the request's user id.
 * Null for anyone else. Security definer because the service roles cannot read `auth`.
 */
create or replace function private.milestone_payment_actor(
  payment public.milestone_payments, requester name
) returns text
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  return (
    select case
      when requester in ('payment_service', 'escrow_service', 'admin') then requester::text
      when (select auth.uid()) = payment.payer_id then 'payer'
      when (select auth.uid()) = payment.payee_id then 'payee'
    end
  );
end
$$;

/** The ledger account of an escrow account. */
create or replace function private.ledger_escrow_account(escrow uuid) returns uuid
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  return (
    select a.id from private.ledger_accounts as a where a.escrow_account_id = escrow
  );
end
$$;

/** The status of an escrow account (open, frozen, closed), or null. */
create or replace function private.escrow_status(escrow uuid) returns public.escrow_status
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  return (
    select e.status from public.escrow_accounts as e where e.id = escrow
  );
end
$$;

/** The open escrow account of the milestone's project in `escrow_currency`, if any. */
create or replace function private.escrow_account_for_milestone(
  milestone uuid, escrow_currency char(3)
) returns uuid
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  return (
    select e.id
    from public.project_milestones as m
    join public.escrow_accounts as e on m.project_id = e.project_id
    where m.id = milestone and e.currency = escrow_currency and e.status = 'open'
  );
end
$$;

/**
 * True when the request's newest MFA step-up (an amr entry of an MFA method) is no older
 * than the step_up_window_seconds setting.
 */
create or replace function private.has_recent_step_up() returns boolean
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  return (
    select coalesce(
      extract(epoch from now())::bigint - max((entry ->> 'timestamp')::bigint)
      <= (private.setting('step_up_window_seconds') #>> '{}')::bigint,
      false
    )
    from jsonb_array_elements(coalesce((select auth.jwt()) -> 'amr', '[]')) as entry
    where entry ->> 'method' in (
      'totp', 'webauthn', 'phone', 'mfa/totp', 'mfa/webauthn', 'mfa/phone'
    )
  );
end
$$;

/** When funds funded at `funded` leave their escrow hold period. */
create or replace function private.escrow_held_until(funded timestamptz) returns timestamptz
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  return (
    select funded + make_interval(secs => (private.setting('escrow_hold_seconds') #>> '{}')::bigint)
  );
end
$$;

/**
 * The payee's share of a split payment: from its dispute resolved as a split, when that
 * share is less than the amount; else null.
 */
create or replace function private.split_share(payment uuid) returns bigint
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  return (
    select d.payee_share_minor
    from public.disputes as d
    join public.milestone_payments as mp on mp.id = d.milestone_payment_id
    where d.milestone_payment_id = payment and d.status = 'resolved' and d.outcome = 'split'
      and d.payee_share_minor < mp.amount_minor
    order by d.resolved_at desc
    limit 1
  );
end
$$;

/** The amount at or above which a withdrawal in `withdrawal_currency` needs dual control. */
create or replace function private.dual_control_threshold(withdrawal_currency char(3))
returns bigint
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  return (
    select coalesce(
      (private.setting('withdrawal_dual_control_threshold_minor') ->> upper(withdrawal_currency))::bigint,
      (private.setting('withdrawal_dual_control_threshold_minor') ->> 'default')::bigint
    )
  );
end
$$;

/**
 * What `owner` may withdraw from their wallet in `wallet_currency` now: the posted balance,
 * less what is reserved, less what was released to them within the payout hold. Call it
 * with the wallet locked, so that two requests cannot both count the same funds.
 */
create or replace function private.withdrawable(owner uuid, wallet_currency char(3)) returns bigint
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  return (
    select
      a.credits_posted - a.debits_posted - a.debits_pending
      - coalesce((
        select sum(t.amount) from private.ledger_transfers as t
        where t.credit_account_id = a.id and t.code = 'milestone_release'
          and t.created_at > now() - make_interval(
            secs => (private.setting('payout_hold_seconds') #>> '{}')::bigint
          )
      ), 0)
    from private.ledger_accounts as a
    where a.kind = 'user_wallet' and a.user_id = owner and a.currency = wallet_currency
  );
end
$$;

/** The pending transfer that reserves a withdrawal's amount. */
create or replace function private.withdrawal_reservation(withdrawal uuid) returns uuid
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  return (
    select t.id from private.ledger_transfers as t
    where t.reference_type = 'withdrawal' and t.reference_id = withdrawal and t.kind = 'pending'
  );
end
$$;

/**
 * Who owns an idempotency key: the signed-in user, else the role the request runs as.
 * Computed here, not passed in, so that no one can read another's answers.
 */
create or replace function private.idempotency_scope() returns text
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  return (
    select coalesce((select auth.uid())::text, 'role:' || current_setting('role', true))
  );
end
$$;

/** The setting `key` (per currency, with a default) for `for_currency`. */
create or replace function private.currency_setting(key text, for_currency char(3)) returns bigint
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  return (
    select coalesce(
      (private.setting(key) ->> upper(for_currency))::bigint,
      (private.setting(key) ->> 'default')::bigint
    )
  );
end
$$;

/** Write a security alert. */
create or replace function private.raise_security_alert(
  alert_kind public.security_alert_kind, subject uuid, alert_operation text, alert_details jsonb
) returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into public.security_alerts (kind, user_id, operation, details)
  values (alert_kind, subject, alert_operation, alert_details);
end
$$;

/** Tell `recipient` of a payment event. */
create or replace function private.notify(
  recipient uuid,
  notification_event text,
  notification_title text,
  payment uuid default null,
  withdrawal uuid default null,
  amount bigint default null,
  notification_currency char(3) default null
) returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into public.notifications (
    user_id, event, title, milestone_payment_id, withdrawal_id, amount_minor, currency
  )
  values (
    recipient, notification_event, notification_title, payment, withdrawal, amount,
    notification_currency
  );
end
$$;
