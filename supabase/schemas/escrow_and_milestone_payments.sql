-- Escrow and milestone payments
--
-- The homeowner's money held for a project (its escrow account) and the payment of each
-- milestone out of it: how a payment is created, the states it moves through and who may
-- move it, held by triggers, and the money each move posts to the ledger (ledger.sql).
--
-- A client names only the milestone it pays; who pays, who is paid, how much and in which
-- currency come from the project and the milestone, never from the request.
--
-- This file is the current definition of everything in its domain. Change it first, then
-- write the migration that makes the same change (docs/schema-changes.md); `payguard schema
-- check` proves that the migrations and these files build the same database.
-- See also: policies/escrow_accounts.toml, policies/milestone_payments.toml,
-- tests/sql/escrow_and_milestone_payments/

set local check_function_bodies = off;

-- Section: escrow accounts

create type public.escrow_status as enum ('open', 'frozen', 'closed');

create table public.escrow_accounts (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null default auth.uid() references public.users (id),
  project_id uuid not null references public.projects (id),
  currency char(3) not null check (currency ~ '^[A-Z]{3}$'),
  balance_minor bigint not null default 0 check (balance_minor >= 0),
  -- Frozen: nothing is released, refunded or split out of it; only an open one is funded.
  status public.escrow_status not null default 'open',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (project_id, currency)
);

comment on table public.escrow_accounts is
'The escrow of a project, held for its owner (user_id). The balance is the ledger''s to set.';

comment on column public.escrow_accounts.balance_minor is
'Derived from the ledger; no user may write it.';

create index escrow_accounts_user_id_idx on public.escrow_accounts (user_id);

create trigger keep_row_timestamps
before insert or update on public.escrow_accounts
for each row execute function private.keep_row_timestamps();

-- A staff member's write needs MFA (helpers.sql).
create trigger staff_writes_need_mfa
before insert or update or delete on public.escrow_accounts
for each row execute function private.staff_writes_need_mfa();

-- The currency is the only free text a client writes here.
create trigger refuse_card_data
before insert or update of currency
on public.escrow_accounts
for each row
execute function private.refuse_card_data(
  'id', 'user_id', 'project_id', 'status', 'created_at', 'updated_at'
);

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

grant execute on function private.escrow_status(uuid) to admin;
grant execute on function private.escrow_status(uuid) to authenticated;
grant execute on function private.escrow_status(uuid) to escrow_service;
grant execute on function private.escrow_status(uuid) to payment_service;

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

grant execute on function private.escrow_account_for_milestone(uuid, character) to payment_service;

-- Section: milestone payments

create type public.milestone_payment_status as enum (
  'pending',
  'failed',
  'funded',
  'released',
  'disputed',
  'refunded',
  'canceled',
  'split'
);

create table public.milestone_payments (
  id uuid primary key default gen_random_uuid(),
  milestone_id uuid not null references public.project_milestones (id),
  -- The project's open escrow account in the payment's currency, set once, by funding at
  -- the latest.
  escrow_account_id uuid references public.escrow_accounts (id),
  payer_id uuid not null default auth.uid() references public.users (id),
  payee_id uuid not null references public.users (id),
  amount_minor bigint not null check (amount_minor > 0),
  currency char(3) not null check (currency ~ '^[A-Z]{3}$'),
  status public.milestone_payment_status not null default 'pending',
  -- The processor's PaymentIntent, set once; a payment is funded only with it.
  processor_payment_intent_id text unique
  check (processor_payment_intent_id ~ '^pi_[A-Za-z0-9]+$'),
  -- Set by the transition trigger only.
  funded_at timestamptz,
  released_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  check (payer_id <> payee_id)
);

comment on table public.milestone_payments is
'The payment of one milestone: pending, funded into escrow, then released, disputed, refunded '
'or canceled, along the transitions the trigger milestone_payment_transition allows.';

create index milestone_payments_milestone_id_idx on public.milestone_payments (milestone_id);

