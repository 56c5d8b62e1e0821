-- Retention of payment records: closed milestone payments, with their disputes, funding
-- attempts, processor inconsistencies, refund obligations, notifications and processor
-- transactions, are removed seven years after their last change
-- (private.purge_closed_records, `payguard retention purge`, daily with pg_cron where it is
-- installed); the ledger, which holds the balances, is kept for ever. The guards of those
-- records let the purge's deletes through, and only those. See supabase/schemas/transactions.sql,
-- section "retention of payment records".

set local check_function_bodies = off;

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
  if not exists (select from pg_catalog.pg_extension as e where e.extname = 'pg_cron') then
    return 'pg_cron is not installed in this database: nothing scheduled; purge with '
      || '`payguard retention purge`';
  end if;
  -- Dynamic, its schema named apart: the cron schema exists only where the extension does.
  execute format('select %I.schedule($1, $2, $3)', 'cron') using
    'payguard-closed-records-purge', '17 3 * * *', 'select private.purge_closed_records()';
  return 'scheduled with pg_cron: payguard-closed-records-purge';
end
$$;

select private.schedule_closed_records_purge();

/**
 * BEFORE DELETE trigger on disputes: a closed dispute is a settled record and is never
 * deleted, by any role (no API role may delete disputes at all; this holds the tables' owner
 * too), but by the retention purge seven years after its last change
 * (private.purging_closed_records, transactions.sql).
 */
create or replace function private.keep_closed_disputes() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if old.status <> 'open' and not private.purging_closed_records(old.updated_at) then
    raise exception 'dispute % is %: a closed dispute is never deleted', old.id, old.status
    using errcode = 'PT409';
  end if;
  return old;
end
$$;

/**
 * An attempt's facts are set once: what it charges never changes, its PaymentIntent id is
 * recorded once, and it ends once (open to failed or succeeded; a failed one may still
 * succeed), with a failure code only when it fails. Attempts are never deleted, but by the
 * retention purge seven years after their last change (private.purging_closed_records,
 * transactions.sql).
 */
create or replace function private.check_funding_attempt() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  -- The lookups it charged, as they stand after the update: `payguard keys reindex` alone
  -- moves them to a new index key (the same tokens).
  method_lookup text := new.processor_payment_method_id_lookup;
  customer_lookup text := new.processor_customer_id_lookup;
begin
  if tg_op = 'DELETE' then
    -- Nested: the roles that update it need not execute the retention's test.
    if private.purging_closed_records(old.updated_at) then
      return old;
    end if;
    raise exception 'funding attempt % is a record of a charge: it is never deleted', old.id
    using errcode = 'PT409';
  end if;
  if method_lookup is distinct from old.processor_payment_method_id_lookup
    and private.token_reindexing(tg_relid, old.processor_payment_method_id_lookup, method_lookup)
    then
    method_lookup := old.processor_payment_method_id_lookup;
  end if;
  if customer_lookup is distinct from old.processor_customer_id_lookup
    and private.token_reindexing(tg_relid, old.processor_customer_id_lookup, customer_lookup)
    then
    customer_lookup := old.processor_customer_id_lookup;
  end if;
  if (
    new.id, new.milestone_payment_id, new.attempt, method_lookup, customer_lookup,
    new.amount_minor, new.currency, new.idempotency_key
  ) is distinct from (
    old.id, old.milestone_payment_id, old.attempt, old.processor_payment_method_id_lookup,
    old.processor_customer_id_lookup, old.amount_minor, old.currency, old.idempotency_key
  ) or new.payment_method_id is distinct from old.payment_method_id
  and new.payment_method_id is not null then
    raise exception 'funding attempt % of milestone payment %: what it charges never changes',
    old.attempt, old.milestone_payment_id
    using errcode = 'PT409';
  end if;
  if new.processor_payment_intent_id is distinct from old.processor_payment_intent_id
    and old.processor_payment_intent_id is not null then
    raise exception 'funding attempt % of milestone payment % is PaymentIntent %, not %',
    old.attempt, old.milestone_payment_id, old.processor_payment_intent_id,
    new.processor_payment_intent_id
    using errcode = 'PT409';
  end if;
  -- A PaymentIntent that failed may still succeed when it is confirmed again (3-D Secure).
  if new.status is distinct from old.status and old.status <> 'open'
    and (old.status, new.status) is distinct from ('failed', 'succeeded') then
    raise exception 'funding attempt % of milestone payment % has %: it ends once',
    old.attempt, old.milestone_payment_id, old.status
    using errcode = 'PT409';
  end if;
  if (new.failure_code, new.failure_message)
    is distinct from (old.failure_code, old.failure_message)
    and (old.status <> 'open' or new.status <> 'failed') then
    raise exception 'funding attempt % of milestone payment %: its failure is recorded once, '
    'when it fails', old.attempt, old.milestone_payment_id
    using errcode = 'PT409';
  end if;
  return new;
