-- public.escrow_accounts: a user reads their own and opens one, with MFA (aal2), only for a
-- project they own, and never updates or deletes one; admin and escrow_service read, open and
-- change the status of any; payment_service reads; service_role reads, opens and changes the
-- status; no one writes the balance, and no one deletes.
begin;
select plan(54);

-- the backend and staff roles may call pgTAP's assertions (rolled back with the test)
select tests.let_roles_call_pgtap();

-- fixtures, as postgres (the tables' owner, which bypasses RLS)
select tests.create_supabase_user('alice');
select tests.create_supabase_user('bob');
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('adm');
select tests.create_supabase_user('aud');
update public.users set role = 'admin' where id = tests.get_supabase_uid('adm');
update public.users set role = 'auditor' where id = tests.get_supabase_uid('aud');
-- user ids any role can read, even those with no USAGE on the tests schema
select set_config('fixture.alice', tests.get_supabase_uid('alice')::text, true);
select set_config('fixture.bob', tests.get_supabase_uid('bob')::text, true);

insert into public.projects (id, owner_id, contractor_id, title, status)
values
  ('aaaaaaaa-0000-4000-8000-0000000000f1', tests.get_supabase_uid('alice'),
    tests.get_supabase_uid('carl'), 'Alice kitchen', 'in_progress'),
  ('aaaaaaaa-0000-4000-8000-0000000000f2', tests.get_supabase_uid('alice'), null,
    'Alice roof', 'open'),
  ('bbbbbbbb-0000-4000-8000-0000000000f1', tests.get_supabase_uid('bob'), null,
    'Bob deck', 'open');
insert into public.escrow_accounts (id, user_id, project_id, currency, balance_minor)
values
  ('aaaaaaaa-0000-4000-8000-000000000001', tests.get_supabase_uid('alice'),
    'aaaaaaaa-0000-4000-8000-0000000000f1', 'USD', 50000),
  ('bbbbbbbb-0000-4000-8000-000000000001', tests.get_supabase_uid('bob'),
    'bbbbbbbb-0000-4000-8000-0000000000f1', 'USD', 70000);

-- as an anonymous request: no privilege at all
select tests.clear_authentication();
select throws_ok(
  'select count(*) from public.escrow_accounts',
  '42501', 'permission denied for table escrow_accounts',
  'anon cannot read escrow accounts'
);
select throws_ok(
  $$insert into public.escrow_accounts (project_id, currency)
    values ('aaaaaaaa-0000-4000-8000-0000000000f2', 'USD')$$,
  '42501', 'permission denied for table escrow_accounts',
  'anon cannot open an escrow account'
);
select throws_ok(
  $$update public.escrow_accounts set status = 'closed' where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table escrow_accounts',
  'anon cannot update an escrow account'
);
select throws_ok(
  $$delete from public.escrow_accounts where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table escrow_accounts',
  'anon cannot delete an escrow account'
);

-- as the owner at aal1
select tests.authenticate_as('alice');
select results_eq(
  'select id from public.escrow_accounts',
  $$values ('aaaaaaaa-0000-4000-8000-000000000001'::uuid)$$,
  'the owner sees exactly their own escrow account'
);
select is(
  (select count(*)::int from public.escrow_accounts where id = 'bbbbbbbb-0000-4000-8000-000000000001'),
  0,
  'reading another user''s escrow account by id shows nothing'
);
select throws_ok(
  $$insert into public.escrow_accounts (project_id, currency)
    values ('aaaaaaaa-0000-4000-8000-0000000000f2', 'USD')$$,
  '42501',
  'new row violates row-level security policy "Adding escrow accounts requires MFA (aal2)" for table "escrow_accounts"',
  'opening an escrow account for their own project at aal1 is refused: it needs MFA'
);
select throws_ok(
  format(
    $$insert into public.escrow_accounts (user_id, project_id, currency)
      values (%L, 'aaaaaaaa-0000-4000-8000-0000000000f2', 'USD')$$,
    current_setting('fixture.bob')
  ),
  '42501', 'permission denied for table escrow_accounts',
  'opening an escrow account for another user (a forged user_id) is refused at aal1'
);
select throws_ok(
  $$update public.escrow_accounts set status = 'closed' where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table escrow_accounts',
  'the owner cannot change the status of their own escrow account'
);
select throws_ok(
  $$update public.escrow_accounts set balance_minor = 99999999 where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table escrow_accounts',
  'the owner cannot write the balance of their own escrow account'
);
select throws_ok(
  format(
    $$update public.escrow_accounts set user_id = %L where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
    current_setting('fixture.bob')
  ),
  '42501', 'permission denied for table escrow_accounts',
  'the owner cannot hand their escrow account to another user'
);
select throws_ok(
  $$delete from public.escrow_accounts where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table escrow_accounts',
  'the owner cannot delete their own escrow account'
);

-- as the owner at aal2
select tests.authenticate_as('alice', aal => 'aal2');
select lives_ok(
  $$insert into public.escrow_accounts (project_id, currency)
    values ('aaaaaaaa-0000-4000-8000-0000000000f2', 'USD')$$,
  'the owner opens an escrow account for their own project at aal2'
);
select results_eq(
  $$select user_id::text, balance_minor, status::text from public.escrow_accounts
    where project_id = 'aaaaaaaa-0000-4000-8000-0000000000f2'$$,
  format($$values (%L, 0::bigint, 'open')$$, current_setting('fixture.alice')),
  'the new escrow account is the owner''s, open, with a zero balance'
);
select throws_ok(
  $$insert into public.escrow_accounts (project_id, currency, balance_minor)
    values ('aaaaaaaa-0000-4000-8000-0000000000f2', 'EUR', 1000000)$$,
  '42501', 'permission denied for table escrow_accounts',
  'the owner cannot open an escrow account with a balance of their choosing'
);
select throws_ok(
  $$insert into public.escrow_accounts (project_id, currency)
    values ('bbbbbbbb-0000-4000-8000-0000000000f1', 'EUR')$$,
  '42501',
  'new row violates row-level security policy "Users can open escrow only for their own projects" for table "escrow_accounts"',
  'opening an escrow account for another user''s project is refused at aal2'
);
select throws_ok(
  format(
    $$insert into public.escrow_accounts (user_id, project_id, currency)
      values (%L, 'aaaaaaaa-0000-4000-8000-0000000000f2', 'EUR')$$,
    current_setting('fixture.bob')
  ),
  '42501', 'permission denied for table escrow_accounts',
  'opening an escrow account for another user (a forged user_id) is refused at aal2'
);
select throws_ok(
  $$update public.escrow_accounts set status = 'closed' where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table escrow_accounts',
  'the owner cannot change the status of their own escrow account at aal2 either'
);
select throws_ok(
  $$delete from public.escrow_accounts where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table escrow_accounts',
  'the owner cannot delete their own escrow account at aal2 either'
);

-- as the project's contractor: the escrow is the owner's alone
select tests.authenticate_as('carl', aal => 'aal2');
select is(
  (select count(*)::int from public.escrow_accounts where id = 'aaaaaaaa-0000-4000-8000-000000000001'),
  0,
  'the contractor of the project cannot read the owner''s escrow account'
);
select throws_ok(
  $$insert into public.escrow_accounts (project_id, currency)
    values ('aaaaaaaa-0000-4000-8000-0000000000f1', 'EUR')$$,
  '42501',
  'new row violates row-level security policy "Users can open escrow only for their own projects" for table "escrow_accounts"',
  'the contractor of the project cannot open an escrow account on it, even at aal2'
);

-- as another user at aal1
select tests.authenticate_as('bob');
select is(
  (select count(*)::int from public.escrow_accounts where id = 'aaaaaaaa-0000-4000-8000-000000000001'),
  0,
  'another user at aal1 cannot read the owner''s escrow account by id'
);
select throws_ok(
  $$update public.escrow_accounts set status = 'frozen' where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table escrow_accounts',
  'another user at aal1 cannot update the owner''s escrow account'
);
select throws_ok(
  $$delete from public.escrow_accounts where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table escrow_accounts',
  'another user at aal1 cannot delete the owner''s escrow account'
);

-- as another user at aal2
select tests.authenticate_as('bob', aal => 'aal2');
select results_eq(
  'select id from public.escrow_accounts',
  $$values ('bbbbbbbb-0000-4000-8000-000000000001'::uuid)$$,
  'another user at aal2 sees only their own escrow account'
);
select throws_ok(
  $$insert into public.escrow_accounts (project_id, currency)
    values ('aaaaaaaa-0000-4000-8000-0000000000f2', 'EUR')$$,
  '42501',
  'new row violates row-level security policy "Users can open escrow only for their own projects" for table "escrow_accounts"',
  'another user at aal2 cannot open an escrow account on the owner''s project'
);
select throws_ok(
  $$update public.escrow_accounts set status = 'frozen' where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table escrow_accounts',
  'another user at aal2 cannot update the owner''s escrow account'
);

-- as admin (a staff user whose JWT role is admin): reads, opens and changes status
reset role;
select tests.authenticate_as('adm', aal => 'aal2', role_name => 'admin');
select is(
  (select count(*)::int from public.escrow_accounts
    where id in ('aaaaaaaa-0000-4000-8000-000000000001', 'bbbbbbbb-0000-4000-8000-000000000001')),
  2,
  'admin reads every user''s escrow accounts'
);
select lives_ok(
  format(
    $$insert into public.escrow_accounts (user_id, project_id, currency)
      values (%L, 'aaaaaaaa-0000-4000-8000-0000000000f2', 'EUR')$$,
    current_setting('fixture.alice')
  ),
  'admin opens an escrow account for a user'
);
select results_eq(
  $$with changed as (
      update public.escrow_accounts set status = 'frozen'
      where id = 'aaaaaaaa-0000-4000-8000-000000000001' returning 1
    ) select count(*)::int from changed$$,
  $$values (1)$$,
  'admin freezes a user''s escrow account'
);
select throws_ok(
  $$update public.escrow_accounts set balance_minor = 0 where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table escrow_accounts',
  'admin cannot write an escrow balance: it is the ledger''s'
);
select throws_ok(
  $$delete from public.escrow_accounts where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table escrow_accounts',
  'admin cannot delete an escrow account'
);

-- as auditor: no privilege at all
reset role;
select tests.authenticate_as('aud', role_name => 'auditor');
select throws_ok(
  'select count(*) from public.escrow_accounts',
  '42501', 'permission denied for table escrow_accounts',
  'auditor cannot read escrow accounts'
);
select throws_ok(
  format(
    $$insert into public.escrow_accounts (user_id, project_id, currency)
      values (%L, 'aaaaaaaa-0000-4000-8000-0000000000f2', 'GBP')$$,
    current_setting('fixture.alice')
  ),
  '42501', 'permission denied for table escrow_accounts',
  'auditor cannot open an escrow account'
);
select throws_ok(
  $$update public.escrow_accounts set status = 'closed' where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table escrow_accounts',
  'auditor cannot update an escrow account'
);
select throws_ok(
  $$delete from public.escrow_accounts where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table escrow_accounts',
  'auditor cannot delete an escrow account'
);

-- as payment_service: reads only
reset role;
select tests.authenticate_as_service('payment_service');
select is(
  (select count(*)::int from public.escrow_accounts
    where id in ('aaaaaaaa-0000-4000-8000-000000000001', 'bbbbbbbb-0000-4000-8000-000000000001')),
  2,
  'payment_service reads every user''s escrow accounts'
);
select throws_ok(
  format(
    $$insert into public.escrow_accounts (user_id, project_id, currency)
      values (%L, 'aaaaaaaa-0000-4000-8000-0000000000f2', 'GBP')$$,
    current_setting('fixture.alice')
  ),
  '42501', 'permission denied for table escrow_accounts',
  'payment_service cannot open an escrow account'
);
select throws_ok(
  $$update public.escrow_accounts set status = 'closed' where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table escrow_accounts',
  'payment_service cannot update an escrow account'
);
select throws_ok(
  $$delete from public.escrow_accounts where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table escrow_accounts',
  'payment_service cannot delete an escrow account'
);

-- as escrow_service: reads, opens and changes status
reset role;
select tests.authenticate_as_service('escrow_service');
select is(
  (select count(*)::int from public.escrow_accounts
    where id in ('aaaaaaaa-0000-4000-8000-000000000001', 'bbbbbbbb-0000-4000-8000-000000000001')),
  2,
  'escrow_service reads every user''s escrow accounts'
);
select lives_ok(
  format(
    $$insert into public.escrow_accounts (user_id, project_id, currency)
      values (%L, 'bbbbbbbb-0000-4000-8000-0000000000f1', 'EUR')$$,
    current_setting('fixture.bob')
  ),
  'escrow_service opens an escrow account for a user'
);
select results_eq(
  $$with changed as (
      update public.escrow_accounts set status = 'closed'
      where id = 'bbbbbbbb-0000-4000-8000-000000000001' returning 1
    ) select count(*)::int from changed$$,
  $$values (1)$$,
  'escrow_service closes a user''s escrow account'
);
select throws_ok(
  $$update public.escrow_accounts set balance_minor = 0 where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table escrow_accounts',
  'escrow_service cannot write an escrow balance directly'
);
select throws_ok(
  $$delete from public.escrow_accounts where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table escrow_accounts',
  'escrow_service cannot delete an escrow account'
);

-- as service_role: BYPASSRLS; reads, opens and changes status
reset role;
select tests.authenticate_as_service('service_role');
select is(
  (select count(*)::int from public.escrow_accounts
    where id in ('aaaaaaaa-0000-4000-8000-000000000001', 'bbbbbbbb-0000-4000-8000-000000000001')),
  2,
  'service_role reads every user''s escrow accounts'
);
select lives_ok(
  format(
    $$insert into public.escrow_accounts (user_id, project_id, currency)
      values (%L, 'bbbbbbbb-0000-4000-8000-0000000000f1', 'GBP')$$,
    current_setting('fixture.bob')
  ),
  'service_role opens an escrow account for a user'
);
select results_eq(
  $$with changed as (
      update public.escrow_accounts set status = 'open'
      where id = 'aaaaaaaa-0000-4000-8000-000000000001' returning 1
    ) select count(*)::int from changed$$,
  $$values (1)$$,
  'service_role changes the status of a user''s escrow account'
);
select throws_ok(
  $$update public.escrow_accounts set balance_minor = 0 where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table escrow_accounts',
  'service_role cannot write an escrow balance directly'
);
select throws_ok(
  $$delete from public.escrow_accounts where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table escrow_accounts',
  'service_role cannot delete an escrow account'
);

-- the outcome, as postgres: ownership and balances are as the fixtures set them
reset role;
select results_eq(
  $$select user_id, balance_minor from public.escrow_accounts
    where id in ('aaaaaaaa-0000-4000-8000-000000000001', 'bbbbbbbb-0000-4000-8000-000000000001')
    order by balance_minor$$,
  format(
    $$values (%L::uuid, 50000::bigint), (%L::uuid, 70000::bigint)$$,
    tests.get_supabase_uid('alice'), tests.get_supabase_uid('bob')
  ),
  'no refused write moved an escrow account or its balance'
);

-- the balance is the ledger's: no role writes it, even when opening an account
reset role;
select tests.authenticate_as('adm', aal => 'aal2', role_name => 'admin');
select throws_ok(
  format(
    $$insert into public.escrow_accounts (user_id, project_id, currency, balance_minor)
      values (%L, 'aaaaaaaa-0000-4000-8000-0000000000f2', 'EUR', 999999999)$$,
    current_setting('fixture.alice')
  ),
  '42501', 'permission denied for table escrow_accounts',
  'admin cannot open an escrow account with a balance'
);
reset role;
select tests.authenticate_as_service('escrow_service');
select throws_ok(
  format(
    $$insert into public.escrow_accounts (user_id, project_id, currency, balance_minor)
      values (%L, 'aaaaaaaa-0000-4000-8000-0000000000f2', 'EUR', 1)$$,
    current_setting('fixture.alice')
  ),
  '42501', 'permission denied for table escrow_accounts',
  'escrow_service cannot write a balance either'
);
select lives_ok(
  format(
    $$insert into public.escrow_accounts (user_id, project_id, currency)
      values (%L, 'aaaaaaaa-0000-4000-8000-0000000000f2', 'GBP')$$,
    current_setting('fixture.alice')
  ),
  'escrow_service opens an account, which starts at a zero balance'
);

select * from finish();
rollback;
