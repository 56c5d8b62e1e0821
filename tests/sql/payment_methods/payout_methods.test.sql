-- public.payout_methods: users see and manage only their own, and any change (add, update,
-- delete) needs MFA (aal2); admin reads all; payment_service and service_role have all; no one
-- else has any.
begin;
select plan(54);

-- the backend and staff roles may call pgTAP's assertions (rolled back with the test)
select tests.let_roles_call_pgtap();

-- fixtures, as postgres (the tables' owner, which bypasses RLS)
select tests.create_supabase_user('alice', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('bob', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('adm');
select tests.create_supabase_user('aud');
update public.users set role = 'admin' where id = tests.get_supabase_uid('adm');
update public.users set role = 'auditor' where id = tests.get_supabase_uid('aud');
-- user ids any role can read, even those with no USAGE on the tests schema
select set_config('fixture.alice', tests.get_supabase_uid('alice')::text, true);
select set_config('fixture.bob', tests.get_supabase_uid('bob')::text, true);

insert into public.payout_methods (
  id, user_id, type, processor_account_id_lookup, processor_external_account_id_sealed, processor_external_account_id_lookup, bank_name, last4,
  currency, nickname, is_default
)
values
  ('aaaaaaaa-0000-4000-8000-000000000001', tests.get_supabase_uid('alice'), 'bank_account',
    tests.token_lookup('acct_1A2b3C4d'), tests.sealed_token(), tests.token_lookup('ba_1A2b3C4d'), 'First Bank', '6789', 'USD', 'Alice checking', true),
  ('aaaaaaaa-0000-4000-8000-000000000002', tests.get_supabase_uid('alice'), 'bank_account',
    tests.token_lookup('acct_1A2b3C4d'), tests.sealed_token(), tests.token_lookup('ba_2A2b3C4d'), 'First Bank', '1234', 'USD', 'Alice savings', false),
  ('bbbbbbbb-0000-4000-8000-000000000001', tests.get_supabase_uid('bob'), 'bank_account',
    tests.token_lookup('acct_2A2b3C4d'), tests.sealed_token(), tests.token_lookup('ba_3A2b3C4d'), 'Second Bank', '5555', 'USD', 'Bob checking', true),
  ('bbbbbbbb-0000-4000-8000-000000000002', tests.get_supabase_uid('bob'), 'bank_account',
    tests.token_lookup('acct_2A2b3C4d'), tests.sealed_token(), tests.token_lookup('ba_4A2b3C4d'), 'Second Bank', '6666', 'USD', 'Bob savings', false);

-- as an anonymous request: no privilege at all
select tests.clear_authentication();
select throws_ok(
  'select count(*) from public.payout_methods',
  '42501', 'permission denied for table payout_methods',
  'anon cannot read payout methods'
);
select throws_ok(
  $$insert into public.payout_methods (type, processor_account_id_lookup, processor_external_account_id_sealed, processor_external_account_id_lookup, currency)
    values ('bank_account', tests.token_lookup('acct_9Anon001'), tests.sealed_token(), tests.token_lookup('ba_9Anon001'), 'USD')$$,
  '42501', 'permission denied for table payout_methods',
  'anon cannot add a payout method'
);
select throws_ok(
  $$update public.payout_methods set nickname = 'anon' where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table payout_methods',
  'anon cannot update a payout method'
);
select throws_ok(
  $$delete from public.payout_methods where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table payout_methods',
  'anon cannot delete a payout method'
);

-- as the owner at aal1
select tests.authenticate_as('alice');
select results_eq(
  'select id from public.payout_methods order by id',
  $$values ('aaaaaaaa-0000-4000-8000-000000000001'::uuid), ('aaaaaaaa-0000-4000-8000-000000000002'::uuid)$$,
  'the owner sees exactly their own two payout methods'
);
select is(
  (select count(*)::int from public.payout_methods where id = 'bbbbbbbb-0000-4000-8000-000000000001'),
  0,
  'reading another user''s payout method by id shows nothing'
);
select throws_ok(
  $$insert into public.payout_methods (type, processor_account_id_lookup, processor_external_account_id_sealed, processor_external_account_id_lookup, currency)
    values ('bank_account', tests.token_lookup('acct_1A2b3C4d'), tests.sealed_token(), tests.token_lookup('ba_5A2b3C4d'), 'USD')$$,
  '42501', 'permission denied for table payout_methods',
  'adding a payout method of one''s choosing is refused at aal1: the payout-methods function adds it'
);
select throws_ok(
  format(
    $$insert into public.payout_methods (user_id, type, processor_account_id_lookup, processor_external_account_id_sealed, processor_external_account_id_lookup, currency)
      values (%L, 'bank_account', tests.token_lookup('acct_1A2b3C4d'), tests.sealed_token(), tests.token_lookup('ba_6A2b3C4d'), 'USD')$$,
    current_setting('fixture.bob')
  ),
  '42501', 'permission denied for table payout_methods',
  'adding a payout method for another user (a forged user_id) is refused at aal1'
);
select results_eq(
  $$with changed as (
      update public.payout_methods set nickname = 'Renamed at aal1'
      where id = 'aaaaaaaa-0000-4000-8000-000000000001' returning 1
    ) select count(*)::int from changed$$,
  $$values (0)$$,
  'updating their own payout method at aal1 changes nothing: it needs MFA'
);
select throws_ok(
  format(
    $$update public.payout_methods set user_id = %L where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
    current_setting('fixture.bob')
  ),
  '42501', 'permission denied for table payout_methods',
  'the owner cannot hand their payout method to another user (user_id is not updatable)'
);
select throws_ok(
  $$update public.payout_methods set processor_external_account_id_lookup = tests.token_lookup('ba_7A2b3C4d')
    where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table payout_methods',
  'the owner cannot repoint their payout method at another external account'
);
select results_eq(
  $$with changed as (
      update public.payout_methods set nickname = 'mine now'
      where id = 'bbbbbbbb-0000-4000-8000-000000000001' returning 1
    ) select count(*)::int from changed$$,
  $$values (0)$$,
  'updating another user''s payout method at aal1 changes nothing'
);
select results_eq(
  $$with changed as (
      delete from public.payout_methods where id = 'aaaaaaaa-0000-4000-8000-000000000002' returning 1
    ) select count(*)::int from changed$$,
  $$values (0)$$,
  'deleting their own payout method at aal1 deletes nothing: it needs MFA'
);

-- as the owner at aal2
select tests.authenticate_as('alice', aal => 'aal2');
select throws_ok(
  $$insert into public.payout_methods (
      type, processor_account_id_lookup, processor_external_account_id_sealed, processor_external_account_id_lookup, bank_name, last4, currency, nickname,
      metadata
    )
    values ('bank_account', tests.token_lookup('acct_1A2b3C4d'), tests.sealed_token(), tests.token_lookup('ba_8A2b3C4d'), 'Third Bank', '4321', 'USD', 'New account',
      '{"source": "onboarding"}')$$,
  '42501', 'permission denied for table payout_methods',
  'the owner cannot add a payout method of their choosing even at aal2: its ids are tokens, checked with Stripe and sealed by the function'
);
select is(
  (select count(*)::int from public.payout_methods where nickname = 'New account'),
  0,
  'the refused insert stored nothing'
);
select throws_ok(
  format(
    $$insert into public.payout_methods (user_id, type, processor_account_id_lookup, processor_external_account_id_sealed, processor_external_account_id_lookup, currency)
      values (%L, 'bank_account', tests.token_lookup('acct_1A2b3C4d'), tests.sealed_token(), tests.token_lookup('ba_9A2b3C4d'), 'USD')$$,
    current_setting('fixture.bob')
  ),
  '42501', 'permission denied for table payout_methods',
  'adding a payout method for another user (a forged user_id) is refused at aal2'
);
select results_eq(
  $$with changed as (
      update public.payout_methods set nickname = 'Main checking'
      where id = 'aaaaaaaa-0000-4000-8000-000000000001' returning 1
    ) select count(*)::int from changed$$,
  $$values (1)$$,
  'the owner updates their own payout method at aal2'
);
select throws_ok(
  format(
    $$update public.payout_methods set user_id = %L where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
    current_setting('fixture.bob')
  ),
  '42501', 'permission denied for table payout_methods',
  'the owner cannot hand their payout method to another user at aal2 either'
);
select results_eq(
  $$with changed as (
      update public.payout_methods set nickname = 'mine now'
      where id = 'bbbbbbbb-0000-4000-8000-000000000001' returning 1
    ) select count(*)::int from changed$$,
  $$values (0)$$,
  'updating another user''s payout method at aal2 changes nothing'
);
select results_eq(
  $$with changed as (
      delete from public.payout_methods where id = 'bbbbbbbb-0000-4000-8000-000000000001' returning 1
    ) select count(*)::int from changed$$,
  $$values (0)$$,
  'deleting another user''s payout method at aal2 deletes nothing'
);
select results_eq(
  $$with changed as (
      delete from public.payout_methods where id = 'aaaaaaaa-0000-4000-8000-000000000002' returning 1
    ) select count(*)::int from changed$$,
  $$values (1)$$,
  'the owner deletes their own payout method at aal2'
);

-- as another user at aal1
select tests.authenticate_as('bob');
select is(
  (select count(*)::int from public.payout_methods where id = 'aaaaaaaa-0000-4000-8000-000000000001'),
  0,
  'another user at aal1 cannot read the owner''s payout method by id'
);
select results_eq(
  $$with changed as (
      update public.payout_methods set nickname = 'mine now'
      where id = 'aaaaaaaa-0000-4000-8000-000000000001' returning 1
    ) select count(*)::int from changed$$,
  $$values (0)$$,
  'another user at aal1 cannot update the owner''s payout method'
);
select results_eq(
  $$with changed as (
      delete from public.payout_methods where id = 'aaaaaaaa-0000-4000-8000-000000000001' returning 1
    ) select count(*)::int from changed$$,
  $$values (0)$$,
  'another user at aal1 cannot delete the owner''s payout method'
);

-- as another user at aal2
select tests.authenticate_as('bob', aal => 'aal2');
select is(
  (select count(*)::int from public.payout_methods where id = 'aaaaaaaa-0000-4000-8000-000000000001'),
  0,
  'another user at aal2 cannot read the owner''s payout method by id'
);
select is(
  (select count(*)::int from public.payout_methods),
  2,
  'another user at aal2 sees only their own two payout methods'
);
select results_eq(
  $$with changed as (
      update public.payout_methods set is_default = false
      where id = 'aaaaaaaa-0000-4000-8000-000000000001' returning 1
    ) select count(*)::int from changed$$,
  $$values (0)$$,
  'another user at aal2 cannot update the owner''s payout method'
);
select results_eq(
  $$with changed as (
      delete from public.payout_methods where id = 'aaaaaaaa-0000-4000-8000-000000000001' returning 1
    ) select count(*)::int from changed$$,
  $$values (0)$$,
  'another user at aal2 cannot delete the owner''s payout method'
);

-- as admin (a staff user whose JWT role is admin): reads all, writes nothing
reset role;
select tests.authenticate_as('adm', aal => 'aal2', role_name => 'admin');
select is(
  (select count(*)::int from public.payout_methods
    where id in ('aaaaaaaa-0000-4000-8000-000000000001', 'bbbbbbbb-0000-4000-8000-000000000001')),
  2,
  'admin reads every user''s payout methods'
);
select throws_ok(
  format(
    $$insert into public.payout_methods (user_id, type, processor_account_id_lookup, processor_external_account_id_sealed, processor_external_account_id_lookup, currency)
      values (%L, 'bank_account', tests.token_lookup('acct_1A2b3C4d'), tests.sealed_token(), tests.token_lookup('ba_1Admin001'), 'USD')$$,
    current_setting('fixture.alice')
  ),
  '42501', 'permission denied for table payout_methods',
  'admin cannot add a payout method'
);
select throws_ok(
  $$update public.payout_methods set nickname = 'admin' where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table payout_methods',
  'admin cannot update a payout method'
);
select throws_ok(
  $$delete from public.payout_methods where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table payout_methods',
  'admin cannot delete a payout method'
);

-- as auditor: no privilege at all
reset role;
select tests.authenticate_as('aud', role_name => 'auditor');
select throws_ok(
  'select count(*) from public.payout_methods',
  '42501', 'permission denied for table payout_methods',
  'auditor cannot read payout methods'
);
select throws_ok(
  format(
    $$insert into public.payout_methods (user_id, type, processor_account_id_lookup, processor_external_account_id_sealed, processor_external_account_id_lookup, currency)
      values (%L, 'bank_account', tests.token_lookup('acct_1A2b3C4d'), tests.sealed_token(), tests.token_lookup('ba_1Audit001'), 'USD')$$,
    current_setting('fixture.alice')
  ),
  '42501', 'permission denied for table payout_methods',
  'auditor cannot add a payout method'
);
select throws_ok(
  $$update public.payout_methods set nickname = 'auditor' where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table payout_methods',
  'auditor cannot update a payout method'
);
select throws_ok(
  $$delete from public.payout_methods where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table payout_methods',
  'auditor cannot delete a payout method'
);

-- as payment_service: everything, on every user's rows
reset role;
select tests.authenticate_as_service('payment_service');
select is(
  (select count(*)::int from public.payout_methods
    where id in ('aaaaaaaa-0000-4000-8000-000000000001', 'bbbbbbbb-0000-4000-8000-000000000001')),
  2,
  'payment_service reads every user''s payout methods'
);
select throws_ok(
  format(
    $$insert into public.payout_methods (user_id, type, processor_account_id_lookup, processor_external_account_id_sealed, processor_external_account_id_lookup, currency)
      values (%L, 'bank_account', tests.token_lookup('acct_1A2b3C4d'), tests.sealed_token(), tests.token_lookup('ba_1Service01'), 'USD')$$,
    current_setting('fixture.alice')
  ),
  '42501', 'new row violates row-level security policy for table "payout_methods"',
  'payment_service adds a payout method only in its owner''s request'
);
reset role;
select tests.authenticate_as('alice', role_name => 'payment_service');
select throws_ok(
  format(
    $$insert into public.payout_methods (user_id, type, processor_account_id_lookup, processor_external_account_id_sealed, processor_external_account_id_lookup, currency)
      values (%L, 'bank_account', tests.token_lookup('acct_1A2b3C4d'), tests.sealed_token(), tests.token_lookup('ba_1Service01'), 'USD')$$,
    current_setting('fixture.alice')
  ),
  '42501', 'new row violates row-level security policy for table "payout_methods"',
  'and only at aal2'
);
reset role;
select tests.authenticate_as('alice', aal => 'aal2', role_name => 'payment_service');
select throws_ok(
  format(
    $$insert into public.payout_methods (user_id, type, processor_account_id_lookup, processor_external_account_id_sealed, processor_external_account_id_lookup, currency)
      values (%L, 'bank_account', tests.token_lookup('acct_1A2b3C4d'), tests.sealed_token(), tests.token_lookup('ba_1Service02'), 'USD')$$,
    current_setting('fixture.bob')
  ),
  'PT409', null,
  'never for another user than the request''s (her account is no one else''s)'
);
select lives_ok(
  format(
    $$insert into public.payout_methods (user_id, type, processor_account_id_lookup, processor_external_account_id_sealed, processor_external_account_id_lookup, currency)
      values (%L, 'bank_account', tests.token_lookup('acct_1A2b3C4d'), tests.sealed_token(), tests.token_lookup('ba_1Service01'), 'USD')$$,
    current_setting('fixture.alice')
  ),
  'payment_service adds a payout method in its owner''s request at aal2'
);
reset role;
select tests.authenticate_as_service('payment_service');
select results_eq(
  $$with changed as (
      update public.payout_methods set bank_name = 'Renamed Bank'
      where id = 'bbbbbbbb-0000-4000-8000-000000000001' returning 1
    ) select count(*)::int from changed$$,
  $$values (1)$$,
  'payment_service updates a user''s payout method'
);
select results_eq(
  $$with changed as (
      delete from public.payout_methods where id = 'bbbbbbbb-0000-4000-8000-000000000002' returning 1
    ) select count(*)::int from changed$$,
  $$values (1)$$,
  'payment_service deletes a user''s payout method'
);

-- as escrow_service: no privilege at all
reset role;
select tests.authenticate_as_service('escrow_service');
select throws_ok(
  'select count(*) from public.payout_methods',
  '42501', 'permission denied for table payout_methods',
  'escrow_service cannot read payout methods'
);
select throws_ok(
  format(
    $$insert into public.payout_methods (user_id, type, processor_account_id_lookup, processor_external_account_id_sealed, processor_external_account_id_lookup, currency)
      values (%L, 'bank_account', tests.token_lookup('acct_1A2b3C4d'), tests.sealed_token(), tests.token_lookup('ba_1Escrow01'), 'USD')$$,
    current_setting('fixture.alice')
  ),
  '42501', 'permission denied for table payout_methods',
  'escrow_service cannot add a payout method'
);
select throws_ok(
  $$update public.payout_methods set nickname = 'escrow' where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table payout_methods',
  'escrow_service cannot update a payout method'
);
select throws_ok(
  $$delete from public.payout_methods where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table payout_methods',
  'escrow_service cannot delete a payout method'
);

-- as service_role: BYPASSRLS and every privilege
reset role;
select tests.authenticate_as_service('service_role');
select is(
  (select count(*)::int from public.payout_methods
    where id in ('aaaaaaaa-0000-4000-8000-000000000001', 'bbbbbbbb-0000-4000-8000-000000000001')),
  2,
  'service_role reads every user''s payout methods'
);
select lives_ok(
  format(
    $$insert into public.payout_methods (user_id, type, processor_account_id_lookup, processor_external_account_id_sealed, processor_external_account_id_lookup, currency)
      values (%L, 'bank_account', tests.token_lookup('acct_2A2b3C4d'), tests.sealed_token(), tests.token_lookup('ba_1Service02'), 'USD')$$,
    current_setting('fixture.bob')
  ),
  'service_role adds a payout method for a user'
);
select results_eq(
  $$with changed as (
      update public.payout_methods set nickname = 'via service_role'
      where id = 'aaaaaaaa-0000-4000-8000-000000000001' returning 1
    ) select count(*)::int from changed$$,
  $$values (1)$$,
  'service_role updates a user''s payout method'
);
select results_eq(
  $$with changed as (
      delete from public.payout_methods where id = 'bbbbbbbb-0000-4000-8000-000000000001' returning 1
    ) select count(*)::int from changed$$,
  $$values (1)$$,
  'service_role deletes a user''s payout method'
);

-- the outcome, as postgres: the refused writes left the rows as they were
reset role;
select results_eq(
  $$select user_id, processor_external_account_id_lookup::text from public.payout_methods
    where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  format($$values (%L::uuid, tests.token_lookup('ba_1A2b3C4d'))$$, tests.get_supabase_uid('alice')),
  'the owner''s payout method still belongs to them and still pays out to the same account'
);
select is(
  (select count(*)::int from public.payout_methods where user_id = tests.get_supabase_uid('alice')),
  2,
  'the owner has the fixture account and the one payment_service added in her request'
);
select is(
  (select count(*)::int from public.payout_methods where user_id = tests.get_supabase_uid('bob')),
  1,
  'another user kept only the account service_role added'
);

select * from finish();
rollback;
