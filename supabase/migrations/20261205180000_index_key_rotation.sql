-- Rotating the index key: `payguard keys reindex` moves every lookup to a new index key, and
-- while it does, the functions match a token by the lookup already stored for it under any
-- key they hold (docs/token-envelopes.md).

set local check_function_bodies = off;

alter table private.token_key_rotations
add column kind text not null default 'envelope',
add constraint token_key_rotations_kind_check check (kind in ('envelope', 'index'));

comment on table private.token_key_rotations is
'Each run of payguard keys rotate or reindex: the key it moves to, how far it got, who ran it.';

/**
 * Whether a lookup may change from `old_lookup` to `new_lookup` in this transaction: the
 * same token moved to another index key by `payguard keys reindex`, run by the owner of table
 * `relation`, in a transaction whose `payguard.token_reindex` names the new lookup's key.
 */
create or replace function private.token_reindexing(
  relation oid, old_lookup text, new_lookup text
) returns boolean
language sql
stable
set search_path = ''
as $$
  select coalesce(
    nullif(current_setting('payguard.token_reindex', true), '') = split_part(new_lookup, ':', 1)
    and split_part(old_lookup, ':', 1) <> split_part(new_lookup, ':', 1)
    and current_user = (select pg_get_userbyid(c.relowner) from pg_catalog.pg_class as c
      where c.oid = relation),
    false
  )
$$;

/**
 * The one of `candidates` (a token's lookups, one under each index key the caller holds) that
 * a row stores as that token's own lookup, the first found in the candidates' order; null when
 * none does. While the index is rebuilt under a new key, a function matches and writes a token
 * by the lookup already stored for it. Security definer: it says only whether a token is
 * stored, which payment_service, its one caller, may know.
 */
create or replace function private.stored_token_lookup(candidates text[]) returns text
language sql
stable
security definer
set search_path = ''
as $$
  select found.lookup from (
    select c.processor_customer_id_lookup::text as lookup from public.processor_customers as c
    where c.processor_customer_id_lookup = any(candidates)
    union all
    select m.processor_payment_method_id_lookup::text from public.payment_methods as m
    where m.processor_payment_method_id_lookup = any(candidates)
    union all
    select a.processor_account_id_lookup::text from public.processor_accounts as a
    where a.processor_account_id_lookup = any(candidates)
    union all
    select p.processor_external_account_id_lookup::text from public.payout_methods as p
    where p.processor_external_account_id_lookup = any(candidates)
  ) as found
  order by array_position(candidates, found.lookup)
  limit 1
$$;

-- Every role that may write a token's table runs the set-once triggers, which ask it: it reads
-- only the caller's own setting and role.
grant execute on function private.token_reindexing(oid, text, text)
to authenticated, admin, payment_service, escrow_service, service_role;

grant execute on function private.stored_token_lookup(text[]) to payment_service;

/**
 * BEFORE UPDATE trigger: the lookup columns named as its arguments are set once. A lookup
 * names a row's token; a changed one would be another token under the same row, so a token
 * changes only with its row (a new payment method, a new payout method). `payguard keys
 * reindex` alone moves one to another index key (private.token_reindexing).
 */
create or replace function private.keep_token_lookups() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  old_values jsonb := to_jsonb(old);
  new_values jsonb := to_jsonb(new);
  lookup_column text;
begin
  foreach lookup_column in array tg_argv loop
    if old_values ->> lookup_column is not null
      and new_values ->> lookup_column is distinct from old_values ->> lookup_column
      and not private.token_reindexing(
        tg_relid, old_values ->> lookup_column, new_values ->> lookup_column
      ) then
      raise exception '%.%: a token''s lookup is set once and never changes',
      tg_table_name, lookup_column
      using errcode = 'PT409';
    end if;
  end loop;
  return new;
end
$$;

/** A recorded customer never changes: a user keeps the customer their cards are saved under. */
create or replace function private.keep_processor_customer() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  -- Only its sealed value changes: sealed once known, re-sealed under a newer key; and its
  -- lookup moves to a new index key by `payguard keys reindex` alone.
  if (to_jsonb(new) - 'processor_customer_id_sealed' - 'processor_customer_id_lookup' - 'updated_at')
    is distinct from
    (to_jsonb(old) - 'processor_customer_id_sealed' - 'processor_customer_id_lookup' - 'updated_at')
    or new.processor_customer_id_lookup is distinct from old.processor_customer_id_lookup
    and not private.token_reindexing(
      tg_relid, old.processor_customer_id_lookup, new.processor_customer_id_lookup
    )
  then
    raise exception 'the processor customer of user % is recorded once and never changes',
    old.user_id
    using errcode = 'PT409';
  end if;
  return new;
end
$$;

/**
 * An attempt's facts are set once: what it charges never changes, its PaymentIntent id is
 * recorded once, and it ends once (open to failed or succeeded; a failed one may still
 * succeed), with a failure code only when it fails. Attempts are never deleted.
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
