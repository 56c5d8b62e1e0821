-- A transfer that may exist at the processor is recorded before it is asked for
-- (begin_withdrawal_step), and a withdrawal that ends while that request is unanswered keeps
-- its money reserved: the transfer found later is recorded and reversed, or the processor is
-- found to have none (a minute after the request at the earliest) and only then is the
-- reservation voided. A refused reversal is retried with a growing delay, five times at most.
begin;
select plan(36);

-- Its payout methods are new and withdrawn to at once: their cool-down is lifted (the
-- cool-down's own tests: withdrawals/payout_method_cool_down.test.sql).
update private.settings set value = '0' where key = 'payout_method_cool_down_seconds';

select tests.let_roles_call_pgtap('payment_service', 'admin');

-- carl has 1,000.00 USD; w1 to w4 (100.00 each) are approved
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
select tests.fund_wallet(tests.get_supabase_uid('carl'), 100000);
insert into public.withdrawals (id, user_id, payout_method_id, amount_minor, currency)
select format('d0000000-0000-4000-8000-00000000000%s', n)::uuid, tests.get_supabase_uid('carl'),
  'c0000000-0000-4000-8000-0000000000d1', 10000, 'USD'
from generate_series(1, 4) as n;

/** How many times withdrawal `w`'s reservation was voided. */
create function pg_temp.voids(w uuid) returns integer
language sql as $$
  select count(*)::int from private.ledger_transfers as t
  where t.pending_id = private.withdrawal_reservation(w) and t.kind = 'void_pending'
$$;

/** Cancel withdrawal `w` as an admin. */
create function pg_temp.cancel(w uuid) returns void
language plpgsql as $$
begin
  perform tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
  update public.withdrawals
  set status = 'canceled', failure_reason = 'Canceled by operations: the contractor asked us to'
  where id = w;
  reset role;
end
$$;

/** Move withdrawal `w`'s requests `age` into the past (a trigger keeps them: moved as postgres). */
create function pg_temp.age_requests(w uuid, age interval) returns void
language sql as $$
  alter table private.withdrawal_processor_requests disable trigger keep_withdrawal_processor_request;
  alter table private.withdrawal_processor_requests disable trigger keep_row_timestamps;
  update private.withdrawal_processor_requests set created_at = created_at - age
  where withdrawal_id = w;
  alter table private.withdrawal_processor_requests enable trigger keep_row_timestamps;
  alter table private.withdrawal_processor_requests enable trigger keep_withdrawal_processor_request;
$$;

/** Move withdrawal `w`'s recorded refusals `age` into the past. */
create function pg_temp.age_refusals(w uuid, age interval) returns void
language sql as $$
  alter table public.withdrawal_processor_attempts disable trigger keep_withdrawal_processor_attempt;
  alter table public.withdrawal_processor_attempts disable trigger keep_row_timestamps;
  update public.withdrawal_processor_attempts set created_at = created_at - age
  where withdrawal_id = w;
  alter table public.withdrawal_processor_attempts enable trigger keep_row_timestamps;
  alter table public.withdrawal_processor_attempts enable trigger keep_withdrawal_processor_attempt;
$$;

-- only payment_service records a request
select tests.authenticate_as('carl', aal => 'aal2');
select throws_ok(
  $$select public.begin_withdrawal_step('d0000000-0000-4000-8000-000000000001', 'transfer')$$,
  '42501', 'permission denied for function begin_withdrawal_step',
  'a user cannot record a request'
);
select throws_ok(
  'select * from public.withdrawals_with_unanswered_transfer()',
  '42501', 'permission denied for function withdrawals_with_unanswered_transfer',
  'nor list the unanswered ones'
);
select throws_ok(
  $$select public.record_withdrawal_transfer_not_made('d0000000-0000-4000-8000-000000000001',
    'withdrawal:d0000000-0000-4000-8000-000000000001:transfer')$$,
  '42501', 'permission denied for function record_withdrawal_transfer_not_made',
  'nor settle one'
);
reset role;

-- w1: the transfer is asked for, its answer lost; operations cancel w1
select tests.authenticate_as_service('payment_service');
select results_eq(
  $$select a ->> 'idempotency_key', (a ->> 'attempt')::int, (a ->> 'resumed')::boolean
    from public.begin_withdrawal_step('d0000000-0000-4000-8000-000000000001', 'transfer') as a$$,
  $$values ('withdrawal:d0000000-0000-4000-8000-000000000001:transfer', 1, false)$$,
  'the transfer request is recorded before Stripe is asked, under the step''s key'
);
select results_eq(
  $$select a ->> 'idempotency_key', (a ->> 'resumed')::boolean
    from public.begin_withdrawal_step('d0000000-0000-4000-8000-000000000001', 'transfer') as a$$,
  $$values ('withdrawal:d0000000-0000-4000-8000-000000000001:transfer', true)$$,
  'asked again, it is the same request, resumed: Stripe may have made it'
);
select throws_ok(
  $$select public.begin_withdrawal_step('d0000000-0000-4000-8000-000000000001', 'payout')$$,
  'PT409',
  'withdrawal d0000000-0000-4000-8000-000000000001 has no transfer recorded: its payout comes after it',
  'a payout is not asked for before its transfer is recorded'
);
select throws_ok(
  $$select public.begin_withdrawal_step('d0000000-0000-4000-8000-000000000001', 'reversal')$$,
  'PT422', 'a withdrawal''s request is its transfer or its payout, not reversal',
  'nor another step'
);
reset role;
select is(
  (select count(*)::int from private.withdrawal_processor_requests
    where withdrawal_id = 'd0000000-0000-4000-8000-000000000001'),
  1,
  'one request recorded for it'
);
select pg_temp.cancel('d0000000-0000-4000-8000-000000000001');
select results_eq(
  $$select status::text, pg_temp.voids(id) from public.withdrawals
    where id = 'd0000000-0000-4000-8000-000000000001'$$,
  $$values ('canceled', 0)$$,
  'canceled while its transfer request is unanswered, w1 keeps its reservation'
);
select tests.authenticate_as_service('payment_service');
select results_eq(
  $$select withdrawal_id::text, status, idempotency_key, account_id
    from public.withdrawals_with_unanswered_transfer()$$,
  $$values ('d0000000-0000-4000-8000-000000000001', 'canceled',
    'withdrawal:d0000000-0000-4000-8000-000000000001:transfer', tests.account_row('acct_1Carl01'))$$,
  'it is listed for the payouts function to find its transfer'
);
select throws_ok(
  $$select public.begin_withdrawal_step('d0000000-0000-4000-8000-000000000001', 'transfer')$$,
  'PT409', 'withdrawal d0000000-0000-4000-8000-000000000001 is canceled: only an approved withdrawal is paid out',
  'no new transfer is asked for it'
);
select throws_ok(
  $$select public.record_withdrawal_transfer_not_made('d0000000-0000-4000-8000-000000000001',
    'withdrawal:d0000000-0000-4000-8000-000000000001:transfer')$$,
  'PT409', null,
  'within a minute of its request, the transfer may still be in flight: not settled as not made'
);
-- Stripe made it (an earlier run could not record it: reported); the transfer found is
-- recorded on the canceled withdrawal, and reversed
select public.record_processor_inconsistency('transfer_unrecorded', 'tr_W1found', null, 10000,
  'USD', 'withdrawal d0000000-0000-4000-8000-000000000001: the database was unreachable');
select is(
  public.record_withdrawal_transfer('d0000000-0000-4000-8000-000000000001', 'tr_W1found')
    ->> 'processor_transfer_id',
  'tr_W1found',
  'the transfer found at Stripe is recorded on the canceled withdrawal'
);
select results_eq(
  $$select kind, amount_minor, resolution from public.processor_inconsistencies
    where processor_object_id = 'tr_W1found' order by kind$$,
  $$values ('transfer_unrecorded', 10000::bigint,
      'Recorded: tr_W1found is recorded for withdrawal d0000000-0000-4000-8000-000000000001'),
    ('transfer_unreversed', 10000::bigint, null::text)$$,
  'which resolves the report that it was unrecorded and opens its transfer_unreversed inconsistency'
);
select results_eq(
  $$select withdrawal_id::text, processor_transfer_id, due from public.withdrawals_to_reverse()$$,
  $$values ('d0000000-0000-4000-8000-000000000001', 'tr_W1found', true)$$,
  'and lists it to be reversed'
);
select is_empty(
  'select 1 from public.withdrawals_with_unanswered_transfer()',
  'its request is answered'
);
select throws_ok(
  $$select public.record_withdrawal_transfer('d0000000-0000-4000-8000-000000000001', 'tr_W1other')$$,
  'PT409', 'withdrawal d0000000-0000-4000-8000-000000000001 is canceled: only an approved withdrawal is paid out',
  'a second transfer is refused'
);
select throws_ok(
  $$update public.withdrawals set failure_reason = 'Rewritten after the fact by the service'
    where id = 'd0000000-0000-4000-8000-000000000001'$$,
  'PT409', 'withdrawal d0000000-0000-4000-8000-000000000001 is canceled: a settled withdrawal never changes',
  'and the settled withdrawal takes no other change'
);
reset role;
select is(pg_temp.voids('d0000000-0000-4000-8000-000000000001'), 0,
  'w1''s money stays reserved until its transfer is reversed');

-- w2: asked for, canceled; a minute later Stripe has no transfer for it: voided then
select tests.authenticate_as_service('payment_service');
select public.begin_withdrawal_step('d0000000-0000-4000-8000-000000000002', 'transfer');
reset role;
select pg_temp.cancel('d0000000-0000-4000-8000-000000000002');
select is(pg_temp.voids('d0000000-0000-4000-8000-000000000002'), 0, 'w2 keeps its reservation');
select pg_temp.age_requests('d0000000-0000-4000-8000-000000000002', interval '2 minutes');
select tests.authenticate_as_service('payment_service');
select throws_ok(
  $$select public.record_withdrawal_transfer_not_made('d0000000-0000-4000-8000-000000000002',
    'withdrawal:d0000000-0000-4000-8000-000000000002:transfer:2')$$,
  'PT409',
  'withdrawal d0000000-0000-4000-8000-000000000002 has no unanswered transfer request under key withdrawal:d0000000-0000-4000-8000-000000000002:transfer:2',
  'only under the unanswered request''s key'
);
select results_eq(
  $$select a ->> 'failure_code', a ->> 'idempotency_key'
    from public.record_withdrawal_transfer_not_made('d0000000-0000-4000-8000-000000000002',
      'withdrawal:d0000000-0000-4000-8000-000000000002:transfer') as a$$,
  $$values ('not_made', 'withdrawal:d0000000-0000-4000-8000-000000000002:transfer')$$,
  'a minute on, the transfer Stripe does not have is recorded as not made'
);
reset role;
select is(pg_temp.voids('d0000000-0000-4000-8000-000000000002'), 1,
  'and only then is w2''s reservation voided, once');
select tests.authenticate_as_service('payment_service');
select throws_ok(
  $$select public.record_withdrawal_transfer_not_made('d0000000-0000-4000-8000-000000000002',
    'withdrawal:d0000000-0000-4000-8000-000000000002:transfer')$$,
  'PT409', null,
  'a second time is refused'
);
select throws_ok(
  $$select public.record_withdrawal_transfer('d0000000-0000-4000-8000-000000000002', 'tr_W2late')$$,
  'PT409', null,
  'and no transfer is recorded on it afterwards'
);
select throws_ok(
  $$select public.record_withdrawal_transfer_not_made('d0000000-0000-4000-8000-000000000004',
    'withdrawal:d0000000-0000-4000-8000-000000000004:transfer')$$,
  'PT409', null,
  'an approved withdrawal''s transfer is not settled as not made: it is asked for again'
);

-- w3: asked for, canceled; Stripe's refusal of the request is recorded: voided then
select public.begin_withdrawal_step('d0000000-0000-4000-8000-000000000003', 'transfer');
reset role;
select pg_temp.cancel('d0000000-0000-4000-8000-000000000003');
select tests.authenticate_as_service('payment_service');
select is(
  public.record_withdrawal_processor_failure('d0000000-0000-4000-8000-000000000003', 'transfer',
    'withdrawal:d0000000-0000-4000-8000-000000000003:transfer', 'balance_insufficient',
    'The platform''s balance is short.') ->> 'failure_code',
  'balance_insufficient',
  'a refusal of the canceled withdrawal''s unanswered transfer request is recorded'
);
reset role;
select is(pg_temp.voids('d0000000-0000-4000-8000-000000000003'), 1,
  'which voids its reservation: no transfer was made');

-- w4: canceled with no request at all: voided at once, as before
select pg_temp.cancel('d0000000-0000-4000-8000-000000000004');
select is(pg_temp.voids('d0000000-0000-4000-8000-000000000004'), 1,
  'a withdrawal canceled before any transfer request is voided at once');

-- the reversal of w1's transfer, refused: retried after 1 h, 2 h, 4 h, 8 h, then no more
select tests.authenticate_as_service('payment_service');
select public.record_withdrawal_processor_failure('d0000000-0000-4000-8000-000000000001',
  'reversal', 'withdrawal:d0000000-0000-4000-8000-000000000001:reversal', 'balance_insufficient',
  'The account''s balance is short.');
select results_eq(
  $$select refusals, retry_after = now() + interval '1 hour', due, reversal_idempotency_key
    from public.withdrawals_to_reverse()$$,
  $$values (1, true, false, 'withdrawal:d0000000-0000-4000-8000-000000000001:reversal:2')$$,
  'after a refusal the reversal is due again an hour later, not at once'
);
reset role;
select pg_temp.age_refusals('d0000000-0000-4000-8000-000000000001', interval '61 minutes');
select tests.authenticate_as_service('payment_service');
select is(
  (select due from public.withdrawals_to_reverse()), true, 'an hour on, it is due'
);
select public.record_withdrawal_processor_failure('d0000000-0000-4000-8000-000000000001',
  'reversal', 'withdrawal:d0000000-0000-4000-8000-000000000001:reversal:2', 'balance_insufficient',
  'The account''s balance is short.');
reset role;
select pg_temp.age_refusals('d0000000-0000-4000-8000-000000000001', interval '90 minutes');
select tests.authenticate_as_service('payment_service');
select results_eq(
  $$select refusals, due from public.withdrawals_to_reverse()$$,
  $$values (2, false)$$,
  'after the second refusal, an hour and a half is not enough: two hours'
);
select public.record_withdrawal_processor_failure('d0000000-0000-4000-8000-000000000001',
  'reversal', format('withdrawal:d0000000-0000-4000-8000-000000000001:reversal:%s', n),
  'balance_insufficient', 'The account''s balance is short.')
from generate_series(3, 5) as n;
reset role;
select pg_temp.age_refusals('d0000000-0000-4000-8000-000000000001', interval '30 days');
select tests.authenticate_as_service('payment_service');
select results_eq(
  $$select refusals, retry_after, due, reversal_attempt from public.withdrawals_to_reverse()$$,
  $$values (5, null::timestamptz, false, 6)$$,
  'after the fifth refusal it is no longer due by itself, however long ago'
);
select is(
  (select count(*)::int from public.processor_inconsistencies
    where processor_object_id = 'tr_W1found' and kind = 'transfer_unreversed'
      and resolution is null),
  1,
  'its transfer_unreversed inconsistency stays open for operations'
);
select is(
  public.record_withdrawal_transfer_reversal('d0000000-0000-4000-8000-000000000001', 'trr_W1')
    ->> 'attempt',
  '6',
  'a reversal asked for by name and made is still recorded'
);
reset role;
select is(pg_temp.voids('d0000000-0000-4000-8000-000000000001'), 1,
  'and voids w1''s reservation: the money is back on the platform');

select * from finish();
rollback;
