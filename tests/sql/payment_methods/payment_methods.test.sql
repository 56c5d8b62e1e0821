-- public.payment_methods: users see and manage only their own, and deleting one needs MFA
-- (aal2); users no longer add one: payment_service adds it in the user's own request at aal2
-- (the payment-methods function, once the processor confirmed it); admin reads all;
-- payment_service and service_role have the rest; no one else has any.
begin;
select plan(52);

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

insert into public.payment_methods (
  id, user_id, type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup, brand, last4,
  exp_month, exp_year, nickname, is_default
)
values
  ('aaaaaaaa-0000-4000-8000-000000000001', tests.get_supabase_uid('alice'), 'credit_card',
    tests.sealed_token(), tests.token_lookup('pm_1A2b3C4d5E'), tests.token_lookup('cus_1A2b3C4d'), 'visa', '4242', 12, 2030, 'Alice visa', true),
  ('aaaaaaaa-0000-4000-8000-000000000002', tests.get_supabase_uid('alice'), 'credit_card',
    tests.sealed_token(), tests.token_lookup('pm_2A2b3C4d5E'), tests.token_lookup('cus_1A2b3C4d'), 'mastercard', '4444', 11, 2031, 'Alice mastercard', false),
  ('bbbbbbbb-0000-4000-8000-000000000001', tests.get_supabase_uid('bob'), 'credit_card',
    tests.sealed_token(), tests.token_lookup('pm_3A2b3C4d5E'), tests.token_lookup('cus_2A2b3C4d'), 'visa', '1881', 10, 2029, 'Bob visa', true),
  ('bbbbbbbb-0000-4000-8000-000000000002', tests.get_supabase_uid('bob'), 'credit_card',
    tests.sealed_token(), tests.token_lookup('pm_4A2b3C4d5E'), tests.token_lookup('cus_2A2b3C4d'), 'amex', '0005', 9, 2028, 'Bob amex', false);

-- as an anonymous request: no privilege at all
select tests.clear_authentication();
select throws_ok(
  'select count(*) from public.payment_methods',
  '42501', 'permission denied for table payment_methods',
  'anon cannot read payment methods'
);
select throws_ok(
  $$insert into public.payment_methods (type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup)
    values ('credit_card', tests.sealed_token(), tests.token_lookup('pm_9Anon0001'), tests.token_lookup('cus_9Anon0001'))$$,
  '42501', 'permission denied for table payment_methods',
  'anon cannot add a payment method'
);
select throws_ok(
  $$update public.payment_methods set nickname = 'anon' where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table payment_methods',
  'anon cannot update a payment method'
);
select throws_ok(
  $$delete from public.payment_methods where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table payment_methods',
  'anon cannot delete a payment method'
);

-- as the owner at aal1
select tests.authenticate_as('alice');
select results_eq(
  'select id from public.payment_methods order by id',
  $$values ('aaaaaaaa-0000-4000-8000-000000000001'::uuid), ('aaaaaaaa-0000-4000-8000-000000000002'::uuid)$$,
  'the owner sees exactly their own two payment methods'
);
select is(
  (select count(*)::int from public.payment_methods where id = 'bbbbbbbb-0000-4000-8000-000000000001'),
  0,
  'reading another user''s payment method by id shows nothing'
);
select throws_ok(
  $$insert into public.payment_methods (type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup, brand, last4)
    values ('credit_card', tests.sealed_token(), tests.token_lookup('pm_5A2b3C4d5E'), tests.token_lookup('cus_1A2b3C4d'), 'visa', '1111')$$,
  '42501', 'permission denied for table payment_methods',
  'adding a payment method at aal1 is refused: users do not insert them'
);
select throws_ok(
  format(
    $$insert into public.payment_methods (user_id, type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup)
      values (%L, 'credit_card', tests.sealed_token(), tests.token_lookup('pm_6A2b3C4d5E'), tests.token_lookup('cus_1A2b3C4d'))$$,
    current_setting('fixture.bob')
  ),
  '42501', 'permission denied for table payment_methods',
  'adding a payment method for another user (a forged user_id) is refused at aal1'
);
select results_eq(
  $$with changed as (
      update public.payment_methods set nickname = 'Everyday card'
      where id = 'aaaaaaaa-0000-4000-8000-000000000001' returning 1
    ) select count(*)::int from changed$$,
  $$values (1)$$,
  'the owner renames their own payment method at aal1 (a rename needs no MFA)'
);
select throws_ok(
  format(
    $$update public.payment_methods set user_id = %L where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
    current_setting('fixture.bob')
  ),
  '42501', 'permission denied for table payment_methods',
  'the owner cannot hand their payment method to another user (user_id is not updatable)'
);
select throws_ok(
  $$update public.payment_methods set processor_payment_method_id_lookup = tests.token_lookup('pm_7A2b3C4d5E')
    where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table payment_methods',
  'the owner cannot repoint their payment method at another processor reference'
);
select results_eq(
  $$with changed as (
      update public.payment_methods set nickname = 'mine now'
      where id = 'bbbbbbbb-0000-4000-8000-000000000001' returning 1
    ) select count(*)::int from changed$$,
  $$values (0)$$,
  'updating another user''s payment method at aal1 changes nothing'
);
select results_eq(
  $$with changed as (
      delete from public.payment_methods where id = 'aaaaaaaa-0000-4000-8000-000000000002' returning 1
    ) select count(*)::int from changed$$,
  $$values (0)$$,
  'deleting their own payment method at aal1 deletes nothing: it needs MFA'
);

