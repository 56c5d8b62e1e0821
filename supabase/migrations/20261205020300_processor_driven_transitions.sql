-- The moves of a milestone payment that the processor decides, applied by payment_service from
-- its verified events:
-- - pending>failed: the charge was declined or canceled (nothing moved); failed>funded when a
--   new attempt succeeds; failed>canceled by the payer who gives up;
-- - funded>refunded: the processor confirms a refund of the whole charge;
-- - funded>disputed: a chargeback opens a dispute over the payment (its processor dispute id
--   set), and disputed>refunded when the issuer decides it for the payer (the dispute resolved
--   as a refund), disputed>funded when the issuer decides it for us (the dispute withdrawn):
--   the money never left escrow in the ledger, so nothing is posted again.
-- No one else gains a move: the other roles' moves are unchanged.

create or replace function private.check_milestone_payment_transition() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  actor text := private.milestone_payment_actor(old, current_user);
  allowed text[];
  held_until timestamptz;
begin
  if (new.milestone_id, new.payer_id, new.payee_id, new.amount_minor, new.currency)
    is distinct from
    (old.milestone_id, old.payer_id, old.payee_id, old.amount_minor, old.currency) then
    raise exception 'milestone payment %: its milestone, payer, payee, amount and currency '
    'never change', old.id
    using errcode = 'PT409';
  end if;
  if old.processor_payment_intent_id is not null
    and new.processor_payment_intent_id is distinct from old.processor_payment_intent_id then
    raise exception 'milestone payment %: its PaymentIntent id never changes once set', old.id
    using errcode = 'PT409';
  end if;
  if old.escrow_account_id is not null
    and new.escrow_account_id is distinct from old.escrow_account_id then
    raise exception 'milestone payment %: its escrow account never changes once set', old.id
    using errcode = 'PT409';
  end if;
  new.funded_at := old.funded_at;
  new.released_at := old.released_at;
  if new.status = old.status then
    return new;
  end if;

  allowed := case old.status::text || '>' || new.status::text
    when 'pending>funded' then array['payment_service']
    when 'pending>failed' then array['payment_service']
    when 'failed>funded' then array['payment_service']
    when 'pending>canceled' then array['payer']
    when 'failed>canceled' then array['payer']
    when 'funded>released' then array['payer']
    when 'funded>refunded' then array['payment_service']
    when 'funded>disputed' then array['payer', 'payee', 'payment_service']
    when 'disputed>funded' then array['payment_service']
    when 'disputed>released' then array['admin', 'escrow_service']
    when 'disputed>refunded' then array['admin', 'escrow_service', 'payment_service']
    when 'disputed>split' then array['admin', 'escrow_service']
  end;
  if allowed is null then
    raise exception 'milestone payment % cannot go from % to %', old.id, old.status, new.status
    using errcode = 'PT409';
  end if;
  if actor is null or not actor = any(allowed) then
    raise exception 'only the % may move milestone payment % from % to %',
    array_to_string(allowed, ' or '), old.id, old.status, new.status
    using errcode = 'PT403';
  end if;
  if actor in ('admin', 'escrow_service') and private.is_milestone_payment_party(old.id) then
    raise exception 'a party to milestone payment % cannot settle it', old.id
    using errcode = 'PT403', hint = 'another admin decides';
  end if;
  if new.status = 'disputed' and not private.has_open_dispute(old.id) then
    raise exception 'milestone payment % is disputed by opening a dispute over it', old.id
    using errcode = 'PT409', hint = 'insert into disputes, or call open_dispute';
  end if;
  -- payment_service disputes, refunds from a dispute and restores a disputed payment only for
  -- a chargeback: the open one, or the one the issuer has just decided.
  if actor = 'payment_service' and new.status = 'disputed' and not exists (
    select from public.disputes as d
    where d.milestone_payment_id = old.id and d.status = 'open'
      and d.processor_dispute_id is not null
  ) then
    raise exception 'milestone payment % is disputed by payment_service only for a chargeback',
    old.id
    using errcode = 'PT403';
  end if;
  if actor = 'payment_service' and old.status = 'disputed' and not exists (
    select from public.disputes as d
    where d.id = nullif(current_setting('payguard.settling_dispute', true), '')::uuid
      and d.milestone_payment_id = old.id and d.processor_dispute_id is not null
      and d.resolved_at = now()
      and d.status = case new.status when 'funded' then 'withdrawn' else 'resolved' end
        ::public.dispute_status
  ) then
    raise exception 'milestone payment % leaves dispute only by the decision of its chargeback',
    old.id
    using errcode = 'PT403';
  end if;
  if old.status = 'disputed' and new.status in ('released', 'refunded')
    and not private.has_open_dispute(old.id)
    and not exists (
      select from public.disputes as d
      where d.id = nullif(current_setting('payguard.settling_dispute', true), '')::uuid
        and d.milestone_payment_id = old.id and d.status = 'resolved' and d.resolved_at = now()
    ) then
    raise exception 'milestone payment % has no open dispute: a disputed payment is settled by '
    'deciding a dispute over it', old.id
    using errcode = 'PT409',
    hint = 'a party opens a dispute over it; staff resolve that dispute with a written resolution';
  end if;
  if new.status in ('released', 'refunded', 'split')
    and private.escrow_status(old.escrow_account_id) = 'frozen' then
    raise exception 'the escrow account of milestone payment % is frozen', old.id
    using errcode = 'PT409';
  end if;

  if new.status = 'funded' and old.status <> 'disputed' then
    if new.processor_payment_intent_id is null then
      raise exception 'milestone payment % needs the processor''s PaymentIntent id to be funded',
      old.id
      using errcode = 'PT422';
    end if;
    new.escrow_account_id := coalesce(
      new.escrow_account_id,
      private.escrow_account_for_milestone(new.milestone_id, new.currency)
    );
    if private.escrow_status(new.escrow_account_id) is distinct from 'open' then
      new.escrow_account_id := null;
    end if;
    if new.escrow_account_id is null then
      raise exception 'milestone payment % has no open escrow account in % to be funded into',
      old.id, new.currency
      using errcode = 'PT409', hint = 'the project''s owner opens one first';
    end if;
    new.funded_at := now();
  elsif new.status = 'split' then
    if private.split_share(old.id) is null then
      raise exception 'milestone payment % is split only by a dispute resolved with the '
      'payee''s share', old.id
      using errcode = 'PT422';
    end if;
    new.released_at := now();
  elsif new.status = 'released' then
    if old.status = 'funded' then
      if private.has_open_dispute(old.id) then
        raise exception 'milestone payment % has an open dispute and cannot be released', old.id
        using errcode = 'PT409';
      end if;
      held_until := private.escrow_held_until(old.funded_at);
      if held_until > now() then
        raise exception 'milestone payment % is held in escrow until %', old.id, held_until
        using errcode = 'PT409',
        hint = 'funds stay in escrow for a hold period after funding';
      end if;
      if old.amount_minor >= private.mfa_threshold(old.currency)
        and not private.has_recent_step_up() then
        raise exception 'releasing milestone payment % needs a recent MFA step-up', old.id
        using errcode = 'PT403', hint = 'verify a second factor again, then retry';
      end if;
    end if;
    new.released_at := now();
  end if;
  return new;
