-- Processor tokens are kept out of Stripe's events as the database stores them: a payload
-- that names one in the clear is refused (55000: not a refusal of the event, so Stripe delivers
-- it again, to the stripe-webhook function that passes lookups), and a database whose stored
-- events still name one is refused until `payguard keys rotate` has replaced each with its
-- lookup. The processor's words of a failed payout, which the owner reads, name no token nor
-- lookup. A lookup moves to another index key only during a recorded run of `keys reindex`.
-- withdrawals_to_reverse() hands back no connected account: a reversal needs none.

set local check_function_bodies = off;

/**
 * `message` with each processor token in it (a `pm_`, `cus_`, `acct_`, `ba_` or `card_` id at a
 * word's start) replaced by its kind alone, `[acct_…]`, and each token's lookup (`kid:` and 43
 * base64url characters, as the stripe-webhook function passes a token) by `[lookup]`: for the
 * words of a refusal or a failure, the processor's or the database's, kept where staff or the
 * user read them.
 */
create or replace function private.without_processor_ids(message text) returns text
language sql
immutable
set search_path = ''
as $$
  select regexp_replace(
    regexp_replace(message, '\m(pm|cus|acct|ba|card)_[A-Za-z0-9]{6,}', '[\1_…]', 'g'),
    '(?<![A-Za-z0-9_.-])[A-Za-z0-9_.-]{1,64}:[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])', '[lookup]', 'g'
  )
$$;

/**
 * Whether `value` (a jsonb document) holds a processor token in the clear in one of its strings:
 * a `pm_`, `cus_`, `acct_`, `ba_` or `card_` id not glued to a letter or digit before it, then
 * at least eight letters or digits with a capital or a digit among them (Stripe's ids are
 * random; its words `card_present`, `card_payments` are not ids). The stripe-webhook function
 * (`stripe-webhook/lookups.ts`) and `payguard keys scan` look for the same.
 */
create or replace function private.holds_processor_token(value jsonb) returns boolean
language sql
immutable
set search_path = ''
as $$
  select exists (
    select from jsonb_path_query(value, 'strict $.**') as item
    where jsonb_typeof(item) = 'string'
      and item #>> '{}'
      ~ '(?<![A-Za-z0-9])(pm|cus|acct|ba|card)_(?=[A-Za-z0-9]*[A-Z0-9])[A-Za-z0-9]{8,}'
  )
$$;

grant execute on function private.holds_processor_token(jsonb) to payment_service;

do $$
declare
  unsealed bigint;
begin
  select count(*) into unsealed from public.webhook_events as e
  where private.holds_processor_token(e.payload);
  if unsealed > 0 then
    raise exception '% stored webhook events name a processor token in the clear: run '
    '`payguard keys rotate` (it replaces each with its lookup), then deploy again', unsealed
    using errcode = 'PT409',
    hint = 'this migration then refuses any payload that names a token in the clear';
  end if;
end
$$;

/**
 * BEFORE INSERT OR UPDATE trigger on webhook_events: a payload keeps no processor token in the
 * clear (private.holds_processor_token). The stripe-webhook function passes each one as its
 * lookup, so an event that still names one came another way (a function deployed before it, a
 * direct write): it is refused with an error that is not a refusal of the event (55000, object
 * not in prerequisite state), so that nothing is recorded and Stripe delivers it again, to the
 * function that passes lookups.
 */
create or replace function private.refuse_processor_tokens_in_payload() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if private.holds_processor_token(new.payload) then
    raise exception 'webhook event %: its payload names a processor token in the clear', new.id
    using errcode = '55000',
    hint = 'the stripe-webhook function passes each token as its lookup; deliver it again';
  end if;
  return new;
end
$$;

create trigger refuse_processor_tokens
before insert or update of payload on public.webhook_events
for each row execute function private.refuse_processor_tokens_in_payload();

/**
 * Whether a lookup may change from `old_lookup` to `new_lookup` in this transaction: the
 * same token moved to another index key by `payguard keys reindex`, run by the owner of table
 * `relation`, in a transaction whose `payguard.token_reindex` names the new lookup's key, while
 * a run of kind index to that key is recorded as running.
 */
create or replace function private.token_reindexing(
  relation oid, old_lookup text, new_lookup text
) returns boolean
language plpgsql
stable
set search_path = ''
as $$
begin
  if coalesce(
    nullif(current_setting('payguard.token_reindex', true), '') = split_part(new_lookup, ':', 1)
    and split_part(old_lookup, ':', 1) <> split_part(new_lookup, ':', 1)
    and current_user = (select pg_get_userbyid(c.relowner) from pg_catalog.pg_class as c
      where c.oid = relation),
    false
  ) then
    -- and a run of `keys reindex` to that key is under way (only the owner reads the runs)
    return exists (
      select from private.token_key_rotations as r
      where r.kind = 'index' and r.status = 'running'
        and r.target_kid = split_part(new_lookup, ':', 1)
    );
  end if;
  return false;
end
$$;

