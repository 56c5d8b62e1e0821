-- Parties hear of every payment event; staff get security alerts; velocity limits refuse
-- the call over the limit with PT429 after the one that reached it raised the alert.
begin;
select plan(22);

-- Its payout methods are new and withdrawn to at once: their cool-down is lifted (the
-- cool-down's own tests: withdrawals/payout_method_cool_down.test.sql).
update private.settings set value = '0' where key = 'payout_method_cool_down_seconds';

-- the backend and staff roles may call pgTAP's assertions (rolled back with the test)
select tests.let_roles_call_pgtap();

-- fixtures, as postgres: business hours all day (no after-hours alerts unless asked for)
update private.settings set value = '{"time_zone": "UTC", "from": 0, "to": 24}'
where key = 'business_hours';
update private.settings set value = '0' where key = 'escrow_hold_seconds';
select tests.create_supabase_user('hana');
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('sam');
select set_config('fixture.hana', tests.get_supabase_uid('hana')::text, true);
select tests.create_project_with_milestones(
  'hana',
  'carl',
  amounts => array[40000, 2000000],
  titles => array['Cabinets', 'Counters'],
  payments => 0,
  project_id => '10000000-0000-0000-0000-000000000001'
);

-- a payment: the payer is told it started, the payee that it is pending
select tests.authenticate_as('hana');
insert into public.milestone_payments (milestone_id) values ('20000000-0000-0000-0000-000000000001');
select results_eq(
  $$select event, amount_minor from public.notifications order by created_at$$,
  $$values ('milestone_payment.initiated', 40000::bigint)$$,
  'the payer gets a confirmation that the payment started (user story 2)'
);
reset role;
select tests.authenticate_as('carl');
select results_eq(
  $$select event, amount_minor from public.notifications$$,
  $$values ('milestone_payment.pending', 40000::bigint)$$,
  'the payee is told of the pending payment (user story 3)'
);
reset role;
select tests.authenticate_as('sam');
select is((select count(*)::int from public.notifications), 0, 'no one else sees them');
reset role;

-- every later event reaches both parties (user story 5)
select set_config(
  'fixture.payment',
  (select id::text from public.milestone_payments where milestone_id = '20000000-0000-0000-0000-000000000001'),
  true
);
select tests.set_milestone_payment_status(current_setting('fixture.payment')::uuid, 'released');
select tests.authenticate_as('hana');
select results_eq(
  $$select event from public.notifications order by event$$,
  $$values ('milestone_payment.funded'), ('milestone_payment.initiated'), ('milestone_payment.released')$$,
  'the payer hears of the funding and the release'
);
select lives_ok(
  $$update public.notifications set read_at = now()$$,
  'a user marks their notifications read'
);
select throws_ok(
  $$update public.notifications set title = 'Nothing happened'$$,
  '42501', 'permission denied for table notifications',
  'but cannot rewrite them'
);
select throws_ok(
  format(
    $$insert into public.notifications (user_id, event, title) values (%L, 'fake', 'Fake news')$$,
    current_setting('fixture.hana')
  ),
  '42501', 'permission denied for table notifications',
  'nor write one'
);
select throws_ok(
  $$delete from public.notifications$$,
  '42501', 'permission denied for table notifications',
  'nor delete one'
);
reset role;
select tests.authenticate_as('carl');
select is(
  (select count(*)::int from public.notifications where read_at is not null),
  0,
  'hana marking hers read touched none of carl''s'
);
reset role;

-- security alerts: an amount over the threshold, a large payment right after a new method
insert into public.payment_methods (user_id, type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup)
values (tests.get_supabase_uid('hana'), 'credit_card', tests.sealed_token(), tests.token_lookup('pm_1NewCard01'), tests.token_lookup('cus_Hana01'));
select tests.authenticate_as('hana', aal => 'aal2');
insert into public.milestone_payments (milestone_id) values ('20000000-0000-0000-0000-000000000002');
reset role;
select tests.authenticate_as_service('auditor');
select results_eq(
  $$select kind::text, operation from public.security_alerts order by kind$$,
  $$values ('amount_threshold', 'milestone_payments.insert'),
    ('new_method_large_payment', 'milestone_payments.insert')$$,
  'a $20,000 payment right after a new card raises both alerts'
);
reset role;
select tests.authenticate_as('hana', aal => 'aal2');
select throws_ok(
  $$select * from public.security_alerts$$,
  '42501', 'permission denied for table security_alerts',
  'a user cannot read the alerts'
);
reset role;
select tests.authenticate_as('carl', aal => 'aal2', role_name => 'admin');
select is((select count(*)::int from public.security_alerts), 2, 'an admin reads them');
select throws_ok(
  $$delete from public.security_alerts$$,
  '42501', 'permission denied for table security_alerts',
  'and cannot delete them'
);
reset role;

-- after hours
update private.settings set value = '{"time_zone": "UTC", "from": 0, "to": 0}'
where key = 'business_hours';
select tests.fund_wallet(tests.get_supabase_uid('carl'), 50000);
insert into public.payout_methods (id, user_id, type, processor_account_id_lookup, processor_external_account_id_sealed, processor_external_account_id_lookup, currency)
values ('50000000-0000-0000-0000-000000000001', tests.get_supabase_uid('carl'), 'bank_account',
  tests.token_lookup('acct_1Carl01'), tests.sealed_token(), tests.token_lookup('ba_1Carl01'), 'USD');
select tests.authenticate_as('carl', aal => 'aal2');
insert into public.withdrawals (payout_method_id, amount_minor, currency)
values ('50000000-0000-0000-0000-000000000001', 1000, 'USD');
reset role;
select is(
  (select count(*)::int from public.security_alerts where kind = 'after_hours' and operation = 'withdrawals.insert'),
  1,
  'a withdrawal outside business hours raises an after-hours alert'
);
select tests.authenticate_as('carl');
select is(
  (select event from public.notifications where withdrawal_id is not null),
  'withdrawal.requested',
  'and its owner is told of it'
);
reset role;
update private.settings set value = '{"time_zone": "UTC", "from": 0, "to": 24}'
where key = 'business_hours';

-- velocity: the high level allows 2 calls a minute here
update private.settings
set value = jsonb_set(value, '{high}', '{"calls": 2, "seconds": 60}')
where key = 'velocity_limits';
select tests.authenticate_as('carl', aal => 'aal2');
select lives_ok(
  $$insert into public.withdrawals (payout_method_id, amount_minor, currency)
    values ('50000000-0000-0000-0000-000000000001', 1000, 'USD')$$,
  'the second withdrawal of the minute reaches the limit, and goes through'
);
select throws_ok(
  $$insert into public.withdrawals (payout_method_id, amount_minor, currency)
    values ('50000000-0000-0000-0000-000000000001', 1000, 'USD')$$,
  'PT429', 'too many withdrawals.insert calls: at most 2 per 60 seconds',
  'the third is refused with PT429'
);
select throws_ok(
  $$select tests.raise_if_refused(public.request_withdrawal('50000000-0000-0000-0000-000000000001', 1000, 'USD', 'key-w3'))$$,
  'PT429', 'too many withdrawals.insert calls: at most 2 per 60 seconds',
  'through the RPC too: the limit lives on the table'
);
reset role;
select is(
  (select count(*)::int from public.withdrawals where user_id = tests.get_supabase_uid('carl')),
  2,
  'the refused withdrawals left nothing behind'
);
select results_eq(
  $$select kind::text, operation, (details ->> 'calls')::int from public.security_alerts
    where kind = 'velocity_limit'$$,
  $$values ('velocity_limit', 'withdrawals.insert', 2)$$,
  'reaching the limit raised a velocity alert'
);
select results_eq(
  $$select operation, call_count from private.rate_limit_counters
    where user_id = tests.get_supabase_uid('carl')$$,
  $$values ('withdrawals.insert', 2)$$,
  'the counter is per user and per operation, and the refused calls did not count'
);
select tests.authenticate_as_service('payment_service');
select lives_ok(
  $$update public.withdrawals set status = 'processing'
    where user_id = (select user_id from public.withdrawals limit 1)$$,
  'services are not rate limited'
);

select * from finish();
rollback;
