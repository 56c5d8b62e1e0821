-- The cool-down of a payout method: adding one, changing where it pays or verifying it starts
-- a cool-down (payout_method_cool_down_seconds, 72 h) that only the database sets; the user is
-- told and a security alert is raised; a withdrawal to it meanwhile waits for two admins'
-- approval, and one approved before the cool-down started is not paid out until it ends.
begin;
select plan(35);

select tests.let_roles_call_pgtap();

select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('ada');
select tests.create_supabase_user('abe');
update public.users set role = 'admin' where id in (tests.get_supabase_uid('ada'), tests.get_supabase_uid('abe'));
select set_config('fixture.carl', tests.get_supabase_uid('carl')::text, true);
select tests.fund_wallet(tests.get_supabase_uid('carl'), 900000);

select is(
  (select value from private.settings where key = 'payout_method_cool_down_seconds'), '259200',
  'the cool-down is 72 hours by default'
);

-- added, as the payout-methods function adds it (payment_service, the user's claims, aal2),
-- with a cool-down of its own choosing, which the database replaces
select tests.authenticate_as('carl', aal => 'aal2', role_name => 'payment_service');
select lives_ok(
  $$insert into public.payout_methods (id, user_id, type, bank_name, last4, currency,
      processor_account_id_lookup, processor_external_account_id_sealed,
      processor_external_account_id_lookup, cool_down_until)
    values ('c0000000-0000-4000-8000-0000000000e1', current_setting('fixture.carl')::uuid,
      'bank_account', 'First Bank', '6789', 'USD', tests.token_lookup('acct_1CoolCarl'),
      tests.sealed_token(), tests.token_lookup('ba_1CoolCarl'), now() - interval '1 day')$$,
  'payment_service adds carl''s payout method'
);
reset role;
select is(
  (select cool_down_until from public.payout_methods where id = 'c0000000-0000-4000-8000-0000000000e1'),
  now() + interval '72 hours',
  'the cool-down starts when it is added, whatever the insert said'
);
select is(
  (
    select array_agg(event || ': ' || title order by created_at, event) from public.notifications
    where user_id = tests.get_supabase_uid('carl') and event like 'payout_method.%'
  ),
  array[format(
    'payout_method.added: Payout method added (First Bank ending 6789): withdrawals to it need '
    || 'staff approval until %s UTC. Not you? Contact support now.',
    to_char((now() + interval '72 hours') at time zone 'UTC', 'YYYY-MM-DD HH24:MI')
  )],
  'carl is told, with the end of the cool-down'
);
select is(
  (
    select array_agg((operation, details ->> 'change', details ->> 'payout_method_id')::text)
    from public.security_alerts
    where kind = 'payout_method_changed' and user_id = tests.get_supabase_uid('carl')
  ),
  array['(payout_methods.added,added,c0000000-0000-4000-8000-0000000000e1)'],
  'a payout_method_changed alert is raised for staff'
);

-- nothing but the database moves it
select tests.authenticate_as_service('payment_service');
select lives_ok(
  $$update public.payout_methods set cool_down_until = null
    where id = 'c0000000-0000-4000-8000-0000000000e1'$$,
  'payment_service may write the row'
);
reset role;
select is(
  (select cool_down_until from public.payout_methods where id = 'c0000000-0000-4000-8000-0000000000e1'),
  now() + interval '72 hours',
  'but the cool-down stays as the database set it'
);
select tests.authenticate_as('carl', aal => 'aal2');
select throws_ok(
  $$update public.payout_methods set cool_down_until = now()
    where id = 'c0000000-0000-4000-8000-0000000000e1'$$,
  '42501', 'permission denied for table payout_methods',
  'carl cannot lift the cool-down'
);
select lives_ok(
  $$update public.payout_methods set nickname = 'Savings'
    where id = 'c0000000-0000-4000-8000-0000000000e1'$$,
  'carl renames it'
);
select is(
  (select cool_down_until from public.payout_methods where id = 'c0000000-0000-4000-8000-0000000000e1'),
  now() + interval '72 hours',
  'carl reads his payout method''s cool-down'
);
reset role;
select is(
  (
    select count(*)::int from public.notifications
    where user_id = tests.get_supabase_uid('carl') and event like 'payout_method.%'
  ),
  1,
  'a new nickname is no change of destination: no notification'
);

-- a withdrawal in the cool-down waits for two admins, whatever its amount
insert into public.withdrawals (id, user_id, payout_method_id, amount_minor, currency)
values ('d0000000-0000-4000-8000-0000000000e1', tests.get_supabase_uid('carl'),
  'c0000000-0000-4000-8000-0000000000e1', 1000, 'USD');
select is(
  (select status::text from public.withdrawals where id = 'd0000000-0000-4000-8000-0000000000e1'),
  'requested',
  'a small withdrawal to a payout method in its cool-down waits for approval'
);
select tests.verify_connected_account('acct_1CoolCarl');
update public.processor_accounts set processor_account_id_sealed = tests.sealed_token()
where processor_account_id_lookup = tests.token_lookup('acct_1CoolCarl');
select is(
  (
    select array_agg(event order by created_at, event) from public.notifications
    where user_id = tests.get_supabase_uid('carl') and event like 'payout_method.%'
  ),
  array['payout_method.added', 'payout_method.verified'],
  'its verification starts the cool-down again, and carl is told'
);
select is(
  (
    select count(*)::int from public.security_alerts
    where kind = 'payout_method_changed' and operation = 'payout_methods.verified'
  ),
  1,
  'with an alert'
);
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select lives_ok(
  $$insert into public.withdrawal_approvals (withdrawal_id, reason)
    values ('d0000000-0000-4000-8000-0000000000e1', 'Called carl back on the number on file')$$,
  'a first admin approves'
);
reset role;
select is(
  (select status::text from public.withdrawals where id = 'd0000000-0000-4000-8000-0000000000e1'),
  'requested',
  'one approval is not enough'
);
select tests.authenticate_as('abe', aal => 'aal2', role_name => 'admin');
select lives_ok(
  $$insert into public.withdrawal_approvals (withdrawal_id, reason)
    values ('d0000000-0000-4000-8000-0000000000e1', 'Bank letter checked against the account')$$,
  'a second, distinct admin approves'
);
reset role;
select is(
  (select status::text from public.withdrawals where id = 'd0000000-0000-4000-8000-0000000000e1'),
  'approved',
  'two admins approve it'
);
select tests.authenticate_as_service('payment_service');
select is(
  (select array_agg(withdrawal_id) from public.withdrawals_to_pay_out()),
  array['d0000000-0000-4000-8000-0000000000e1'::uuid],
  'approved by two admins, it is paid out within the cool-down'
);
reset role;

-- a withdrawal approved before the cool-down started waits for its end
select tests.create_supabase_user('dora', metadata => '{"role": "contractor"}');
select tests.fund_wallet(tests.get_supabase_uid('dora'), 50000);
update private.settings set value = '0' where key = 'payout_method_cool_down_seconds';
insert into public.payout_methods (id, user_id, type, currency, processor_account_id_lookup,
  processor_external_account_id_sealed, processor_external_account_id_lookup)
values ('c0000000-0000-4000-8000-0000000000e2', tests.get_supabase_uid('dora'), 'bank_account',
  'USD', tests.token_lookup('acct_1CoolDora'), tests.sealed_token(), tests.token_lookup('ba_1CoolDora'));
insert into public.withdrawals (id, user_id, payout_method_id, amount_minor, currency)
values ('d0000000-0000-4000-8000-0000000000e2', tests.get_supabase_uid('dora'),
  'c0000000-0000-4000-8000-0000000000e2', 2000, 'USD');
select is(
  (select status::text from public.withdrawals where id = 'd0000000-0000-4000-8000-0000000000e2'),
  'approved',
  'with no cool-down running, a small withdrawal is approved at once'
);
update private.settings set value = '259200' where key = 'payout_method_cool_down_seconds';
select tests.verify_connected_account('acct_1CoolDora');
update public.processor_accounts set processor_account_id_sealed = tests.sealed_token()
where processor_account_id_lookup = tests.token_lookup('acct_1CoolDora');
select tests.authenticate_as_service('payment_service');
select is(
  (
    select count(*)::int from public.withdrawals_to_pay_out()
    where withdrawal_id = 'd0000000-0000-4000-8000-0000000000e2'
  ),
  0,
  'verified after it was approved: it is not listed for payout during the cool-down'
);
select is(
  private.withdrawal_clear_of_cool_down('d0000000-0000-4000-8000-0000000000e2'), false,
  'the check payment_service''s payout path reads says it must wait'
);
reset role;
-- the cool-down ends (a verification with the setting at 0 sets it to now)
update private.settings set value = '0' where key = 'payout_method_cool_down_seconds';
update public.payout_methods set verification_status = 'pending'
where id = 'c0000000-0000-4000-8000-0000000000e2';
update public.payout_methods set verification_status = 'verified'
where id = 'c0000000-0000-4000-8000-0000000000e2';
select tests.authenticate_as_service('payment_service');
select is(
  (
    select count(*)::int from public.withdrawals_to_pay_out()
    where withdrawal_id = 'd0000000-0000-4000-8000-0000000000e2'
  ),
  1,
  'once the cool-down is over, it is paid out'
);
reset role;

-- a change of destination starts it again, and says so
update private.settings set value = '259200' where key = 'payout_method_cool_down_seconds';
update public.payout_methods set bank_name = 'Other Bank', last4 = '1111'
where id = 'c0000000-0000-4000-8000-0000000000e2';
select is(
  (select cool_down_until from public.payout_methods where id = 'c0000000-0000-4000-8000-0000000000e2'),
  now() + interval '72 hours',
  'changing where it pays starts the cool-down'
);
select is(
  (
    select array_agg(event order by event) from public.notifications
    where user_id = tests.get_supabase_uid('dora') and event like 'payout_method.%'
  ),
  array[
    'payout_method.added', 'payout_method.changed', 'payout_method.verified',
    'payout_method.verified'
  ],
  'dora is told of each start'
);
select is(
  (
    select array_agg(details ->> 'change' order by details ->> 'change') from public.security_alerts
    where kind = 'payout_method_changed' and user_id = tests.get_supabase_uid('dora')
  ),
  array['added', 'changed', 'verified', 'verified'],
  'and each start raises an alert, the change included'
);

-- who reads the cool-down: the owner, admins, services; not another user or anon
select tests.authenticate_as('dora', aal => 'aal2');
select is(
  (select count(*)::int from public.payout_methods where cool_down_until is not null),
  1,
  'dora reads her own payout method''s cool-down'
);
select is(
  (select count(*)::int from public.payout_methods where id = 'c0000000-0000-4000-8000-0000000000e1'),
  0,
  'but not carl''s'
);
reset role;
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select is(
  (select count(cool_down_until)::int from public.payout_methods),
  2,
  'an admin reads every cool-down'
);
reset role;
select tests.authenticate_as_service('service_role');
select is(
  (select count(cool_down_until)::int from public.payout_methods),
  2,
  'service_role reads them'
);
reset role;
select tests.clear_authentication();
select throws_ok(
  'select cool_down_until from public.payout_methods',
  '42501', 'permission denied for table payout_methods',
  'anon reads nothing'
);
reset role;

-- no API role reads or runs the cool-down's helpers directly
select is(
  (
    select array_agg(format('%s %s', r.role_name, f) order by r.role_name, f)
    from
      unnest(array['anon', 'authenticated', 'service_role', 'escrow_service', 'admin', 'auditor'])
      as r (role_name),
      unnest(array[
        'private.payout_method_cool_down_until(uuid)',
        'private.withdrawal_clear_of_cool_down(uuid)',
        'private.start_payout_method_cool_down()',
        'private.payout_method_change(text, public.payout_methods, public.payout_methods)',
        'private.tell_of_payout_method_change()'
      ]) as f
    where has_function_privilege(r.role_name, f, 'execute')
  ),
  null,
  'only payment_service (and the owner) may run the cool-down''s helpers'
);
select ok(
  has_function_privilege('payment_service', 'private.withdrawal_clear_of_cool_down(uuid)', 'execute'),
  'payment_service runs the check its payout path needs'
);

-- the trigger holds for the owner's own writes too
select is(
  (
    select count(*)::int from pg_catalog.pg_trigger
    where tgrelid = 'public.payout_methods'::regclass
      and tgname in ('start_payout_method_cool_down', 'tell_of_payout_method_change')
      and tgenabled = 'O'
  ),
  2,
  'the cool-down''s triggers are enabled'
);
select is(
  (select status::text from public.withdrawals where id = 'd0000000-0000-4000-8000-0000000000e1'),
  'approved',
  'carl''s approved withdrawal is unchanged'
);

select * from finish();
rollback;
