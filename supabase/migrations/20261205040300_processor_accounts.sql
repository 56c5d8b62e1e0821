-- Connected accounts are held like customers: each is its owner's, recorded once.
--
-- A payout method named any `acct_…` its user typed: processor_account_id was neither unique
-- nor tied to its owner, so a user could name another contractor's connected account (and
-- take its verification), and an account.updated that arrived before the account's payout
-- method existed was refused for good (PT404), losing the verification in the normal
-- onboarding order (the account is verified, then the contractor adds a bank account). The
-- class is "a processor object is trusted because a user named it". Now:
--   * public.processor_accounts holds each connected account once (`acct_…` is the key) with
--     its owner and its verification state; payment_service records the owner at onboarding
--     (public.record_processor_account, set once: the same owner again changes nothing,
--     another is PT409);
--   * account.updated records the account's verification state whether or not its owner or
--     a payout method is known yet (kept, never refused for that), and mirrors it on the
--     account's payout methods;
--   * a payout method names its owner's recorded account: a user (authenticated) may only
--     name an account recorded as theirs (PT403 otherwise); a trusted writer (payment_service,
--     the service role, the owner of the schema) inserting the first payout method of an
--     account no one owns records it for the method's owner, as payment methods record their
--     customer; an account recorded for another user is refused (PT409) whoever writes;
--   * a new payout method starts with its account's recorded verification state.

/**
 * A user's connected account at the processor (Stripe's `acct_…`), with the processor's word
 * on it. Its owner is set once (by payment_service at onboarding, or by the account's first
 * payout method written by a trusted role); its verification state comes from account.updated,
 * which may come first. The user reads their own.
 */
