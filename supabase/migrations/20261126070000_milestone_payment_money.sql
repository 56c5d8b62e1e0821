-- The milestone payment transitions now move money through the ledger.
--
--   pending  -> funded     clearing -> escrow, the amount
--   funded   -> released   escrow -> payee's wallet, the amount less the platform fee;
--                          escrow -> platform fees, the fee
--   disputed -> released   the same
--   disputed -> refunded   escrow -> clearing, the amount
--   disputed -> split      escrow -> payee, the dispute's share less its fee; escrow -> fees,
--                          the fee; escrow -> clearing, the rest
--   funded   -> disputed   nothing moves: a disputed payment cannot be released by its payer
--   pending  -> canceled   nothing had moved
--
-- The check trigger (security invoker, so it knows who asks) decides whether a transition is
-- allowed; this migration adds to it the hold period and the step-up for large releases. The
-- posting trigger (security definer, since only it may touch the ledger) runs after it,
-- in the same transaction: a refused or failed posting undoes the transition.

insert into private.settings (key, value, description)
values
(
  'escrow_hold_seconds', '259200',
  'How long funds stay in escrow after funding before the payer may release them '
  || '(against fake completion claims).'
),
(
  'payout_hold_seconds', '86400',
  'How long released funds wait in a wallet before they may be withdrawn.'
),
(
  'step_up_window_seconds', '900',
  'A release at or above the MFA threshold needs an MFA step-up (the newest MFA entry of '
  || 'the session''s amr) no older than this.'
);

/** The status of an escrow account (open, frozen, closed), or null. */
create function private.escrow_status(escrow uuid) returns public.escrow_status
language sql
stable
security definer
set search_path = ''
as $$
  select e.status from public.escrow_accounts as e where e.id = escrow
$$;

/** The open escrow account of the milestone's project in `escrow_currency`, if any. */
create function private.escrow_account_for_milestone(
  milestone uuid, escrow_currency char(3)
) returns uuid
language sql
stable
security definer
set search_path = ''
as $$
  select e.id
  from public.project_milestones as m
  join public.escrow_accounts as e on m.project_id = e.project_id
  where m.id = milestone and e.currency = escrow_currency and e.status = 'open'
$$;

/**
 * True when the request's newest MFA step-up (an amr entry of an MFA method) is no older
 * than the step_up_window_seconds setting.
 */
create function private.has_recent_step_up() returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select coalesce(
    extract(epoch from now())::bigint - max((entry ->> 'timestamp')::bigint)
    <= (private.setting('step_up_window_seconds') #>> '{}')::bigint,
    false
  )
  from jsonb_array_elements(coalesce((select auth.jwt()) -> 'amr', '[]')) as entry
  where entry ->> 'method' in (
    'totp', 'webauthn', 'phone', 'mfa/totp', 'mfa/webauthn', 'mfa/phone'
  )
$$;

/** When funds funded at `funded` leave their escrow hold period. */
create function private.escrow_held_until(funded timestamptz) returns timestamptz
language sql
stable
security definer
set search_path = ''
as $$
  select funded + make_interval(secs => (private.setting('escrow_hold_seconds') #>> '{}')::bigint)
$$;

/**
 * The payee's share of a split payment: from its dispute resolved as a split, when that
 * share is less than the amount; else null.
 */
create function private.split_share(payment uuid) returns bigint
language sql
stable
security definer
set search_path = ''
as $$
  select d.payee_share_minor
  from public.disputes as d
  join public.milestone_payments as mp on mp.id = d.milestone_payment_id
  where d.milestone_payment_id = payment and d.status = 'resolved' and d.outcome = 'split'
    and d.payee_share_minor < mp.amount_minor
  order by d.resolved_at desc
  limit 1
$$;

/** BEFORE UPDATE trigger on milestone_payments: who may make which transition, and when. */
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

/**
 * AFTER UPDATE trigger on milestone_payments: the postings of a transition that the check
 * trigger allowed. Security definer: no API role may touch the ledger itself.
 */
create function private.post_milestone_payment_transition() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  escrow uuid := private.ledger_escrow_account(new.escrow_account_id);
  fee bigint;
  share bigint;
begin
  -- Settled without resolve_dispute (escrow_service updating the payment itself): the
  -- dispute is closed with the same outcome, so no dispute stays open over settled money.
  if old.status = 'disputed' and new.status in ('released', 'refunded') then
    update public.disputes as d
    set status = 'resolved',
      outcome = case new.status when 'released' then 'release' else 'refund' end
        ::public.dispute_outcome,
      resolution = coalesce(d.resolution, 'Settled with the payment')
    where d.milestone_payment_id = new.id and d.status = 'open';
  end if;
  if new.status = 'funded' then
    perform private.ledger_transfer(
      'milestone_funding', private.ledger_system_account('processor_clearing', new.currency),
      escrow, new.amount_minor, new.currency, false, 'milestone_payment', new.id
    );
  elsif new.status = 'released' then
    fee := private.platform_fee(new.amount_minor, new.currency);
    if new.amount_minor > fee then
      perform private.ledger_transfer(
        'milestone_release', escrow, private.ledger_wallet(new.payee_id, new.currency),
        new.amount_minor - fee, new.currency, false, 'milestone_payment', new.id
      );
    end if;
    if fee > 0 then
      perform private.ledger_transfer(
        'platform_fee', escrow, private.ledger_system_account('platform_fees', new.currency),
        fee, new.currency, false, 'milestone_payment', new.id
      );
    end if;
  elsif new.status = 'refunded' then
    perform private.ledger_transfer(
      'milestone_refund', escrow, private.ledger_system_account('processor_clearing', new.currency),
      new.amount_minor, new.currency, false, 'milestone_payment', new.id
    );
  elsif new.status = 'split' then
    share := private.split_share(new.id);
    fee := private.platform_fee(share, new.currency);
    if share > fee then
      perform private.ledger_transfer(
        'milestone_release', escrow, private.ledger_wallet(new.payee_id, new.currency),
        share - fee, new.currency, false, 'milestone_payment', new.id
      );
    end if;
    if fee > 0 then
      perform private.ledger_transfer(
        'platform_fee', escrow, private.ledger_system_account('platform_fees', new.currency),
        fee, new.currency, false, 'milestone_payment', new.id
      );
    end if;
    perform private.ledger_transfer(
      'milestone_refund', escrow, private.ledger_system_account('processor_clearing', new.currency),
      new.amount_minor - share, new.currency, false, 'milestone_payment', new.id
    );
  end if;
  return null;
end
$$;

revoke all on function private.escrow_status(uuid) from public;
grant execute on function private.escrow_status(uuid)
to authenticated, payment_service, escrow_service, admin;
grant execute on function private.is_milestone_payment_party(uuid)
to payment_service, escrow_service, admin;
revoke all on function private.split_share(uuid) from public;
grant execute on function private.split_share(uuid) to admin, escrow_service;
revoke all on function private.escrow_account_for_milestone(uuid, char) from public;
revoke all on function private.has_recent_step_up() from public;
revoke all on function private.escrow_held_until(timestamptz) from public;
revoke all on function private.post_milestone_payment_transition() from public;
grant execute on function private.escrow_account_for_milestone(uuid, char) to payment_service;
grant execute on function private.has_recent_step_up() to authenticated;
grant execute on function private.escrow_held_until(timestamptz) to authenticated;

create trigger post_milestone_payment_transition
after update of status on public.milestone_payments
for each row
when (old.status is distinct from new.status)
execute function private.post_milestone_payment_transition();