end
$$;

create or replace function private.post_milestone_payment_transition() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  escrow uuid := private.ledger_escrow_account(new.escrow_account_id);
  fee bigint;
  share bigint;
  moves private.ledger_transfers[] := '{}'::private.ledger_transfers[];
begin
  -- Settled without resolving the dispute (escrow_service or an admin updating the payment
  -- itself): the dispute is closed with the same outcome, so no dispute stays open over
  -- settled money.
  if old.status = 'disputed' and new.status in ('released', 'refunded') then
    update public.disputes as d
    set status = 'resolved',
      outcome = case new.status when 'released' then 'release' else 'refund' end
        ::public.dispute_outcome
    where d.milestone_payment_id = new.id and d.status = 'open';
  end if;
  if new.status = 'funded' and old.status <> 'disputed' then
    perform private.ledger_transfer(
      'milestone_funding', private.ledger_system_account('processor_clearing', new.currency),
      escrow, new.amount_minor, new.currency, false, 'milestone_payment', new.id
    );
    perform private.ledger_wallet(new.payee_id, new.currency);
  elsif new.status = 'released' then
    fee := private.platform_fee(new.amount_minor, new.currency);
    if new.amount_minor > fee then
      moves := moves || private.ledger_move(
        'milestone_release', escrow, private.ledger_wallet(new.payee_id, new.currency),
        new.amount_minor - fee, new.currency, 'milestone_payment', new.id
      );
    end if;
    if fee > 0 then
      moves := moves || private.ledger_move(
        'platform_fee', escrow, private.ledger_system_account('platform_fees', new.currency),
        fee, new.currency, 'milestone_payment', new.id
      );
    end if;
    perform private.ledger_transfers(moves);
  elsif new.status = 'refunded' then
    perform private.ledger_transfer(
      'milestone_refund', escrow, private.ledger_system_account('processor_clearing', new.currency),
      new.amount_minor, new.currency, false, 'milestone_payment', new.id
    );
  elsif new.status = 'split' then
    share := private.split_share(new.id);
    if share is null then
      raise exception 'milestone payment % is split only by resolving its dispute with the '
      'payee''s share', new.id
      using errcode = 'PT422';
    end if;
    fee := private.platform_fee(share, new.currency);
    if share > fee then
      moves := moves || private.ledger_move(
        'milestone_release', escrow, private.ledger_wallet(new.payee_id, new.currency),
        share - fee, new.currency, 'milestone_payment', new.id
      );
    end if;
    if fee > 0 then
      moves := moves || private.ledger_move(
        'platform_fee', escrow, private.ledger_system_account('platform_fees', new.currency),
        fee, new.currency, 'milestone_payment', new.id
      );
    end if;
    moves := moves || private.ledger_move(
      'milestone_refund', escrow, private.ledger_system_account('processor_clearing', new.currency),
      new.amount_minor - share, new.currency, 'milestone_payment', new.id
    );
    perform private.ledger_transfers(moves);
  end if;
  return null;
