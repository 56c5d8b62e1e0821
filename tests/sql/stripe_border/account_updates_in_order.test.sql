-- account.updated follows the processor's latest word: each connected account keeps the time
-- (the event's `created`) of the state recorded, and an older update is recorded as ignored,
-- moving nothing; in the same second, the state further along (unverified, pending, verified,
-- restricted) wins whichever arrives last. An update without a creation time is refused.
begin;
select plan(12);

select tests.let_roles_call_pgtap();

select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
select tests.authenticate_as_service('payment_service');
select public.record_processor_account(tests.get_supabase_uid('carl'), tests.token_lookup('acct_1CarlOrder01'));
reset role;
select tests.authenticate_as('carl', aal => 'aal2', role_name => 'payment_service');
insert into public.payout_methods (
  type, processor_account_id_lookup, processor_external_account_id_sealed, processor_external_account_id_lookup, currency
) values ('bank_account', tests.token_lookup('acct_1CarlOrder01'), tests.sealed_token(), tests.token_lookup('ba_1CarlOrder01'), 'USD');
reset role;

/** account.updated of acct_1CarlOrder01 as the processor made it at `at` (epoch seconds). */
create function pg_temp.account_event(object jsonb, at bigint) returns jsonb
language sql
as $$
  select tests.stripe_event('account.updated', '{"id": "acct_1CarlOrder01", "object": "account"}'
    || object) || jsonb_build_object('created', at, 'account', tests.token_lookup('acct_1CarlOrder01'))
$$;
grant execute on function pg_temp.account_event(jsonb, bigint) to payment_service;

create function pg_temp.states() returns table (account text, method text, as_of bigint)
language sql
as $$
  select a.verification_status, pm.verification_status, extract(epoch from a.state_as_of)::bigint
  from public.processor_accounts as a join public.payout_methods as pm using (processor_account_id_lookup)
  where a.processor_account_id_lookup = tests.token_lookup('acct_1CarlOrder01')
$$;

-- Stripe verified the account at 1000 and restricted it at 1010; the restriction arrives first
select tests.authenticate_as_service('payment_service');
select is(
  public.apply_stripe_event(pg_temp.account_event(
    '{"payouts_enabled": false, "requirements": {"disabled_reason": "rejected.fraud"}}', 1010))
    ->> 'status',
  'processed',
  'the restriction (made at 1010) arriving first is applied'
);
select is(
  public.apply_stripe_event(pg_temp.account_event('{"payouts_enabled": true}', 1000))
    ->> 'status',
  'ignored',
  'the verification made before it (1000), arriving late, is ignored'
);
reset role;
select results_eq(
  'select * from pg_temp.states()',
  $$values ('restricted', 'restricted', 1010::bigint)$$,
  'the account and its payout method stay restricted, as of 1010'
);
select is_empty(
  $$select 1 from public.withdrawals_to_pay_out() where user_id = tests.get_supabase_uid('carl')$$,
  'nothing is paid out to it'
);
select results_eq(
  $$select status::text, error_code from public.webhook_events
    where type = 'account.updated' order by status::text$$,
  $$values ('ignored', null::text), ('processed', null::text)$$,
  'both events are recorded: the late one as ignored'
);

-- in order: each newer update applies, the state may go back and forth
select tests.authenticate_as_service('payment_service');
select is(
  public.apply_stripe_event(pg_temp.account_event(
    '{"payouts_enabled": false, "requirements": {"disabled_reason": "requirements.past_due"}}',
    1020)) ->> 'status',
  'processed',
  'a newer update applies'
);
select is(
  public.apply_stripe_event(pg_temp.account_event('{"payouts_enabled": true}', 1030))
    ->> 'status',
  'processed',
  'and the next one'
);
reset role;
select results_eq(
  'select * from pg_temp.states()',
  $$values ('verified', 'verified', 1030::bigint)$$,
  'the latest word holds: verified as of 1030'
);

-- the same second: the state further along wins, in either order
select tests.authenticate_as_service('payment_service');
select is(
  public.apply_stripe_event(pg_temp.account_event(
    '{"payouts_enabled": false, "requirements": {"disabled_reason": "rejected.other"}}', 1040))
    ->> 'status'
  || ' ' || (public.apply_stripe_event(pg_temp.account_event('{"payouts_enabled": true}', 1040))
    ->> 'status'),
  'processed ignored',
  'restricted then verified in one second: the verification is ignored'
);
select is(
  public.apply_stripe_event(pg_temp.account_event('{"payouts_enabled": true}', 1050))
    ->> 'status'
  || ' ' || (public.apply_stripe_event(pg_temp.account_event(
    '{"payouts_enabled": false, "requirements": {"disabled_reason": "rejected.other"}}', 1050))
    ->> 'status'),
  'processed processed',
  'verified then restricted in one second: both apply'
);
reset role;
select results_eq(
  'select * from pg_temp.states()',
  $$values ('restricted', 'restricted', 1050::bigint)$$,
  'restricted either way'
);

-- an update without its time cannot be placed: refused
select tests.authenticate_as_service('payment_service');
select results_eq(
  $$select a ->> 'status', a -> 'error' ->> 'code'
    from public.apply_stripe_event(pg_temp.account_event('{"payouts_enabled": true}', 1060)
      - 'created') as a$$,
  $$values ('refused', 'PT422')$$,
  'an account.updated with no created time is refused'
);

select * from finish();
rollback;