-- as the owner at aal2
select tests.authenticate_as('alice', aal => 'aal2');
select throws_ok(
  $$insert into public.payment_methods (
      type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup, brand, last4, exp_month, exp_year,
      nickname, metadata
    )
    values ('credit_card', tests.sealed_token(), tests.token_lookup('pm_8A2b3C4d5E'), tests.token_lookup('cus_1A2b3C4d'), 'visa', '1111', 1, 2032, 'New card',
      '{"source": "checkout"}')$$,
  '42501', 'permission denied for table payment_methods',
  'the owner cannot insert a payment method of their choosing even at aal2: the function saves it'
);
select is(
  (select count(*)::int from public.payment_methods where nickname = 'New card'),
  0,
  'the refused insert stored nothing'
);
select throws_ok(
  format(
    $$insert into public.payment_methods (user_id, type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup)
      values (%L, 'credit_card', tests.sealed_token(), tests.token_lookup('pm_9A2b3C4d5E'), tests.token_lookup('cus_1A2b3C4d'))$$,
    current_setting('fixture.bob')
  ),
  '42501', 'permission denied for table payment_methods',
  'adding a payment method for another user (a forged user_id) is refused at aal2'
);
select results_eq(
  $$with changed as (
      update public.payment_methods set nickname = 'mine now'
      where id = 'bbbbbbbb-0000-4000-8000-000000000001' returning 1
    ) select count(*)::int from changed$$,
  $$values (0)$$,
  'updating another user''s payment method at aal2 changes nothing'
);
select results_eq(
  $$with changed as (
      delete from public.payment_methods where id = 'bbbbbbbb-0000-4000-8000-000000000001' returning 1
    ) select count(*)::int from changed$$,
  $$values (0)$$,
  'deleting another user''s payment method at aal2 deletes nothing'
);
select results_eq(
  $$with changed as (
      delete from public.payment_methods where id = 'aaaaaaaa-0000-4000-8000-000000000002' returning 1
    ) select count(*)::int from changed$$,
  $$values (1)$$,
  'the owner deletes their own payment method at aal2'
);

-- as another user at aal1
select tests.authenticate_as('bob');
select is(
  (select count(*)::int from public.payment_methods where id = 'aaaaaaaa-0000-4000-8000-000000000001'),
  0,
  'another user at aal1 cannot read the owner''s payment method by id'
);
select results_eq(
  $$with changed as (
      update public.payment_methods set is_default = false
      where id = 'aaaaaaaa-0000-4000-8000-000000000001' returning 1
    ) select count(*)::int from changed$$,
  $$values (0)$$,
  'another user at aal1 cannot update the owner''s payment method'
);
select results_eq(
  $$with changed as (
      delete from public.payment_methods where id = 'aaaaaaaa-0000-4000-8000-000000000001' returning 1
    ) select count(*)::int from changed$$,
  $$values (0)$$,
  'another user at aal1 cannot delete the owner''s payment method'
);

