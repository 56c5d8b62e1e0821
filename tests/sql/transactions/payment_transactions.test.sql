-- public.payment_transactions: users read their own and start charges on their own payment
-- methods, with MFA (aal2) at or above private.mfa_threshold(currency) (the endpoint matrix's
-- "Conditional"); admin, payment_service and service_role read, insert and update all; no one
-- deletes a financial record.
begin;
select plan(55);

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

insert into public.payment_methods (id, user_id, type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup)
values
  ('aaaaaaaa-0000-4000-8000-0000000000a1', tests.get_supabase_uid('alice'), 'credit_card',
    tests.sealed_token(), tests.token_lookup('pm_1A2b3C4d5E'), tests.token_lookup('cus_1A2b3C4d')),
  ('bbbbbbbb-0000-4000-8000-0000000000b1', tests.get_supabase_uid('bob'), 'credit_card',
    tests.sealed_token(), tests.token_lookup('pm_2A2b3C4d5E'), tests.token_lookup('cus_2A2b3C4d'));
insert into public.payment_transactions (
  id, user_id, payment_method_id, type, status, amount_minor, currency, processor_transaction_id,
  description
)
values
  ('aaaaaaaa-0000-4000-8000-000000000001', tests.get_supabase_uid('alice'),
    'aaaaaaaa-0000-4000-8000-0000000000a1', 'charge', 'succeeded', 2500, 'USD', 'ch_1A2b3C4d',
    'Alice deposit'),
  ('bbbbbbbb-0000-4000-8000-000000000001', tests.get_supabase_uid('bob'),
    'bbbbbbbb-0000-4000-8000-0000000000b1', 'charge', 'succeeded', 7500, 'USD', 'ch_2A2b3C4d',
    'Bob deposit');

-- the threshold the Conditional rows use, as deployed
select is(private.mfa_threshold('USD'), 100000::bigint, 'the USD step-up threshold is 100000 minor units');

-- as an anonymous request: no privilege at all
select tests.clear_authentication();
select throws_ok(
  'select count(*) from public.payment_transactions',
  '42501', 'permission denied for table payment_transactions',
  'anon cannot read payment transactions'
);
select throws_ok(
  $$insert into public.payment_transactions (amount_minor, currency) values (100, 'USD')$$,
  '42501', 'permission denied for table payment_transactions',
  'anon cannot start a payment transaction'
);
select throws_ok(
  $$update public.payment_transactions set description = 'anon' where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table payment_transactions',
  'anon cannot update a payment transaction'
);
select throws_ok(
  $$delete from public.payment_transactions where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table payment_transactions',
  'anon cannot delete a payment transaction'
);

