-- A connected account's verification follows the processor's latest word, not the last to
-- arrive.
--
-- account.updated was applied in arrival order, and Stripe does not promise order: an account
-- that Stripe verified and then restricted (rejected for fraud, say) stayed verified when the
-- two events arrived swapped, and its approved withdrawals were transferred to it. Now each
-- account keeps the processor's time of the state it holds (`state_as_of`, the event's
-- `created`), and an older account.updated is recorded as ignored, moving nothing. Stripe's
-- `created` counts whole seconds, so two updates of one second cannot be told apart by it:
-- then the state further along the account's course wins (unverified, pending, verified,
-- restricted: a rejection is Stripe's last word on an account), whichever arrives last.

alter table public.processor_accounts add column state_as_of timestamptz;
-- A time cannot hold card data: the card-data guard and the audit trail name the columns that
-- cannot, and are renewed with the new one.
select private.renew_card_data_guard('public.processor_accounts');
select private.renew_audit_trail('public.processor_accounts');

comment on column public.processor_accounts.state_as_of is
'The processor''s time (account.updated''s created) of the verification state recorded; older '
'updates are ignored.';

/** How far along its course a connected account's verification state is. */
create function private.account_state_rank(state text) returns integer
language sql
immutable
set search_path = ''
as $$
  select case state
    when 'unverified' then 0 when 'pending' then 1 when 'verified' then 2 when 'restricted' then 3
  end
$$;

revoke all on function private.account_state_rank(text) from public;
grant execute on function private.account_state_rank(text) to payment_service;

/**
 * account.updated: the processor's word on a connected account, recorded whether or not its
 * owner or a payout method is known yet, and mirrored on the account's payout methods; an
 * update older than the state recorded is ignored.
 */
create or replace function private.apply_account_updated(event jsonb) returns text
language plpgsql
set search_path = ''
as $$
declare
  object jsonb := event -> 'data' -> 'object';
  connected text := nullif(event ->> 'account', '');
  state text;
  as_of timestamptz;
  recorded public.processor_accounts;
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
  if coalesce(event ->> 'created', '') !~ '^[0-9]{1,12}$' then
    raise exception 'event % has no creation time: its order among the account''s updates '
    'is unknown', event ->> 'id'
    using errcode = 'PT422';
  end if;
  as_of := to_timestamp((event ->> 'created')::bigint);
  state := case
    when (object ->> 'payouts_enabled')::boolean then 'verified'
    when object -> 'requirements' ->> 'disabled_reason' like 'rejected%' then 'restricted'
    else 'pending'
  end;
  insert into public.processor_accounts as a (
    processor_account_id, verification_status, state_as_of
  )
  values (object ->> 'id', 'unverified', null)
  on conflict on constraint processor_accounts_pkey do nothing;
  select * into strict recorded from public.processor_accounts as a
  where a.processor_account_id = object ->> 'id'
  for update;
  if recorded.state_as_of > as_of or (
    recorded.state_as_of = as_of
    and private.account_state_rank(recorded.verification_status)
    > private.account_state_rank(state)
  ) then
    -- The processor said something newer already.
    return 'ignored';
  end if;
  update public.processor_accounts as a
  set verification_status = state, state_as_of = as_of
  where a.processor_account_id = recorded.processor_account_id
    and (a.verification_status, a.state_as_of) is distinct from (state, as_of);
  update public.payout_methods as pm set verification_status = state
  where pm.processor_account_id = object ->> 'id' and pm.verification_status <> state;
  return 'processed';
end
$$;