end
$$;

-- A failed payment is fundable again: its new attempt's charge succeeded.
create or replace function private.fund_milestone_payment(
  milestone_payment_id uuid,
  processor_payment_intent_id text,
  amount_minor bigint,
  currency char(3),
  idempotency_key text
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  parameters jsonb := jsonb_build_object(
    'milestone_payment_id', milestone_payment_id,
    'processor_payment_intent_id', processor_payment_intent_id,
    'amount_minor', amount_minor,
    'currency', currency
  );
  answer jsonb := private.idempotency_replay('fund_milestone_payment', idempotency_key, parameters);
  payment public.milestone_payments;
begin
  if answer is not null then
    return answer;
  end if;
  -- Locked: a cancel racing this call either went first (seen here) or waits for it.
  select * into payment from public.milestone_payments as mp
  where mp.id = fund_milestone_payment.milestone_payment_id
  for update;
  if not found then
    raise exception 'no milestone payment % that you may fund', milestone_payment_id
    using errcode = 'PT404';
  end if;
  if (payment.amount_minor, payment.currency)
    is distinct from (fund_milestone_payment.amount_minor, fund_milestone_payment.currency) then
    raise exception 'PaymentIntent % is for % %, but milestone payment % is for % %',
    processor_payment_intent_id, amount_minor, currency,
    milestone_payment_id, payment.amount_minor, payment.currency
    using errcode = 'PT409';
  end if;
  insert into public.payment_transactions (
    user_id, type, status, amount_minor, currency, processor_transaction_id, description
  )
  values (
    payment.payer_id, 'charge', 'succeeded', fund_milestone_payment.amount_minor,
    fund_milestone_payment.currency, fund_milestone_payment.processor_payment_intent_id,
    'Milestone payment ' || milestone_payment_id
  );
  if payment.status not in ('pending', 'failed') then
    -- The processor took the money but the payment can no longer be funded (the payer
    -- canceled it meanwhile): the charge stays on record, for a refund; nothing moves here.
    return private.idempotency_store(
      'fund_milestone_payment', idempotency_key, parameters, to_jsonb(payment)
    );
  end if;
  update public.milestone_payments as mp
  set status = 'funded',
    processor_payment_intent_id = fund_milestone_payment.processor_payment_intent_id
  where mp.id = fund_milestone_payment.milestone_payment_id
  returning to_jsonb(mp.*) into answer;
  return private.idempotency_store('fund_milestone_payment', idempotency_key, parameters, answer);
end
$$;