-- as another user at aal2
select tests.authenticate_as('bob', aal => 'aal2');
select is(
  (select count(*)::int from public.payment_methods where id = 'aaaaaaaa-0000-4000-8000-000000000001'),
  0,
  'another user at aal2 cannot read the owner''s payment method by id'
);
select is(
  (select count(*)::int from public.payment_methods),
  2,
  'another user at aal2 sees only their own two payment methods'
);
select results_eq(
  $$with changed as (
      update public.payment_methods set nickname = 'mine now'
      where id = 'aaaaaaaa-0000-4000-8000-000000000001' returning 1
    ) select count(*)::int from changed$$,
  $$values (0)$$,
  'another user at aal2 cannot update the owner''s payment method'
);
select results_eq(
  $$with changed as (
      delete from public.payment_methods where id = 'aaaaaaaa-0000-4000-8000-000000000001' returning 1
    ) select count(*)::int from changed$$,
  $$values (0)$$,
  'another user at aal2 cannot delete the owner''s payment method'
);

-- as admin (a staff user whose JWT role is admin): reads all, writes nothing
reset role;
select tests.authenticate_as('adm', aal => 'aal2', role_name => 'admin');
select is(
  (select count(*)::int from public.payment_methods
    where id in ('aaaaaaaa-0000-4000-8000-000000000001', 'bbbbbbbb-0000-4000-8000-000000000001')),
  2,
  'admin reads every user''s payment methods'
);
select throws_ok(
  format(
    $$insert into public.payment_methods (user_id, type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup)
      values (%L, 'credit_card', tests.sealed_token(), tests.token_lookup('pm_1Admin0001'), tests.token_lookup('cus_1A2b3C4d'))$$,
    current_setting('fixture.alice')
  ),
  '42501', 'permission denied for table payment_methods',
  'admin cannot add a payment method'
);
select throws_ok(
  $$update public.payment_methods set nickname = 'admin' where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table payment_methods',
  'admin cannot update a payment method'
);
select throws_ok(
  $$delete from public.payment_methods where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table payment_methods',
  'admin cannot delete a payment method'
);

-- as auditor: no privilege at all
reset role;
select tests.authenticate_as('aud', role_name => 'auditor');
select throws_ok(
  'select count(*) from public.payment_methods',
  '42501', 'permission denied for table payment_methods',
  'auditor cannot read payment methods'
);
select throws_ok(
  format(
    $$insert into public.payment_methods (user_id, type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup)
      values (%L, 'credit_card', tests.sealed_token(), tests.token_lookup('pm_1Audit0001'), tests.token_lookup('cus_1A2b3C4d'))$$,
    current_setting('fixture.alice')
  ),
  '42501', 'permission denied for table payment_methods',
  'auditor cannot add a payment method'
);
select throws_ok(
  $$update public.payment_methods set nickname = 'auditor' where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table payment_methods',
  'auditor cannot update a payment method'
);
select throws_ok(
  $$delete from public.payment_methods where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table payment_methods',
  'auditor cannot delete a payment method'
);

-- as payment_service: everything, on every user's rows
reset role;
select tests.authenticate_as_service('payment_service');
select is(
  (select count(*)::int from public.payment_methods
    where id in ('aaaaaaaa-0000-4000-8000-000000000001', 'bbbbbbbb-0000-4000-8000-000000000001')),
  2,
  'payment_service reads every user''s payment methods'
);
select throws_ok(
  format(
    $$insert into public.payment_methods (user_id, type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup, brand, last4)
      values (%L, 'credit_card', tests.sealed_token(), tests.token_lookup('pm_1Service01'), tests.token_lookup('cus_1A2b3C4d'), 'visa', '0077')$$,
    current_setting('fixture.alice')
  ),
  '42501', 'new row violates row-level security policy for table "payment_methods"',
  'payment_service cannot add a payment method outside the user''s own request'
);
-- the payment-methods function: payment_service in the user's request (the user's claims)
reset role;
select tests.authenticate_as('alice', role_name => 'payment_service');
select throws_ok(
  $$insert into public.payment_methods (type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup, brand, last4)
    values ('credit_card', tests.sealed_token(), tests.token_lookup('pm_1Service01'), tests.token_lookup('cus_1A2b3C4d'), 'visa', '0077')$$,
  '42501', 'new row violates row-level security policy for table "payment_methods"',
  'payment_service cannot add a payment method in the user''s aal1 request: it needs MFA'
);
reset role;
select tests.authenticate_as('alice', aal => 'aal2', role_name => 'payment_service');
select lives_ok(
  $$insert into public.payment_methods (type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup, brand, last4)
    values ('credit_card', tests.sealed_token(), tests.token_lookup('pm_1Service01'), tests.token_lookup('cus_1A2b3C4d'), 'visa', '0077')$$,
  'payment_service adds a payment method in the user''s aal2 request'
);
select throws_ok(
  format(
    $$insert into public.payment_methods (user_id, type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup)
      values (%L, 'credit_card', tests.sealed_token(), tests.token_lookup('pm_2Service01'), tests.token_lookup('cus_2A2b3C4d'))$$,
    current_setting('fixture.bob')
  ),
  '42501', 'new row violates row-level security policy for table "payment_methods"',
  'payment_service cannot add a payment method for another user than the request''s'
);
reset role;
select tests.authenticate_as_service('payment_service');
select results_eq(
  $$with changed as (
      update public.payment_methods set exp_year = 2033
      where id = 'bbbbbbbb-0000-4000-8000-000000000001' returning 1
    ) select count(*)::int from changed$$,
  $$values (1)$$,
  'payment_service updates a user''s payment method'
);
select results_eq(
  $$with changed as (
      delete from public.payment_methods where id = 'bbbbbbbb-0000-4000-8000-000000000002' returning 1
    ) select count(*)::int from changed$$,
  $$values (1)$$,
  'payment_service deletes a user''s payment method'
);