/**
 * payout.paid / payout.failed / payout.canceled: complete or fail the withdrawal whose
 * recorded payout id is the payout's, on the withdrawal's own connected account, for its
 * amount and currency. Metadata alone names nothing, and an event never moves an approved
 * withdrawal. A canceled payout (by the platform, or by Stripe, while pending) is back on the
 * connected account's balance as a failed one is: it fails the withdrawal, with the reason "the
 * processor canceled the payout" when the payout names none, and the reservation is kept until
 * the transfer is reversed. A payout no withdrawal records is ignored: recorded, and applied by
 * record_withdrawal_payout if that payout is recorded later (`payguard reconcile --stripe`
 * reports live payouts no withdrawal records).
 */
create or replace function private.apply_payout_event(event jsonb) returns text
language plpgsql
set search_path = ''
as $$
declare
  object jsonb := event -> 'data' -> 'object';
  event_type text := event ->> 'type';
  withdrawal public.withdrawals;
  amount bigint;
  object_currency char(3);
  named text;
  -- The connected account the event happened on; none for the platform's own objects.
  connected text := nullif(event ->> 'account', '');
  payout_account text;
begin
  amount := private.event_amount(object, 'amount');
  object_currency := private.event_currency(object);
  select * into withdrawal from public.withdrawals as w
  where w.processor_payout_id = object ->> 'id'
  for update;
  if not found then
    -- The payout's metadata may name the withdrawal whose payout is being recorded right now:
    -- its lock orders this event after record_withdrawal_payout, which then either sees this
    -- event kept or has recorded the id. Metadata alone never moves anything.
    named := object -> 'metadata' ->> 'withdrawal_id';
    if coalesce(named, '') ~* '^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$' then
      select * into withdrawal from public.withdrawals as w
      where w.id = named::uuid
      for update;
    end if;
    if withdrawal.id is null or withdrawal.processor_payout_id is distinct from object ->> 'id'
      then
      return 'ignored';
    end if;
  end if;
  -- A payout is made on the withdrawal's connected account.
  select pm.processor_account_id_lookup into payout_account from public.payout_methods as pm
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
    perform private.fail_withdrawal(
      withdrawal.id,
      -- The owner reads the reason: the processor's words name no token, nor its lookup.
      left(coalesce(
        nullif(private.without_processor_ids(object ->> 'failure_message'), ''),
        nullif(private.without_processor_ids(object ->> 'failure_code'), ''),
        case
          when event_type = 'payout.canceled' then 'the processor canceled the payout'
          else 'the processor reported the payout failed'
        end
      ), 500),
      'stripe:' || (object ->> 'id') || ':failed'
    );
  end if;
  return 'processed';
end
$$;

drop function public.withdrawals_to_reverse();

/**
 * The withdrawals that failed or were canceled after their transfer, whose transfer is neither
 * reversed nor left with the payee (payment_service): the amount and currency, the transfer
 * (a reversal needs no connected account), the reversal's attempt and the key to
 * send it under, with the reversal's back-off: `refusals` (recorded refusals of its
 * reversal), `retry_after` (when a refused reversal is next tried: 2^(refusals-1) hours after
 * the last refusal; null when there was none, and after the fifth) and `due` (no refusal yet,
 * or retry_after passed, and fewer than five refusals).
 */
create or replace function public.withdrawals_to_reverse()
returns table (
  withdrawal_id uuid,
  status text,
  amount_minor bigint,
  currency char(3),
  processor_transfer_id text,
  reversal_attempt integer,
  reversal_idempotency_key text,
  refusals integer,
  retry_after timestamptz,
  due boolean
)
language sql
stable
set search_path = ''
as $$
  select
    w.id, w.status::text, w.amount_minor, w.currency, w.processor_transfer_id, r.attempt,
    private.withdrawal_step_key(w.id, 'reversal', r.attempt),
    f.refusals, b.retry_after,
    f.refusals = 0 or (f.refusals < 5 and b.retry_after <= now())
  from public.withdrawals as w
  cross join lateral (
    select private.withdrawal_step_attempt(w.id, 'reversal') as attempt
  ) as r
  cross join lateral (
    select count(*)::integer as refusals, max(a.created_at) as last_refused
    from public.withdrawal_processor_attempts as a
    where a.withdrawal_id = w.id and a.step = 'reversal' and a.status = 'failed'
  ) as f
  cross join lateral (
    select case when f.refusals between 1 and 4
        then f.last_refused + interval '1 hour' * power(2, f.refusals - 1)
      end as retry_after
  ) as b
  where w.status in ('failed', 'canceled') and w.processor_transfer_id is not null
    and not exists (
      select from public.withdrawal_processor_attempts as a
      where a.withdrawal_id = w.id and a.step = 'reversal' and a.status = 'succeeded'
    )
    and not exists (
      select from public.processor_inconsistencies as i
      where i.kind = 'transfer_unreversed' and i.processor_object_id = w.processor_transfer_id
        and i.resolution is not null
    )
  order by w.updated_at, w.id
$$;

revoke execute on function public.withdrawals_to_reverse() from service_role;

grant execute on function public.withdrawals_to_reverse() to payment_service;