-- as the owner at aal1
select tests.authenticate_as('alice');
select results_eq(
  'select id from public.payment_transactions',
  $$values ('aaaaaaaa-0000-4000-8000-000000000001'::uuid)$$,
  'the owner sees exactly their own payment transaction'
);
select is(
  (select count(*)::int from public.payment_transactions where id = 'bbbbbbbb-0000-4000-8000-000000000001'),
  0,
  'reading another user''s payment transaction by id shows nothing'
);
select lives_ok(
  $$insert into public.payment_transactions (payment_method_id, amount_minor, currency, description)
    values ('aaaaaaaa-0000-4000-8000-0000000000a1', 99999, 'USD', 'just below the threshold')$$,
  'the owner charges their own payment method just below the USD threshold at aal1'
);
select results_eq(
  $$select user_id::text, type::text, status::text from public.payment_transactions where amount_minor = 99999$$,
  format($$values (%L, 'charge', 'pending')$$, current_setting('fixture.alice')),
  'the new transaction is the owner''s, a charge, and pending: the service sets the rest'
);
select throws_ok(
  $$insert into public.payment_transactions (payment_method_id, amount_minor, currency)
    values ('aaaaaaaa-0000-4000-8000-0000000000a1', 100000, 'USD')$$,
  '42501',
  'new row violates row-level security policy "Large payment transactions require MFA (aal2)" for table "payment_transactions"',
  'a charge at the USD threshold at aal1 is refused: it needs MFA'
);
select throws_ok(
  $$insert into public.payment_transactions (amount_minor, currency) values (900000, 'USD')$$,
  '42501',
  'new row violates row-level security policy "Large payment transactions require MFA (aal2)" for table "payment_transactions"',
  'a charge well above the USD threshold at aal1 is refused'
);
select lives_ok(
  $$insert into public.payment_transactions (amount_minor, currency) values (79999, 'GBP')$$,
  'a charge just below the GBP threshold (80000) at aal1 works'
);
select throws_ok(
  $$insert into public.payment_transactions (amount_minor, currency) values (80000, 'GBP')$$,
  '42501',
  'new row violates row-level security policy "Large payment transactions require MFA (aal2)" for table "payment_transactions"',
  'a charge at the GBP threshold at aal1 is refused: each currency has its own threshold'
);
select throws_ok(
  $$insert into public.payment_transactions (amount_minor, currency) values (100000, 'CHF')$$,
  '42501',
  'new row violates row-level security policy "Large payment transactions require MFA (aal2)" for table "payment_transactions"',
  'a charge in a currency with no threshold of its own uses the default one'
);
select throws_ok(
  $$insert into public.payment_transactions (amount_minor, currency) values (1000000, 'JPY')$$,
  '42501',
  'new row violates row-level security policy "Large payment transactions require MFA (aal2)" for table "payment_transactions"',
  'a 1,000,000 JPY charge at aal1 needs MFA: the yen has no minor unit, so it is far above the USD threshold'
);
select throws_ok(
  $$insert into public.payment_transactions (payment_method_id, amount_minor, currency)
    values ('bbbbbbbb-0000-4000-8000-0000000000b1', 500, 'USD')$$,
  '42501',
  'new row violates row-level security policy "Users can charge only their own payment methods" for table "payment_transactions"',
  'charging another user''s payment method is refused'
);
select throws_ok(
  format(
    $$insert into public.payment_transactions (user_id, amount_minor, currency) values (%L, 500, 'USD')$$,
    current_setting('fixture.bob')
  ),
  '42501', 'permission denied for table payment_transactions',
  'starting a payment transaction for another user (a forged user_id) is refused'
);
select throws_ok(
  $$insert into public.payment_transactions (amount_minor, currency, status) values (500, 'USD', 'succeeded')$$,
  '42501', 'permission denied for table payment_transactions',
  'the owner cannot set the status of a new transaction'
);
select throws_ok(
  $$update public.payment_transactions set status = 'succeeded'
    where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table payment_transactions',
  'the owner cannot update their own payment transaction'
);
select throws_ok(
  format(
    $$update public.payment_transactions set user_id = %L where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
    current_setting('fixture.bob')
  ),
  '42501', 'permission denied for table payment_transactions',
  'the owner cannot hand their payment transaction to another user'
);
select throws_ok(
  $$delete from public.payment_transactions where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table payment_transactions',
  'the owner cannot delete their own payment transaction'
);