create index milestone_payments_escrow_account_id_idx
on public.milestone_payments (escrow_account_id);

create index milestone_payments_payer_id_idx on public.milestone_payments (payer_id);

create index milestone_payments_payee_id_idx on public.milestone_payments (payee_id);

-- One live payment per milestone. Every live payment of a milestone has the same key,
-- (milestone, null), and NULLS NOT DISTINCT makes a second one conflict; a canceled or
-- refunded payment is keyed by its own id. Deliberately not a partial unique index (`where
-- status not in ('canceled', 'refunded')`): the update policies test the status too, and
-- when a query's conditions imply a partial index's predicate, the planner costs a full scan
-- of that index as if it returned one row, so a party's `update … where id = $1` would scan
-- every live payment instead of reading one by its primary key (12,000 rows filtered per
-- release when measured, a cost that grows with the table). disputes.sql keeps one open
-- dispute per payment the same way.
create unique index milestone_payments_one_live_per_milestone_key
on public.milestone_payments (
  milestone_id, (case when status in ('canceled', 'refunded') then id end)
) nulls not distinct;

create trigger keep_row_timestamps
before insert or update on public.milestone_payments
for each row execute function private.keep_row_timestamps();

-- A staff member's write needs MFA (helpers.sql).
create trigger staff_writes_need_mfa
before insert or update or delete on public.milestone_payments
for each row execute function private.staff_writes_need_mfa();

-- The currency and the PaymentIntent id are the only free text written here.
create trigger refuse_card_data
before insert or update of currency, processor_payment_intent_id
on public.milestone_payments
for each row execute function private.refuse_card_data(
  'id',
  'milestone_id',
  'escrow_account_id',
  'payer_id',
  'payee_id',
  'status',
  'funded_at',
  'released_at',
  'created_at',
  'updated_at'
);

