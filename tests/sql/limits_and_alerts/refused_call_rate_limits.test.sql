-- Refused calls count towards the caller's velocity limits, as accepted ones do. Past the
-- limit a refusal is answered 429, and only the first of the window leaves an audit row:
-- the later ones are counted in one security alert per caller, operation and window.
begin;
select plan(22);

-- Its payout methods are new and withdrawn to at once: their cool-down is lifted (the
-- cool-down's own tests: withdrawals/payout_method_cool_down.test.sql).
update private.settings set value = '0' where key = 'payout_method_cool_down_seconds';

select tests.let_roles_call_pgtap();

-- fixtures, as postgres: hana's kitchen, built by carl, with a pending payment; sam, a
-- stranger, with a project of his own; carl's bank account and money to withdraw
select tests.create_supabase_user('hana');
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('sam');
update private.settings set value = '{"time_zone": "UTC", "from": 0, "to": 24}'
where key = 'business_hours';
insert into public.projects (id, owner_id, contractor_id, title)
values
('10000000-0000-4000-8000-000000000001', tests.get_supabase_uid('hana'), tests.get_supabase_uid('carl'), 'Kitchen remodel'),
('10000000-0000-4000-8000-000000000002', tests.get_supabase_uid('sam'), tests.get_supabase_uid('carl'), 'Porch');
insert into public.project_milestones (id, project_id, position, title, amount_minor, currency)
values
('20000000-0000-4000-8000-000000000001', '10000000-0000-4000-8000-000000000001', 1, 'Cabinets', 40000, 'USD'),
('20000000-0000-4000-8000-000000000002', '10000000-0000-4000-8000-000000000002', 1, 'Steps', 30000, 'USD');
insert into public.milestone_payments (id, milestone_id, payer_id)
values ('30000000-0000-4000-8000-000000000001', '20000000-0000-4000-8000-000000000001', tests.get_supabase_uid('hana'));
insert into public.payout_methods (id, user_id, type, processor_account_id_lookup, processor_external_account_id_sealed, processor_external_account_id_lookup, currency)
values ('60000000-0000-4000-8000-000000000001', tests.get_supabase_uid('carl'), 'bank_account',
  tests.token_lookup('acct_1CarlBank'), tests.sealed_token(), tests.token_lookup('ba_1CarlBank'), 'USD');
select tests.fund_wallet(tests.get_supabase_uid('carl'), 100000);
select set_config('fixture.mark', (select max(seq) from public.payment_audit_logs)::text, true);

-- each RPC a user calls meets the limit of the endpoint matrix's operation
select results_eq(
  $$select rpc, operation, rate_level from private.rate_limit_rules where rpc is not null order by rpc$$,
  $$values
    ('begin_funding_attempt', 'milestone_payments.fund', 'medium'),
    ('begin_onboarding_payout_account', 'processor_accounts.onboard', 'medium'),
    ('begin_saving_payment_method', 'payment_methods.save', 'medium'),
    ('cancel_milestone_payment', 'milestone_payments.cancel', 'medium'),
    ('create_milestone_payment', 'milestone_payments.insert', 'medium'),
    ('open_dispute', 'disputes.insert', 'medium'),
    ('reject_milestone', 'project_milestones.reject', 'medium'),
    ('release_lapsed_milestone_payment', 'milestone_payments.release_lapsed', 'high'),
    ('release_milestone_payment', 'milestone_payments.release', 'high'),
    ('request_withdrawal', 'withdrawals.insert', 'high'),
    ('submit_milestone', 'project_milestones.submit', 'medium')$$,
  'create, cancel, fund, saving a card, onboarding for payouts, dispute, submitting and rejecting a milestone are Medium, release (the payer''s or the payee''s) and withdraw High'
);

-- sam tries to pay hana's milestone 45 times in one minute (Medium: 20 calls)
select tests.authenticate_as('sam');
select is(
  (
    select array_agg(a ->> 'code' order by n)
    from generate_series(1, 45) as n
    cross join lateral public.create_milestone_payment(
      '20000000-0000-4000-8000-000000000001', 'key-' || n
    ) as a
  ),
  array_fill('42501'::text, array[20]) || array_fill('PT429'::text, array[25]),
  'the first 20 refusals answer 403, the 25 after them 429'
);
select is(current_setting('response.status', true), '429', 'with the status 429');
select throws_ok(
  $$select tests.raise_if_refused(
    public.create_milestone_payment('20000000-0000-4000-8000-000000000002', 'key-own'))$$,
  'PT429', 'too many milestone_payments.insert calls: at most 20 per 60 seconds',
  'sam''s own payment is refused in this window too: his refusals counted'
);
reset role;
select results_eq(
  $$select count(*)::int, count(*) filter (where metadata ->> 'sqlstate' = '42501')::int,
      count(*) filter (where metadata ->> 'sqlstate' = 'PT429')::int
    from public.payment_audit_logs
    where seq > current_setting('fixture.mark')::bigint and user_id = tests.get_supabase_uid('sam')$$,
  $$values (21, 20, 1)$$,
  'the log has 21 rows of them: the 20 refusals under the limit and the first over it'
);
select results_eq(
  $$select operation, (details ->> 'calls')::int, details ? 'refused'
    from public.security_alerts where user_id = tests.get_supabase_uid('sam') order by created_at, operation$$,
  $$values ('create_milestone_payment', 20, true), ('milestone_payments.insert', 20, false)$$,
  'two alerts: the limit reached, and one for all the refusals over it'
);
select results_eq(
  $$select (details ->> 'refused_calls')::int, details ->> 'message', (details ->> 'window_seconds')::int,
      (details ->> 'window_start')::timestamptz = to_timestamp(floor(extract(epoch from now()) / 60) * 60)
    from public.security_alerts where user_id = tests.get_supabase_uid('sam') and details ? 'refused'$$,
  $$values (25, 'too many milestone_payments.insert calls: at most 20 per 60 seconds', 60, true)$$,
  'the alert counts the 25 refusals over the limit in this window'
);
select results_eq(
  $$select operation, call_count, refusal_alert_id = (select id from public.security_alerts
      where user_id = tests.get_supabase_uid('sam') and details ? 'refused')
    from private.rate_limit_counters where user_id = tests.get_supabase_uid('sam')$$,
  $$values ('milestone_payments.insert', 45, true)$$,
  'the counter holds all 45 calls, and the alert it updates'
);

-- the next window: sam pays his own milestone
update private.rate_limit_counters set window_start = window_start - interval '60 seconds'
where user_id = tests.get_supabase_uid('sam');
select set_config('response.status', '', true);
select tests.authenticate_as('sam');
select is(
  tests.raise_if_refused(
    public.create_milestone_payment('20000000-0000-4000-8000-000000000002', 'key-own')
  ) ->> 'status',
  'pending',
  'in the next window sam pays his own milestone'
);
reset role;
select results_eq(
  $$select call_count, refusal_alert_id is null from private.rate_limit_counters
    where user_id = tests.get_supabase_uid('sam') and window_start = to_timestamp(floor(extract(epoch from now()) / 60) * 60)$$,
  $$values (1, true)$$,
  'and his accepted call is the first of the new window'
);

-- accepted calls count too: carl withdraws twice (High: 2 calls here), then is refused
update private.settings
set value = jsonb_set(value, '{high}', '{"calls": 2, "seconds": 60}')
where key = 'velocity_limits';
select tests.authenticate_as('carl', aal => 'aal2');
select is(
  array[
    public.request_withdrawal('60000000-0000-4000-8000-000000000001', 1000, 'USD', 'key-w1') ->> 'status',
    public.request_withdrawal('60000000-0000-4000-8000-000000000001', 1000, 'USD', 'key-w2') ->> 'status'
  ],
  array['approved', 'approved'],
  'carl''s first two withdrawals of the minute go through'
);
select is(
  public.request_withdrawal('60000000-0000-4000-8000-000000000001', 1000000, 'USD', 'key-w3'),
  jsonb_build_object(
    'code', 'PT429', 'message', 'too many withdrawals.insert calls: at most 2 per 60 seconds',
    'details', null, 'hint', 'wait for the window to pass, then retry'
  ),
  'a third, for more than he has, is answered 429: the limit, not his balance'
);
select is(
  public.request_withdrawal(gen_random_uuid(), 1000, 'USD', 'key-w4') ->> 'code',
  'PT429',
  'and so is a fourth, to a payout method that does not exist'
);
reset role;
select results_eq(
  $$select operation::text, metadata ->> 'sqlstate', error_message from public.payment_audit_logs
    where seq > current_setting('fixture.mark')::bigint and user_id = tests.get_supabase_uid('carl')
      and not success$$,
  $$values ('request_withdrawal', 'PT429', 'too many withdrawals.insert calls: at most 2 per 60 seconds')$$,
  'one audit row records the first refusal over the limit, none the second'
);
select results_eq(
  $$select operation, (details ->> 'refused_calls')::int from public.security_alerts
    where user_id = tests.get_supabase_uid('carl') and details ? 'refused'$$,
  $$values ('request_withdrawal', 2)$$,
  'the alert counts both'
);
select is(
  (select count(*)::int from public.withdrawals where user_id = tests.get_supabase_uid('carl')),
  2,
  'and only the two accepted withdrawals exist'
);

-- a refused cancel counts against the cancel limit (Medium), accepted or not
update private.settings
set value = jsonb_set(value, '{medium}', '{"calls": 2, "seconds": 60}')
where key = 'velocity_limits';
select tests.authenticate_as('hana');
select is(
  array[
    public.cancel_milestone_payment(gen_random_uuid(), 'key-c1') ->> 'code',
    public.cancel_milestone_payment(gen_random_uuid(), 'key-c2') ->> 'code',
    public.cancel_milestone_payment('30000000-0000-4000-8000-000000000001', 'key-c3') ->> 'code'
  ],
  array['PT404', 'PT404', 'PT429'],
  'two cancels of unknown payments use hana''s two cancels of the minute'
);
reset role;
select is(
  (select status::text from public.milestone_payments where id = '30000000-0000-4000-8000-000000000001'),
  'pending',
  'so her own payment is still pending'
);
update private.rate_limit_counters set window_start = window_start - interval '60 seconds'
where user_id = tests.get_supabase_uid('hana');
select set_config('response.status', '', true);
select tests.authenticate_as('hana');
select is(
  tests.raise_if_refused(
    public.cancel_milestone_payment('30000000-0000-4000-8000-000000000001', 'key-c4')
  ) ->> 'status',
  'canceled',
  'in the next window she cancels it'
);
reset role;
select is(
  (select call_count from private.rate_limit_counters where user_id = tests.get_supabase_uid('hana')
    and operation = 'milestone_payments.cancel'
    and window_start = to_timestamp(floor(extract(epoch from now()) / 60) * 60)),
  1,
  'and the accepted cancel counted'
);

-- services and staff are not limited: payment_service's refusals are each recorded
select tests.authenticate_as_service('payment_service');
select is(
  (
    select array_agg(distinct a ->> 'code')
    from generate_series(1, 30) as n
    cross join lateral public.fail_withdrawal(gen_random_uuid(), 'The bank refused it', 'key-f' || n) as a
  ),
  array['PT404'],
  'thirty refused calls of payment_service all answer 404'
);
reset role;
select is(
  (select count(*)::int from public.payment_audit_logs
    where seq > current_setting('fixture.mark')::bigint and operation = 'fail_withdrawal'),
  30,
  'and each is recorded'
);

select * from finish();
rollback;
