-- A payment RPC that a business rule refuses answers as PostgREST answers an error (the
-- status in response.status, the body {code, message, details, hint}), undoes everything
-- the call did, and leaves an audit row with success = false, which PostgREST then commits.
begin;
select plan(16);

-- Its payout methods are new and withdrawn to at once: their cool-down is lifted (the
-- cool-down's own tests: withdrawals/payout_method_cool_down.test.sql).
update private.settings set value = '0' where key = 'payout_method_cool_down_seconds';

select tests.let_roles_call_pgtap();

-- fixtures, as postgres: hana's kitchen, built by carl, with one pending payment
select tests.create_supabase_user('hana');
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
update private.settings set value = '{"time_zone": "UTC", "from": 0, "to": 24}'
where key = 'business_hours';
select tests.create_project_with_milestones(
  'hana',
  'carl',
  amounts => array[40000],
  titles => array['Cabinets'],
  project_id => '10000000-0000-0000-0000-000000000001'
);
select set_config('fixture.mark', (select max(seq) from public.payment_audit_logs)::text, true);
select set_config('fixture.notifications', (select count(*) from public.notifications)::text, true);

-- hana releases a payment that is still pending: PT409
select tests.authenticate_as(
  'hana',
  headers => '{"x-forwarded-for": "198.51.100.23", "user-agent": "supabase-js/2.45.0", "x-request-id": "req-409"}'
);
select is(
  public.release_milestone_payment('30000000-0000-0000-0000-000000000001', 'key-early'),
  jsonb_build_object(
    'code', 'PT409',
    'message', 'milestone payment 30000000-0000-0000-0000-000000000001 cannot go from pending to released',
    'details', null, 'hint', null
  ),
  'the refused call answers with PostgREST''s error body'
);
select is(current_setting('response.status', true), '409', 'and the status PostgREST gives PT409');
reset role;
select results_eq(
  $$select operation::text, entity_type::text, entity_id, user_id, user_role::text, ip_address::text,
      user_agent, success, error_message, metadata ->> 'sqlstate', (metadata ->> 'http_status')::int,
      metadata ->> 'correlation_id', new_values
    from public.payment_audit_logs where seq > current_setting('fixture.mark')::bigint$$,
  $$values ('release_milestone_payment', 'milestone_payments', '30000000-0000-0000-0000-000000000001',
    tests.get_supabase_uid('hana'), 'homeowner', '198.51.100.23', 'supabase-js/2.45.0', false,
    'milestone payment 30000000-0000-0000-0000-000000000001 cannot go from pending to released',
    'PT409', 409, 'req-409', '{"milestone_payment_id": "30000000-0000-0000-0000-000000000001"}'::jsonb)$$,
  'one audit row records the refusal: who, from where, what was asked, and why it was refused'
);
select results_eq(
  $$select status::text, (select count(*)::int from private.ledger_transfers
      where reference_id = '30000000-0000-0000-0000-000000000001'),
    (select count(*)::int from public.notifications)
    from public.milestone_payments where id = '30000000-0000-0000-0000-000000000001'$$,
  format('values (%L, 0, %s)', 'pending', current_setting('fixture.notifications')),
  'and nothing else changed: the status, the ledger and the notifications are as they were'
);
select is(
  (select count(*)::int from private.idempotency_keys where key = 'key-early'),
  0,
  'the refused call left no idempotency key, so it can be retried with the same key'
);

-- carl (not the payer) tries to pay hana's milestone: the policy refuses (42501, 403)
select set_config('fixture.mark', (select max(seq) from public.payment_audit_logs)::text, true);
insert into public.project_milestones (id, project_id, position, title, amount_minor, currency)
values ('20000000-0000-0000-0000-000000000002', '10000000-0000-0000-0000-000000000001', 2, 'Counters', 30000, 'USD');
select set_config('fixture.mark', (select max(seq) from public.payment_audit_logs)::text, true);
select tests.authenticate_as('carl');
select is(
  public.create_milestone_payment('20000000-0000-0000-0000-000000000002', 'key-carl') ->> 'code',
  '42501',
  'a call a policy refuses answers 42501'
);
select is(current_setting('response.status', true), '403', 'with 403, as PostgREST answers a signed-in user');
reset role;
select results_eq(
  $$select count(*)::int, bool_and(not success), min(user_role::text), min(entity_type::text), min(entity_id)
    from public.payment_audit_logs where seq > current_setting('fixture.mark')::bigint$$,
  $$values (1, true, 'contractor', 'project_milestones', '20000000-0000-0000-0000-000000000002')$$,
  'and leaves one audit row, about the milestone it tried to pay'
);
select is(
  (select count(*)::int from public.milestone_payments where milestone_id = '20000000-0000-0000-0000-000000000002'),
  0,
  'and no payment'
);

-- carl asks for withdrawals faster than the velocity limit: the refused one raises an alert
insert into public.payout_methods (id, user_id, type, processor_account_id_lookup, processor_external_account_id_sealed, processor_external_account_id_lookup, currency)
values ('50000000-0000-0000-0000-000000000001', tests.get_supabase_uid('carl'), 'bank_account',
  tests.token_lookup('acct_1Refused'), tests.sealed_token(), tests.token_lookup('ba_1Refused'), 'USD');
select tests.fund_wallet(tests.get_supabase_uid('carl'), 10000);
update private.settings
set value = jsonb_set(value, '{high}', '{"calls": 1, "seconds": 60}')
where key = 'velocity_limits';
select set_config('fixture.alerts', (select count(*) from public.security_alerts)::text, true);
select tests.authenticate_as('carl', aal => 'aal2');
select is(
  public.request_withdrawal('50000000-0000-0000-0000-000000000001', 1000, 'USD', 'key-w1') ->> 'status',
  'approved',
  'the first withdrawal of the minute goes through (small enough to need no approval)'
);
select is(
  public.request_withdrawal('50000000-0000-0000-0000-000000000001', 1000, 'USD', 'key-w2') ->> 'code',
  'PT429',
  'the second is refused with PT429'
);
select is(current_setting('response.status', true), '429', 'answered with 429');
reset role;
select results_eq(
  $$select kind::text, operation, user_id, (details ->> 'refused')::boolean
    from public.security_alerts where details ? 'refused'$$,
  $$values ('velocity_limit', 'request_withdrawal', tests.get_supabase_uid('carl'), true)$$,
  'the refused call wrote a velocity alert, which survives the refusal'
);
select results_eq(
  $$select operation::text, success, metadata ->> 'sqlstate'
    from public.payment_audit_logs where not success order by seq desc limit 1$$,
  $$values ('request_withdrawal', false, 'PT429')$$,
  'and an audit row'
);
select is(
  (select count(*)::int from public.withdrawals where user_id = tests.get_supabase_uid('carl')),
  1,
  'only the first withdrawal exists'
);

-- errors that are not refusals (a serialization failure, a deadlock) are not answered: the
-- caller raises them again, and PostgREST rolls back as usual
select is(
  private.refused_call('release_milestone_payment', 'milestone_payments', 'x', '{}', '40001', 'retry', null, null),
  null,
  'a serialization failure is not a refusal'
);

select * from finish();
rollback;