-- as the owner at aal2
select tests.authenticate_as('alice', aal => 'aal2');
select lives_ok(
  $$insert into public.payment_transactions (payment_method_id, amount_minor, currency)
    values ('aaaaaaaa-0000-4000-8000-0000000000a1', 100000, 'USD')$$,
  'a charge at the USD threshold works at aal2'
);
select lives_ok(
  $$insert into public.payment_transactions (payment_method_id, amount_minor, currency)
    values ('aaaaaaaa-0000-4000-8000-0000000000a1', 900000, 'USD')$$,
  'a charge well above the USD threshold works at aal2'
);
select throws_ok(
  $$insert into public.payment_transactions (payment_method_id, amount_minor, currency)
    values ('bbbbbbbb-0000-4000-8000-0000000000b1', 500, 'USD')$$,
  '42501',
  'new row violates row-level security policy "Users can charge only their own payment methods" for table "payment_transactions"',
  'charging another user''s payment method is refused at aal2 too'
);
select throws_ok(
  format(
    $$insert into public.payment_transactions (user_id, amount_minor, currency) values (%L, 500, 'USD')$$,
    current_setting('fixture.bob')
  ),
  '42501', 'permission denied for table payment_transactions',
  'starting a payment transaction for another user is refused at aal2 too'
);
select throws_ok(
  $$update public.payment_transactions set amount_minor = 1 where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table payment_transactions',
  'the owner cannot update their own payment transaction at aal2 either'
);
select throws_ok(
  $$delete from public.payment_transactions where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table payment_transactions',
  'the owner cannot delete their own payment transaction at aal2 either'
);
select is(
  (select count(*)::int from public.payment_transactions where currency in ('USD', 'GBP')),
  5,
  'the owner sees the fixture and the four USD and GBP charges they started'
);

-- as another user at aal1
select tests.authenticate_as('bob');
select is(
  (select count(*)::int from public.payment_transactions where id = 'aaaaaaaa-0000-4000-8000-000000000001'),
  0,
  'another user at aal1 cannot read the owner''s payment transaction by id'
);
select throws_ok(
  $$update public.payment_transactions set description = 'mine' where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table payment_transactions',
  'another user at aal1 cannot update the owner''s payment transaction'
);
select throws_ok(
  $$delete from public.payment_transactions where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table payment_transactions',
  'another user at aal1 cannot delete the owner''s payment transaction'
);

-- as another user at aal2
select tests.authenticate_as('bob', aal => 'aal2');
select results_eq(
  'select id from public.payment_transactions',
  $$values ('bbbbbbbb-0000-4000-8000-000000000001'::uuid)$$,
  'another user at aal2 sees only their own payment transaction'
);
select throws_ok(
  $$insert into public.payment_transactions (payment_method_id, amount_minor, currency)
    values ('aaaaaaaa-0000-4000-8000-0000000000a1', 500, 'USD')$$,
  '42501',
  'new row violates row-level security policy "Users can charge only their own payment methods" for table "payment_transactions"',
  'another user at aal2 cannot charge the owner''s payment method'
);

-- as admin (a staff user whose JWT role is admin): reads, inserts and updates all, deletes none
reset role;
select tests.authenticate_as('adm', aal => 'aal2', role_name => 'admin');
select is(
  (select count(*)::int from public.payment_transactions
    where id in ('aaaaaaaa-0000-4000-8000-000000000001', 'bbbbbbbb-0000-4000-8000-000000000001')),
  2,
  'admin reads every user''s payment transactions'
);
select lives_ok(
  format(
    $$insert into public.payment_transactions (user_id, type, status, amount_minor, currency, description)
      values (%L, 'refund', 'pending', 2500, 'USD', 'goodwill refund')$$,
    current_setting('fixture.alice')
  ),
  'admin records a payment transaction for a user'
);
select results_eq(
  $$with changed as (
      update public.payment_transactions set status = 'canceled'
      where id = 'bbbbbbbb-0000-4000-8000-000000000001' returning 1
    ) select count(*)::int from changed$$,
  $$values (1)$$,
  'admin updates a user''s payment transaction'
);
select throws_ok(
  $$delete from public.payment_transactions where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table payment_transactions',
  'admin cannot delete a payment transaction'
);

-- as auditor: no privilege at all
reset role;
select tests.authenticate_as('aud', role_name => 'auditor');
select throws_ok(
  'select count(*) from public.payment_transactions',
  '42501', 'permission denied for table payment_transactions',
  'auditor cannot read payment transactions'
);
select throws_ok(
  format(
    $$insert into public.payment_transactions (user_id, amount_minor, currency) values (%L, 500, 'USD')$$,
    current_setting('fixture.alice')
  ),
  '42501', 'permission denied for table payment_transactions',
  'auditor cannot record a payment transaction'
);
select throws_ok(
  $$update public.payment_transactions set description = 'auditor' where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table payment_transactions',
  'auditor cannot update a payment transaction'
);
select throws_ok(
  $$delete from public.payment_transactions where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table payment_transactions',
  'auditor cannot delete a payment transaction'
);

