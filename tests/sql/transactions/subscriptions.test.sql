-- public.subscriptions: the owner reads their own and writes nothing; payment_service and
-- service_role read, insert and update all; admin reads all; no one deletes.
begin;
select plan(40);

-- the backend and staff roles may call pgTAP's assertions (rolled back with the test)
select tests.let_roles_call_pgtap();

-- fixtures, as postgres (the tables' owner, which bypasses RLS)
select tests.create_supabase_user('alice');
select tests.create_supabase_user('bob');
select tests.create_supabase_user('adm');
select tests.create_supabase_user('aud');
update public.users set role = 'admin' where id = tests.get_supabase_uid('adm');
update public.users set role = 'auditor' where id = tests.get_supabase_uid('aud');
-- user ids any role can read, even those with no USAGE on the tests schema
select set_config('fixture.alice', tests.get_supabase_uid('alice')::text, true);
select set_config('fixture.bob', tests.get_supabase_uid('bob')::text, true);

insert into public.subscriptions (
  id, user_id, plan, status, processor_subscription_id, amount_minor, currency, current_period_end
)
values
  ('aaaaaaaa-0000-4000-8000-000000000001', tests.get_supabase_uid('alice'), 'pro', 'active',
    'sub_1A2b3C', 2900, 'USD', now() + interval '30 days'),
  ('bbbbbbbb-0000-4000-8000-000000000001', tests.get_supabase_uid('bob'), 'basic', 'active',
    'sub_2A2b3C', 900, 'USD', now() + interval '30 days');

-- as an anonymous request: no privilege at all
select tests.clear_authentication();
select throws_ok(
  'select count(*) from public.subscriptions',
  '42501', 'permission denied for table subscriptions',
  'anon cannot read subscriptions'
);
select throws_ok(
  $$insert into public.subscriptions (user_id, plan, status, processor_subscription_id, amount_minor, currency)
    values (gen_random_uuid(), 'pro', 'active', 'sub_9Anon1', 2900, 'USD')$$,
  '42501', 'permission denied for table subscriptions',
  'anon cannot add a subscription'
);
select throws_ok(
  $$update public.subscriptions set status = 'canceled' where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table subscriptions',
  'anon cannot update a subscription'
);
select throws_ok(
  $$delete from public.subscriptions where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table subscriptions',
  'anon cannot delete a subscription'
);

-- as the owner at aal1
select tests.authenticate_as('alice');
select results_eq(
  'select id from public.subscriptions',
  $$values ('aaaaaaaa-0000-4000-8000-000000000001'::uuid)$$,
  'the owner sees exactly their own subscription'
);
select is(
  (select count(*)::int from public.subscriptions where id = 'bbbbbbbb-0000-4000-8000-000000000001'),
  0,
  'reading another user''s subscription by id shows nothing'
);
select throws_ok(
  format(
    $$insert into public.subscriptions (user_id, plan, status, processor_subscription_id, amount_minor, currency)
      values (%L, 'enterprise', 'active', 'sub_3A2b3C', 1, 'USD')$$,
    current_setting('fixture.alice')
  ),
  '42501', 'permission denied for table subscriptions',
  'the owner cannot grant themselves a subscription'
);
select throws_ok(
  format(
    $$insert into public.subscriptions (user_id, plan, status, processor_subscription_id, amount_minor, currency)
      values (%L, 'enterprise', 'active', 'sub_4A2b3C', 1, 'USD')$$,
    current_setting('fixture.bob')
  ),
  '42501', 'permission denied for table subscriptions',
  'the owner cannot add a subscription for another user'
);
select throws_ok(
  $$update public.subscriptions set plan = 'enterprise' where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table subscriptions',
  'the owner cannot upgrade their own subscription in the database'
);
select throws_ok(
  format(
    $$update public.subscriptions set user_id = %L where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
    current_setting('fixture.bob')
  ),
  '42501', 'permission denied for table subscriptions',
  'the owner cannot hand their subscription to another user'
);
select throws_ok(
  $$delete from public.subscriptions where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table subscriptions',
  'the owner cannot delete their own subscription'
);

-- as the owner at aal2: MFA adds nothing here
select tests.authenticate_as('alice', aal => 'aal2');
select results_eq(
  'select id from public.subscriptions',
  $$values ('aaaaaaaa-0000-4000-8000-000000000001'::uuid)$$,
  'the owner at aal2 sees exactly their own subscription'
);
select throws_ok(
  $$update public.subscriptions set status = 'active', cancel_at_period_end = false
    where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table subscriptions',
  'the owner cannot update their own subscription at aal2 either'
);
select throws_ok(
  format(
    $$insert into public.subscriptions (user_id, plan, status, processor_subscription_id, amount_minor, currency)
      values (%L, 'enterprise', 'active', 'sub_5A2b3C', 1, 'USD')$$,
    current_setting('fixture.alice')
  ),
  '42501', 'permission denied for table subscriptions',
  'the owner cannot add a subscription at aal2 either'
);

-- as another user at aal1
select tests.authenticate_as('bob');
select is(
  (select count(*)::int from public.subscriptions where id = 'aaaaaaaa-0000-4000-8000-000000000001'),
  0,
  'another user at aal1 cannot read the owner''s subscription by id'
);
select throws_ok(
  $$update public.subscriptions set status = 'canceled' where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table subscriptions',
  'another user at aal1 cannot update the owner''s subscription'
);
select throws_ok(
  $$delete from public.subscriptions where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table subscriptions',
  'another user at aal1 cannot delete the owner''s subscription'
);

-- as another user at aal2
select tests.authenticate_as('bob', aal => 'aal2');
select is(
  (select count(*)::int from public.subscriptions where id = 'aaaaaaaa-0000-4000-8000-000000000001'),
  0,
  'another user at aal2 cannot read the owner''s subscription by id'
);
select results_eq(
  'select id from public.subscriptions',
  $$values ('bbbbbbbb-0000-4000-8000-000000000001'::uuid)$$,
  'another user at aal2 sees only their own subscription'
);

-- as admin (a staff user whose JWT role is admin): reads only
reset role;
select tests.authenticate_as('adm', aal => 'aal2', role_name => 'admin');
select is(
  (select count(*)::int from public.subscriptions
    where id in ('aaaaaaaa-0000-4000-8000-000000000001', 'bbbbbbbb-0000-4000-8000-000000000001')),
  2,
  'admin reads every user''s subscriptions'
);
select throws_ok(
  format(
    $$insert into public.subscriptions (user_id, plan, status, processor_subscription_id, amount_minor, currency)
      values (%L, 'pro', 'active', 'sub_6A2b3C', 2900, 'USD')$$,
    current_setting('fixture.alice')
  ),
  '42501', 'permission denied for table subscriptions',
  'admin cannot add a subscription'
);
select throws_ok(
  $$update public.subscriptions set status = 'canceled' where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table subscriptions',
  'admin cannot update a subscription'
);
select throws_ok(
  $$delete from public.subscriptions where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table subscriptions',
  'admin cannot delete a subscription'
);

-- as auditor: no privilege at all
reset role;
select tests.authenticate_as('aud', role_name => 'auditor');
select throws_ok(
  'select count(*) from public.subscriptions',
  '42501', 'permission denied for table subscriptions',
  'auditor cannot read subscriptions'
);
select throws_ok(
  format(
    $$insert into public.subscriptions (user_id, plan, status, processor_subscription_id, amount_minor, currency)
      values (%L, 'pro', 'active', 'sub_7A2b3C', 2900, 'USD')$$,
    current_setting('fixture.alice')
  ),
  '42501', 'permission denied for table subscriptions',
  'auditor cannot add a subscription'
);
select throws_ok(
  $$update public.subscriptions set status = 'canceled' where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table subscriptions',
  'auditor cannot update a subscription'
);
select throws_ok(
  $$delete from public.subscriptions where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table subscriptions',
  'auditor cannot delete a subscription'
);

-- as payment_service: reads, inserts and updates all, deletes none
reset role;
select tests.authenticate_as_service('payment_service');
select is(
  (select count(*)::int from public.subscriptions
    where id in ('aaaaaaaa-0000-4000-8000-000000000001', 'bbbbbbbb-0000-4000-8000-000000000001')),
  2,
  'payment_service reads every user''s subscriptions'
);
select lives_ok(
  format(
    $$insert into public.subscriptions (user_id, plan, status, processor_subscription_id, amount_minor, currency)
      values (%L, 'team', 'trialing', 'sub_8A2b3C', 4900, 'USD')$$,
    current_setting('fixture.alice')
  ),
  'payment_service adds a subscription for a user'
);
select results_eq(
  $$with changed as (
      update public.subscriptions set status = 'past_due'
      where id = 'bbbbbbbb-0000-4000-8000-000000000001' returning 1
    ) select count(*)::int from changed$$,
  $$values (1)$$,
  'payment_service updates a user''s subscription'
);
select throws_ok(
  $$delete from public.subscriptions where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table subscriptions',
  'payment_service cannot delete a subscription'
);

-- as escrow_service: no privilege at all
reset role;
select tests.authenticate_as_service('escrow_service');
select throws_ok(
  'select count(*) from public.subscriptions',
  '42501', 'permission denied for table subscriptions',
  'escrow_service cannot read subscriptions'
);
select throws_ok(
  format(
    $$insert into public.subscriptions (user_id, plan, status, processor_subscription_id, amount_minor, currency)
      values (%L, 'pro', 'active', 'sub_9A2b3C', 2900, 'USD')$$,
    current_setting('fixture.alice')
  ),
  '42501', 'permission denied for table subscriptions',
  'escrow_service cannot add a subscription'
);
select throws_ok(
  $$update public.subscriptions set status = 'canceled' where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table subscriptions',
  'escrow_service cannot update a subscription'
);
select throws_ok(
  $$delete from public.subscriptions where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table subscriptions',
  'escrow_service cannot delete a subscription'
);

-- as service_role: BYPASSRLS; reads, inserts and updates all, deletes none
reset role;
select tests.authenticate_as_service('service_role');
select is(
  (select count(*)::int from public.subscriptions
    where id in ('aaaaaaaa-0000-4000-8000-000000000001', 'bbbbbbbb-0000-4000-8000-000000000001')),
  2,
  'service_role reads every user''s subscriptions'
);
select lives_ok(
  format(
    $$insert into public.subscriptions (user_id, plan, status, processor_subscription_id, amount_minor, currency)
      values (%L, 'team', 'incomplete', 'sub_1Svc01', 4900, 'USD')$$,
    current_setting('fixture.bob')
  ),
  'service_role adds a subscription for a user'
);
select results_eq(
  $$with changed as (
      update public.subscriptions set cancel_at_period_end = true
      where id = 'aaaaaaaa-0000-4000-8000-000000000001' returning 1
    ) select count(*)::int from changed$$,
  $$values (1)$$,
  'service_role updates a user''s subscription'
);
select throws_ok(
  $$delete from public.subscriptions where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table subscriptions',
  'service_role cannot delete a subscription'
);

-- the outcome, as postgres: the owner's subscription changed only by the services
reset role;
select results_eq(
  $$select user_id, plan, status::text, amount_minor, cancel_at_period_end from public.subscriptions
    where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  format(
    $$values (%L::uuid, 'pro'::text, 'active'::text, 2900::bigint, true)$$,
    tests.get_supabase_uid('alice')
  ),
  'the owner''s subscription kept its owner, plan, status and amount'
);

select * from finish();
rollback;