create table public.processor_accounts (
  id uuid not null default gen_random_uuid() unique,
  processor_account_id text primary key
  check (processor_account_id ~ '^acct_[A-Za-z0-9]{6,}$'),
  user_id uuid references public.users (id) on delete cascade,
  processor text not null default 'stripe' check (processor = 'stripe'),
  verification_status text not null default 'unverified'
  check (verification_status in ('unverified', 'pending', 'verified', 'restricted')),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

create index processor_accounts_user_id_idx on public.processor_accounts (user_id);

create trigger keep_row_timestamps
before insert or update on public.processor_accounts
for each row execute function private.keep_row_timestamps();

create trigger refuse_card_data
before insert or update on public.processor_accounts
for each row execute function private.refuse_card_data();
select private.renew_card_data_guard('public.processor_accounts');

/** The columns the audit trail keeps out of its rows: a connected account's id, as elsewhere. */
create or replace function private.audit_redacted_columns(table_name text) returns text[]
language plpgsql
immutable
set search_path = ''
as $$
begin
  return case table_name
    when 'payment_methods' then array['processor_payment_method_id', 'processor_customer_id']
    when 'payout_methods' then array['processor_account_id', 'processor_external_account_id']
    when 'webhook_events' then array['payload']
    when 'processor_customers' then array['processor_customer_id']
    when 'processor_accounts' then array['processor_account_id']
    when 'funding_attempts' then
      array['processor_payment_method_id', 'processor_customer_id']
    else array[]::text []
  end;
end
$$;

create trigger audit_trail
after insert or update or delete on public.processor_accounts
for each row execute function private.capture_audit_row('id');
select private.renew_audit_trail('public.processor_accounts');

create trigger refuse_unaudited_truncate
before truncate on public.processor_accounts
for each statement execute function private.refuse_unaudited_truncate();

/** An account's owner is set once; the account itself is never renamed. */
create function private.keep_processor_account_owner() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.processor_account_id <> old.processor_account_id
    or (old.user_id is not null and new.user_id is distinct from old.user_id) then
    raise exception 'connected account % is recorded for its owner once and never changes hands',
    old.processor_account_id
    using errcode = 'PT409';
  end if;
  return new;
end
$$;

revoke all on function private.keep_processor_account_owner() from public;

create trigger keep_processor_account_owner
before update on public.processor_accounts
for each row execute function private.keep_processor_account_owner();

/**
 * Records `processor_account_id` as `user_id`'s connected account (payment_service, at
 * onboarding). An account account.updated recorded first gets its owner; the same owner again
 * changes nothing; another owner is PT409.
 */
create function public.record_processor_account(user_id uuid, processor_account_id text)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  recorded public.processor_accounts;
begin
  if record_processor_account.user_id is null
    or coalesce(record_processor_account.processor_account_id, '') !~ '^acct_[A-Za-z0-9]{6,}$'
    then
    raise exception 'a connected account is recorded with its owner and its id acct_…'
    using errcode = 'PT422';
  end if;
  insert into public.processor_accounts as a (processor_account_id, user_id)
  values (record_processor_account.processor_account_id, record_processor_account.user_id)
  on conflict on constraint processor_accounts_pkey do update set user_id = excluded.user_id
  where a.user_id is null
  returning * into recorded;
  if recorded.processor_account_id is null then
    select * into recorded from public.processor_accounts as a
    where a.processor_account_id = record_processor_account.processor_account_id;
    if recorded.user_id is distinct from record_processor_account.user_id then
      raise exception 'connected account % is another user''s',
      record_processor_account.processor_account_id
      using errcode = 'PT409';
    end if;
  end if;
  return to_jsonb(recorded);
end
$$;

revoke all on function public.record_processor_account(uuid, text)
from public, anon, authenticated, admin, auditor, escrow_service;
grant execute on function public.record_processor_account(uuid, text) to payment_service;

/**
 * A payout method names its owner's recorded connected account, and starts with its
 * verification state. A user may name only an account recorded as theirs; a trusted writer
 * (payment_service, the service role, the schema's owner) records an account no one owns for
 * the method's owner; an account recorded for another user is refused. Security definer: it
 * reads and records accounts the writer may not.
 */
create function private.check_payout_method_account() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  recorded public.processor_accounts;
  writer text := current_setting('role');
begin
  select * into recorded from public.processor_accounts as a
  where a.processor_account_id = new.processor_account_id
  for update;
  if recorded.user_id is not null and recorded.user_id <> new.user_id then
    raise exception 'payout method %: connected account % is another user''s',
    new.processor_external_account_id, new.processor_account_id
    using errcode = 'PT409';
  end if;
  if recorded.user_id is null then
    if writer in ('authenticated', 'anon', 'admin', 'auditor', 'escrow_service') then
      raise exception 'payout method %: connected account % is not your recorded connected '
      'account', new.processor_external_account_id, new.processor_account_id
      using errcode = 'PT403',
      hint = 'a payout method is added to the connected account made for you at onboarding';
    end if;
    insert into public.processor_accounts as a (processor_account_id, user_id, processor)
    values (new.processor_account_id, new.user_id, new.processor)
    on conflict on constraint processor_accounts_pkey do update set user_id = excluded.user_id
    returning * into recorded;
  end if;
  if tg_op = 'INSERT' then
    new.verification_status := recorded.verification_status;
  end if;
  return new;
end
$$;

revoke all on function private.check_payout_method_account() from public;

create trigger tie_payout_method_to_account
before insert or update of user_id, processor_account_id on public.payout_methods
for each row execute function private.check_payout_method_account();

/**
 * account.updated: the processor's word on a connected account, recorded whether or not its
 * owner or a payout method is known yet, and mirrored on the account's payout methods.
 */
create function private.apply_account_updated(event jsonb) returns text
language plpgsql
set search_path = ''
as $$
declare
  object jsonb := event -> 'data' -> 'object';
  connected text := nullif(event ->> 'account', '');
  state text;
begin
  if coalesce(object ->> 'id', '') !~ '^acct_[A-Za-z0-9]{6,}$' then
    raise exception 'event % updates no connected account acct_…', event ->> 'id'
    using errcode = 'PT422';
  end if;
  if connected is not null and connected <> object ->> 'id' then
    raise exception 'event % of connected account % updates account %',
    event ->> 'id', connected, object ->> 'id'
    using errcode = 'PT403';
  end if;
  state := case
    when (object ->> 'payouts_enabled')::boolean then 'verified'
    when object -> 'requirements' ->> 'disabled_reason' like 'rejected%' then 'restricted'
    else 'pending'
  end;
  insert into public.processor_accounts as a (processor_account_id, verification_status)
  values (object ->> 'id', state)
  on conflict on constraint processor_accounts_pkey
  do update set verification_status = excluded.verification_status
  where a.verification_status <> excluded.verification_status;
  update public.payout_methods as pm set verification_status = state
  where pm.processor_account_id = object ->> 'id' and pm.verification_status <> state;
  return 'processed';
end
$$;

revoke all on function private.apply_account_updated(jsonb) from public;
grant execute on function private.apply_account_updated(jsonb) to payment_service;

/**
 * The effects of one Stripe event (see 20261205040200_refund_of_a_funded_payment.sql);
 * account.updated is private.apply_account_updated.
 */
create or replace function private.apply_stripe_event_effects(event jsonb)
returns text
language plpgsql
set search_path = ''
as $$
declare
  object jsonb := event -> 'data' -> 'object';
  event_type text := event ->> 'type';
  payment public.milestone_payments;
  attempt_row public.funding_attempts;
  latest_attempt integer;
  chargeback public.disputes;
  withdrawal public.withdrawals;
  amount bigint;
  object_currency char(3);
  failure_code text;
  failure_message text;
  named text;
  -- The connected account the event happened on; none for the platform's own objects.
  connected text := nullif(event ->> 'account', '');
  payout_account text;
begin
  if jsonb_typeof(object) is distinct from 'object' or coalesce(object ->> 'id', '') = '' then
    raise exception 'event % has no data.object with an id', event ->> 'id'
    using errcode = 'PT422';
  end if;

  -- Payments, charges and chargebacks are the platform's: the same object on a connected
  -- account (which keeps its own metadata, and whose money the platform never received) moves
  -- nothing here.
  if connected is not null
    and (event_type like 'payment_intent.%' or event_type like 'charge.%') then
    raise exception 'event % happened on connected account %: % events are the platform''s own',
    event ->> 'id', connected, event_type
    using errcode = 'PT403';
  end if;

  if event_type = 'payment_intent.succeeded' then
    payment := private.event_milestone_payment(object);
    if exists (
      select from public.webhook_events as e
      where (e.payload -> 'data' -> 'object' ->> 'payment_intent') = object ->> 'id'
        and e.type = 'charge.refunded'
    ) then
      raise exception 'PaymentIntent % was refunded before its success reached milestone '
      'payment %', object ->> 'id', payment.id
      using errcode = 'PT409';
    end if;
    attempt_row := private.event_funding_attempt(payment.id, object ->> 'id');
    select max(a.attempt) into latest_attempt from public.funding_attempts as a
    where a.milestone_payment_id = payment.id;
    if attempt_row.attempt is distinct from latest_attempt then
      raise exception 'PaymentIntent % is attempt % of milestone payment %, not its current '
      'attempt %', object ->> 'id', attempt_row.attempt, payment.id, latest_attempt
      using errcode = 'PT409';
    end if;
    if payment.processor_payment_intent_id = object ->> 'id' then
      return 'processed';
    end if;
    if payment.status not in ('pending', 'failed') then
      raise exception 'milestone payment % is %: PaymentIntent % can no longer fund it',
      payment.id, payment.status, object ->> 'id'
      using errcode = 'PT409';
    end if;
    perform private.fund_milestone_payment(
      payment.id, object ->> 'id', payment.amount_minor, payment.currency,
      'stripe:' || (object ->> 'id') || ':funding'
    );
    update public.funding_attempts as a set status = 'succeeded'
    where a.id = attempt_row.id and a.status <> 'succeeded';
    return 'processed';
  end if;

  if event_type in ('payment_intent.payment_failed', 'payment_intent.canceled') then
    payment := private.event_milestone_payment(object);
    if event_type = 'payment_intent.canceled' then
      failure_code := 'canceled';
      failure_message := 'The charge was canceled'
        || coalesce(' (' || (object ->> 'cancellation_reason') || ')', '');
    else
      failure_code := coalesce(
        object -> 'last_payment_error' ->> 'decline_code',
        object -> 'last_payment_error' ->> 'code', 'payment_failed'
      );
      failure_message := coalesce(
        object -> 'last_payment_error' ->> 'message', 'The charge was declined'
      );
    end if;
    attempt_row := private.event_funding_attempt(payment.id, object ->> 'id');
    if attempt_row.status = 'succeeded' then
      raise exception 'PaymentIntent % of milestone payment % succeeded: it does not fail',
      object ->> 'id', payment.id
      using errcode = 'PT409';
    end if;
    if attempt_row.id is not null then
      perform public.record_funding_failure(
        payment.id, attempt_row.attempt, failure_code, failure_message
      );
      select max(a.attempt) into latest_attempt from public.funding_attempts as a
      where a.milestone_payment_id = payment.id;
      if attempt_row.attempt < latest_attempt then
        return 'processed';
      end if;
    end if;
    if payment.status = 'pending' then
      update public.milestone_payments as mp set status = 'failed' where mp.id = payment.id;
    elsif payment.status <> 'failed' then
      raise exception 'milestone payment % is %: the failure of PaymentIntent % changes nothing',
      payment.id, payment.status, object ->> 'id'
      using errcode = 'PT409';
    end if;
    return 'processed';
  end if;

  if event_type = 'charge.refunded' then
    return private.apply_charge_refunded(event);
  end if;

  if event_type = 'charge.dispute.created' then
    if coalesce(object ->> 'payment_intent', '') !~ '^pi_' then
      raise exception 'chargeback % names no PaymentIntent', object ->> 'id'
      using errcode = 'PT422';
    end if;
    amount := private.event_amount(object, 'amount');
    object_currency := private.event_currency(object);
    select * into payment from public.milestone_payments as mp
    where mp.processor_payment_intent_id = object ->> 'payment_intent'
    for update;
    if not found then
      raise exception 'no milestone payment funded by PaymentIntent %', object ->> 'payment_intent'
      using errcode = 'PT404';
    end if;
    if (payment.amount_minor, payment.currency) is distinct from (amount, object_currency) then
      raise exception 'chargeback % is for % %, but milestone payment % is for % %',
      object ->> 'id', amount, object_currency, payment.id, payment.amount_minor, payment.currency
      using errcode = 'PT409';
    end if;
    if exists (
      select from public.disputes as d where d.processor_dispute_id = object ->> 'id'
    ) then
      return 'processed';
    end if;
    if payment.status <> 'funded' then
      raise exception 'milestone payment % is %: chargeback % cannot dispute it',
      payment.id, payment.status, object ->> 'id'
      using errcode = 'PT409',
      hint = 'operations settle it: the processor has taken the money back';
    end if;
    insert into public.disputes (milestone_payment_id, opened_by, reason, processor_dispute_id)
    values (
      payment.id, payment.payer_id,
      left('Chargeback ' || (object ->> 'id') || ' at the card issuer: '
        || coalesce(nullif(object ->> 'reason', ''), 'no reason given'), 5000),
      object ->> 'id'
    );
    update public.milestone_payments as mp set status = 'disputed' where mp.id = payment.id;
    return 'processed';
  end if;

  if event_type = 'charge.dispute.closed' then
    select * into chargeback from public.disputes as d
    where d.processor_dispute_id = object ->> 'id'
    for update;
    if not found then
      raise exception 'no dispute for chargeback %', object ->> 'id' using errcode = 'PT404';
    end if;
    if object ->> 'status' in ('lost', 'charge_refunded') then
      if chargeback.status = 'resolved' and chargeback.outcome = 'refund' then
        return 'processed';
      end if;
      update public.disputes as d
      set status = 'resolved', outcome = 'refund',
        resolution = 'The card issuer decided chargeback ' || (object ->> 'id')
        || ' for the payer (' || (object ->> 'status') || '): the payment is refunded to the payer.'
      where d.id = chargeback.id;
    elsif object ->> 'status' in ('won', 'warning_closed') then
      if chargeback.status = 'withdrawn' then
        return 'processed';
      end if;
      update public.disputes as d
      set status = 'withdrawn',
        resolution = 'The card issuer decided chargeback ' || (object ->> 'id')
        || ' for the platform (' || (object ->> 'status')
        || '): the payment is held in escrow again.'
      where d.id = chargeback.id;
      perform set_config('payguard.settling_dispute', chargeback.id::text, true);
      update public.milestone_payments as mp set status = 'funded'
      where mp.id = chargeback.milestone_payment_id;
      perform set_config('payguard.settling_dispute', '', true);
    else
      raise exception 'chargeback % closed as %, which decides nothing here',
      object ->> 'id', coalesce(object ->> 'status', 'nothing')
      using errcode = 'PT422';
    end if;
    return 'processed';
  end if;

  if event_type in ('payout.paid', 'payout.failed') then
    amount := private.event_amount(object, 'amount');
    object_currency := private.event_currency(object);
    select * into withdrawal from public.withdrawals as w
    where w.processor_payout_id = object ->> 'id'
    for update;
    if not found then
      -- The event may come before the payout's id was recorded: the payout names its
      -- withdrawal in its metadata.
      named := object -> 'metadata' ->> 'withdrawal_id';
      if coalesce(named, '') ~* '^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$' then
        select * into withdrawal from public.withdrawals as w
        where w.id = named::uuid and w.processor_payout_id is null
        for update;
      end if;
      if withdrawal.id is null then
        raise exception 'no withdrawal paid out by payout %', object ->> 'id'
        using errcode = 'PT404';
      end if;
    end if;
    -- A payout is made on the withdrawal's connected account, whichever way it was found.
    select pm.processor_account_id into payout_account from public.payout_methods as pm
    where pm.id = withdrawal.payout_method_id;
    if connected is distinct from payout_account then
      raise exception 'payout % was made on account %, not on the connected account of '
      'withdrawal %', object ->> 'id', coalesce(connected, 'the platform'), withdrawal.id
      using errcode = 'PT403';
    end if;
    if (withdrawal.amount_minor, withdrawal.currency) is distinct from (amount, object_currency)
      then
      raise exception 'payout % is for % %, but withdrawal % is for % %',
      object ->> 'id', amount, object_currency, withdrawal.id, withdrawal.amount_minor,
      withdrawal.currency
      using errcode = 'PT409';
    end if;
    if event_type = 'payout.paid' then
      if withdrawal.status = 'paid' then
        return 'processed';
      end if;
      perform private.complete_withdrawal(
        withdrawal.id, object ->> 'id', 'stripe:' || (object ->> 'id') || ':paid'
      );
    else
      if withdrawal.status = 'failed' then
        return 'processed';
      end if;
      if withdrawal.processor_payout_id is null then
        update public.withdrawals as w
        set status = 'processing', processor_payout_id = object ->> 'id'
        where w.id = withdrawal.id and w.status = 'approved';
      end if;
      perform private.fail_withdrawal(
        withdrawal.id,
        left(coalesce(
          nullif(object ->> 'failure_message', ''), nullif(object ->> 'failure_code', ''),
          'the processor reported the payout failed'
        ), 500),
        'stripe:' || (object ->> 'id') || ':failed'
      );
    end if;
    return 'processed';
  end if;

  if event_type = 'account.updated' then
    return private.apply_account_updated(event);
  end if;

  return 'ignored';
end
$$;