-- as payment_service: reads, inserts and updates all, deletes none
reset role;
select tests.authenticate_as_service('payment_service');
select is(
  (select count(*)::int from public.payment_transactions
    where id in ('aaaaaaaa-0000-4000-8000-000000000001', 'bbbbbbbb-0000-4000-8000-000000000001')),
  2,
  'payment_service reads every user''s payment transactions'
);
select lives_ok(
  format(
    $$insert into public.payment_transactions (user_id, type, status, amount_minor, currency, processor_transaction_id)
      values (%L, 'fee', 'succeeded', 300, 'USD', 'txn_1A2b3C4d')$$,
    current_setting('fixture.alice')
  ),
  'payment_service records a payment transaction for a user'
);
select results_eq(
  $$with changed as (
      update public.payment_transactions set status = 'succeeded', processor_transaction_id = 'ch_3A2b3C4d'
      where amount_minor = 99999 returning 1
    ) select count(*)::int from changed$$,
  $$values (1)$$,
  'payment_service updates a user''s payment transaction'
);
select throws_ok(
  $$delete from public.payment_transactions where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table payment_transactions',
  'payment_service cannot delete a payment transaction'
);

-- as escrow_service: no privilege at all
reset role;
select tests.authenticate_as_service('escrow_service');
select throws_ok(
  'select count(*) from public.payment_transactions',
  '42501', 'permission denied for table payment_transactions',
  'escrow_service cannot read payment transactions'
);
select throws_ok(
  format(
    $$insert into public.payment_transactions (user_id, amount_minor, currency) values (%L, 500, 'USD')$$,
    current_setting('fixture.alice')
  ),
  '42501', 'permission denied for table payment_transactions',
  'escrow_service cannot record a payment transaction'
);
select throws_ok(
  $$update public.payment_transactions set description = 'escrow' where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table payment_transactions',
  'escrow_service cannot update a payment transaction'
);
select throws_ok(
  $$delete from public.payment_transactions where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table payment_transactions',
  'escrow_service cannot delete a payment transaction'
);

-- as service_role: BYPASSRLS; reads, inserts and updates all, deletes none
reset role;
select tests.authenticate_as_service('service_role');
select is(
  (select count(*)::int from public.payment_transactions
    where id in ('aaaaaaaa-0000-4000-8000-000000000001', 'bbbbbbbb-0000-4000-8000-000000000001')),
  2,
  'service_role reads every user''s payment transactions'
);
select lives_ok(
  format(
    $$insert into public.payment_transactions (user_id, type, status, amount_minor, currency)
      values (%L, 'transfer', 'pending', 1200, 'USD')$$,
    current_setting('fixture.bob')
  ),
  'service_role records a payment transaction for a user'
);
select results_eq(
  $$with changed as (
      update public.payment_transactions set description = 'reconciled'
      where id = 'aaaaaaaa-0000-4000-8000-000000000001' returning 1
    ) select count(*)::int from changed$$,
  $$values (1)$$,
  'service_role updates a user''s payment transaction'
);
select throws_ok(
  $$delete from public.payment_transactions where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table payment_transactions',
  'service_role cannot delete a payment transaction'
);
select throws_ok(
  'truncate public.payment_transactions',
  '42501', 'permission denied for table payment_transactions',
  'service_role cannot truncate the payment transactions'
);

-- the outcome, as postgres: nothing the users were refused reached the table
reset role;
select results_eq(
  $$select user_id, amount_minor, status::text from public.payment_transactions
    where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  format($$values (%L::uuid, 2500::bigint, 'succeeded'::text)$$, tests.get_supabase_uid('alice')),
  'the owner''s fixture transaction kept its owner, amount and status'
);

select * from finish();
rollback;
