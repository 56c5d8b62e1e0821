-- A disputed payment is settled only by a decision that is written down.
--
-- A dispute that staff close as withdrawn (with its written resolution) leaves its payment
-- disputed. An admin or escrow_service could then release or refund that payment directly:
-- with no open dispute, nothing was closed with it, and the money moved on no written
-- decision at all. Now a disputed payment is released or refunded only while a dispute over
-- it is open (settling it directly closes that dispute, whose resolution must be written,
-- 20261204232400_dispute_settlement.sql) or by the dispute being resolved in this statement
-- (payguard.settling_dispute names it); otherwise PT409, after who may settle it was checked.
-- A split was bound to its dispute already. With no dispute open, a party opens one, and
-- staff decide it in writing.

/**
 * BEFORE UPDATE trigger on milestone_payments: the transitions, who makes them and what each
 * needs, as in 20261126070000_milestone_payment_money.sql; a disputed payment is released
 * or refunded only with its dispute open or being resolved.
 */
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
    when 'pending>canceled' then array['payer']
    when 'funded>released' then array['payer']
    when 'funded>disputed' then array['payer', 'payee']
    when 'disputed>released' then array['admin', 'escrow_service']
    when 'disputed>refunded' then array['admin', 'escrow_service']
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

  if new.status = 'funded' then
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
