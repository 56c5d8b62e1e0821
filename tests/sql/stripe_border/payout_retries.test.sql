-- Payout retries and transfer reversals. A refusal the processor answered to a withdrawal's
-- transfer, payout or reversal is recorded once, with its code, and the next attempt of that
-- step gets the next idempotency key (the processor replays a key's first answer, refusals
-- included); a transfer once recorded is never sent again. A withdrawal that fails or is
-- canceled after its transfer opens a transfer_unreversed inconsistency and is listed for its
-- transfer to be reversed; the reversal, recorded once, resolves it.
begin;
select plan(30);

-- Its payout methods are new and withdrawn to at once: their cool-down is lifted (the
-- cool-down's own tests: withdrawals/payout_method_cool_down.test.sql).
update private.settings set value = '0' where key = 'payout_method_cool_down_seconds';

select tests.let_roles_call_pgtap();

-- fixtures, as postgres: carl has 900.00 USD and a payout method; w1 to w3 are approved
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
select tests.fund_wallet(tests.get_supabase_uid('carl'), 900000);
insert into public.withdrawals (id, user_id, payout_method_id, amount_minor, currency)
select format('d0000000-0000-4000-8000-00000000000%s', n)::uuid, tests.get_supabase_uid('carl'),
  'c0000000-0000-4000-8000-0000000000d1', 10000 * n, 'USD'
from generate_series(1, 3) as n;

-- w1: the transfer is made, the payout refused (the account cannot receive payouts yet)
select tests.authenticate_as_service('payment_service');
select public.record_withdrawal_transfer('d0000000-0000-4000-8000-000000000001', 'tr_W1');
select results_eq(
  $$select a ->> 'step', (a ->> 'attempt')::int, a ->> 'failure_code', a ->> 'next_idempotency_key'
    from public.record_withdrawal_processor_failure('d0000000-0000-4000-8000-000000000001',
      'payout', 'withdrawal:d0000000-0000-4000-8000-000000000001:payout', 'payouts_not_allowed',
      'Payouts are not enabled for this account.') as a$$,
  $$values ('payout', 1, 'payouts_not_allowed',
    'withdrawal:d0000000-0000-4000-8000-000000000001:payout:2')$$,
  'a payout the processor refused is recorded with its code, and the next attempt gets the next key'
);
select is(
  public.record_withdrawal_processor_failure('d0000000-0000-4000-8000-000000000001',
    'payout', 'withdrawal:d0000000-0000-4000-8000-000000000001:payout', 'payouts_not_allowed',
    'Payouts are not enabled for this account.') ->> 'attempt',
  '1',
  'the same refusal reported again changes nothing'
);
select is(
  (select count(*)::int from public.withdrawal_processor_attempts),
  1,
  'one refusal is recorded'
);
select results_eq(
  $$select processor_transfer_id, transfer_idempotency_key, payout_idempotency_key,
      transfer_attempt, payout_attempt, last_failure_code
    from public.withdrawals_to_pay_out()
    where withdrawal_id = 'd0000000-0000-4000-8000-000000000001'$$,
  $$values ('tr_W1', 'withdrawal:d0000000-0000-4000-8000-000000000001:transfer',
    'withdrawal:d0000000-0000-4000-8000-000000000001:payout:2', 1, 2, 'payouts_not_allowed')$$,
  'w1 is still due, with its transfer, and its payout is retried under attempt 2''s key'
);
select is(
  (select status::text from public.withdrawals where id = 'd0000000-0000-4000-8000-000000000001'),
  'approved',
  'w1 stays approved, its money reserved'
);
select throws_ok(
  $$select public.record_withdrawal_processor_failure('d0000000-0000-4000-8000-000000000001',
    'payout', 'withdrawal:d0000000-0000-4000-8000-000000000001:payout:5', 'x', 'y')$$,
  'PT409',
  'the payout of withdrawal d0000000-0000-4000-8000-000000000001 is at attempt 2, not under key withdrawal:d0000000-0000-4000-8000-000000000001:payout:5',
  'a refusal under a key that is not the step''s current one is refused'
);
select throws_ok(
  $$select public.record_withdrawal_processor_failure('d0000000-0000-4000-8000-000000000001',
    'transfer', 'withdrawal:d0000000-0000-4000-8000-000000000001:transfer', 'x', 'y')$$,
  'PT409',
  'withdrawal d0000000-0000-4000-8000-000000000001 is approved with transfer tr_W1: its transfer is not being sent',
  'a transfer once recorded is never sent again, so no refusal of it is recorded'
);

-- w2: the transfer is refused; its next attempt gets the next key; no payout before a transfer
select is(
  public.record_withdrawal_processor_failure('d0000000-0000-4000-8000-000000000002',
    'transfer', 'withdrawal:d0000000-0000-4000-8000-000000000002:transfer', 'balance_insufficient',
    'Insufficient funds in the platform''s balance.') ->> 'next_idempotency_key',
  'withdrawal:d0000000-0000-4000-8000-000000000002:transfer:2',
  'a refused transfer is recorded and its retry gets the next key'
);
select is(
  (select transfer_idempotency_key from public.withdrawals_to_pay_out()
    where withdrawal_id = 'd0000000-0000-4000-8000-000000000002'),
  'withdrawal:d0000000-0000-4000-8000-000000000002:transfer:2',
  'and w2 is listed with it'
);
select throws_ok(
  $$select public.record_withdrawal_processor_failure('d0000000-0000-4000-8000-000000000002',
    'payout', 'withdrawal:d0000000-0000-4000-8000-000000000002:payout', 'x', 'y')$$,
  'PT409',
  'withdrawal d0000000-0000-4000-8000-000000000002 is approved: its payout is not being sent',
  'no payout refusal before the transfer'
);
select throws_ok(
  $$select public.record_withdrawal_processor_failure('d0000000-0000-4000-8000-000000000002',
    'refund', 'withdrawal:d0000000-0000-4000-8000-000000000002:refund', 'x', 'y')$$,
  'PT422',
  'a withdrawal''s step is its transfer, its payout or its reversal, not refund',
  'an unknown step is refused'
);

-- the attempts are records: payment_service appends, nobody changes them
select throws_ok(
  $$update public.withdrawal_processor_attempts set failure_code = 'other'$$,
  '42501', 'permission denied for table withdrawal_processor_attempts',
  'payment_service cannot rewrite a recorded answer'
);
reset role;
select throws_ok(
  $$update public.withdrawal_processor_attempts set failure_code = 'other'$$,
  'PT409', null,
  'nor can the table''s owner'
);
select tests.authenticate_as('carl', aal => 'aal2');
select throws_ok(
  $$select public.record_withdrawal_processor_failure('d0000000-0000-4000-8000-000000000001',
    'payout', 'withdrawal:d0000000-0000-4000-8000-000000000001:payout:2', 'x', 'y')$$,
  '42501', 'permission denied for function record_withdrawal_processor_failure',
  'a user cannot record a refusal'
);
select throws_ok(
  'select count(*) from public.withdrawal_processor_attempts',
  '42501', 'permission denied for table withdrawal_processor_attempts',
  'nor read the attempts'
);
select throws_ok(
  $$select public.record_withdrawal_transfer_reversal('d0000000-0000-4000-8000-000000000001', 'trr_Mine01')$$,
  '42501', 'permission denied for function record_withdrawal_transfer_reversal',
  'nor record a reversal'
);
reset role;
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select is(
  (select count(*)::int from public.withdrawal_processor_attempts),
  2,
  'an admin reads them'
);

-- w1 is paid out at attempt 2, then the bank returns the payout: the transfer must be reversed
reset role;
select tests.authenticate_as_service('payment_service');
select public.record_withdrawal_payout('d0000000-0000-4000-8000-000000000001', 'po_W1');
select is(
  public.apply_stripe_event(tests.stripe_event('payout.failed', '{"id": "po_W1", "object": "payout",
    "amount": 10000, "currency": "usd", "status": "failed", "failure_code": "account_closed",
    "failure_message": "The bank account has been closed."}') || jsonb_build_object('account', tests.token_lookup('acct_1Carl01'))) ->> 'status',
  'processed',
  'payout.failed fails w1'
);
select results_eq(
  $$select kind, amount_minor, currency::text, resolution
    from public.processor_inconsistencies where processor_object_id = 'tr_W1'$$,
  $$values ('transfer_unreversed', 10000::bigint, 'USD', null::text)$$,
  'its transfer is recorded as an open inconsistency: the money is both on the account and in the wallet'
);
select results_eq(
  $$select withdrawal_id::text, status, amount_minor, processor_transfer_id,
      reversal_idempotency_key
    from public.withdrawals_to_reverse()$$,
  $$values ('d0000000-0000-4000-8000-000000000001', 'failed', 10000::bigint,
    'tr_W1', 'withdrawal:d0000000-0000-4000-8000-000000000001:reversal')$$,
  'w1 is listed for its transfer to be reversed, with a key derived from it'
);
select is(
  public.record_withdrawal_processor_failure('d0000000-0000-4000-8000-000000000001',
    'reversal', 'withdrawal:d0000000-0000-4000-8000-000000000001:reversal', 'balance_insufficient',
    'The account''s balance is short.') ->> 'next_idempotency_key',
  'withdrawal:d0000000-0000-4000-8000-000000000001:reversal:2',
  'a refused reversal is recorded, and retried under the next key'
);
select results_eq(
  $$select a ->> 'reversal_id', a ->> 'processor_transfer_id', (a ->> 'attempt')::int
    from public.record_withdrawal_transfer_reversal('d0000000-0000-4000-8000-000000000001',
      'trr_W1') as a$$,
  $$values ('trr_W1', 'tr_W1', 2)$$,
  'payment_service records the reversal'
);
select results_eq(
  $$select recovery, resolution
    from public.processor_inconsistencies where processor_object_id = 'tr_W1'$$,
  $$values (null::text,
    'Reversed: transfer tr_W1 of withdrawal d0000000-0000-4000-8000-000000000001 was reversed by trr_W1')$$,
  'which resolves the inconsistency'
);
select is_empty(
  'select 1 from public.withdrawals_to_reverse()',
  'and nothing is left to reverse'
);
select is(
  public.record_withdrawal_transfer_reversal('d0000000-0000-4000-8000-000000000001', 'trr_W1')
    ->> 'reversal_id',
  'trr_W1',
  'the same reversal again changes nothing'
);
select throws_ok(
  $$select public.record_withdrawal_transfer_reversal('d0000000-0000-4000-8000-000000000001', 'trr_Other1')$$,
  'PT409',
  'the transfer of withdrawal d0000000-0000-4000-8000-000000000001 was reversed by trr_W1, not trr_Other1',
  'another reversal is refused'
);
select throws_ok(
  $$select public.record_withdrawal_transfer_reversal('d0000000-0000-4000-8000-000000000002', 'trr_W2')$$,
  'PT409',
  'withdrawal d0000000-0000-4000-8000-000000000002 is approved with transfer none: there is no transfer to reverse',
  'a withdrawal with no transfer has nothing to reverse'
);

-- w3: transferred, then canceled by an admin before its payout: its transfer is reversed too;
-- w2, canceled before any transfer, has nothing to reverse
select public.record_withdrawal_transfer('d0000000-0000-4000-8000-000000000003', 'tr_W3');
reset role;
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
update public.withdrawals
set status = 'canceled', failure_reason = 'Canceled by operations after a fraud report'
where id in ('d0000000-0000-4000-8000-000000000002', 'd0000000-0000-4000-8000-000000000003');
reset role;
select tests.authenticate_as_service('payment_service');
select results_eq(
  $$select withdrawal_id::text, status, processor_transfer_id from public.withdrawals_to_reverse()$$,
  $$values ('d0000000-0000-4000-8000-000000000003', 'canceled', 'tr_W3')$$,
  'a withdrawal canceled after its transfer is listed for reversal'
);
select is(
  (select count(*)::int from public.processor_inconsistencies
    where kind = 'transfer_unreversed' and processor_object_id = 'tr_W3' and resolution is null),
  1,
  'and its transfer is an open inconsistency'
);
select is(
  (select count(*)::int from public.processor_inconsistencies where kind = 'transfer_unreversed'),
  2,
  'a withdrawal that fails without a transfer opens none'
);

select * from finish();
rollback;
