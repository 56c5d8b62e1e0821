-- payout.canceled ends a withdrawal as payout.failed does: the withdrawal fails with "the
-- processor canceled the payout", its reservation is kept until its transfer is reversed (the
-- money is back on the connected account), and a transfer_unreversed inconsistency reports it.
-- Only the payout recorded for the withdrawal moves it; a cancellation that arrives before the
-- payout is recorded is kept and applied when it is; a cancellation of a paid payout is refused.
begin;
select plan(8);

-- Its payout methods are new and withdrawn to at once: their cool-down is lifted (the
-- cool-down's own tests: withdrawals/payout_method_cool_down.test.sql).
update private.settings set value = '0' where key = 'payout_method_cool_down_seconds';

select tests.let_roles_call_pgtap('payment_service');

update private.settings set value = (
  select jsonb_object_agg(level, jsonb_build_object('calls', 1000, 'seconds', 60))
  from unnest(array['low', 'medium', 'high']) as level
)
where key = 'velocity_limits';
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
insert into public.payout_methods (id, user_id, type, processor_account_id_lookup, processor_external_account_id_sealed, processor_external_account_id_lookup, currency)
values ('c0000000-0000-4000-8000-0000000000d1', tests.get_supabase_uid('carl'), 'bank_account',
  tests.token_lookup('acct_1Carl01'), tests.sealed_token(), tests.token_lookup('ba_1Carl01'), 'USD');
select tests.verify_connected_account('acct_1Carl01');
select tests.fund_wallet(tests.get_supabase_uid('carl'), 60000);
insert into public.withdrawals (id, user_id, payout_method_id, amount_minor, currency)
select format('d0000000-0000-4000-8000-00000000000%s', n)::uuid, tests.get_supabase_uid('carl'),
  'c0000000-0000-4000-8000-0000000000d1', 10000 * n, 'USD'
from generate_series(1, 3) as n;

/** payout.canceled of payout `payout_id` (`amount` USD cents) on carl's account. */
create function pg_temp.canceled(payout_id text, amount bigint) returns jsonb
language sql as $$
  select public.apply_stripe_event(tests.stripe_event('payout.canceled', jsonb_build_object(
    'id', payout_id, 'object', 'payout', 'amount', amount, 'currency', 'usd',
    'status', 'canceled')) || jsonb_build_object('account', tests.token_lookup('acct_1Carl01')))
$$;
grant execute on function pg_temp.canceled(text, bigint) to payment_service;

-- w1: transferred and paid out; Stripe cancels the payout
select tests.authenticate_as_service('payment_service');
select public.record_withdrawal_transfer('d0000000-0000-4000-8000-000000000001', 'tr_W1');
select public.record_withdrawal_payout('d0000000-0000-4000-8000-000000000001', 'po_W1');
select is(pg_temp.canceled('po_W1', 10000) ->> 'status', 'processed', 'payout.canceled is applied');
reset role;
select results_eq(
  $$select w.status::text, w.failure_reason, (
      select count(*)::int from private.ledger_transfers as t
      where t.pending_id = private.withdrawal_reservation(w.id) and t.kind <> 'pending'
    )
    from public.withdrawals as w where w.id = 'd0000000-0000-4000-8000-000000000001'$$,
  $$values ('failed', 'the processor canceled the payout', 0)$$,
  'w1 fails; its money stays reserved while the transfer stands on the connected account'
);
select results_eq(
  $$select kind, resolution from public.processor_inconsistencies where processor_object_id = 'tr_W1'$$,
  $$values ('transfer_unreversed', null::text)$$,
  'and its transfer is reported until it is reversed'
);

-- w2: the cancellation arrives before payguard records the payout: kept, then applied
select tests.authenticate_as_service('payment_service');
select public.record_withdrawal_transfer('d0000000-0000-4000-8000-000000000002', 'tr_W2');
select is(pg_temp.canceled('po_W2', 20000) ->> 'status', 'ignored',
  'a cancellation of a payout no withdrawal records yet is kept, moving nothing');
select is(
  (select status::text from public.withdrawals where id = 'd0000000-0000-4000-8000-000000000002'),
  'approved', 'w2 is still approved'
);
select is(
  public.record_withdrawal_payout('d0000000-0000-4000-8000-000000000002', 'po_W2') ->> 'status',
  'failed', 'recording w2''s payout applies the kept cancellation'
);

-- w3: paid; a later cancellation of that payout is refused
select public.record_withdrawal_transfer('d0000000-0000-4000-8000-000000000003', 'tr_W3');
select public.record_withdrawal_payout('d0000000-0000-4000-8000-000000000003', 'po_W3');
select public.apply_stripe_event(tests.stripe_event('payout.paid', '{"id": "po_W3",
  "object": "payout", "amount": 30000, "currency": "usd", "status": "paid"}')
  || jsonb_build_object('account', tests.token_lookup('acct_1Carl01')));
select results_eq(
  $$select a ->> 'status', a -> 'error' ->> 'code' from pg_temp.canceled('po_W3', 30000) as a$$,
  $$values ('refused', 'PT409')$$,
  'a cancellation of a paid payout is refused'
);
reset role;
select is(
  (select status::text from public.withdrawals where id = 'd0000000-0000-4000-8000-000000000003'),
  'paid', 'and w3 stays paid'
);

select * from finish();
rollback;
