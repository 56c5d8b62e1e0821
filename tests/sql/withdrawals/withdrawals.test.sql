-- public.withdrawals: the owner reads their own and requests one, with MFA (aal2), only to a
-- payout method of their own; admin and payment_service read all and process them (status and
-- the processor's fields, never the amount); service_role reads; no one deletes.
begin;
select plan(51);

-- Its payout methods are new and withdrawn to at once: their cool-down is lifted (the
-- cool-down's own tests: withdrawals/payout_method_cool_down.test.sql).
update private.settings set value = '0' where key = 'payout_method_cool_down_seconds';

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
  id, user_id, type, processor_account_id_lookup, processor_external_account_id_sealed, processor_external_account_id_lookup, currency
)
values
  ('aaaaaaaa-0000-4000-8000-0000000000c1', tests.get_supabase_uid('alice'), 'bank_account',
    tests.token_lookup('acct_1A2b3C4d'), tests.sealed_token(), tests.token_lookup('ba_1A2b3C4d'), 'USD'),
  ('bbbbbbbb-0000-4000-8000-0000000000c1', tests.get_supabase_uid('bob'), 'bank_account',
    tests.token_lookup('acct_2A2b3C4d'), tests.sealed_token(), tests.token_lookup('ba_2A2b3C4d'), 'USD');
-- money in the wallets, for the withdrawals to reserve
select tests.fund_wallet(tests.get_supabase_uid('alice'), 100000);
select tests.fund_wallet(tests.get_supabase_uid('bob'), 100000);
insert into public.withdrawals (id, user_id, payout_method_id, amount_minor, currency)
values
  ('aaaaaaaa-0000-4000-8000-000000000001', tests.get_supabase_uid('alice'),
    'aaaaaaaa-0000-4000-8000-0000000000c1', 20000, 'USD'),
  ('bbbbbbbb-0000-4000-8000-000000000001', tests.get_supabase_uid('bob'),
    'bbbbbbbb-0000-4000-8000-0000000000c1', 30000, 'USD');

-- as an anonymous request: no privilege at all
select tests.clear_authentication();
select throws_ok(
  'select count(*) from public.withdrawals',
  '42501', 'permission denied for table withdrawals',
  'anon cannot read withdrawals'
);
select throws_ok(
  $$insert into public.withdrawals (payout_method_id, amount_minor, currency)
    values ('aaaaaaaa-0000-4000-8000-0000000000c1', 100, 'USD')$$,
  '42501', 'permission denied for table withdrawals',
  'anon cannot request a withdrawal'
);
select throws_ok(
  $$update public.withdrawals set status = 'paid' where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table withdrawals',
  'anon cannot update a withdrawal'
);
select throws_ok(
  $$delete from public.withdrawals where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table withdrawals',
  'anon cannot delete a withdrawal'
);

-- as the owner at aal1
select tests.authenticate_as('alice');
select results_eq(
  'select id from public.withdrawals',
  $$values ('aaaaaaaa-0000-4000-8000-000000000001'::uuid)$$,
  'the owner sees exactly their own withdrawal'
);
select is(
  (select count(*)::int from public.withdrawals where id = 'bbbbbbbb-0000-4000-8000-000000000001'),
  0,
  'reading another user''s withdrawal by id shows nothing'
);
select throws_ok(
  $$insert into public.withdrawals (payout_method_id, amount_minor, currency)
    values ('aaaaaaaa-0000-4000-8000-0000000000c1', 1000, 'USD')$$,
  '42501',
  'new row violates row-level security policy "Adding withdrawals requires MFA (aal2)" for table "withdrawals"',
  'requesting a withdrawal at aal1 is refused: it needs MFA'
);
select throws_ok(
  format(
    $$insert into public.withdrawals (user_id, payout_method_id, amount_minor, currency)
      values (%L, 'aaaaaaaa-0000-4000-8000-0000000000c1', 1000, 'USD')$$,
    current_setting('fixture.bob')
  ),
  '42501', 'permission denied for table withdrawals',
  'requesting a withdrawal for another user (a forged user_id) is refused at aal1'
);
select throws_ok(
  $$update public.withdrawals set status = 'paid' where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table withdrawals',
  'the owner cannot mark their own withdrawal paid'
);
select throws_ok(
  $$update public.withdrawals set payout_method_id = 'bbbbbbbb-0000-4000-8000-0000000000c1'
    where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table withdrawals',
  'the owner cannot redirect their own withdrawal to another payout method'
);
select throws_ok(
  format(
    $$update public.withdrawals set user_id = %L where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
    current_setting('fixture.bob')
  ),
  '42501', 'permission denied for table withdrawals',
  'the owner cannot hand their withdrawal to another user'
);
select throws_ok(
  $$delete from public.withdrawals where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table withdrawals',
  'the owner cannot delete their own withdrawal'
);

-- as the owner at aal2
select tests.authenticate_as('alice', aal => 'aal2');
select lives_ok(
  $$insert into public.withdrawals (payout_method_id, amount_minor, currency)
    values ('aaaaaaaa-0000-4000-8000-0000000000c1', 1500, 'USD')$$,
  'the owner requests a withdrawal to their own payout method at aal2'
);
select results_eq(
  $$select user_id::text, status::text from public.withdrawals where amount_minor = 1500$$,
  format($$values (%L, 'approved')$$, current_setting('fixture.alice')),
  'the new withdrawal is the owner''s, approved at once: it is below the dual-control threshold'
);
select throws_ok(
  $$insert into public.withdrawals (payout_method_id, amount_minor, currency)
    values ('bbbbbbbb-0000-4000-8000-0000000000c1', 1500, 'USD')$$,
  '42501',
  'new row violates row-level security policy "Users can withdraw only to their own payout methods" for table "withdrawals"',
  'withdrawing to another user''s payout method is refused at aal2'
);
select throws_ok(
  format(
    $$insert into public.withdrawals (user_id, payout_method_id, amount_minor, currency)
      values (%L, 'aaaaaaaa-0000-4000-8000-0000000000c1', 1000, 'USD')$$,
    current_setting('fixture.bob')
  ),
  '42501', 'permission denied for table withdrawals',
  'requesting a withdrawal for another user (a forged user_id) is refused at aal2'
);
select throws_ok(
  $$insert into public.withdrawals (payout_method_id, amount_minor, currency, status)
    values ('aaaaaaaa-0000-4000-8000-0000000000c1', 1000, 'USD', 'paid')$$,
  '42501', 'permission denied for table withdrawals',
  'the owner cannot request a withdrawal that is already paid'
);
select throws_ok(
  $$update public.withdrawals set amount_minor = 999999 where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table withdrawals',
  'the owner cannot change the amount of their own withdrawal at aal2'
);
select throws_ok(
  $$delete from public.withdrawals where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table withdrawals',
  'the owner cannot delete their own withdrawal at aal2'
);

-- as another user at aal1
select tests.authenticate_as('bob');
select is(
  (select count(*)::int from public.withdrawals where id = 'aaaaaaaa-0000-4000-8000-000000000001'),
  0,
  'another user at aal1 cannot read the owner''s withdrawal by id'
);
select throws_ok(
  $$update public.withdrawals set status = 'canceled' where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table withdrawals',
  'another user at aal1 cannot update the owner''s withdrawal'
);
select throws_ok(
  $$delete from public.withdrawals where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table withdrawals',
  'another user at aal1 cannot delete the owner''s withdrawal'
);

-- as another user at aal2
select tests.authenticate_as('bob', aal => 'aal2');
select results_eq(
  'select id from public.withdrawals',
  $$values ('bbbbbbbb-0000-4000-8000-000000000001'::uuid)$$,
  'another user at aal2 sees only their own withdrawal'
);
select throws_ok(
  $$insert into public.withdrawals (payout_method_id, amount_minor, currency)
    values ('aaaaaaaa-0000-4000-8000-0000000000c1', 1500, 'USD')$$,
  '42501',
  'new row violates row-level security policy "Users can withdraw only to their own payout methods" for table "withdrawals"',
  'another user at aal2 cannot withdraw to the owner''s payout method'
);

-- as admin (a staff user whose JWT role is admin): reads all, processes (status, failure reason)
reset role;
select tests.authenticate_as('adm', aal => 'aal2', role_name => 'admin');
select is(
  (select count(*)::int from public.withdrawals
    where id in ('aaaaaaaa-0000-4000-8000-000000000001', 'bbbbbbbb-0000-4000-8000-000000000001')),
  2,
  'admin reads every user''s withdrawals'
);
select throws_ok(
  format(
    $$insert into public.withdrawals (user_id, payout_method_id, amount_minor, currency)
      values (%L, 'aaaaaaaa-0000-4000-8000-0000000000c1', 1000, 'USD')$$,
    current_setting('fixture.alice')
  ),
  '42501', 'permission denied for table withdrawals',
  'admin cannot request a withdrawal'
);
select results_eq(
  $$with changed as (
      update public.withdrawals set status = 'approved'
      where id = 'aaaaaaaa-0000-4000-8000-000000000001' returning 1
    ) select count(*)::int from changed$$,
  $$values (1)$$,
  'admin approves a user''s withdrawal'
);
select throws_ok(
  $$update public.withdrawals set processor_payout_id = 'po_1Admin01' where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table withdrawals',
  'admin cannot set the processor''s payout id'
);
select throws_ok(
  $$update public.withdrawals set amount_minor = 1 where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table withdrawals',
  'admin cannot change the amount of a withdrawal'
);
select throws_ok(
  $$delete from public.withdrawals where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table withdrawals',
  'admin cannot delete a withdrawal'
);

-- as auditor: no privilege at all
reset role;
select tests.authenticate_as('aud', role_name => 'auditor');
select throws_ok(
  'select count(*) from public.withdrawals',
  '42501', 'permission denied for table withdrawals',
  'auditor cannot read withdrawals'
);
select throws_ok(
  format(
    $$insert into public.withdrawals (user_id, payout_method_id, amount_minor, currency)
      values (%L, 'aaaaaaaa-0000-4000-8000-0000000000c1', 1000, 'USD')$$,
    current_setting('fixture.alice')
  ),
  '42501', 'permission denied for table withdrawals',
  'auditor cannot request a withdrawal'
);
select throws_ok(
  $$update public.withdrawals set status = 'paid' where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table withdrawals',
  'auditor cannot update a withdrawal'
);
select throws_ok(
  $$delete from public.withdrawals where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table withdrawals',
  'auditor cannot delete a withdrawal'
);

-- as payment_service: reads all, processes (status and the processor's fields)
reset role;
select tests.authenticate_as_service('payment_service');
select is(
  (select count(*)::int from public.withdrawals
    where id in ('aaaaaaaa-0000-4000-8000-000000000001', 'bbbbbbbb-0000-4000-8000-000000000001')),
  2,
  'payment_service reads every user''s withdrawals'
);
select throws_ok(
  format(
    $$insert into public.withdrawals (user_id, payout_method_id, amount_minor, currency)
      values (%L, 'aaaaaaaa-0000-4000-8000-0000000000c1', 1000, 'USD')$$,
    current_setting('fixture.alice')
  ),
  '42501', 'permission denied for table withdrawals',
  'payment_service cannot request a withdrawal'
);
select results_eq(
  $$with changed as (
      update public.withdrawals set status = 'processing'
      where id = 'aaaaaaaa-0000-4000-8000-000000000001' returning 1
    ) select count(*)::int from changed$$,
  $$values (1)$$,
  'payment_service starts processing a user''s approved withdrawal'
);
select throws_ok(
  $$update public.withdrawals
    set status = 'paid', processor_payout_id = 'po_1A2b3C4d', processed_at = now() - interval '1 day'
    where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table withdrawals',
  'payment_service cannot write when a withdrawal was processed: the database records it'
);
select results_eq(
  $$with changed as (
      update public.withdrawals
      set status = 'paid', processor_payout_id = 'po_1A2b3C4d'
      where id = 'aaaaaaaa-0000-4000-8000-000000000001' returning processed_at = now()
    ) select * from changed$$,
  $$values (true)$$,
  'payment_service marks it paid, with the processor''s payout id; the time is the database''s'
);
select throws_ok(
  $$update public.withdrawals set amount_minor = 1 where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table withdrawals',
  'payment_service cannot change the amount of a withdrawal'
);
select throws_ok(
  $$delete from public.withdrawals where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table withdrawals',
  'payment_service cannot delete a withdrawal'
);

-- as escrow_service: no privilege at all
reset role;
select tests.authenticate_as_service('escrow_service');
select throws_ok(
  'select count(*) from public.withdrawals',
  '42501', 'permission denied for table withdrawals',
  'escrow_service cannot read withdrawals'
);
select throws_ok(
  format(
    $$insert into public.withdrawals (user_id, payout_method_id, amount_minor, currency)
      values (%L, 'aaaaaaaa-0000-4000-8000-0000000000c1', 1000, 'USD')$$,
    current_setting('fixture.alice')
  ),
  '42501', 'permission denied for table withdrawals',
  'escrow_service cannot request a withdrawal'
);
select throws_ok(
  $$update public.withdrawals set status = 'paid' where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table withdrawals',
  'escrow_service cannot update a withdrawal'
);
select throws_ok(
  $$delete from public.withdrawals where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table withdrawals',
  'escrow_service cannot delete a withdrawal'
);

-- as service_role: BYPASSRLS, but only reads
reset role;
select tests.authenticate_as_service('service_role');
select is(
  (select count(*)::int from public.withdrawals
    where id in ('aaaaaaaa-0000-4000-8000-000000000001', 'bbbbbbbb-0000-4000-8000-000000000001')),
  2,
  'service_role reads every user''s withdrawals'
);
select throws_ok(
  format(
    $$insert into public.withdrawals (user_id, payout_method_id, amount_minor, currency)
      values (%L, 'aaaaaaaa-0000-4000-8000-0000000000c1', 1000, 'USD')$$,
    current_setting('fixture.alice')
  ),
  '42501', 'permission denied for table withdrawals',
  'service_role cannot request a withdrawal'
);
select throws_ok(
  $$update public.withdrawals set status = 'canceled' where id = 'bbbbbbbb-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table withdrawals',
  'service_role cannot update a withdrawal'
);
select throws_ok(
  $$delete from public.withdrawals where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table withdrawals',
  'service_role cannot delete a withdrawal'
);

-- the outcome, as postgres: who is paid, where and how much are as the owner asked
reset role;
select results_eq(
  $$select user_id, payout_method_id, amount_minor, status::text from public.withdrawals
    where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  format(
    $$values (%L::uuid, 'aaaaaaaa-0000-4000-8000-0000000000c1'::uuid, 20000::bigint, 'paid'::text)$$,
    tests.get_supabase_uid('alice')
  ),
  'the owner''s withdrawal kept its owner, payout method and amount, and was paid'
);
select is(
  (select status::text from public.withdrawals where id = 'bbbbbbbb-0000-4000-8000-000000000001'),
  'approved',
  'another user''s withdrawal was never touched: still as requested (approved at once, being small)'
);

select * from finish();
rollback;
