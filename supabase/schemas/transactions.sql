-- Transactions, fees and subscriptions
--
-- Every charge, refund, payout, fee and transfer, the platform's fee schedule (computed on the
-- server), users' subscriptions, and the retention of payment records (the purge of closed
-- ones after seven years).
--
-- This file is the current definition of everything in its domain. Change it first, then
-- write the migration that makes the same change (docs/schema-changes.md); `payguard schema
-- check` proves that the migrations and these files build the same database.
-- See also: policies/payment_transactions.toml, policies/subscriptions.toml, docs/retention.md

set local check_function_bodies = off;

-- Section: payment transactions
--
-- Every charge, refund, payout, fee and transfer the processor reports, or a user starts.
-- A user may start a charge; its status, type and processor id are the service's to set.

create type public.transaction_type as enum ('charge', 'refund', 'payout', 'fee', 'transfer');

create type public.transaction_status as enum ('pending', 'succeeded', 'failed', 'canceled');

create table public.payment_transactions (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null default auth.uid() references public.users (id),
  payment_method_id uuid references public.payment_methods (id) on delete set null,
  type public.transaction_type not null default 'charge',
  status public.transaction_status not null default 'pending',
  amount_minor bigint not null check (amount_minor > 0),
  currency char(3) not null check (currency ~ '^[A-Z]{3}$'),
  -- The processor's id of the object behind it (its prefix and id), once it reports one.
  processor_transaction_id text unique
  check (processor_transaction_id ~ '^[a-z]+_[A-Za-z0-9]+$'),
  description text check (char_length(description) <= 500),
  metadata jsonb not null default '{}' check (jsonb_typeof(metadata) = 'object'),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

comment on table public.payment_transactions is
'A movement of money at the processor, in minor units of currency.';

create index payment_transactions_user_id_idx on public.payment_transactions (user_id);

create index payment_transactions_payment_method_id_idx
on public.payment_transactions (payment_method_id);

create trigger keep_row_timestamps
before insert or update on public.payment_transactions
for each row execute function private.keep_row_timestamps();

-- A staff member's write needs MFA (helpers.sql).
create trigger staff_writes_need_mfa
before insert or update or delete on public.payment_transactions
for each row execute function private.staff_writes_need_mfa();

-- The columns listed cannot hold card data; every other one is read.
create trigger refuse_card_data
before insert or update
on public.payment_transactions
for each row
execute function private.refuse_card_data(
  'id', 'user_id', 'payment_method_id', 'type', 'status', 'created_at', 'updated_at'
);

-- Section: subscriptions
--
-- Users' subscriptions to paid plans, as the processor reports them.

create type public.subscription_status as enum (
  'trialing', 'active', 'past_due', 'canceled', 'unpaid', 'incomplete'
);

create table public.subscriptions (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references public.users (id),
  plan text not null check (char_length(plan) between 1 and 100),
  status public.subscription_status not null,
  processor_subscription_id text not null unique
  check (processor_subscription_id ~ '^sub_[A-Za-z0-9]+$'),
  amount_minor bigint not null check (amount_minor > 0),
  currency char(3) not null check (currency ~ '^[A-Z]{3}$'),
  current_period_end timestamptz,
  cancel_at_period_end boolean not null default false,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

comment on table public.subscriptions is 'A user''s subscription, written by payment_service.';

create index subscriptions_user_id_idx on public.subscriptions (user_id);

create trigger keep_row_timestamps
before insert or update on public.subscriptions
for each row execute function private.keep_row_timestamps();

-- The columns listed cannot hold card data; every other one is read.
create trigger refuse_card_data
before insert or update
on public.subscriptions
for each row
execute function private.refuse_card_data(
  'id',
  'user_id',
  'status',
  'current_period_end',
  'cancel_at_period_end',
  'created_at',
  'updated_at'
);

-- Section: the platform fee
--
-- The platform's fee on a released milestone payment, computed on the server from a
-- schedule: never from anything a client sends (threat model: processing fee manipulation).

create table private.fee_schedule (
  currency char(3) primary key check (currency ~ '^[A-Z]{3}$'),
  rate_bps int not null check (rate_bps between 0 and 10000),
  fixed_minor bigint not null default 0 check (fixed_minor >= 0),
  updated_at timestamptz not null default now()
);

comment on table private.fee_schedule is
'Per currency, the platform fee on a release: rate_bps basis points of the amount, rounded '
'half up, plus fixed_minor, never more than the amount.';

-- The columns listed cannot hold card data; every other one is read.
create trigger refuse_card_data
before insert or update
on private.fee_schedule
for each row
execute function private.refuse_card_data(
  'updated_at'
);

insert into private.fee_schedule (currency, rate_bps, fixed_minor)
values ('USD', 500, 0), ('EUR', 500, 0), ('GBP', 500, 0), ('JPY', 500, 0);

/** The platform fee on releasing `amount` minor units of `fee_currency`. */
create or replace function private.platform_fee(amount bigint, fee_currency char(3)) returns bigint
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  schedule private.fee_schedule;
begin
  select * into schedule from private.fee_schedule as f where f.currency = fee_currency;
  if not found then
    raise exception 'no platform fee is set for %', fee_currency
    using errcode = 'PT422', hint = 'add the currency to private.fee_schedule';
  end if;
  -- numeric, not float: exact, and rounded half up
  return least(
    amount,
    schedule.fixed_minor + round(amount::numeric * schedule.rate_bps / 10000)::bigint
  );
end
$$;

/**
 * What releasing `amount_minor` minor units of `currency` would cost the payee, before anyone
 * pays (PostgREST: /rpc/fee_preview): the amount, the platform's fee and the payee's share,
 * from private.platform_fee, the very function a release charges with, so the preview and the
 * charge cannot differ. For signed-in clients; PT422 for an amount that is not a positive
 * whole number of minor units, or a currency with no fee. Security definer: the schedule is
 * not the client's to read.
 */
create or replace function public.fee_preview(amount_minor bigint, currency text)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  code char(3);
  fee bigint;
begin
  if amount_minor is null or amount_minor <= 0 then
    raise exception 'a fee is previewed for a positive amount, in minor units'
    using errcode = 'PT422';
  end if;
  if coalesce(currency, '') !~ '^[A-Za-z]{3}$' then
    raise exception 'a currency is a three-letter ISO 4217 code'
    using errcode = 'PT422';
  end if;
  code := upper(currency);
  fee := private.platform_fee(amount_minor, code);
  return jsonb_build_object(
    'amount_minor', amount_minor,
    'currency', code,
    'fee_minor', fee,
    'payee_minor', amount_minor - fee
  );
end
$$;

grant execute on function fee_preview(bigint, text) to authenticated;

-- Section: retention of payment records
--
-- The payment policy keeps transaction records, payment metadata and dispute information seven
-- years after they close, and account balances for ever (the audit log's ten years are
-- audit_chain.sql's). So private.purge_closed_records() removes, once the seven years have
-- passed since their last change, the milestone payments that are closed (released, refunded,
-- split, canceled or failed) together with what belongs to them alone: their disputes (all
-- closed), funding attempts, processor inconsistencies (all resolved), refund obligations (all
-- settled), notifications and processor transactions (none pending). A payment any of whose
-- records changed within the seven years is kept whole, with them. Processor transactions of
-- no payment, closed seven years ago, go too. The ledger is never purged: its transfers and
-- entries are the balances, which are kept for ever and still reconcile.
--
-- The records purged are each guarded against deletes (disputes.sql, stripe_border.sql): each
-- guard lets a delete through only while the purge runs in the transaction and only for a row
-- past the retention (private.purging_closed_records). Each delete leaves its audit row, as
-- any does; the purge adds one of its own, with what it removed.

/**
 * How long a closed payment record is kept after its last change: 7 years, the payment
 * policy's retention of transaction records, payment metadata and disputes. A constant, not a
 * setting: shortening it takes a migration.
 */
create or replace function private.record_retention() returns interval
language sql
immutable
set search_path = ''
as $$
  select interval '7 years'
$$;

/**
 * True while private.purge_closed_records() runs in this transaction and `last_change` is
 * older than the retention: the guards of the purged records let its deletes through.
 */
create or replace function private.purging_closed_records(last_change timestamptz) returns boolean
language sql
stable
set search_path = ''
as $$
  select coalesce(
    current_setting('payguard.purging_closed_records', true)
    = pg_catalog.pg_current_xact_id()::text
    and last_change < now() - private.record_retention(),
    false
  )
$$;

/**
 * Remove the closed payment records past the retention (see above), and write an audit row of
 * the run (`operation = 'PURGE'`, entity_type `closed_records`). Returns what it removed.
 * Only its owner executes it (`payguard retention purge`, or pg_cron).
 */
create or replace function private.purge_closed_records() returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  cutoff timestamptz := now() - private.record_retention();
  payments uuid [];
  intents text [];
  removed jsonb := '{}'::jsonb;
  n bigint;
  actor private.audit_actor;
  summary jsonb;
begin
  -- The guards of the purged records let this transaction's deletes of old rows through.
  perform set_config(
    'payguard.purging_closed_records', pg_catalog.pg_current_xact_id()::text, true
  );
  select coalesce(array_agg(mp.id), array[]::uuid []),
    coalesce(array_agg(mp.processor_payment_intent_id)
      filter (where mp.processor_payment_intent_id is not null), array[]::text [])
  into payments, intents
  from public.milestone_payments as mp
  where mp.status in ('released', 'refunded', 'split', 'canceled', 'failed')
    and mp.updated_at < cutoff
    and not exists (
      select from public.disputes as d
      where d.milestone_payment_id = mp.id and (d.status = 'open' or d.updated_at >= cutoff)
    )
    and not exists (
      select from public.funding_attempts as f
      where f.milestone_payment_id = mp.id and f.updated_at >= cutoff
    )
    and not exists (
      select from public.processor_inconsistencies as i
      where i.milestone_payment_id = mp.id and (i.resolution is null or i.updated_at >= cutoff)
    )
    and not exists (
      select from private.refund_obligations as o
      where o.milestone_payment_id = mp.id
        and (o.status in ('due', 'sent') or o.updated_at >= cutoff)
    )
    and not exists (
      select from public.payment_transactions as t
      where t.processor_transaction_id = mp.processor_payment_intent_id
        and (t.status = 'pending' or t.updated_at >= cutoff)
    );

  delete from public.notifications as x where x.milestone_payment_id = any(payments);
  get diagnostics n = row_count;
  removed := removed || jsonb_build_object('notifications', n);
  delete from private.refund_obligations as x where x.milestone_payment_id = any(payments);
  get diagnostics n = row_count;
  removed := removed || jsonb_build_object('refund_obligations', n);
  delete from public.processor_inconsistencies as x where x.milestone_payment_id = any(payments);
  get diagnostics n = row_count;
  removed := removed || jsonb_build_object('processor_inconsistencies', n);
  delete from public.funding_attempts as x where x.milestone_payment_id = any(payments);
  get diagnostics n = row_count;
  removed := removed || jsonb_build_object('funding_attempts', n);
  delete from public.disputes as x where x.milestone_payment_id = any(payments);
  get diagnostics n = row_count;
  removed := removed || jsonb_build_object('disputes', n);
  delete from public.milestone_payments as x where x.id = any(payments);
  get diagnostics n = row_count;
  removed := removed || jsonb_build_object('milestone_payments', n);
  -- The processor transactions of those payments, and those of no payment, closed long ago.
  delete from public.payment_transactions as t
  where t.status <> 'pending' and t.updated_at < cutoff
    and (
      t.processor_transaction_id = any(intents)
      or not exists (
        select from public.milestone_payments as mp
        where mp.processor_payment_intent_id = t.processor_transaction_id
      )
    );
  get diagnostics n = row_count;
  removed := removed || jsonb_build_object('payment_transactions', n);

  summary := jsonb_build_object('older_than', cutoff, 'removed', removed);
  actor := private.audit_actor();
  insert into public.payment_audit_logs (
    operation, entity_type, entity_id, user_id, user_role, ip_address, user_agent,
    new_values, success, metadata
  )
  values (
    'PURGE', 'closed_records', cutoff::text, actor.user_id, actor.user_role, actor.ip_address,
    actor.user_agent, summary, true, actor.metadata
  );
  return summary;
end
$$;

/**
 * Schedule the purge of closed records with pg_cron, daily at 03:17 UTC, where the extension
 * is installed in this database; a job of the same name is replaced, so it is safe to run
 * again. Returns what it did.
 */
create or replace function private.schedule_closed_records_purge() returns text
language plpgsql
set search_path = ''
as $$
begin
  return private.schedule_job(
    'payguard-closed-records-purge', '17 3 * * *', 'select private.purge_closed_records()',
    'purge with `payguard retention purge`'
  );
end
$$;

select private.schedule_closed_records_purge();
