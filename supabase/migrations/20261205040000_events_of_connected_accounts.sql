-- Events of connected accounts move only what is theirs.
--
-- Stripe delivers the events of connected accounts (Connect) with `account` naming the
-- account. A Standard account creates PaymentIntents, charges and disputes of its own, with
-- metadata of its choosing: a payment_intent.succeeded on a connected account naming someone's
-- milestone payment funded it although the platform received nothing, and a payout.paid from
-- any account naming a withdrawal in its metadata marked it paid. The class is "an event is
-- applied without asking whose it is". Now:
--   * payment_intent.*, charge.* and charge.dispute.* events carry no `account` (the
--     platform's own objects); one that does is refused (PT403), and apply_stripe_event records
--     an inconsistency when it moved money;
--   * payout.* events carry `account` equal to the connected account of the withdrawal's
--     payout method, whether the withdrawal was found by its recorded payout id or by the
--     payout's metadata (PT403 otherwise);
--   * account.updated updates the account it names, and only when `account` (when present)
--     names the same account.

/**
 * The effects of one Stripe event (see 20261205020700_stripe_event_application.sql), with
 * the account an event happened on checked before anything moves.
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
  open_inconsistency public.processor_inconsistencies;
  chargeback public.disputes;
  withdrawal public.withdrawals;
  amount bigint;
  object_currency char(3);
  failure_code text;
  failure_message text;
  named text;
  changed integer;
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
    if coalesce(object ->> 'payment_intent', '') !~ '^pi_' then
      raise exception 'charge % names no PaymentIntent', object ->> 'id' using errcode = 'PT422';
    end if;
    amount := private.event_amount(object, 'amount_refunded');
    object_currency := private.event_currency(object);
    -- A charge the database refused, marked to be refunded: the refund settles it.
    select * into open_inconsistency from public.processor_inconsistencies as i
    where i.processor_object_id = object ->> 'payment_intent' and i.resolution is null
    order by i.created_at
    limit 1
    for update;
    if found then
      if (open_inconsistency.amount_minor, open_inconsistency.currency)
        is distinct from (amount, object_currency) then
        raise exception 'charge % refunds % %, but PaymentIntent % charged % %: only a whole '
        'refund settles it', object ->> 'id', amount, object_currency,
        object ->> 'payment_intent', open_inconsistency.amount_minor, open_inconsistency.currency
        using errcode = 'PT422';
      end if;
      update public.processor_inconsistencies as i
      set recovery = coalesce(i.recovery, 'refund'),
        resolution = 'Refunded by the processor: charge ' || (object ->> 'id') || ', event '
        || (event ->> 'id')
      where i.id = open_inconsistency.id;
      return 'processed';
    end if;
    select * into payment from public.milestone_payments as mp
    where mp.processor_payment_intent_id = object ->> 'payment_intent'
    for update;
    if not found then
      raise exception 'no milestone payment funded by PaymentIntent %', object ->> 'payment_intent'
      using errcode = 'PT404';
    end if;
    if (payment.amount_minor, payment.currency) is distinct from (amount, object_currency) then
      raise exception 'charge % refunds % % of milestone payment %, which is for % %: only a '
      'whole refund is applied', object ->> 'id', amount, object_currency, payment.id,
      payment.amount_minor, payment.currency
      using errcode = 'PT422';
    end if;
    if payment.status = 'refunded' then
      return 'processed';
    end if;
    update public.milestone_payments as mp set status = 'refunded' where mp.id = payment.id;
    insert into public.payment_transactions (
      user_id, type, status, amount_minor, currency, processor_transaction_id, description
    )
    values (
      payment.payer_id, 'refund', 'succeeded', amount, object_currency,
      coalesce(object -> 'refunds' -> 'data' -> 0 ->> 'id', object ->> 'id'),
      'Refund of milestone payment ' || payment.id
    );
    return 'processed';
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
    if connected is not null and connected <> object ->> 'id' then
      raise exception 'event % of connected account % updates account %',
      event ->> 'id', connected, object ->> 'id'
      using errcode = 'PT403';
    end if;
    update public.payout_methods as pm
    set verification_status = case
      when (object ->> 'payouts_enabled')::boolean then 'verified'
      when object -> 'requirements' ->> 'disabled_reason' like 'rejected%' then 'restricted'
      else 'pending'
    end
    where pm.processor_account_id = object ->> 'id';
    get diagnostics changed = row_count;
    if changed = 0 then
      raise exception 'no payout method of account %', object ->> 'id' using errcode = 'PT404';
    end if;
    return 'processed';
  end if;

  return 'ignored';
end
$$;