-- Section: creating a milestone payment
--
-- A stranger learns nothing of a row that is not theirs, not even from a trigger. BEFORE
-- triggers fire in name order and before row-level security's WITH CHECK, so a trigger that
-- refuses runs before the policy that would have refused the row as not the caller's. If
-- derive_milestone_payment copied any milestone's amount into a stranger's row, limit_amount
-- would refuse it with that amount in the message ("… of 123457 USD would take today's total
-- …", 422) where an id that does not exist gets 403: the stranger would learn that the
-- milestone exists, and its amount.
--
-- So authorization comes first. A user's milestone payment is derived from the milestone
-- only when the user owns the milestone; for anyone else's the row stays as the caller sent
-- it, and the policy refuses it as it refuses an unknown id. The amount limits count only a
-- row that the caller is the owner of, by the same tests the insert policies make (the payer
-- of their own milestone, their own payout method, their own payment method); any other row
-- is left to the policy, which refuses it. The velocity limits (limit_rate) run before the
-- policy too: they count the caller's calls whatever the row, and answer the same for any
-- id.

/**
 * BEFORE INSERT trigger on milestone_payments: payee, amount and currency from the
 * milestone, and its project's open escrow account in that currency, only for a user who
 * owns it. Another user's row is left as sent, for the policy to refuse without the trigger
 * having read the milestone for them.
 */
create or replace function private.derive_milestone_payment() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  milestone record;
begin
  if current_setting('role', true) = 'authenticated'
    and not private.owns_milestone(new.milestone_id) then
    return new;
  end if;
  select m.amount_minor, m.currency, p.contractor_id, p.owner_id, p.id as project_id
  into milestone
  from public.project_milestones as m
  join public.projects as p on p.id = m.project_id
  where m.id = new.milestone_id;
  if not found then
    return new;
  end if;
  if milestone.contractor_id is null then
    if milestone.owner_id is distinct from (select auth.uid()) then
      return new;
    end if;
    raise exception 'milestone % belongs to a project with no contractor to pay',
    new.milestone_id
    using errcode = 'PT422', hint = 'assign the project''s contractor first';
  end if;
  new.payee_id := milestone.contractor_id;
  new.amount_minor := milestone.amount_minor;
  new.currency := milestone.currency;
  new.status := 'pending';
  new.funded_at := null;
  new.released_at := null;
  if new.escrow_account_id is null then
    select e.id into new.escrow_account_id
    from public.escrow_accounts as e
    where e.project_id = milestone.project_id and e.currency = milestone.currency
      and e.status = 'open';
  end if;
  return new;
end
$$;

create trigger derive_milestone_payment
before insert on public.milestone_payments
for each row execute function private.derive_milestone_payment();

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

grant execute on function private.owns_milestone(uuid) to authenticated;

-- Section: transitions
--
-- The check trigger (security invoker, so it knows who asks) decides whether a transition is
-- allowed, including the hold period and the step-up for large releases. The posting
-- trigger (security definer, since only it may touch the ledger) runs after it, in the same
-- transaction: a refused or failed posting undoes the transition.

-- The hold periods and the step-up window, read by the transition rules here and by
-- withdrawals.sql (payout_hold_seconds).
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

grant execute on function private.is_milestone_payment_party(uuid) to admin;
grant execute on function private.is_milestone_payment_party(uuid) to authenticated;
grant execute on function private.is_milestone_payment_party(uuid) to escrow_service;
grant execute on function private.is_milestone_payment_party(uuid) to payment_service;

/**
 * Who is asking, for the transition rules: a service or staff role by its database role
 * (`requester`, the caller's current_user), else the payer or payee by the request's user id;
 * `lapsed_review` for private.release_lapsed_reviews (the owner of the table, with no user,
 * while payguard.releasing_lapsed_review names this payment). Null for anyone else. Security
 * definer because the service roles cannot read `auth`.
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
      when (select auth.uid()) is null
        and nullif(current_setting('payguard.releasing_lapsed_review', true), '')
        = payment.id::text
        and requester = (
          select pg_catalog.pg_get_userbyid(c.relowner) from pg_catalog.pg_class as c
          where c.oid = 'public.milestone_payments'::regclass
        ) then 'lapsed_review'
    end
  );
end
$$;

grant execute on function private.milestone_payment_actor(milestone_payments, name) to admin;
grant execute on function private.milestone_payment_actor(
  milestone_payments, name
) to authenticated;
grant execute on function private.milestone_payment_actor(
  milestone_payments, name
) to escrow_service;
grant execute on function private.milestone_payment_actor(
  milestone_payments, name
) to payment_service;

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

grant execute on function private.has_recent_step_up() to authenticated;

grant execute on function private.has_recent_step_up() to admin, auditor;

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

grant execute on function private.escrow_held_until(timestamp with time zone) to authenticated;

/**
 * The payee's share of a split of `payment`: that of the dispute being resolved in this
 * statement (payguard.settling_dispute), when it was resolved, in this transaction, as a
 * split of this payment with a share below its amount; otherwise null. Never another
 * dispute's: a setting that names an earlier dispute finds nothing.
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
    where d.id = nullif(current_setting('payguard.settling_dispute', true), '')::uuid
      and d.milestone_payment_id = payment and d.status = 'resolved' and d.outcome = 'split'
      and d.resolved_at = now() and d.payee_share_minor < mp.amount_minor
  );
end
$$;

grant execute on function private.split_share(uuid) to admin;
grant execute on function private.split_share(uuid) to escrow_service;

/**
 * BEFORE UPDATE trigger on milestone_payments: the moves a payment may make, and who may
 * make each. Its milestone, payer, payee, amount and currency never change; its
 * PaymentIntent id and escrow account are set once; funded_at and released_at are the
 * trigger's to set.
 *
 * - pending>funded: payment_service, from the processor's verified events, with the
 *   PaymentIntent id, into the project's open escrow account;
 * - pending>failed: payment_service, the charge was declined or canceled (nothing moved);
 *   failed>funded when a new attempt succeeds; pending or failed>canceled by the payer;
 * - funded>released: only once its milestone is submitted for review (project_milestones
 *   completed); by the payer, or, once the review window has ended, by the payee or
 *   private.release_lapsed_reviews; with no open dispute, after the escrow hold period, and
 *   for the payer or payee with a recent MFA step-up at or above the MFA threshold;
 * - funded>refunded: payment_service, when the processor confirms a refund of the whole
 *   charge;
 * - funded>disputed: a party or payment_service (a chargeback), by opening a dispute over
 *   the payment;
 * - disputed>released, refunded or split: staff (admin, escrow_service) who are no party to
 *   it, while its dispute is open or by deciding it (a split only by a decision with the
 *   payee's share);
 * - disputed>refunded when the issuer decides a chargeback for the payer (the dispute
 *   resolved as a refund), disputed>funded when it decides it for us (the dispute
 *   withdrawn): payment_service, and the money never left escrow in the ledger, so nothing
 *   is posted again.
 *
 * Nothing is released, refunded or split out of a frozen escrow account.
 */
create or replace function private.check_milestone_payment_transition() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  actor text := private.milestone_payment_actor(old, current_user);
  allowed text[];
  held_until timestamptz;
  review_ends timestamptz;
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
  -- The payee, or the scheduler's release of lapsed reviews, only once the review window of
  -- the milestone has ended (checked with the release below).
  if old.status = 'funded' and new.status = 'released' and actor in ('payee', 'lapsed_review') then
    allowed := array[actor];
  end if;
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
      review_ends := private.milestone_review_ends_at(old.milestone_id);
      if review_ends is null then
        raise exception 'milestone payment % cannot be released: its milestone % is not '
        'submitted for review', old.id, old.milestone_id
        using errcode = 'PT409',
        hint = 'the contractor submits the milestone (submit_milestone) first';
      end if;
      if actor <> 'payer' and review_ends > now() then
        raise exception 'milestone payment % is released by its payee only once the review of '
        'milestone % ends, at %', old.id, old.milestone_id, review_ends
        using errcode = 'PT409', hint = 'until then the payer approves it by releasing it';
      end if;
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
      if actor <> 'lapsed_review' and old.amount_minor >= private.mfa_threshold(old.currency)
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

create trigger check_milestone_payment_transition
before update on public.milestone_payments
for each row execute function private.check_milestone_payment_transition();

-- Section: the money each transition moves
--
--   pending  -> funded     clearing -> escrow, the amount
--   funded   -> released   escrow -> payee's wallet, the amount less the platform fee;
--                          escrow -> platform fees, the fee
--   disputed -> released   the same
--   funded   -> refunded   escrow -> clearing, the amount
--   disputed -> refunded   the same
--   disputed -> split      escrow -> payee, the dispute's share less its fee; escrow -> fees,
--                          the fee; escrow -> clearing, the rest
--   funded   -> disputed   nothing moves: a disputed payment cannot be released by its payer
--   disputed -> funded     nothing moves: the money never left escrow
--   pending  -> canceled   nothing had moved

/**
 * AFTER UPDATE trigger on milestone_payments: posts the transition's money to the ledger, as
 * above. Funding also opens the payee's wallet in the currency. A disputed payment settled
 * directly (not by deciding its dispute) closes the open dispute with the same outcome.
 */
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

create trigger post_milestone_payment_transition
after update of status on public.milestone_payments
for each row
when (old.status is distinct from new.status)
execute function private.post_milestone_payment_transition();

-- Section: the review of a milestone, as its payment sees it
--
-- A release approves the milestone (users_and_projects.sql holds the review). Once a
-- submission's review window has ended with no open dispute, the payee may release the
-- payment; private.release_lapsed_reviews, for a scheduler, tells both parties so and, when
-- operations turn the milestone_review_auto_release setting on, releases it itself.

insert into private.settings (key, value, description)
values (
  'milestone_review_auto_release', 'false',
  'Whether private.release_lapsed_reviews releases a funded payment whose milestone review '
  || 'window has ended with no open dispute (true), or only tells both parties that the payee '
  || 'may release it (false).'
);

/** AFTER UPDATE trigger on milestone_payments: a released payment approves its milestone. */
create or replace function private.approve_released_milestone() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  update public.project_milestones as m
  set status = 'approved'
  where m.id = new.milestone_id and m.status <> 'approved';
  return null;
end
$$;

create trigger approve_released_milestone
after update of status on public.milestone_payments
for each row
when (new.status = 'released' and old.status is distinct from new.status)
execute function private.approve_released_milestone();

/**
 * For a scheduler, run as the owner: every funded payment whose milestone is submitted and
 * whose review window has ended, with no open dispute. Both parties are told once per
 * submission (milestone.review_lapsed) that the payee may release it. With the
 * milestone_review_auto_release setting on, each one out of its escrow hold is also released
 * (as `lapsed_review`, under the transition trigger's rules); one the trigger refuses (a
 * frozen escrow account) is left for the payee to release. Returns how many payments were
 * found lapsed and how many were released.
 */
create or replace function private.release_lapsed_reviews(
  out lapsed integer, out released integer
)
language plpgsql
security definer
set search_path = ''
as $$
declare
  auto_release boolean := (private.setting('milestone_review_auto_release') #>> '{}')::boolean;
  payment record;
begin
  lapsed := 0;
  released := 0;
  for payment in
    select mp.id, mp.payer_id, mp.payee_id, mp.amount_minor, mp.currency, mp.funded_at,
      m.title, m.submitted_at
    from public.milestone_payments as mp
    join public.project_milestones as m on m.id = mp.milestone_id
    where mp.status = 'funded' and m.status = 'completed' and m.review_ends_at <= now()
      and not private.has_open_dispute(mp.id)
    order by m.review_ends_at, mp.id
    for update of mp skip locked
  loop
    lapsed := lapsed + 1;
    if not exists (
      select from public.notifications as n
      where n.milestone_payment_id = payment.id and n.event = 'milestone.review_lapsed'
        and n.created_at >= payment.submitted_at
    ) then
      perform private.notify(
        payment.payer_id, 'milestone.review_lapsed',
        left('The review of milestone "' || payment.title || '" has ended', 199) || '.',
        payment.id, null, payment.amount_minor, payment.currency
      );
      perform private.notify(
        payment.payee_id, 'milestone.review_lapsed',
        left('The review of milestone "' || payment.title || '" has ended: you may release '
          || 'its payment', 199) || '.',
        payment.id, null, payment.amount_minor, payment.currency
      );
    end if;
    if auto_release and private.escrow_held_until(payment.funded_at) <= now() then
      begin
        perform set_config('payguard.releasing_lapsed_review', payment.id::text, true);
        update public.milestone_payments as mp set status = 'released' where mp.id = payment.id;
        perform set_config('payguard.releasing_lapsed_review', '', true);
        released := released + 1;
      exception when sqlstate 'PT409' or sqlstate 'PT403' then
        perform set_config('payguard.releasing_lapsed_review', '', true);
      end;
    end if;
  end loop;
end
$$;

/**
 * Schedule private.release_lapsed_reviews every five minutes with pg_cron, where the extension
 * is installed in this database (as the audit sealer is, audit_chain.sql); a job of the same
 * name is replaced, so it is safe to run again. Returns what it did.
 */
create or replace function private.schedule_lapsed_reviews() returns text
language plpgsql
set search_path = ''
as $$
begin
  return private.schedule_job(
    'payguard-lapsed-reviews', '*/5 * * * *', 'select private.release_lapsed_reviews()',
    'run select private.release_lapsed_reviews() from a scheduler of your own'
  );
end
$$;

select private.schedule_lapsed_reviews();
