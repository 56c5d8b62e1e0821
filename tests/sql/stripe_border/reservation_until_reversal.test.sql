-- A withdrawal that ends unpaid after its transfer keeps its money reserved until the transfer
-- is reversed: the money is on the contractor's connected account, so it is not back in the
-- wallet, and no new withdrawal can send it out a second time. Recording the reversal voids
-- the reservation, once. A withdrawal that ends unpaid before any transfer is voided at once.
begin;
select plan(12);

-- Its payout methods are new and withdrawn to at once: their cool-down is lifted (the
-- cool-down's own tests: withdrawals/payout_method_cool_down.test.sql).
update private.settings set value = '0' where key = 'payout_method_cool_down_seconds';

select tests.let_roles_call_pgtap('payment_service', 'admin');

-- carl has 300.00 USD; w1 (100.00) and w2 (200.00) are requested
update private.settings set value = (
  select jsonb_object_agg(level, jsonb_build_object('calls', 1000, 'seconds', 60))
  from unnest(array['low', 'medium', 'high']) as level
)
where key = 'velocity_limits';
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('ada');
update public.users set role = 'admin' where id = tests.get_supabase_uid('ada');
insert into public.payout_methods (id, user_id, type, processor_account_id_lookup, processor_external_account_id_sealed, processor_external_account_id_lookup, currency)
values ('c0000000-0000-4000-8000-0000000000d1', tests.get_supabase_uid('carl'), 'bank_account',
  tests.token_lookup('acct_1Carl01'), tests.sealed_token(), tests.token_lookup('ba_1Carl01'), 'USD');
select tests.verify_connected_account('acct_1Carl01');
select tests.fund_wallet(tests.get_supabase_uid('carl'), 30000);
insert into public.withdrawals (id, user_id, payout_method_id, amount_minor, currency)
select format('d0000000-0000-4000-8000-00000000000%s', n)::uuid, tests.get_supabase_uid('carl'),
  'c0000000-0000-4000-8000-0000000000d1', 10000 * n, 'USD'
from generate_series(1, 2) as n;

/** carl's withdrawable USD, as he reads it. */
create function pg_temp.withdrawable() returns bigint
language plpgsql as $$
declare
  amount bigint;
begin
  perform tests.authenticate_as('carl');
  select b.withdrawable_minor into amount from public.my_wallet_balances() as b
  where b.currency = 'USD';
  reset role;
  return amount;
end
$$;

/** How many times withdrawal `w`'s reservation was voided. */
create function pg_temp.voids(w uuid) returns integer
language sql as $$
  select count(*)::int from private.ledger_transfers as t
  where t.pending_id = private.withdrawal_reservation(w) and t.kind = 'void_pending'
$$;

select is(pg_temp.withdrawable(), 0::bigint, 'both withdrawals reserve all of carl''s money');

-- w1: transferred and paid out; the payout fails (the bank returned it)
select tests.authenticate_as_service('payment_service');
select public.record_withdrawal_transfer('d0000000-0000-4000-8000-000000000001', 'tr_W1');
select public.record_withdrawal_payout('d0000000-0000-4000-8000-000000000001', 'po_W1');
select is(
  public.apply_stripe_event(tests.stripe_event('payout.failed', '{"id": "po_W1", "object": "payout",
    "amount": 10000, "currency": "usd", "status": "failed", "failure_code": "account_closed",
    "failure_message": "The bank account has been closed."}') || jsonb_build_object('account', tests.token_lookup('acct_1Carl01')))
  ->> 'status',
  'processed',
  'payout.failed fails w1'
);
reset role;
select results_eq(
  $$select status::text, pg_temp.voids(id) from public.withdrawals
    where id = 'd0000000-0000-4000-8000-000000000001'$$,
  $$values ('failed', 0)$$,
  'w1 is failed, and its reservation is not voided: the money is on the connected account'
);
select is(pg_temp.withdrawable(), 0::bigint, 'so it is not back in the wallet');
select throws_ok(
  $$insert into public.withdrawals (user_id, payout_method_id, amount_minor, currency)
    values (tests.get_supabase_uid('carl'), 'c0000000-0000-4000-8000-0000000000d1', 10000, 'USD')$$,
  'PT409',
  'withdrawal of 10000 USD exceeds the 0 USD available to withdraw',
  'and cannot be withdrawn a second time while the transfer stands'
);
select throws_ok(
  $$select private.void_reversed_withdrawal_reservation('d0000000-0000-4000-8000-000000000001')$$,
  'PT409',
  'withdrawal d0000000-0000-4000-8000-000000000001 has no recorded reversal of its transfer: its money stays reserved',
  'nothing voids it before the reversal is recorded'
);

-- the reversal is recorded: the money is back on the platform, and in the wallet
select tests.authenticate_as_service('payment_service');
select is(
  public.record_withdrawal_transfer_reversal('d0000000-0000-4000-8000-000000000001', 'trr_W1')
    ->> 'reversal_id',
  'trr_W1',
  'payment_service records the reversal'
);
select is(
  public.record_withdrawal_transfer_reversal('d0000000-0000-4000-8000-000000000001', 'trr_W1')
    ->> 'reversal_id',
  'trr_W1',
  'and the same again changes nothing'
);
reset role;
select is(pg_temp.voids('d0000000-0000-4000-8000-000000000001'), 1, 'its reservation is voided, once');
select is(pg_temp.withdrawable(), 10000::bigint, 'the money is back in the wallet');

-- w2: canceled by an admin before any transfer: voided at once
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
update public.withdrawals
set status = 'canceled', failure_reason = 'Canceled by operations after a fraud report'
where id = 'd0000000-0000-4000-8000-000000000002';
reset role;
select is(pg_temp.voids('d0000000-0000-4000-8000-000000000002'), 1,
  'a withdrawal canceled before its transfer has its reservation voided at once');
select is(pg_temp.withdrawable(), 30000::bigint, 'all of carl''s money is back');

select * from finish();
rollback;
