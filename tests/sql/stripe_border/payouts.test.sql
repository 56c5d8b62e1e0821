-- Payouts: payment_service lists the approved withdrawals due (withdrawals_to_pay_out), records
-- each transfer and payout once (same id again: nothing; another: PT409), only for an approved
-- withdrawal, which moves to processing with its payout; payout.paid completes it and
-- payout.failed fails it (the reservation is posted, or kept until the transfer is reversed),
-- an event for a payout not yet recorded is ignored and kept, and applied when payguard records
-- that payout (metadata moves nothing); account.updated records a payout method's verification, and no payout goes to an
-- account the processor says cannot receive one.
begin;
select plan(37);

-- Its payout methods are new and withdrawn to at once: their cool-down is lifted (the
-- cool-down's own tests: withdrawals/payout_method_cool_down.test.sql).
update private.settings set value = '0' where key = 'payout_method_cool_down_seconds';

-- the backend and staff roles may call pgTAP's assertions (rolled back with the test)
select tests.let_roles_call_pgtap();

-- fixtures, as postgres: carl has 900.00 USD and a payout method; w1 to w3 are approved (small),
-- w4 is requested (large, waiting for two admins)
update private.settings set value = (
  select jsonb_object_agg(level, jsonb_build_object('calls', 1000, 'seconds', 60))
  from unnest(array['low', 'medium', 'high']) as level
)
where key = 'velocity_limits';
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('dora', metadata => '{"role": "contractor"}');
insert into public.payout_methods (id, user_id, type, processor_account_id_lookup, processor_external_account_id_sealed, processor_external_account_id_lookup, currency)
values
('c0000000-0000-4000-8000-0000000000d1', tests.get_supabase_uid('carl'), 'bank_account',
  tests.token_lookup('acct_1Carl01'), tests.sealed_token(), tests.token_lookup('ba_1Carl01'), 'USD'),
('c0000000-0000-4000-8000-0000000000d2', tests.get_supabase_uid('dora'), 'bank_account',
  tests.token_lookup('acct_1Dora01'), tests.sealed_token(), tests.token_lookup('ba_1Dora01'), 'USD');
-- Carl's account sealed, as the payout-accounts function seals it at onboarding.
update public.processor_accounts set processor_account_id_sealed = tests.sealed_token()
where processor_account_id_lookup = tests.token_lookup('acct_1Carl01');
select tests.verify_connected_account('acct_1Carl01');
select tests.fund_wallet(tests.get_supabase_uid('carl'), 900000);
select tests.fund_wallet(tests.get_supabase_uid('dora'), 50000);
insert into public.withdrawals (id, user_id, payout_method_id, amount_minor, currency)
select format('d0000000-0000-4000-8000-00000000000%s', n)::uuid, tests.get_supabase_uid('carl'),
  'c0000000-0000-4000-8000-0000000000d1', case when n = 4 then 600000 else 10000 * n end, 'USD'
from generate_series(1, 4) as n;
insert into public.withdrawals (id, user_id, payout_method_id, amount_minor, currency)
values ('d0000000-0000-4000-8000-000000000005', tests.get_supabase_uid('dora'),
  'c0000000-0000-4000-8000-0000000000d2', 20000, 'USD');

-- only payment_service pays out
select tests.authenticate_as('carl', aal => 'aal2');
select throws_ok(
  'select * from public.withdrawals_to_pay_out()',
  '42501', 'permission denied for function withdrawals_to_pay_out',
  'a user cannot list the payouts due'
);
select throws_ok(
  $$select public.record_withdrawal_payout('d0000000-0000-4000-8000-000000000001', 'po_Mine01')$$,
  '42501', 'permission denied for function record_withdrawal_payout',
  'nor record a payout'
);
select throws_ok(
  $$select public.record_withdrawal_transfer('d0000000-0000-4000-8000-000000000001', 'tr_Mine01')$$,
  '42501', 'permission denied for function record_withdrawal_transfer',
  'nor a transfer'
);
select throws_ok(
  $$update public.payout_methods set verification_status = 'verified'
    where id = 'c0000000-0000-4000-8000-0000000000d1'$$,
  '42501', 'permission denied for table payout_methods',
  'nor mark their own payout method verified'
);

reset role;
select tests.authenticate_as_service('payment_service');
select results_eq(
  $$select withdrawal_id::text, amount_minor, currency::text, account_id,
      processor_transfer_id, transfer_idempotency_key, payout_idempotency_key
    from public.withdrawals_to_pay_out() where account_id = tests.account_row('acct_1Carl01')$$,
  $$values
    ('d0000000-0000-4000-8000-000000000001', 10000::bigint, 'USD', tests.account_row('acct_1Carl01'), null::text,
      'withdrawal:d0000000-0000-4000-8000-000000000001:transfer',
      'withdrawal:d0000000-0000-4000-8000-000000000001:payout'),
    ('d0000000-0000-4000-8000-000000000002', 20000::bigint, 'USD', tests.account_row('acct_1Carl01'), null::text,
      'withdrawal:d0000000-0000-4000-8000-000000000002:transfer',
      'withdrawal:d0000000-0000-4000-8000-000000000002:payout'),
    ('d0000000-0000-4000-8000-000000000003', 30000::bigint, 'USD', tests.account_row('acct_1Carl01'), null::text,
      'withdrawal:d0000000-0000-4000-8000-000000000003:transfer',
      'withdrawal:d0000000-0000-4000-8000-000000000003:payout')$$,
  'the approved withdrawals are due, with their connected account and idempotency keys; the one awaiting approval is not'
);
select results_eq(
  $$select count(*)::integer, count(*) filter (
      where w.account_sealed = a.processor_account_id_sealed::jsonb
        and w.payout_method_id = 'c0000000-0000-4000-8000-0000000000d1'
    )::integer
    from public.withdrawals_to_pay_out() as w
    join public.processor_accounts as a on a.id = w.account_id
    where w.user_id = tests.get_supabase_uid('carl')$$,
  $$values (3, 3)$$,
  'each hands payment_service its payout method and the account it pays, sealed as stored: never a token'
);
select is_empty(
  $$select 1 from public.withdrawals_to_pay_out() where user_id = tests.get_supabase_uid('dora')$$,
  'a withdrawal to an account the processor never verified is not due'
);
select throws_ok(
  $$select public.record_withdrawal_transfer('d0000000-0000-4000-8000-000000000005', 'tr_W5early')$$,
  'PT409',
  'withdrawal d0000000-0000-4000-8000-000000000005: the processor cannot pay out to its payout method yet',
  'and no transfer is recorded for it'
);

-- the transfer, then the payout, each recorded once
select throws_ok(
  $$select public.record_withdrawal_payout('d0000000-0000-4000-8000-000000000001', 'po_W1')$$,
  'PT409',
  'withdrawal d0000000-0000-4000-8000-000000000001 has no transfer recorded: its payout comes after it',
  'a payout before its transfer is refused'
);
select is(
  public.record_withdrawal_transfer('d0000000-0000-4000-8000-000000000001', 'tr_W1')
    ->> 'processor_transfer_id',
  'tr_W1',
  'payment_service records w1''s transfer'
);
select is(
  public.record_withdrawal_transfer('d0000000-0000-4000-8000-000000000001', 'tr_W1') ->> 'status',
  'approved',
  'the same transfer again changes nothing'
);
select throws_ok(
  $$select public.record_withdrawal_transfer('d0000000-0000-4000-8000-000000000001', 'tr_W1other')$$,
  'PT409',
  'withdrawal d0000000-0000-4000-8000-000000000001: the processor''s transfer id is recorded once, while it is approved',
  'another transfer for w1 is refused'
);
select is(
  (select processor_transfer_id from public.withdrawals_to_pay_out()
    where withdrawal_id = 'd0000000-0000-4000-8000-000000000001'),
  'tr_W1',
  'w1 is still due, with its transfer, for its payout to be retried'
);
select results_eq(
  $$select a ->> 'status', a ->> 'processor_payout_id'
    from public.record_withdrawal_payout('d0000000-0000-4000-8000-000000000001', 'po_W1') as a$$,
  $$values ('processing', 'po_W1')$$,
  'payment_service records w1''s payout: w1 is processing'
);
select is(
  public.record_withdrawal_payout('d0000000-0000-4000-8000-000000000001', 'po_W1') ->> 'status',
  'processing',
  'the same payout again changes nothing'
);
select throws_ok(
  $$select public.record_withdrawal_payout('d0000000-0000-4000-8000-000000000001', 'po_W1other')$$,
  'PT409', 'withdrawal d0000000-0000-4000-8000-000000000001 was paid out by po_W1, not po_W1other',
  'another payout for w1 is refused'
);
select throws_ok(
  $$select public.record_withdrawal_transfer('d0000000-0000-4000-8000-000000000004', 'tr_W4')$$,
  'PT409', 'withdrawal d0000000-0000-4000-8000-000000000004 is requested: only an approved withdrawal is paid out',
  'a withdrawal awaiting approval is not paid out'
);
select is_empty(
  $$select 1 from public.withdrawals_to_pay_out()
    where withdrawal_id = 'd0000000-0000-4000-8000-000000000001'$$,
  'w1 is no longer due'
);

-- payout.paid completes the withdrawal whose payout it is
select is(
  public.apply_stripe_event(tests.stripe_event('payout.paid', '{"id": "po_W1", "object": "payout",
    "amount": 10000, "currency": "usd", "status": "paid"}') || jsonb_build_object('account', tests.token_lookup('acct_1Carl01'))) ->> 'status',
  'processed',
  'payout.paid is applied'
);
reset role;
select results_eq(
  $$select w.status::text, (
      select count(*)::int from private.ledger_transfers as t
      where t.pending_id = private.withdrawal_reservation(w.id) and t.kind = 'post_pending'
    )
    from public.withdrawals as w where w.id = 'd0000000-0000-4000-8000-000000000001'$$,
  $$values ('paid', 1)$$,
  'w1 is paid, its reservation posted once'
);

-- payout.failed fails it: the money is on the connected account, so the reservation stays
-- until the transfer is reversed
select tests.authenticate_as_service('payment_service');
select public.record_withdrawal_transfer('d0000000-0000-4000-8000-000000000002', 'tr_W2');
select public.record_withdrawal_payout('d0000000-0000-4000-8000-000000000002', 'po_W2');
select is(
  public.apply_stripe_event(tests.stripe_event('payout.failed', '{"id": "po_W2", "object": "payout",
    "amount": 20000, "currency": "usd", "status": "failed", "failure_code": "account_closed",
    "failure_message": "The bank account has been closed."}') || jsonb_build_object('account', tests.token_lookup('acct_1Carl01'))) ->> 'status',
  'processed',
  'payout.failed is applied'
);
reset role;
select results_eq(
  $$select w.status::text, w.failure_reason, (
      select count(*)::int from private.ledger_transfers as t
      where t.pending_id = private.withdrawal_reservation(w.id) and t.kind = 'void_pending'
    )
    from public.withdrawals as w where w.id = 'd0000000-0000-4000-8000-000000000002'$$,
  $$values ('failed', 'The bank account has been closed.', 0)$$,
  'w2 is failed with the processor''s reason; its reservation is kept until its transfer is reversed'
);

-- out of order, and the wrong amount: a payout no withdrawal records is ignored, whatever its
-- metadata names; its event is kept, and applied once payguard records that payout
select tests.authenticate_as_service('payment_service');
select results_eq(
  $$select a ->> 'status', a -> 'error' ->> 'code'
    from public.apply_stripe_event(tests.stripe_event('payout.paid', '{"id": "po_W4early",
      "object": "payout", "amount": 600000, "currency": "usd",
      "metadata": {"withdrawal_id": "d0000000-0000-4000-8000-000000000004"}}') || jsonb_build_object('account', tests.token_lookup('acct_1Carl01'))) as a$$,
  $$values ('ignored', null::text)$$,
  'a payout.paid naming a withdrawal not yet approved in its metadata is ignored'
);
select results_eq(
  $$select status::text, processor_payout_id from public.withdrawals
    where id = 'd0000000-0000-4000-8000-000000000004'$$,
  $$values ('requested', null::text)$$,
  'and the withdrawal is as it was'
);
select results_eq(
  $$select a ->> 'status', a -> 'error' ->> 'code'
    from public.apply_stripe_event(tests.stripe_event('payout.failed', '{"id": "po_W1",
      "object": "payout", "amount": 10000, "currency": "usd"}') || jsonb_build_object('account', tests.token_lookup('acct_1Carl01'))) as a$$,
  $$values ('refused', 'PT409')$$,
  'a payout.failed after the payout was paid is refused'
);
select results_eq(
  $$select a ->> 'status', a -> 'error' ->> 'code'
    from public.apply_stripe_event(tests.stripe_event('payout.paid', '{"id": "po_W3",
      "object": "payout", "amount": 31000, "currency": "usd",
      "metadata": {"withdrawal_id": "d0000000-0000-4000-8000-000000000003"}}', 'evt_W3amount') || jsonb_build_object('account', tests.token_lookup('acct_1Carl01'))) as a$$,
  $$values ('ignored', null::text)$$,
  'a payout of another amount, before its payout id was recorded, is ignored'
);
select is(
  public.apply_stripe_event(tests.stripe_event('payout.paid', '{"id": "po_W3", "object": "payout",
    "amount": 30000, "currency": "usd",
    "metadata": {"withdrawal_id": "d0000000-0000-4000-8000-000000000003"}}', 'evt_W3paid') || jsonb_build_object('account', tests.token_lookup('acct_1Carl01'))) ->> 'status',
  'ignored',
  'and so is a payout.paid that arrives before its payout id was recorded'
);
select results_eq(
  $$select status::text, processor_payout_id from public.withdrawals
    where id = 'd0000000-0000-4000-8000-000000000003'$$,
  $$values ('approved', null::text)$$,
  'an event never moves an approved withdrawal'
);
select public.record_withdrawal_transfer('d0000000-0000-4000-8000-000000000003', 'tr_W3');
select is(
  public.record_withdrawal_payout('d0000000-0000-4000-8000-000000000003', 'po_W3') ->> 'status',
  'paid',
  'recording po_W3 applies its kept payout.paid: w3 is paid'
);
select results_eq(
  $$select id, status::text, error_code from public.webhook_events
    where id in ('evt_W3amount', 'evt_W3paid') order by id$$,
  $$values ('evt_W3amount', 'refused', 'PT409'), ('evt_W3paid', 'processed', null::text)$$,
  'the kept event of another amount is refused then, the right one processed'
);
select results_eq(
  $$select kind, webhook_event_id, resolution from public.processor_inconsistencies
    where processor_object_id = 'po_W3'$$,
  $$values ('payout_refused', 'evt_W3amount', null::text)$$,
  'and the refused one is reported'
);

-- account.updated: the processor's word on a connected account
select is(
  public.apply_stripe_event(tests.stripe_event('account.updated', '{"id": "acct_1Dora01",
    "object": "account", "payouts_enabled": false,
    "requirements": {"disabled_reason": "requirements.past_due"}}')) ->> 'status',
  'processed',
  'account.updated is applied'
);
select is(
  (select verification_status from public.payout_methods where id = 'c0000000-0000-4000-8000-0000000000d2'),
  'pending',
  'the account needs more information: its payout method is pending'
);
select is_empty(
  $$select 1 from public.withdrawals_to_pay_out() where user_id = tests.get_supabase_uid('dora')$$,
  'no payout is due to it'
);
select throws_ok(
  $$select public.record_withdrawal_transfer('d0000000-0000-4000-8000-000000000005', 'tr_W5')$$,
  'PT409',
  'withdrawal d0000000-0000-4000-8000-000000000005: the processor cannot pay out to its payout method yet',
  'and no transfer is recorded for it'
);
select public.apply_stripe_event(tests.stripe_event('account.updated', '{"id": "acct_1Dora01",
  "object": "account", "payouts_enabled": true, "requirements": {}}'));
select results_eq(
  $$select pm.verification_status, (
      select count(*)::int from public.withdrawals_to_pay_out() as d
      where d.user_id = tests.get_supabase_uid('dora')
    )
    from public.payout_methods as pm where pm.id = 'c0000000-0000-4000-8000-0000000000d2'$$,
  $$values ('verified', 1)$$,
  'once payouts are enabled the method is verified and the withdrawal due'
);
select results_eq(
  $$select a ->> 'status', a -> 'error' ->> 'code'
    from public.apply_stripe_event(tests.stripe_event('account.updated',
      '{"id": "acct_1Nobody01", "object": "account", "payouts_enabled": true}')) as a$$,
  $$values ('processed', null::text)$$,
  'an account no payout method names yet is recorded, not refused'
);

select * from finish();
rollback;