end
$$;

/**
 * An inconsistency is a record: never deleted (but by the retention purge seven years after
 * its last change: private.purging_closed_records, transactions.sql), its facts never change,
 * its recovery and its resolution are each set once. One exception: a charge marked to be
 * refunded that funds its payment before it is refunded is resolved as funded, its recovery
 * turning from 'refund' to 'fund' with that resolution.
 */
create or replace function private.keep_processor_inconsistency() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if tg_op = 'DELETE' then
    -- Nested: the roles that update it need not execute the retention's test.
    if private.purging_closed_records(old.updated_at) then
      return old;
    end if;
    raise exception 'processor inconsistency % is a record: it is never deleted', old.id
    using errcode = 'PT409';
  end if;
  if (
    new.id, new.kind, new.processor_object_id, new.milestone_payment_id, new.webhook_event_id,
    new.amount_minor, new.currency, new.detail, new.created_at
  ) is distinct from (
    old.id, old.kind, old.processor_object_id, old.milestone_payment_id, old.webhook_event_id,
    old.amount_minor, old.currency, old.detail, old.created_at
  ) then
    raise exception 'processor inconsistency %: what was found never changes', old.id
    using errcode = 'PT409';
  end if;
  if new.recovery is distinct from old.recovery and old.recovery is not null
    and not (
      old.recovery = 'refund' and new.recovery = 'fund' and old.resolution is null
      and new.resolution is not null and private.settled_by_funding(old.kind)
      and exists (
        select from public.milestone_payments as mp
        where mp.processor_payment_intent_id = old.processor_object_id
      )
    ) then
    raise exception 'processor inconsistency % is recovered by %: set once', old.id, old.recovery
    using errcode = 'PT409';
  end if;
  if new.resolution is distinct from old.resolution and old.resolution is not null then
    raise exception 'processor inconsistency % was resolved at %: its resolution is set once',
    old.id, old.resolved_at
    using errcode = 'PT409';
  end if;
  new.resolved_at := case
    when old.resolution is null and new.resolution is not null then now() else old.resolved_at
  end;
  return new;
end
$$;

/**
 * An obligation is a record: never deleted (but by the retention purge seven years after its
 * last change: private.purging_closed_records, transactions.sql); what is owed never changes;
 * it moves only due → sent → confirmed (due → confirmed when charge.refunded comes first), or due →
 * canceled; its attempt only grows, and only while it is due; Stripe's refund id is set once.
 */
create or replace function private.keep_refund_obligation() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if tg_op = 'DELETE' then
    -- Nested: the roles that update it need not execute the retention's test.
    if private.purging_closed_records(old.updated_at) then
      return old;
    end if;
    raise exception 'refund obligation % is a record: it is never deleted', old.id
    using errcode = 'PT409';
  end if;
  if (
    new.id, new.idempotency_key, new.reason, new.milestone_payment_id,
    new.processor_inconsistency_id, new.payment_intent_id, new.amount_minor, new.currency,
    new.created_at
  ) is distinct from (
    old.id, old.idempotency_key, old.reason, old.milestone_payment_id,
    old.processor_inconsistency_id, old.payment_intent_id, old.amount_minor, old.currency,
    old.created_at
  ) then
    raise exception 'refund obligation %: what is owed never changes', old.id
    using errcode = 'PT409';
  end if;
  if new.status is distinct from old.status and (old.status || '>' || new.status) not in (
    'due>sent', 'due>confirmed', 'sent>confirmed', 'due>canceled'
  ) then
    raise exception 'refund obligation % cannot go from % to %', old.id, old.status, new.status
    using errcode = 'PT409';
  end if;
  if new.attempt <> old.attempt and (new.attempt <> old.attempt + 1 or old.status <> 'due') then
    raise exception 'refund obligation %: its attempt moves on by one, while it is due', old.id
    using errcode = 'PT409';
  end if;
  if old.processor_refund_id is not null
    and new.processor_refund_id is distinct from old.processor_refund_id then
    raise exception 'refund obligation % was refunded by %: set once', old.id,
    old.processor_refund_id
    using errcode = 'PT409';
  end if;
  return new;
end
$$;