-- as escrow_service: no privilege at all
reset role;
select tests.authenticate_as_service('escrow_service');
select throws_ok(
  'select count(*) from public.payment_methods',
  '42501', 'permission denied for table payment_methods',
  'escrow_service cannot read payment methods'
);
select throws_ok(
  format(
    $$insert into public.payment_methods (user_id, type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup)
      values (%L, 'credit_card', tests.sealed_token(), tests.token_lookup('pm_1Escrow001'), tests.token_lookup('cus_1A2b3C4d'))$$,
    current_setting('fixture.alice')
  ),
  '42501', 'permission denied for table payment_methods',
  'escrow_service cannot add a payment method'
);
select throws_ok(
  $$update public.payment_methods set nickname = 'escrow' where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table payment_methods',
  'escrow_service cannot update a payment method'
);
select throws_ok(
  $$delete from public.payment_methods where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table payment_methods',
  'escrow_service cannot delete a payment method'
);

-- as service_role: BYPASSRLS and every privilege
reset role;
select tests.authenticate_as_service('service_role');
select is(
  (select count(*)::int from public.payment_methods
    where id in ('aaaaaaaa-0000-4000-8000-000000000001', 'bbbbbbbb-0000-4000-8000-000000000001')),
  2,
  'service_role reads every user''s payment methods'
);
select lives_ok(
  format(
    $$insert into public.payment_methods (user_id, type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup)
      values (%L, 'credit_card', tests.sealed_token(), tests.token_lookup('pm_1Service02'), tests.token_lookup('cus_2A2b3C4d'))$$,
    current_setting('fixture.bob')
  ),
  'service_role adds a payment method for a user'
);
select results_eq(
  $$with changed as (
      update public.payment_methods set nickname = 'via service_role'
      where id = 'aaaaaaaa-0000-4000-8000-000000000001' returning 1
    ) select count(*)::int from changed$$,
  $$values (1)$$,
  'service_role updates a user''s payment method'
);
select results_eq(
  $$with changed as (
      delete from public.payment_methods where id = 'bbbbbbbb-0000-4000-8000-000000000001' returning 1
    ) select count(*)::int from changed$$,
  $$values (1)$$,
  'service_role deletes a user''s payment method'
);

-- the outcome, as postgres: the refused writes left the owner's rows as they were
reset role;
select results_eq(
  $$select nickname, is_default from public.payment_methods
    where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  $$values ('via service_role'::text, true)$$,
  'no refused update reached the owner''s payment method'
);
select is(
  (select count(*)::int from public.payment_methods where user_id = tests.get_supabase_uid('alice')),
  2,
  'the owner has the fixture card and the one payment_service added in her aal2 request'
);
select is(
  (select count(*)::int from public.payment_methods where user_id = tests.get_supabase_uid('bob')),
  1,
  'another user kept only the card service_role added, after payment_service and service_role deleted theirs'
);

select * from finish();
rollback;
